#!/usr/bin/env python3
"""Tests the Grafana dashboard and the alert rules of compose/monitoring/
without Grafana (not in Debian), against Debian's Prometheus.

  dashboard_queries_test.py --parse-only [--source-dir REPO]
  dashboard_queries_test.py --bin-dir BUILD/bin [--source-dir REPO]

--parse-only (ctest label unit): every panel query and the template
variable's query, with Grafana's variables substituted, parses (each one
checked by `promtool check rules` as a recording rule, so a failure names
the query); each query uses only variables the dashboard defines; every
target uses the datasource the Grafana provisioning defines.

Otherwise (labels e2e;monitoring): starts starling-broker with
--metrics-listen (`starling up` starts its broker without it) and
`starling up --kafka` on it, on free loopback ports; Prometheus
(/usr/bin/prometheus) on a free port with its own storage, scraping every
service and the broker each second and loading alerts.yml; sends a simulated
fleet (400 events, some faulty) and one request ingest answers 503 (a saga
lookup while STARLING_SAGA_URL points at a closed port); waits until
Prometheus has scraped it all. Then runs through /api/v1/query:
  - every panel's query ($pipeline = ecowheels, $__rate_interval = 1m): it
    must evaluate and return at least one series;
  - the `pipeline` variable's label_values(): it must list ecowheels;
  - every alert's expression (each alert of alerts.yml, as Prometheus loaded
    it; /api/v1/rules): it must evaluate (it need not fire), and Prometheus'
    own evaluation of the rule must be healthy.
Every failing query is listed by name before the test fails.
"""

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "support"))
from stack import Stack, _die_with_parent, check, failures, free_port, http_json, log  # noqa: E402


PIPELINE = "ecowheels"
# Grafana's $__rate_interval is at least four scrape intervals; a minute
# covers the whole run at a 1 s scrape.
GRAFANA_VARS = {"__rate_interval": "1m", "__interval": "15s", "__range": "1h"}

# --- the files under test --------------------------------------------------
def monitoring_dir(source_dir):
    return os.path.join(source_dir, "compose", "monitoring")


def load_dashboard(source_dir):
    path = os.path.join(monitoring_dir(source_dir), "grafana", "dashboards", "starling-pipeline.json")
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def all_panels(panels):
    for p in panels:
        yield p
        yield from all_panels(p.get("panels", []))  # panels inside collapsed rows


def substitute(expr, variables):
    """expr with $name / ${name} replaced; unknown variables are an error."""
    unknown = []

    def one(m):
        name = m.group(1) or m.group(2)
        if name not in variables:
            unknown.append(name)
            return m.group(0)
        return variables[name]

    return re.sub(r"\$\{(\w+)\}|\$(\w+)", one, expr), unknown


def dashboard_queries(dash):
    """[(name, raw expr)] of every panel target."""
    out = []
    for p in all_panels(dash.get("panels", [])):
        for t in p.get("targets", []):
            out.append((f"panel '{p.get('title')}' {t.get('refId')}", t.get("expr", "")))
    return out


def variable_queries(dash):
    """[(name, variable, PromQL equivalent of its label_values(metric, label), label)]."""
    out = []
    for v in dash.get("templating", {}).get("list", []):
        q = v.get("query")
        q = q.get("query", "") if isinstance(q, dict) else (q or "")
        m = re.fullmatch(r"\s*label_values\(\s*(.+?)\s*,\s*(\w+)\s*\)\s*", q)
        if not m:
            out.append((f"variable '{v.get('name')}'", v.get("name"), None, q))
            continue
        out.append((f"variable '{v.get('name')}'", v.get("name"), f"count by ({m.group(2)}) ({m.group(1)})",
                    m.group(2)))
    return out


def alert_names(source_dir):
    with open(os.path.join(monitoring_dir(source_dir), "alerts.yml"), encoding="utf-8") as f:
        return re.findall(r"^\s*-\s*alert:\s*(\S+)", f.read(), re.M)


def variables_of(dash):
    v = dict(GRAFANA_VARS)
    for t in dash.get("templating", {}).get("list", []):
        v[t["name"]] = PIPELINE if t["name"] == "pipeline" else ".*"
    return v


# --- --parse-only ------------------------------------------------------------
def parse_only(source_dir, promtool):
    dash = load_dashboard(source_dir)
    variables = variables_of(dash)
    check("pipeline" in variables, "the dashboard has a template variable 'pipeline'")
    with open(os.path.join(monitoring_dir(source_dir), "grafana", "provisioning", "datasources",
                           "prometheus.yml"), encoding="utf-8") as f:
        uids = re.findall(r"^\s*uid:\s*(\S+)", f.read(), re.M)
    check(len(uids) == 1, f"the provisioning defines one datasource uid ({uids})")
    queries = dashboard_queries(dash)
    check(len(queries) >= 10, f"the dashboard has panel queries ({len(queries)})")
    for p in all_panels(dash["panels"]):
        for t in p.get("targets", []):
            ds = t.get("datasource") or p.get("datasource") or {}
            check(ds.get("uid") in uids, f"panel '{p['title']}' {t.get('refId')} uses the provisioned datasource "
                  f"({ds.get('uid')})")
    for name, _, promql, label in variable_queries(dash):
        check(promql is not None, f"{name} is label_values(metric, label): {label}")
        if promql:
            queries.append((name, promql))
    with tempfile.TemporaryDirectory(prefix="starling-dashboard-") as d:
        for name, raw in queries:
            expr, unknown = substitute(raw, variables)
            if unknown:
                check(False, f"{name} uses variables the dashboard does not define: {unknown}")
                continue
            rules = os.path.join(d, "query.rules.json")  # JSON is YAML
            with open(rules, "w") as f:
                json.dump({"groups": [{"name": "dashboard", "rules": [{"record": "dashboard:query", "expr": expr}]}]},
                          f)
            r = subprocess.run([promtool, "check", "rules", rules], capture_output=True, text=True)
            check(r.returncode == 0, f"{name} parses: {expr}" + ("" if r.returncode == 0 else
                                                                  f"\n      {r.stdout.strip()} {r.stderr.strip()}"))


# --- live --------------------------------------------------------------------
class Server:
    """A process in its own group, stopped with SIGTERM (then SIGKILL) on exit."""

    def __init__(self, name, argv, workdir):
        self.name = name
        self.out = os.path.join(workdir, f"{name}.out")
        with open(self.out, "wb") as logf:
            self.proc = subprocess.Popen(argv, stdout=logf, stderr=subprocess.STDOUT, cwd=workdir,
                                         start_new_session=True, preexec_fn=_die_with_parent)

    def tail(self):
        with open(self.out, encoding="utf-8", errors="replace") as f:
            return f.read()[-3000:]

    def stop(self):
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
            except ProcessLookupError:
                pass


def wait_for(what, cond, timeout, interval=0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = cond()
        if got:
            return got
        time.sleep(interval)
    raise RuntimeError(f"timed out after {timeout} s waiting for {what}")


def read_file(path):
    try:
        with open(path) as f:
            return f.read().strip() or None
    except FileNotFoundError:
        return None


def start_broker(bin_dir, workdir, cleanup):
    d = os.path.join(workdir, "broker")
    os.makedirs(d)
    pf, mpf = os.path.join(d, "kafka.port"), os.path.join(d, "metrics.port")
    # As `starling up` starts it (stack.cc), plus --metrics-listen.
    b = Server("starling-broker", [os.path.join(bin_dir, "starling-broker"), "--listen", "127.0.0.1:0",
                                   "--data-dir", os.path.join(d, "data"), "--port-file", pf,
                                   "--metrics-listen", "127.0.0.1:0", "--metrics-port-file", mpf,
                                   "--group-initial-rebalance-delay-ms", "0"], workdir)
    cleanup.callback(b.stop)

    def ready():
        if b.proc.poll() is not None:
            raise RuntimeError(f"starling-broker exited:\n{b.tail()}")
        return read_file(pf) and read_file(mpf) and (read_file(pf), read_file(mpf))

    kafka, metrics = wait_for("starling-broker's port files", ready, 30)
    metrics = metrics if ":" in metrics else f"127.0.0.1:{metrics}"
    return kafka, metrics


def start_prometheus(prometheus, workdir, targets, rules, cleanup):
    config = os.path.join(workdir, "prometheus.yml")
    with open(config, "w") as f:
        json.dump({  # JSON is YAML
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [rules],
            "scrape_configs": [{"job_name": job, "static_configs": [{"targets": addrs}]}
                               for job, addrs in sorted(targets.items())],
        }, f, indent=2)
    for attempt in range(3):  # the free port may be taken before Prometheus binds it
        port = free_port()
        p = Server(f"prometheus-{attempt}", [prometheus, f"--config.file={config}",
                                             f"--storage.tsdb.path={os.path.join(workdir, f'tsdb-{attempt}')}",
                                             f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"], workdir)
        cleanup.callback(p.stop)
        url = f"http://127.0.0.1:{port}"

        def ready():
            if p.proc.poll() is not None:
                return "exited"
            try:
                with urllib.request.urlopen(f"{url}/-/ready", timeout=2) as r:
                    return "ready" if r.status == 200 else None
            except (urllib.error.URLError, OSError):
                return None

        state = wait_for("Prometheus /-/ready", ready, 30)
        if state == "ready":
            log(f"prometheus at {url}, scraping {targets}")
            return url
        if "address already in use" not in p.tail():
            raise RuntimeError(f"prometheus exited:\n{p.tail()}")
    raise RuntimeError("prometheus found no free port")


def prom_query(url, expr):
    """(result list, None) or (None, error text)."""
    q = urllib.parse.urlencode({"query": expr})
    try:
        got = http_json(f"{url}/api/v1/query?{q}")
    except urllib.error.HTTPError as e:
        try:
            body = json.load(e)
            return None, f"{body.get('errorType')}: {body.get('error')}"
        except ValueError:
            return None, f"HTTP {e.code}"
    if got.get("status") != "success":
        return None, f"{got.get('errorType')}: {got.get('error')}"
    return got["data"]["result"], None


def absent_metrics(url, expr):
    """The metric names in expr of which Prometheus has no series at all."""
    names = set(re.findall(r"\b((?:starling|process)_[a-z0-9_]+|up)\b", expr))
    return sorted(n for n in names if not (prom_query(url, f'count({{__name__="{n}"}})')[0]))


def live(args):
    dash = load_dashboard(args.source_dir)
    variables = variables_of(dash)
    rules_file = os.path.join(monitoring_dir(args.source_dir), "alerts.yml")
    with contextlib.ExitStack() as cleanup:
        workdir = tempfile.mkdtemp(prefix="starling-monitoring-")
        keep = {"dir": os.environ.get("STARLING_KEEP_TEST_DIRS") == "1"}
        cleanup.callback(lambda: log(f"kept {workdir}") if keep["dir"] or failures
                         else shutil.rmtree(workdir, ignore_errors=True))
        cleanup.push(lambda exc_type, *_: keep.update(dir=keep["dir"] or exc_type is not None))
        kafka, broker_metrics = start_broker(args.bin_dir, workdir, cleanup)
        # Nothing listens on this port: ingest's saga lookups answer 503.
        no_saga = f"http://127.0.0.1:{free_port()}"
        s = cleanup.enter_context(Stack(args.bin_dir, args.source_dir, pipeline=f"pipelines/{PIPELINE}.yaml",
                                        env={"STARLING_KAFKA_BOOTSTRAP": kafka, "STARLING_SAGA_URL": no_saga}))
        stack_dir = os.path.join(s.dir, "stack")
        targets = {"starling-broker": [broker_metrics]}
        for f in sorted(os.listdir(stack_dir)):
            if f.endswith(".port") and f != "broker.port":  # broker.port is its Kafka listener
                service = f[:-len(".port")]
                targets.setdefault("starling-" + service.split(".")[0], []).append(
                    f"127.0.0.1:{read_file(os.path.join(stack_dir, f))}")
        check(set(targets) == {"starling-broker", "starling-ingest", "starling-clean", "starling-load",
                               "starling-saga"}, f"every service wrote its port ({sorted(targets)})")
        prom = start_prometheus(args.prometheus, workdir, targets, rules_file, cleanup)

        # Given traffic: a fleet with faulty readings, and one 5xx from ingest.
        sim = subprocess.run([os.path.join(args.bin_dir, "starling"), "simulate", "--url", s.ingest_url,
                              "--pipeline", PIPELINE, "--events", "400", "--rate", "400", "--fault-rate", "0.1",
                              "--seed", "20"], capture_output=True, text=True, timeout=60)
        check(sim.returncode == 0, f"starling simulate sent 400 events: {sim.stdout.strip().splitlines()[-1:]}"
              + ("" if sim.returncode == 0 else sim.stderr))
        try:
            urllib.request.urlopen(f"{s.ingest_url}/v1/sagas/monitoring-test", timeout=10).close()
            code = 200
        except urllib.error.HTTPError as e:
            code = e.code
        check(code == 503, f"ingest answers a saga lookup 503 while the saga URL is closed ({code})")
        _, totals = s.wait_settled(timeout=60)
        log(f"settled: {totals}")

        # When Prometheus has scraped all of it (and evaluated the rules since).
        def scraped():
            t = http_json(f"{prom}/api/v1/targets")["data"]["activeTargets"]
            if len(t) < sum(map(len, targets.values())) or any(x["health"] != "up" for x in t):
                return False
            rows, _ = prom_query(prom, f'sum(starling_load_rows_total{{pipeline="{PIPELINE}"}})')
            e5xx, _ = prom_query(prom, 'starling_http_requests_total{job="starling-ingest",code="503"}')
            rules = http_json(f"{prom}/api/v1/rules")["data"]["groups"]
            evaluated = rules and all(not r.get("lastEvaluation", "0001").startswith("0001")
                                      for g in rules for r in g["rules"])
            return (rows and float(rows[0]["value"][1]) >= totals["loaded"] and e5xx and evaluated)

        try:
            wait_for("Prometheus to scrape every target up, every loaded row and the 503", scraped, 60, 0.5)
        except RuntimeError as e:
            check(False, str(e))
            for t in http_json(f"{prom}/api/v1/targets")["data"]["activeTargets"]:
                log(f"      target {t['labels']} {t['health']} {t.get('lastError')}")
        time.sleep(3)  # a few more scrapes and rule evaluations after the last change

        # Then every panel query returns data.
        for name, raw in dashboard_queries(dash):
            expr, unknown = substitute(raw, variables)
            if unknown:
                check(False, f"{name} uses variables the dashboard does not define: {unknown}")
                continue
            result, err = prom_query(prom, expr)
            if err:
                check(False, f"{name} does not evaluate: {err}\n      {expr}")
            elif result:
                check(True, f"{name} returns {len(result)} series: {expr}")
            else:
                absent = absent_metrics(prom, expr)
                check(False, f"{name} returns no series ("
                      + (f"Prometheus has none of {', '.join(absent)}" if absent else "its labels select nothing")
                      + f"): {expr}")
        for name, _, promql, label in variable_queries(dash):
            if not check(promql is not None, f"{name} is label_values(metric, label): {label}"):
                continue
            result, err = prom_query(prom, promql)
            values = sorted(r["metric"].get(label, "") for r in result or [])
            check(not err and PIPELINE in values, f"{name} lists {PIPELINE} ({values}{' ' + err if err else ''})")

        # And every alert's expression evaluates (it need not fire).
        groups = http_json(f"{prom}/api/v1/rules")["data"]["groups"]
        loaded = {r["name"]: r for g in groups for r in g["rules"] if r["type"] == "alerting"}
        names = alert_names(args.source_dir)
        check(len(names) >= 6 and sorted(names) == sorted(loaded),
              f"Prometheus loaded every alert of alerts.yml ({sorted(loaded)})")
        for name in names:
            rule = loaded.get(name)
            if rule is None:
                continue
            result, err = prom_query(prom, rule["query"])
            check(err is None, f"alert {name} evaluates ({len(result or [])} series, state {rule['state']})"
                  + (f": {err}" if err else "") + f": {' '.join(rule['query'].split())}")
            check(rule.get("health") != "err", f"alert {name}: Prometheus' evaluation is healthy "
                  f"({rule.get('health')} {rule.get('lastError', '')})")
        if failures:
            s.keep = True


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin-dir", help="the built starling executables (BUILD/bin)")
    ap.add_argument("--source-dir", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
    ap.add_argument("--parse-only", action="store_true")
    ap.add_argument("--prometheus", default="/usr/bin/prometheus")
    ap.add_argument("--promtool", default="promtool")
    args = ap.parse_args()
    args.source_dir = os.path.abspath(args.source_dir)
    if args.parse_only:
        parse_only(args.source_dir, args.promtool)
    else:
        if not args.bin_dir:
            ap.error("--bin-dir is needed without --parse-only")
        live(args)
    if failures:
        log(f"\n{len(failures)} check(s) failed:")
        for f in failures:
            log("  " + f.splitlines()[0])
        return 1
    log("\nall checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
