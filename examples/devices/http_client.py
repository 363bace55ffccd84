#!/usr/bin/env python3
"""An e-bike that posts its readings to starling-ingest over HTTP, with retries.

Each batch of readings is one POST (one saga). The body and its
Idempotency-Key are made once and reused on every retry, so a retry after a
lost answer gets the same saga and the same event ids: each reading is loaded
once however often it is sent.

Retried: 429, 409 (the same key still in progress), 5xx, and connection
errors or timeouts, with exponential back-off and full jitter; a Retry-After
header is waited out first. Any other 4xx is a bug in the request: the error
body is printed and the client exits 1.

Python 3 standard library only (urllib). Prints one JSON line per batch (its
receipt) on stdout and one line per failed attempt on stderr.

  examples/devices/http_client.py --device bike-0007 --batches 3 --events 5
"""

import argparse
import email.utils
import json
import os
import random
import sys
import time
import urllib.error
import urllib.request
import uuid
from datetime import datetime, timezone

RETRY_STATUS = {409, 429}  # and every 5xx


def reading(device, ride, i):
    """One ecowheels reading that passes the pipeline's rules."""
    return {
        # The device names each reading, so a resend is recognisable downstream too.
        "event_id": str(uuid.uuid4()),
        "device_id": device,
        "ride_id": ride,
        "event_time": datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "lat": round(38.7223 + i * 0.0001, 6),
        "lon": round(-9.1393 + i * 0.0001, 6),
        "speed_kmh": 18.0 + i % 7,
        "battery_pct": max(5, 90 - i),
        "temperature_c": 17.5,
        "odometer_km": 1200.0 + i * 0.01,
        "status": "RIDING",
    }


def retry_after_seconds(value):
    """Retry-After is either delay-seconds or an HTTP-date (RFC 9110 10.2.3)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())


def backoff(attempt, base, cap):
    """Full jitter: uniform in [0, min(cap, base * 2^attempt)] (AWS architecture blog)."""
    return random.uniform(0, min(cap, base * (2**attempt)))


def post_batch(args, body, key):
    """POSTs one batch until it is accepted. Returns (receipt, attempts)."""
    url = f"{args.url.rstrip('/')}/v1/pipelines/{args.pipeline}/events"
    headers = {"Content-Type": "application/json", "Idempotency-Key": key}
    if args.api_key:
        headers["Authorization"] = f"Bearer {args.api_key}"
    for attempt in range(1, args.max_attempts + 1):
        request = urllib.request.Request(url, data=body, headers=headers, method="POST")
        wait_at_least = 0.0
        try:
            with urllib.request.urlopen(request, timeout=args.timeout) as response:
                return json.load(response), attempt
        except urllib.error.HTTPError as e:
            text = e.read().decode("utf-8", "replace")
            if e.code not in RETRY_STATUS and e.code < 500:
                print(f"key {key}: HTTP {e.code}, not retried: {text}", file=sys.stderr)
                sys.exit(1)
            wait_at_least = retry_after_seconds(e.headers.get("Retry-After")) or 0.0
            why = f"HTTP {e.code} (Retry-After {e.headers.get('Retry-After')}) {text}"
        except (urllib.error.URLError, OSError) as e:  # refused, reset, timeout, lost answer
            why = f"{type(e).__name__}: {getattr(e, 'reason', e)}"
        if attempt == args.max_attempts:
            print(f"key {key}: giving up after {attempt} attempts; last: {why}", file=sys.stderr)
            sys.exit(1)
        # Wait out Retry-After, plus jitter so a fleet does not come back in step.
        delay = wait_at_least + backoff(attempt - 1, args.base_delay, args.max_delay)
        print(f"key {key}: attempt {attempt} failed: {why}; retrying in {delay:.2f} s", file=sys.stderr, flush=True)
        time.sleep(delay)
    raise AssertionError("unreachable")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--url", default=os.environ.get("INGEST_URL", "http://localhost:8080"),
                   help="starling-ingest base URL (default: $INGEST_URL or http://localhost:8080)")
    p.add_argument("--pipeline", default="ecowheels")
    p.add_argument("--device", default="bike-0001", help="device id; ecowheels wants bike-NNNN")
    p.add_argument("--batches", type=int, default=3, help="POSTs to make, one saga each")
    p.add_argument("--events", type=int, default=5, help="readings per POST")
    p.add_argument("--api-key", default=os.environ.get("STARLING_API_KEY"), help="sent as Bearer, if set")
    p.add_argument("--max-attempts", type=int, default=8)
    p.add_argument("--base-delay", type=float, default=0.2, help="seconds; doubles per attempt")
    p.add_argument("--max-delay", type=float, default=10.0, help="cap of one back-off, in seconds")
    p.add_argument("--timeout", type=float, default=15.0, help="seconds per attempt")
    args = p.parse_args()

    ride = f"ride-{uuid.uuid4().hex[:8]}"
    for b in range(args.batches):
        readings = [reading(args.device, ride, b * args.events + i) for i in range(args.events)]
        body = json.dumps(readings).encode()  # the same bytes on every retry
        key = str(uuid.uuid4())
        receipt, attempts = post_batch(args, body, key)
        print(json.dumps({"batch": b, "idempotency_key": key, "attempts": attempts,
                          "saga_id": receipt["saga_id"], "accepted": receipt["accepted"],
                          "event_ids": [r["event_id"] for r in readings]}), flush=True)


if __name__ == "__main__":
    main()
