#!/usr/bin/env bash
# ctest's entry to tools/compose-test: the compose stack for real on podman
# (tens of minutes the first time: the image's C++ build), so it runs only
# when STARLING_COMPOSE=1 and is reported as skipped otherwise (exit 77,
# the test's SKIP_RETURN_CODE).
# Usage: run_compose_test.sh REPO_ROOT
set -euo pipefail
if [[ ${STARLING_COMPOSE:-0} != 1 ]]; then
  echo "skipped: set STARLING_COMPOSE=1 to run the compose stack on podman (tools/compose-test)"
  exit 77
fi
exec bash "$1/tools/compose-test"
