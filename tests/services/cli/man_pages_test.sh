#!/usr/bin/env bash
# Every executable has a man page built by help2man (cmake/man_pages.cmake),
# it renders without a groff warning, and it holds NAME, SYNOPSIS,
# DESCRIPTION and every long option the executable's --help lists.
# Usage: man_pages_test.sh BIN_DIR MAN_DIR NAME...
set -uo pipefail
bin_dir=$1 man_dir=$2
shift 2
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

command -v help2man >/dev/null || fail "help2man is not installed (tools/setup installs it); no man pages were built"
for name in "$@"; do
  before=$failures
  page=$man_dir/$name.1
  if [[ ! -s $page ]]; then
    fail "$page missing: build the 'man' target (part of ALL when help2man is found)"
    continue
  fi
  warnings=$(LC_ALL=C.UTF-8 groff -man -Tutf8 -ww -z "$page" 2>&1)
  [[ -z $warnings ]] || fail "$name.1: groff warns: $warnings"
  # Rendered wide and plain, so no option is hyphenated or overstruck.
  text=$(LC_ALL=C.UTF-8 MANWIDTH=400 man --nh --nj -l -P cat "$page" 2>&1 | col -bx)
  for section in NAME SYNOPSIS DESCRIPTION OPTIONS; do
    grep -qx "$section" <<<"$text" || fail "$name.1: no $section section"
  done
  grep -q "^ *$name - " <<<"$text" || fail "$name.1: NAME does not name $name"
  options=$(ASAN_OPTIONS=detect_leaks=0 "$bin_dir/$name" --help 2>&1 | grep -oE -- '--[a-z][a-z0-9-]+' | sort -u)
  [[ -n $options ]] || fail "$name --help lists no options"
  for opt in $options; do
    grep -qF -- "$opt" <<<"$text" || fail "$name.1 does not mention $opt"
  done
  ((failures > before)) || echo "ok: $name.1 ($(wc -w <<<"$options") options)"
done
((failures == 0)) || { echo "$failures failure(s)"; exit 1; }
