#!/usr/bin/env bash
# The real `starling demo --pipeline pipelines/weather.yaml`, small: its fake
# weather API on a free port, the whole stack polling it, and a report that
# says CONSISTENT (exit 0) only when the warehouse holds each observation the
# API has exactly once and the sagas balance. And the demo refuses, with exit
# 2 naming the file, a pipeline it cannot feed.
# Usage: weather_demo_test.sh consistent|refused STARLING SOURCE_DIR
set -uo pipefail
mode=$1 starling=$2 src=$3
export ASAN_OPTIONS=detect_leaks=0
unset WEATHER_API WEATHER_API_START
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

case $mode in
  consistent)
    # 3 stations x 6 hours, 5 observations a page: several pages and windows.
    timeout 100 "$starling" demo --pipeline "$src/pipelines/weather.yaml" --stations 3 --hours 6 --page-size 5 \
      --settle-timeout 60 --data-dir "$tmp/demo" >"$tmp/out" 2>&1
    rc=$?
    out=$(cat "$tmp/out")
    echo "$out"
    [[ $rc == 0 ]] || fail "exit $rc"
    grep -q "^CONSISTENT: accepted = loaded + rejected + in flight; warehouse holds each of the API's observations" \
      <<<"$out" || fail "no CONSISTENT verdict"
    row() { grep -E "^  $1 +$2( |$)" <<<"$out" >/dev/null || fail "no line '$1 $2'"; }
    row "observations the API has" 18
    row "loaded, per the sagas" 18
    row "rows in weather_observations" "18   \(18 distinct event ids, 18 of the API's 18\)"
    row "in flight" 0
    ;;
  refused)
    # weather.yaml without its source block: nothing would pull its records.
    sed '/^source:/,$d' "$src/pipelines/weather.yaml" >"$tmp/no_source.yaml"
    timeout 60 "$starling" demo --pipeline "$tmp/no_source.yaml" --data-dir "$tmp/d1" >"$tmp/err" 2>&1
    rc=$?
    [[ $rc == 2 ]] || fail "no source: expected exit 2, got $rc: $(cat "$tmp/err")"
    grep -qF "error: $tmp/no_source.yaml: pipeline weather has no source: http_poll: block" "$tmp/err" ||
      fail "no source: the error does not name the file: $(cat "$tmp/err")"
    [[ ! -e $tmp/d1 ]] || fail "no source: a stack was started"
    # A source whose address is fixed: the demo's API would never be polled.
    sed 's#http://${WEATHER_API:-127.0.0.1:8089}/#http://127.0.0.1:9/#' "$src/pipelines/weather.yaml" >"$tmp/fixed.yaml"
    grep -q "http://127.0.0.1:9/" "$tmp/fixed.yaml" || fail "weather.yaml's url changed; update this test"
    timeout 60 "$starling" demo --pipeline "$tmp/fixed.yaml" --data-dir "$tmp/d2" >"$tmp/err" 2>&1
    rc=$?
    [[ $rc == 2 ]] || fail "fixed url: expected exit 2, got $rc: $(cat "$tmp/err")"
    grep -qF "error: $tmp/fixed.yaml: its source url (http://127.0.0.1:9/geojson" "$tmp/err" ||
      fail "fixed url: the error does not name the file and url: $(cat "$tmp/err")"
    [[ ! -e $tmp/d2 ]] || fail "fixed url: a stack was started"
    # More hours than the pipeline's rules accept (readings older than 7 days).
    timeout 60 "$starling" demo --pipeline "$src/pipelines/weather.yaml" --hours 500 --data-dir "$tmp/d3" \
      >"$tmp/err" 2>&1 && fail "--hours 500 should be refused"
    grep -qF -- "--hours" "$tmp/err" || fail "--hours 500: the error does not name the flag: $(cat "$tmp/err")"
    ;;
  *)
    echo "usage: $0 consistent|refused STARLING SOURCE_DIR" >&2
    exit 2
    ;;
esac
((failures == 0)) || { echo "$failures failure(s)"; exit 1; }
echo "ok: weather demo ($mode)"
