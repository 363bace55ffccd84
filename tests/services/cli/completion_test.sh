#!/usr/bin/env bash
# `starling completion bash` is a valid bash script, and completing with it
# offers what the command line has: subcommands per level, options, files
# after an option that takes a value. `completion zsh` is valid zsh when zsh
# is installed. Usage: completion_test.sh STARLING_BINARY
set -uo pipefail
starling=$1
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

script=$(mktemp)
trap 'rm -f "$script"' EXIT
"$starling" completion bash >"$script" || fail "starling completion bash exited $?"
bash -n "$script" || fail "the bash script does not parse"
# shellcheck disable=SC1090
source "$script"
complete -p starling >/dev/null 2>&1 || fail "the script does not register a completion for starling"

# complete_line "LINE": COMPREPLY for the command line "starling LINE" with
# the cursor at its end (a trailing space: on a new, empty word).
complete_line() {
  local words
  read -ra words <<<"$1"
  [[ -z $1 || $1 == *" " ]] && words+=("")
  COMP_WORDS=(starling "${words[@]}")
  COMP_CWORD=${#words[@]}
  COMP_LINE="starling $1"
  COMP_POINT=${#COMP_LINE}
  COMPREPLY=()
  _starling
  printf '%s\n' "${COMPREPLY[@]}" | sort
}
expect() {  # expect "LINE" "EXPECTED (newline-separated, sorted)"
  local got
  got=$(complete_line "$1")
  [[ $got == "$2" ]] || fail "starling $1<TAB>: expected [$2], got [$got]"
}
expect_has() {  # expect_has "LINE" WORD: WORD is among the completions
  local got
  got=$(complete_line "$1")
  grep -qx -- "$2" <<<"$got" || fail "starling $1<TAB>: $2 not offered (got: $(echo $got))"
}

expect "to" "topics"
expect "ta" "tail"
expect "topics " $'create\ndescribe\nlist'
expect "topics d" "describe"
# A flag takes no value: what follows it is completed as usual.
expect "topics --json " $'create\ndescribe\nlist'
expect_has "topics create --" "--partitions"
expect_has "topics create --" "--replication-factor"
expect_has "topics create --" "--config"
expect_has "topics create --" "--kafka"
expect_has "tail --" "--follow"
expect_has "tail --" "--from"
expect_has "tail --" "--max"
expect_has "" "groups"
expect_has "" "completion"
expect_has "--" "--version"
expect "sagas sh" "show"
expect "replay st" "status"
expect "extract " "backfill"
expect "extract backfill st" "status"
expect_has "extract backfill --" "--from"
expect "fake" "fake-api"
expect "fake-api " "weather"
expect_has "fake-api weather --" "--stations"
expect_has "fake-api weather --" "--first-hour"
expect_has "demo --" "--hours"
# A flag's value does not count as a subcommand: "--kafka topics" stays at the top.
expect "groups --kafka topics --js" "--json"
# After an option that takes a value: files (here, one we made).
tmp=$(mktemp -d)
touch "$tmp/props.properties"
expect "groups --kafka-properties-file $tmp/pro" "$tmp/props.properties"
rm -rf "$tmp"

"$starling" completion zsh >"$script" || fail "starling completion zsh exited $?"
if command -v zsh >/dev/null; then
  zsh -n "$script" || fail "the zsh script does not parse"
fi
"$starling" completion fish >/dev/null 2>&1 && fail "completion fish should be refused"

((failures == 0)) || { echo "$failures failure(s)"; exit 1; }
echo "ok: bash completion"
