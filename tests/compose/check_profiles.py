#!/usr/bin/env python3
"""Checks that the compose file's Kafka profiles are interchangeable for the
Starling services, without a container engine:

  kafka            Apache Kafka, one broker (the default, .env)
  three-brokers    Apache Kafka, three brokers, replication 3, min ISR 2
  starling-broker  starling-broker instead of the Kafka image (the profile
                   tools/compose-test runs for real here)

For each profile it resolves the file (`docker-compose --profile P config`),
takes the services compose would start (those with no profile or with P, as
compose 1.29's enabled_for_profiles) and checks:
  1. exactly one service answers as kafka:9092 (by name or network alias)
     and advertises a name the others can resolve;
  2. every depends_on of a started service is started too (else
     `docker-compose up` refuses the profile);
  3. one job creates the topics, the same list the "topics" job waits for;
  4. the Starling services (ingest-1, ingest-2, clean, clean-2, load, load-2, saga, saga-2, lb,
     topics) are the same: command, environment, dependencies and all, as in
     the starling-broker profile; so what runs here is what runs on Kafka;
  5. three-brokers: three brokers and controllers, replication factor 3 and
     min.insync.replicas 2 on every broker;
  6. every published port is on 127.0.0.1.
Usage: check_profiles.py REPO_ROOT
"""

import os
import re
import subprocess
import sys

import yaml

STARLING = ["saga", "saga-2", "clean", "clean-2", "load", "load-2", "ingest-1", "ingest-2", "lb", "topics"]
PROFILES = ["kafka", "three-brokers", "starling-broker"]
errors = []


def check(ok, what):
    if not ok:
        errors.append(what)
    return ok


def resolve(compose_dir, profile):
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMPOSE_")}
    out = subprocess.run(["docker-compose", "--profile", profile, "config"], cwd=compose_dir, env=env,
                         check=True, capture_output=True, text=True).stdout
    return yaml.safe_load(out)


def enabled(service, profile):
    profiles = service.get("profiles") or []
    return not profiles or profile in profiles


def names_of(name, service):
    """The names a service answers to on the default network."""
    names = {name}
    nets = service.get("networks") or {}
    if isinstance(nets, dict):
        for net in nets.values():
            names.update((net or {}).get("aliases") or [])
    return names


def depends(service):
    deps = service.get("depends_on") or {}
    return list(deps) if isinstance(deps, (dict, list)) else []


def main():
    compose_dir = os.path.join(sys.argv[1], "compose")
    configs = {p: resolve(compose_dir, p) for p in PROFILES}
    started = {p: {n: s for n, s in c["services"].items() if enabled(s, p)} for p, c in configs.items()}

    for p, services in started.items():
        # 1. one kafka:9092
        kafka = [n for n, s in services.items() if "kafka" in names_of(n, s)]
        if check(len(kafka) == 1, f"{p}: {len(kafka)} services answer as kafka ({kafka}), want 1"):
            k = services[kafka[0]]
            text = " ".join(str(x) for x in (k.get("command") or [])) + " " + str(k.get("environment") or {})
            advertised = re.findall(r"PLAINTEXT://([a-z0-9-]+):9092|--advertised-host[= ]([a-z0-9-]+)", text)
            hosts = {a or b for a, b in advertised}
            check(hosts and all(any(h in names_of(n, s) for n, s in services.items()) for h in hosts),
                  f"{p}: {kafka[0]} advertises {hosts or 'nothing'}, which is not a service or alias here")
            check("9092" in text, f"{p}: {kafka[0]} does not listen on 9092")
        # 2. dependencies
        for n, s in services.items():
            for d in depends(s):
                check(d in services, f"{p}: {n} depends on {d}, which this profile does not start")
        # 3. one creator of the same topics the services wait for
        lists = {n: (s.get("environment") or {}).get("TOPIC_LIST") for n, s in services.items()
                 if (s.get("environment") or {}).get("TOPIC_LIST")}
        creators = [n for n in lists if n != "topics"]
        check(len(creators) == 1, f"{p}: {len(creators)} jobs create topics ({creators}), want 1")
        check("topics" in lists and len(set(lists.values())) == 1,
              f"{p}: the topic jobs' lists differ or 'topics' is missing: {sorted(lists)}")
        # 6. loopback only
        for n, s in services.items():
            for port in s.get("ports") or []:
                spec = port if isinstance(port, str) else f"{port.get('host_ip', '')}:{port.get('published')}"
                check(str(spec).startswith("127.0.0.1:"), f"{p}: {n} publishes {spec}, not on 127.0.0.1")

    # 4. the Starling services, as the profile that runs here has them
    here = started["starling-broker"]
    for p in PROFILES:
        for n in STARLING:
            if not check(n in started[p], f"{p}: does not start {n}"):
                continue
            check(not started[p][n].get("profiles"), f"{n} belongs to profiles {started[p][n].get('profiles')}")
            a, b = started[p][n], here.get(n)
            if a != b:
                diff = sorted(k for k in set(a) | set(b or {}) if a.get(k) != (b or {}).get(k))
                check(False, f"{p}: {n} differs from the starling-broker profile in {diff}")
    for n in STARLING:
        env = here.get(n, {}).get("environment") or {}
        if n not in ("lb",):
            check(env.get("STARLING_KAFKA_BOOTSTRAP") == "kafka:9092",
                  f"{n}: STARLING_KAFKA_BOOTSTRAP is {env.get('STARLING_KAFKA_BOOTSTRAP')}, want kafka:9092")

    # 5. three brokers, replication 3, min ISR 2
    brokers = {n: s for n, s in started["three-brokers"].items()
               if "KAFKA_NODE_ID" in (s.get("environment") or {})}
    check(len(brokers) == 3, f"three-brokers: {len(brokers)} Kafka brokers ({sorted(brokers)}), want 3")
    voters = {(s["environment"].get("KAFKA_CONTROLLER_QUORUM_VOTERS")) for s in brokers.values()}
    check(len(voters) == 1, f"three-brokers: the brokers disagree on the controller quorum: {voters}")
    ids = sorted(str(s["environment"]["KAFKA_NODE_ID"]) for s in brokers.values())
    check(ids == ["1", "2", "3"], f"three-brokers: node ids {ids}")
    for n, s in brokers.items():
        e = s["environment"]
        for key, want in [("KAFKA_DEFAULT_REPLICATION_FACTOR", "3"), ("KAFKA_MIN_INSYNC_REPLICAS", "2"),
                          ("KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR", "3"),
                          ("KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR", "3"),
                          ("KAFKA_TRANSACTION_STATE_LOG_MIN_ISR", "2")]:
            check(str(e.get(key)) == want, f"three-brokers: {n} has {key}={e.get(key)}, want {want}")
        check(f"PLAINTEXT://{n}:9092" == e.get("KAFKA_ADVERTISED_LISTENERS"),
              f"three-brokers: {n} advertises {e.get('KAFKA_ADVERTISED_LISTENERS')}")

    for e in errors:
        print(f"compose profiles: {e}")
    if not errors:
        print(f"profiles {', '.join(PROFILES)}: one kafka:9092 each, dependencies met, one topic job each, "
              f"{len(STARLING)} Starling services identical, three-brokers replicated 3 / min ISR 2")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
