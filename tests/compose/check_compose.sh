#!/usr/bin/env bash
# Checks compose/docker-compose.yml without a container engine:
#  1. docker-compose (Debian's package) parses and resolves it with each
#     profile (kafka, three-brokers, starling-broker, monitoring), and every
#     file a service mounts from compose/ exists;
#  2. every STARLING_* variable a Starling service gets there is one that
#     service's executable reads (its --help lists "Env:NAME"), so a typo or a
#     renamed flag fails here instead of being silently ignored in a container;
#     and every flag the starling-broker service is given is one of
#     starling-broker --help's.
# check_profiles.py checks that the profiles are interchangeable.
# Usage: check_compose.sh REPO_ROOT BIN_DIR
set -euo pipefail
root=$1
bin=$2
cd "$root/compose"
for profile in kafka three-brokers starling-broker monitoring; do
  docker-compose --profile "$profile" config -q
done
services=$(docker-compose config --services | sort | tr '\n' ' ')
for want in kafka kafka-1 kafka-2 kafka-3 kafka-topics starling-broker broker-topics topics postgres mosquitto \
  saga saga-2 clean clean-2 load load-2 ingest-1 ingest-2 lb; do
  [[ " $services " == *" $want "* ]] || { echo "compose: service '$want' is missing (have: $services)"; exit 1; }
done
monitoring=$(docker-compose --profile monitoring config --services | sort | tr '\n' ' ')
for want in prometheus grafana; do
  [[ " $monitoring " == *" $want "* ]] || { echo "compose: profile monitoring lacks '$want' (have: $monitoring)"; exit 1; }
done
# A bind mount of a missing file would start the container with an empty directory there.
mounts=$(docker-compose --profile monitoring config | sed -n 's|^    - \(/[^:]*/monitoring/[^:]*\):.*|\1|p')
[[ $(wc -w <<<"$mounts") -ge 5 ]] || { echo "compose: expected the monitoring profile to mount 5 paths: $mounts"; exit 1; }
for src in $mounts $(docker-compose config | sed -n 's|^    - \(/[^:]*/compose/[^:]*\):.*|\1|p'); do
  [[ -e $src ]] || { echo "compose: a service mounts $src, which does not exist"; exit 1; }
done
resolved=$(docker-compose config)
status=0
# starling-broker's flags (--name=value, as the compose file writes them).
broker_help=$("$bin/starling-broker" --help)
flags=$(awk '$0 == "  starling-broker:" {on = 1; next} on && /^  [a-z]/ {on = 0}
  on && /^    - --/ {sub("=.*", "", $2); print $2}' <<<"$resolved")
[[ $(wc -w <<<"$flags") -ge 3 ]] || { echo "compose: starling-broker is given no flags: $flags"; status=1; }
for f in $flags; do
  grep -qE -- "(^|[ ,])$f([ ,=]|$)" <<<"$broker_help" || { echo "compose: starling-broker is given $f, which starling-broker --help lacks"; status=1; }
done
for svc in saga clean load ingest-1 ingest-2; do
  exe=starling-${svc%-[0-9]}
  help=$("$bin/$exe" --help)
  # The variables under this service's "environment:" in the resolved file.
  vars=$(awk -v svc="  $svc:" '
    $0 == svc {in_svc = 1; next}
    in_svc && /^  [a-z]/ {in_svc = 0}
    in_svc && /^    environment:/ {in_env = 1; next}
    in_env && /^    [a-z]/ {in_env = 0}
    in_svc && in_env && /^      STARLING_/ {sub(":.*", "", $1); print $1}' <<<"$resolved")
  [[ -n $vars ]] || { echo "compose: $svc has no STARLING_* environment"; status=1; }
  for v in $vars; do
    if ! grep -q "Env:$v)" <<<"$help"; then
      echo "compose: $svc sets $v, which $exe does not read (see $exe --help)"
      status=1
    fi
  done
  echo "$svc: checked $(echo $vars | wc -w) variables against $exe --help"
done
exit $status
