#!/usr/bin/env python3
"""Runs one device example of examples/devices/ against a started stack and
checks that its events ended loaded: each saga COMPLETED with loaded == sent,
the warehouse (SQLite) holding each sent event id exactly once.

  devices_test.py --example send|http|mqtt --bin-dir BUILD/bin [--source-dir REPO]

http: the client talks to ingest through a proxy that, for the first request,
forwards it (ingest answers 202) and then drops the connection without the
answer, as a flaky network does; and ingest limits each device to 5 events a
second, so every later batch of 5 gets a 429 + Retry-After first. The test
requires both retries to have happened with the batch's Idempotency-Key, and
still exactly one saga per batch and one row per event.
"""

import argparse
import json
import os
import socket
import sqlite3
import subprocess
import sys
import threading

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))
from stack import Stack, check, failures, log  # noqa: E402


class LosesFirstAnswer:
    """A TCP proxy to ingest that drops the answer to the first request.

    Each client connection carries one request (urllib sends Connection:
    close). The request is read whole, sent to ingest on a new connection and
    its whole answer read; for the first request that answer is thrown away
    and the client's connection closed. Records each request's
    Idempotency-Key and whether its answer was delivered."""

    def __init__(self, upstream_port):
        self.upstream = ("127.0.0.1", upstream_port)
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.seen = []  # (idempotency key, status line, delivered)
        self.lock = threading.Lock()
        threading.Thread(target=self._serve, daemon=True).start()

    @staticmethod
    def _read_request(conn):
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                return None
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        length = 0
        key = None
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
            if name.strip().lower() == b"idempotency-key":
                key = value.strip().decode()
        while len(body) < length:
            chunk = conn.recv(65536)
            if not chunk:
                return None
            body += chunk
        return head + b"\r\n\r\n" + body, key

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn):
        with conn:
            got = self._read_request(conn)
            if got is None:
                return
            request, key = got
            with socket.create_connection(self.upstream, timeout=30) as up:
                up.sendall(request)
                answer = b""
                while chunk := up.recv(65536):  # ingest closes after answering Connection: close
                    answer += chunk
            with self.lock:
                deliver = len(self.seen) > 0
                self.seen.append((key, answer.split(b"\r\n", 1)[0].decode(), deliver))
            if deliver:
                conn.sendall(answer)
            # else: closed without an answer; the client sees RemoteDisconnected

    def close(self):
        self.sock.close()


def run(argv, env=None, timeout=120):
    log("$ " + " ".join(argv))
    p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env)
    sys.stdout.write(p.stdout)
    sys.stdout.write(p.stderr)
    check(p.returncode == 0, f"{os.path.basename(argv[1] if argv[0].endswith('python3') else argv[0])} exit 0 "
          f"(got {p.returncode})")
    return p


def check_loaded(stack, sent_ids, batches, expect_device):
    """Every batch one COMPLETED saga with loaded == its events; each sent id one row."""
    listed, totals = stack.wait_settled(sagas=batches)
    log(f"saga totals: {json.dumps(totals)}")
    check(totals["sagas"] == batches, f"{batches} sagas (one per request/message), got {totals['sagas']}")
    check(totals["accepted"] == len(sent_ids), f"accepted == sent == {len(sent_ids)}, got {totals['accepted']}")
    check(totals["loaded"] == len(sent_ids), f"loaded == sent == {len(sent_ids)}, got {totals['loaded']}")
    check(totals["rejected"] == 0, f"nothing rejected, got {totals['rejected']}")
    for s in listed:
        check(s["state"] == "COMPLETED" and s["counts"]["loaded"] == s["total"],
              f"saga {s['saga_id']} COMPLETED with loaded == total ({s['state']}, "
              f"{s['counts']['loaded']}/{s['total']})")
    with sqlite3.connect(f"file:{stack.db_path}?mode=ro", uri=True) as db:
        rows = db.execute("SELECT event_id, device_id FROM ride_telemetry").fetchall()
    ids = [r[0] for r in rows]
    check(len(ids) == len(set(ids)), f"no duplicate rows ({len(ids)} rows, {len(set(ids))} distinct ids)")
    if sent_ids is not None and all(sent_ids):
        check(set(ids) == set(sent_ids), f"the warehouse holds exactly the {len(sent_ids)} sent event ids")
    else:
        check(len(ids) == len(sent_ids), f"{len(sent_ids)} rows, got {len(ids)}")
    check(all(r[1] == expect_device for r in rows), f"every row is device {expect_device}")


def example_send(args, py):
    with Stack(args.bin_dir, args.source_dir) as stack:
        env = dict(os.environ, INGEST_URL=stack.ingest_url)
        p = run([os.path.join(args.source_dir, "examples/devices/send.sh"), "bike-0042"], env=env)
        receipt = json.loads(p.stdout) if p.returncode == 0 else {}
        check(receipt.get("accepted") == 1, f"receipt says accepted 1: {receipt}")
        check_loaded(stack, [None], 1, "bike-0042")


def example_http(args, py):
    batches, events = 3, 5
    # Ingest's own per-device token bucket: 5 events/s, burst 5. The first
    # batch of 5 empties it, so each next batch, sent at once, gets a 429.
    with Stack(args.bin_dir, args.source_dir,
               env={"STARLING_DEVICE_RATE": str(events), "STARLING_DEVICE_BURST": str(events)}) as stack:
        proxy = LosesFirstAnswer(int(stack.ingest_url.rsplit(":", 1)[1]))
        try:
            p = run([py, os.path.join(args.source_dir, "examples/devices/http_client.py"),
                     "--url", f"http://127.0.0.1:{proxy.port}", "--device", "bike-0007",
                     "--batches", str(batches), "--events", str(events), "--base-delay", "0.1"])
        finally:
            proxy.close()
        receipts = [json.loads(line) for line in p.stdout.splitlines() if line.startswith("{")]
        check(len(receipts) == batches, f"{batches} receipts, got {len(receipts)}")
        log("requests the proxy saw (key, ingest's answer, delivered):")
        for s in proxy.seen:
            log(f"    {s}")
        first_key = receipts[0]["idempotency_key"] if receipts else None
        lost = [s for s in proxy.seen if not s[2]]
        check(len(lost) == 1 and lost[0][0] == first_key and " 202 " in lost[0][1] + " ",
              "the first request was accepted by ingest (202) and its answer lost")
        check(receipts and receipts[0]["attempts"] >= 2, "batch 0 was retried after the lost answer")
        check(sum(1 for s in proxy.seen if s[0] == first_key and " 202" in s[1]) >= 2,
              "the retry carried the same Idempotency-Key and was answered 202")
        limited = [s for s in proxy.seen if " 429 " in s[1] + " "]
        check(len(limited) >= 1, f"ingest answered 429 at least once ({len(limited)})")
        check(all(any(s2[0] == s[0] and " 202" in s2[1] for s2 in proxy.seen) for s in limited),
              "every 429'd request was retried with its key until 202")
        check(len({r["saga_id"] for r in receipts}) == batches, "one distinct saga per batch")
        sent = [i for r in receipts for i in r["event_ids"]]
        check_loaded(stack, sent, batches, "bike-0007")


def example_mqtt(args, py):
    messages, events = 4, 5
    with Stack(args.bin_dir, args.source_dir, mqtt=True) as stack:
        p = run([py, os.path.join(args.source_dir, "examples/devices/mqtt_publisher.py"),
                 "--host", "127.0.0.1", "--port", str(stack.mqtt_port), "--device", "bike-0099",
                 "--messages", str(messages), "--events", str(events)])
        lines = [json.loads(line) for line in p.stdout.splitlines() if line.startswith("{")]
        check(len(lines) == messages, f"{messages} messages published, got {len(lines)}")
        sent = [i for m in lines for i in m["event_ids"]]
        check_loaded(stack, sent, messages, "bike-0099")


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--example", required=True, choices=["send", "http", "mqtt"])
    ap.add_argument("--bin-dir", required=True, help="where starling and starling-* are")
    ap.add_argument("--source-dir", default=os.path.normpath(os.path.join(here, "..", "..")))
    # Debian's interpreter, which has python3-paho-mqtt (a pyenv shim on PATH may not).
    ap.add_argument("--python", default="/usr/bin/python3")
    args = ap.parse_args()
    {"send": example_send, "http": example_http, "mqtt": example_mqtt}[args.example](args, args.python)
    if failures:
        log(f"{len(failures)} check(s) failed")
        sys.exit(1)
    log("all checks passed")


if __name__ == "__main__":
    main()
