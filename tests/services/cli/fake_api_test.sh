#!/usr/bin/env bash
# `starling fake-api weather` is `starling-fake-api weather`: the same flags
# (one definition, services/extract/fake_api_cli.h), a server on a loopback
# port it picks (port 0) that serves the generated observations and stops on
# SIGTERM with exit 0, and exit 2 naming the flag for a bad value.
# Usage: fake_api_test.sh STARLING STARLING_FAKE_API
set -uo pipefail
starling=$1 fake=$2
export ASAN_OPTIONS=detect_leaks=0
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
tmp=$(mktemp -d)
pid=
cleanup() {
  [[ -n $pid ]] && kill -KILL "$pid" 2>/dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT

options() { "$@" --help 2>&1 | grep -oE -- '--[a-z][a-z0-9-]+' | sort -u; }
ours=$(options "$starling" fake-api weather)
theirs=$(options "$fake" weather)
[[ -n $ours && $ours == "$theirs" ]] || fail "the flags differ: starling fake-api weather [$(echo $ours)], starling-fake-api weather [$(echo $theirs)]"
for opt in --listen --port-file --stations --hours --first-hour --page-size --error-every; do
  grep -qx -- "$opt" <<<"$ours" || fail "starling fake-api weather --help does not list $opt"
done
"$starling" fake-api --help | grep -q "weather" || fail "starling fake-api --help does not name weather"

# Given a fake API on a port it picked, 2 stations x 3 hours from a fixed hour
"$starling" fake-api weather --listen 127.0.0.1:0 --port-file "$tmp/port" --stations 2 --hours 3 \
  --first-hour 2026-01-01T00:00:00Z --page-size 100 >"$tmp/out" 2>&1 &
pid=$!
for _ in $(seq 100); do
  [[ -s $tmp/port ]] && break
  sleep 0.1
done
port=$(cat "$tmp/port" 2>/dev/null)
if [[ -z $port ]]; then
  fail "no port file after 10 s: $(cat "$tmp/out")"
else
  # Then a window of the day holds each station's 3 hours
  body=$(curl -fsS "http://127.0.0.1:$port/geojson/observations?start=2026-01-01T00:00:00Z&end=2026-01-02T00:00:00Z")
  n=$(python3 -c 'import json,sys; print(len(json.load(sys.stdin)["features"]))' <<<"$body")
  [[ $n == 6 ]] || fail "expected 6 features, got $n: $body"
  grep -q "fake weather API on http://127.0.0.1:$port (2 stations, 3 hours from 2026-01-01T00:00:00Z)" "$tmp/out" ||
    fail "no address line: $(cat "$tmp/out")"
  # and SIGTERM stops it with exit 0
  kill -TERM "$pid"
  wait "$pid"
  rc=$?
  pid=
  [[ $rc == 0 ]] || fail "exit $rc after SIGTERM"
fi

# A bad value is exit 2 naming the flag.
expect_refused() {  # expect_refused TEXT ARGS...
  local text=$1 rc
  shift
  timeout 20 "$starling" fake-api weather "$@" >"$tmp/err" 2>&1
  rc=$?
  [[ $rc == 2 ]] || fail "fake-api weather $*: expected exit 2, got $rc: $(cat "$tmp/err")"
  grep -qF -- "$text" "$tmp/err" || fail "fake-api weather $*: no '$text' in: $(cat "$tmp/err")"
}
expect_refused "--listen: expected host:port, got 'nonsense'" --listen nonsense
expect_refused "--listen: expected host:port, got '127.0.0.1:99999'" --listen 127.0.0.1:99999
expect_refused "--first-hour: expected RFC 3339 or a duration like 48h, got 'yesterday'" --first-hour yesterday
# CLI11 refuses an out-of-range number itself, with its own exit code.
timeout 20 "$starling" fake-api weather --stations 0 >"$tmp/err" 2>&1 && fail "--stations 0 should be refused"
grep -qF -- "--stations" "$tmp/err" || fail "--stations 0: the error does not name the flag: $(cat "$tmp/err")"
timeout 20 "$starling" fake-api >/dev/null 2>&1 && fail "starling fake-api without an API should be refused"

((failures == 0)) || { echo "$failures failure(s)"; exit 1; }
echo "ok: starling fake-api weather"
