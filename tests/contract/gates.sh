#!/usr/bin/env bash
# The contract gates (ctest label `contract`), each run as
#   gates.sh GATE SOURCE_DIR WORK_DIR [STARLING_BINARY]
# WORK_DIR (in the build tree) holds the npm packages pinned by this folder's
# package-lock.json: gate `npm-ci` installs them there with `npm ci`, once per
# lock file (the same scheme as tests/services/broker/npm_client.h). Nothing
# else uses the network.
set -euo pipefail
gate=$1 src=$2 work=$3
here=$src/tests/contract
bin=$work/node_modules/.bin
export REDOCLY_TELEMETRY=off REDOCLY_SUPPRESS_UPDATE_NOTICE=true NO_COLOR=1
export BUF_CACHE_DIR=$work/buf-cache

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Runs "$@" and succeeds only if it fails (a gate proving it can fail); its
# output must contain $expect.
must_fail() {
  local expect=$1
  shift
  if "$@" >"$tmp/out" 2>&1; then
    cat "$tmp/out"
    echo "FAIL: the gate passed on a deliberately broken input"
    return 1
  fi
  cat "$tmp/out"
  grep -qF -- "$expect" "$tmp/out" || { echo "FAIL: it failed, but not naming '$expect'"; return 1; }
  echo "ok: the gate refused the broken input"
}

case $gate in
  npm-ci)
    mkdir -p "$work"
    if cmp -s "$here/package-lock.json" "$work/installed-lock.json" && [[ -x $bin/redocly && -x $bin/buf ]]; then
      echo "npm packages already installed from this package-lock.json"
      exit 0
    fi
    command -v npm >/dev/null || { echo "npm is not installed; run tools/setup" >&2; exit 1; }
    cp "$here/package.json" "$here/package-lock.json" "$work/"
    (cd "$work" && npm ci --no-audit --no-fund --prefer-offline)
    "$bin/buf" --version >/dev/null
    cp "$here/package-lock.json" "$work/installed-lock.json"
    ;;

  openapi-lint)
    # redocly.yaml names both documents (services/*/openapi.json) and the rules.
    "$bin/redocly" lint --config "$here/redocly.yaml"
    ;;

  openapi-lint-fails)
    # The saga document with a response that refers to a schema nobody defined.
    sed 's|"#/components/schemas/SagaList"|"#/components/schemas/NoSuchSchema"|' \
      "$src/services/saga/openapi.json" >"$tmp/openapi.json"
    printf 'extends:\n  - recommended-strict\nrules:\n  info-license: off\n' >"$tmp/redocly.yaml"
    must_fail "no-unresolved-refs" "$bin/redocly" lint --config "$tmp/redocly.yaml" "$tmp/openapi.json"
    ;;

  buf-lint)
    cd "$src/schemas" && "$bin/buf" lint
    ;;

  buf-breaking)
    # Against the schemas of the previous commit (HEAD~1: on main, the commit
    # before the one under test), taken with git archive so a worktree or a
    # clone without a remote works the same.
    git -C "$src" rev-parse --git-dir >/dev/null 2>&1 || {
      echo "SKIP: $src is not a git checkout, so there is no previous commit to compare with"
      exit 77
    }
    if ! git -C "$src" rev-parse -q --verify 'HEAD~1^{commit}' >/dev/null; then
      if [[ $(git -C "$src" rev-parse --is-shallow-repository) == true ]]; then
        # A shallow clone of a local repository can fetch its parent without
        # the network; any other shallow clone must be deepened by hand.
        origin=$(git -C "$src" remote get-url origin 2>/dev/null || true)
        if [[ $origin == /* || $origin == file://* ]]; then
          git -C "$src" fetch -q --deepen=1 origin
        else
          echo "FAIL: shallow clone without HEAD~1; run 'git fetch --deepen=1' (buf breaking compares with it)"
          exit 1
        fi
      else
        echo "SKIP: HEAD is the first commit: there is no previous commit to compare schemas/ with"
        exit 77
      fi
    fi
    rev=$(git -C "$src" rev-parse --short 'HEAD~1')
    git -C "$src" archive 'HEAD~1' schemas | tar -x -C "$tmp"
    echo "buf breaking schemas/ against HEAD~1 ($rev)"
    cd "$src/schemas" && "$bin/buf" breaking --against "$tmp/schemas"
    ;;

  buf-breaking-fails)
    # A renumbered field (battery_pct 8 -> 18) must be refused.
    cp -r "$src/schemas" "$tmp/new"
    sed -i 's/optional double battery_pct = 8;/optional double battery_pct = 18;/' "$tmp/new/starling/v1/ecowheels.proto"
    cmp -s "$src/schemas/starling/v1/ecowheels.proto" "$tmp/new/starling/v1/ecowheels.proto" && {
      echo "FAIL: battery_pct = 8 is no longer in ecowheels.proto; update this gate"
      exit 1
    }
    cd "$tmp/new" && must_fail '"8"' "$bin/buf" breaking --against "$src/schemas"
    ;;

  pipelines)
    # Every pipeline (pipelines/*.yaml; the *.test.yaml beside them are
    # fixture cases, another format).
    cp "$here/validate_pipelines.mjs" "$work/"
    files=()
    for f in "$src"/pipelines/*.yaml; do [[ $f == *.test.yaml ]] || files+=("$f"); done
    node "$work/validate_pipelines.mjs" "$src/schemas/pipeline.schema.json" "${files[@]}"
    starling=${4:?the starling binary}
    [[ -x $starling ]] || { echo "FAIL: no starling binary at $starling (build the starling target)"; exit 1; }
    for f in "${files[@]}"; do "$starling" check "$f"; done
    ;;

  pipelines-refused)
    # Each file in bad_pipelines/ has one mistake (an unknown key, a wrong
    # type, ...): the schema must refuse it, and so must `starling check`
    # (the 4th argument), so the schema and the parser cannot drift apart.
    cp "$here/validate_pipelines.mjs" "$work/"
    node "$work/validate_pipelines.mjs" "$src/schemas/pipeline.schema.json" --expect-invalid "$here"/bad_pipelines/*.yaml
    starling=${4:?the starling binary}
    [[ -x $starling ]] || { echo "FAIL: no starling binary at $starling (build the starling target)"; exit 1; }
    for f in "$here"/bad_pipelines/*.yaml; do
      if "$starling" check "$f" >"$tmp/check" 2>&1; then
        echo "FAIL: starling check accepts $f, which the schema refuses; make them agree"
        exit 1
      fi
      # A refusal names the file and line (file:line:column: path: problem).
      grep -q "^$f:[0-9]" "$tmp/check" || { cat "$tmp/check"; echo "FAIL: starling check did not refuse $f as a pipeline problem"; exit 1; }
      echo "starling check refuses it too: $(head -1 "$tmp/check")"
    done
    ;;

  *)
    echo "unknown gate '$gate'" >&2
    exit 2
    ;;
esac
