#!/usr/bin/env bash
# Posts one valid ecowheels reading to starling-ingest with curl and prints
# the receipt ({"saga_id", "accepted": 1, ...}).
#   examples/devices/send.sh [DEVICE_ID]        (default bike-0001)
# INGEST_URL picks the ingest (default http://localhost:8080, `starling up`).
# The device id must match the pipeline's rule 'bike-[0-9]{4}'
# (pipelines/ecowheels.yaml), and status is one of its allowed values, or
# clean rejects the reading; event_time is now, since a reading older than
# a day is rejected too.
set -euo pipefail
url=${INGEST_URL:-http://localhost:8080}
device=${1:-bike-0001}
now=$(date -u +%Y-%m-%dT%H:%M:%SZ)
# -f: a 4xx/5xx answer is an error (exit 22) instead of a printed page.
curl -fsS -X POST "$url/v1/pipelines/ecowheels/events" \
  -H 'Content-Type: application/json' \
  -d "{\"device_id\":\"$device\",\"event_time\":\"$now\",\"battery_pct\":80,\"speed_kmh\":21.5,\"lat\":38.7223,\"lon\":-9.1393,\"status\":\"RIDING\"}"
echo
