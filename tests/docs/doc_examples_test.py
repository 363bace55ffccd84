#!/usr/bin/env python3
"""Runs every shell example in README.md and the module READMEs against a
started stack, so the docs cannot rot.

A shell example is a fenced block tagged sh, bash, shell or console. Each one
runs, with `bash -euo pipefail`, unless the line just above it is

    <!-- doc-test: skip: REASON -->        (a reason is required)

and must exit 0 within its timeout. After each block the test waits until
the stack has settled (every saga COMPLETED, nothing in flight) and fails if
any event was rejected, unless the block is marked

    <!-- doc-test: may-reject: REASON -->  (e.g. the simulator's faulty readings)

so an example's events must pass the pipeline's rules. Also refused: a curl
without -f/--fail in a block that runs (a 4xx would pass unnoticed), and
an untagged block with lines that look like commands (tag it sh, or text
for output).

The stack is `starling up` with ingest's MQTT bridge on free loopback ports
(tests/support/stack.py). The blocks are rewritten to reach it (the rules are
printed) and get INGEST_URL, MQTT_HOST, MQTT_PORT, STARLING_KAFKA_BOOTSTRAP and
STARLING_REPLAY_STATE_DIR in their environment. Each block runs in a scratch
folder holding links to the repository's top-level entries, so what it
writes stays out of the tree.

  doc_examples_test.py --bin-dir BUILD/bin [--source-dir REPO] [--only FILE]
"""

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))
from stack import Stack, _die_with_parent, log  # noqa: E402

SHELL = {"sh", "bash", "shell", "console"}
MARKER = re.compile(r"^<!--\s*doc-test:\s*(skip|may-reject)\s*(?::\s*(.*?))?\s*-->\s*$")
LOOKS_LIKE_COMMAND = re.compile(r"^\s*(\$ |cmake |ctest |curl |tools/|build/[^ ]*/bin/|starling )")
SKIP_DIRS = {".git", "node_modules", "third_party"}


class Block:
    def __init__(self, path, line, lang, text, marker, reason):
        self.path, self.line, self.lang, self.text = path, line, lang, text
        self.marker, self.reason = marker, reason

    def where(self):
        return f"{self.path}:{self.line}"


def readmes(root):
    out = []
    for d, dirs, files in os.walk(root):
        dirs[:] = sorted(x for x in dirs if x not in SKIP_DIRS and not x.startswith("build") and not x.startswith("."))
        if "README.md" in files:
            out.append(os.path.relpath(os.path.join(d, "README.md"), root))
    return sorted(out, key=lambda p: (p != "README.md", p))


def parse(root, rel):
    """Fenced blocks of one Markdown file, each with the marker above it."""
    lines = open(os.path.join(root, rel), encoding="utf-8").read().split("\n")
    blocks, i = [], 0
    while i < len(lines):
        m = re.match(r"^(```+|~~~+)\s*([\w-]*)", lines[i])
        if not m:
            i += 1
            continue
        fence, lang, start = m.group(1), m.group(2).lower(), i
        j = i + 1
        while j < len(lines) and not lines[j].startswith(fence):
            j += 1
        k = start - 1
        while k >= 0 and not lines[k].strip():
            k -= 1
        mm = MARKER.match(lines[k].strip()) if k >= 0 else None
        blocks.append(Block(rel, start + 1, lang, "\n".join(lines[start + 1:j]),
                            mm.group(1) if mm else None, (mm.group(2) or "") if mm else ""))
        i = j + 1
    return blocks


def rules(stack, bin_dir):
    ingest = stack.ingest_url.removeprefix("http://")
    saga = stack.saga_url.removeprefix("http://")
    return [
        # The docs name the release build; the test runs the build it was given.
        (r"\bbuild/(release|dev|tsan)/bin/", bin_dir.rstrip("/") + "/"),
        # `starling up`'s default ports are the stack's free ones here.
        (r"\b(localhost|127\.0\.0\.1):8080\b", ingest),
        (r"\b(localhost|127\.0\.0\.1):8081\b", saga),
        # The CLI's default URLs are those ports too.
        (r"(/starling sagas)\b(?![^\n]*--url)", r"\1 --url " + stack.saga_url),
        (r"(/starling simulate)\b(?![^\n]*--url)", r"\1 --url " + stack.ingest_url),
    ]


def rewrite(text, rs):
    for pattern, repl in rs:
        text = re.sub(pattern, repl, text)
    return text


def curl_without_fail(text):
    joined = re.sub(r"\\\n", " ", text)
    bad = []
    for line in joined.split("\n"):
        for cmd in re.split(r"\|\||&&|[|;]", line):
            if re.search(r"(^|\s)curl\s", cmd) and not re.search(r"\s(-[a-zA-Z]*f[a-zA-Z]*|--fail\S*)(\s|$)", cmd):
                bad.append(cmd.strip())
    return bad


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin-dir", required=True)
    ap.add_argument("--source-dir", default=os.path.normpath(os.path.join(here, "..", "..")))
    ap.add_argument("--only", action="append", help="check only this README (relative path; repeatable)")
    ap.add_argument("--timeout", type=float, default=90, help="seconds per block")
    args = ap.parse_args()
    root = os.path.abspath(args.source_dir)
    bin_dir = os.path.abspath(args.bin_dir)

    files = args.only or readmes(root)
    blocks = [b for f in files for b in parse(root, f)]
    problems, to_run, skipped = [], [], []
    for b in blocks:
        if b.lang in SHELL:
            if b.marker == "skip":
                (skipped if b.reason else problems).append(b)
                if not b.reason:
                    log(f"FAIL  {b.where()}: doc-test: skip needs a reason")
            else:
                to_run.append(b)
        elif b.marker:
            problems.append(b)
            log(f"FAIL  {b.where()}: a doc-test marker on a block tagged '{b.lang or '(none)'}', not a shell block")
        elif b.lang in ("", "text") and any(LOOKS_LIKE_COMMAND.match(line) for line in b.text.split("\n")):
            if b.lang == "":
                problems.append(b)
                log(f"FAIL  {b.where()}: looks like shell commands; tag the block sh (and run it or mark it "
                    f"<!-- doc-test: skip: REASON -->), or text if it is output")
    for b in to_run:
        for cmd in curl_without_fail(b.text):
            problems.append(b)
            log(f"FAIL  {b.where()}: curl without -f/--fail, so an error answer would pass: {cmd}")
    log(f"{len(files)} READMEs, {len(blocks)} fenced blocks: {len(to_run)} shell examples to run, "
        f"{len(skipped)} marked skip")

    failed = list(problems)
    scratch = tempfile.mkdtemp(prefix="starling-doc-test-")
    for entry in os.listdir(root):
        if not entry.startswith(".") and not entry.startswith("build"):
            os.symlink(os.path.join(root, entry), os.path.join(scratch, entry))
    ran = 0
    with Stack(bin_dir, root, mqtt=True) as stack:
        rs = rules(stack, bin_dir)
        log("rewrites applied to each block:")
        for pattern, repl in rs:
            log(f"    s/{pattern}/{repl}/")
        env = dict(os.environ)
        for k in list(env):
            if k.startswith("STARLING_"):
                del env[k]
        env.update({
            "INGEST_URL": stack.ingest_url,
            "MQTT_HOST": "127.0.0.1",
            "MQTT_PORT": str(stack.mqtt_port),
            "STARLING_KAFKA_BOOTSTRAP": stack.bootstrap,
            "STARLING_REPLAY_STATE_DIR": os.path.join(scratch, "replays"),
            # Debian's python3 (with python3-paho-mqtt) before any other on PATH.
            "PATH": "/usr/bin:/bin:" + env.get("PATH", ""),
        })
        for b in to_run:
            script = rewrite(b.text, rs)
            log(f"\n=== run {b.where()}" + (f" (may reject: {b.reason})" if b.marker == "may-reject" else ""))
            log("\n".join("  | " + line for line in script.split("\n")))
            _, before = stack.sagas()
            t0 = time.monotonic()
            # Its own process group, so a timeout stops whatever the block started.
            p = subprocess.Popen(["bash", "-euo", "pipefail", "-c", script], cwd=scratch, env=env,
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
                                 preexec_fn=_die_with_parent)
            try:
                out, _ = p.communicate(timeout=args.timeout)
                rc = p.returncode
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                out, _ = p.communicate()
                rc = f"timeout after {args.timeout} s"
            finally:
                try:
                    os.killpg(p.pid, signal.SIGKILL)  # anything it left in the background
                except ProcessLookupError:
                    pass
            ran += 1
            tail = out if len(out) < 4000 else "...\n" + out[-4000:]
            log("\n".join("  > " + line for line in tail.rstrip().split("\n")) if tail.strip() else "  > (no output)")
            if rc != 0:
                log(f"FAIL  {b.where()}: exit {rc}")
                failed.append(b)
                continue
            try:
                _, after = stack.wait_settled(timeout=90)
            except RuntimeError as e:
                log(f"FAIL  {b.where()}: the stack did not settle after it: {str(e)[:2000]}")
                failed.append(b)
                continue
            new_rejects = after["rejected"] - before["rejected"]
            if new_rejects and b.marker != "may-reject":
                log(f"FAIL  {b.where()}: {new_rejects} event(s) it sent were rejected by the pipeline's rules "
                    f"(`starling sagas list` shows the reasons)")
                failed.append(b)
                continue
            log(f"ok    {b.where()} ({time.monotonic() - t0:.1f} s; events accepted {after['accepted']}, "
                f"loaded {after['loaded']}, rejected {after['rejected']} so far)")
        if failed:
            stack.keep = True
    shutil.rmtree(scratch, ignore_errors=True)
    log("\nskipped (marked in the docs):")
    for b in skipped:
        log(f"    {b.where()}: {b.reason}")
    log(f"\ndoc examples: {ran} run, {len(skipped)} skipped, {len(set(map(id, failed)))} failed")
    if not to_run:
        log("FAIL  no shell example ran")
        sys.exit(1)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
