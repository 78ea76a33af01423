#!/usr/bin/env bash
# Side-by-side benchmarks: ironhub, Eclipse Mosquitto and rumqttd under the same load in one
# run, then ironhub's own figures (DPS provisioning, twin queries). See bench/README.md.
#
#   bench/run.sh [all|compare|amqp|provision|query|scale|cluster] [extra arguments for that mode]
#
# ROUNDS (3): rounds of compare, amqp and provision. QUERY_DEVICES (1000000): the query fleet's size,
# 0 skips it. SCALE_DEVICES (60000): `scale` (not part of `all`) holds that many `ironhub
# simulate` devices on one server from 254 loopback source addresses. SKIP_BUILD=1: measure
# the release binaries already built. CLUSTER_DEVICES (3000), CLUSTER_MESSAGES (100): `cluster`
# (not part of `all`) compares one node with three over PostgreSQL and NATS (bench/cluster.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

what=${1:-all}
shift || true
if [ "$what" = all ] && [ $# -gt 0 ]; then
  echo "extra arguments go to one mode: bench/run.sh compare|amqp|provision|query|scale|cluster ARGS..." >&2
  exit 2
fi
case "$what" in
  all | compare | amqp | provision | query | scale | cluster) ;;
  *) echo "unknown mode $what: all, compare, amqp, provision, query, scale or cluster" >&2; exit 2 ;;
esac
TOOLS=${IRONHUB_BENCH_TOOLS:-$HOME/.cache/ironhub-bench-tools}
TARGET=${IRONHUB_BENCH_TARGET:-$HOME/.cache/bench-target}
ROUNDS=${ROUNDS:-3}
QUERY_DEVICES=${QUERY_DEVICES:-1000000}
SCALE_DEVICES=${SCALE_DEVICES:-60000}
BIN=$TARGET/release

# The peers: Mosquitto from Debian, rumqttd from crates.io (kept in $TOOLS between runs).
if [ ! -x /usr/sbin/mosquitto ]; then
  apt-get install -y --no-install-recommends mosquitto
fi
# Not `--locked`: rumqttd 0.20.0's lock file pins metrics 0.22.1, which current compilers
# reject (E0521); the newest compatible releases of its dependencies build.
if [ ! -x "$TOOLS/bin/rumqttd" ]; then
  CARGO_INCREMENTAL=0 cargo install rumqttd --version 0.20.0 --root "$TOOLS"
fi
# ironhub and the load generator, optimized, in a target directory of their own
# (SKIP_BUILD=1: the binaries already there, as they are).
if [ "${SKIP_BUILD:-0}" != 1 ]; then
  CARGO_TARGET_DIR=$TARGET CARGO_INCREMENTAL=0 cargo build --release -p ironhub -p ironhub-bench
fi

# 15,000 held connections (60,000 in `scale`) need as many descriptors in the server and in
# the load generator: root may raise the hard limit, anyone else gets the hard limit.
ulimit -n 200000 2>/dev/null || ulimit -n "$(ulimit -Hn)"
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo), $(uname -sr)"
echo "commit: $(git rev-parse --short HEAD), $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"

# Each run in a private network namespace: its loopback is its own, so fixed ports cannot
# collide with anything else on the machine, and its port range and TIME_WAIT reuse can be
# set for tens of thousands of connections. The clients' port range starts above the servers'
# fixed ports (28883-28886, 28983-28985, 443, 8883): a client connection holding one of them
# as its own port keeps the next server started there from listening (how a server of a
# round "did not start").
isolated() {
  unshare -n bash -c 'ip link set lo up &&
    sysctl -qw net.ipv4.ip_local_port_range="30000 65000" net.ipv4.tcp_tw_reuse=1 &&
    exec "$@"' isolated "$@"
}

# A failed part (a server that did not come up, say) does not stop the others; the script's
# status says that one failed.
status=0
if [ "$what" = all ] || [ "$what" = compare ]; then
  isolated "$BIN/ironhub-bench" compare --ironhub "$BIN/ironhub" \
    --mosquitto /usr/sbin/mosquitto --rumqttd "$TOOLS/bin/rumqttd" --rounds "$ROUNDS" "$@" ||
    status=$?
fi
if [ "$what" = all ] || [ "$what" = amqp ]; then
  # AMQP telemetry beside MQTT on one ironhub, then the events read back (Event Hubs, REST).
  isolated "$BIN/ironhub-bench" amqp --ironhub "$BIN/ironhub" --rounds "$ROUNDS" "$@" ||
    status=$?
fi
if [ "$what" = all ] || [ "$what" = provision ]; then
  for _ in $(seq "$ROUNDS"); do
    isolated "$BIN/ironhub-bench" provision --ironhub "$BIN/ironhub" \
      --devices 2000 --concurrency 64 --poll-ms 0 "$@" || status=$?
  done
fi
if { [ "$what" = all ] || [ "$what" = query ]; } && [ "$QUERY_DEVICES" -gt 0 ]; then
  # The fleet's database (about 1 GiB a million twins) is deleted afterwards, whatever happens.
  echo "disk before the query fleet: $(df -h --output=avail "${TMPDIR:-/tmp}" | tail -1) free"
  fleet=$(mktemp -d)
  trap 'rm -rf "$fleet"' EXIT
  TMPDIR=$fleet "$BIN/ironhub-bench" query --devices "$QUERY_DEVICES" "$@" || status=$?
  rm -rf "$fleet"
fi
if [ "$what" = scale ]; then
  # ironhub simulate near 64k connections: one release server, devices created through the
  # registry, then held with a message a minute, from 254 source addresses (127.0.1.0/24).
  isolated bench/scale.sh "$BIN/ironhub" "$SCALE_DEVICES" "$@" || status=$?
fi
if [ "$what" = cluster ]; then
  # One node against three (PostgreSQL + NATS JetStream), the same simulate fleets.
  isolated bench/cluster.sh "$BIN/ironhub" "${CLUSTER_DEVICES:-3000}" "${CLUSTER_MESSAGES:-100}" || status=$?
fi
exit "$status"
