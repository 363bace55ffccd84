#!/usr/bin/env python3
"""Prints a saga API consistency answer (GET /v1/pipelines/P/consistency, on
stdin) as `starling sagas report` does, and exits 0 only if CONSISTENT.
tools/compose-test uses it while `starling sagas report` cannot send an API key."""

import json
import sys

d = json.load(sys.stdin)
print(f"Consistency of pipeline {d['pipeline']}, sagas created {d['from']} .. {d['to']}\n")
print(f"{'WINDOW START':<25} {'SAGAS':>6} {'ACCEPTED':>9} {'LOADED':>8} {'REJECTED':>9} {'IN FLIGHT':>9}  "
      "accepted = loaded + rejected + in flight")
for w in d["windows"] + [dict(d["totals"], start="total")]:
    print(f"{w['start']:<25} {w['sagas']:>6} {w['accepted']:>9} {w['loaded']:>8} {w['rejected']:>9} "
          f"{w['in_flight']:>9}  {'yes' if w['balanced'] else 'NO'}")
states = " ".join(f"{v} {k}" for k, v in d["totals"]["by_state"].items())
print(f"\n{'CONSISTENT' if d['consistent'] else 'NOT CONSISTENT'}: {states}")
sys.exit(0 if d["consistent"] else 1)
