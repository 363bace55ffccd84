#!/usr/bin/env bash
# e2e_bench on a tiny run: one shape (B=20, 4 connections, 300 events at
# 300/s) and a 500-message kcat floor. Checks the JSON has every field the
# table is made of and that the run ended CONSISTENT; asserts no timings.
set -euo pipefail
bench="$1"
dir="$(mktemp -d)"
trap 'rm -rf "$dir"' EXIT
"$bench" --batches 20 --connections 4 --rates 300 --events 300 --warmup 0 --bikes 50 \
         --floor-events 500 --settle-timeout 90 --json "$dir/out.json" --data-dir "$dir/data"
jq -e '
  (.runs | length) == 1 and
  (.runs[0] | .consistent == true and .accepted == 300 and .unsent == 0 and
     (.accepted_eps > 0) and (.finished_eps > 0) and (.finished == 300) and
     (.ack_ms | has("p50") and has("p99") and has("p999")) and
     (.ingest_to_loaded_ms | .samples > 0 and has("p50") and has("p99") and has("p999")) and
     (.cpu_us_per_event_total > 0) and
     ([.processes[] | has("cpu_us_per_event") and has("rss_mib_median") and has("rss_mib_max") and has("hwm_mib")]
        | all) and
     (.processes | has("broker") and has("ingest") and has("clean") and has("load") and has("saga"))) and
  (.floor | .events == 500 and .eps > 0 and .cpu_us_per_event_total > 0)
' "$dir/out.json" > /dev/null || { echo "unexpected JSON:"; cat "$dir/out.json"; exit 1; }
echo "e2e_bench smoke: ok"
