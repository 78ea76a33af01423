#!/usr/bin/env bash
# Side-by-side benchmarks: ironhub, Eclipse Mosquitto and rumqttd under the same load in one
# run, then ironhub's own figures (DPS provisioning, twin queries). See bench/README.md.
#
#   bench/run.sh [all|compare|provision|query] [extra ironhub-bench arguments]
set -euo pipefail
cd "$(dirname "$0")/.."

what=${1:-all}
shift || true
if [ "$what" = all ] && [ $# -gt 0 ]; then
  echo "extra arguments go to one mode: bench/run.sh compare|provision|query ARGS..." >&2
  exit 2
fi
TOOLS=${IRONHUB_BENCH_TOOLS:-$HOME/.cache/ironhub-bench-tools}
TARGET=${IRONHUB_BENCH_TARGET:-$HOME/.cache/bench-target}
ROUNDS=${ROUNDS:-3}
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
# ironhub and the load generator, optimized, in a target directory of their own.
CARGO_TARGET_DIR=$TARGET CARGO_INCREMENTAL=0 cargo build --release -p ironhub -p ironhub-bench

# 15,000 held connections need as many descriptors in the server and in the load generator.
ulimit -n "$(ulimit -Hn)"
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo), $(uname -sr)"
echo "commit: $(git rev-parse --short HEAD), $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"

# Each run in a private network namespace: its loopback is its own, so fixed ports cannot
# collide with anything else on the machine, and its port range and TIME_WAIT reuse can be
# set for tens of thousands of connections.
isolated() {
  unshare -n bash -c 'ip link set lo up &&
    sysctl -qw net.ipv4.ip_local_port_range="1024 65000" net.ipv4.tcp_tw_reuse=1 &&
    exec "$@"' isolated "$@"
}

if [ "$what" = all ] || [ "$what" = compare ]; then
  isolated "$BIN/ironhub-bench" compare --ironhub "$BIN/ironhub" \
    --mosquitto /usr/sbin/mosquitto --rumqttd "$TOOLS/bin/rumqttd" --rounds "$ROUNDS" "$@"
fi
if [ "$what" = all ] || [ "$what" = provision ]; then
  for _ in $(seq "$ROUNDS"); do
    isolated "$BIN/ironhub-bench" provision --ironhub "$BIN/ironhub" \
      --devices 2000 --concurrency 64 --poll-ms 0 "$@"
  done
fi
if [ "$what" = all ] || [ "$what" = query ]; then
  "$BIN/ironhub-bench" query --devices 1000000 "$@"
fi
