#!/usr/bin/env bash
# `bench/run.sh scale`: `ironhub simulate` holding DEVICES connections on one release server,
# from the 254 loopback source addresses of 127.0.1.0/24 (one source address reaches about
# 64k connections to one port). Run by run.sh inside a private network namespace, where the
# default ports (443, 8883) are free.
#
#   SCALE_SECONDS=300 bench/scale.sh IRONHUB DEVICES [extra `ironhub simulate` arguments]
#
# SCALE_SECONDS: how long the fleet runs from its first connect (connecting included).
set -euo pipefail
ironhub=$1
devices=$2
shift 2
dir=$(mktemp -d)
server=
cleanup() {
  if [ -n "$server" ]; then kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; fi
  rm -rf "$dir"
}
trap cleanup EXIT

rss() { awk '/^VmRSS/ {print $2}' "/proc/$server/status"; }

"$ironhub" serve --data-dir "$dir/data" --hostname localhost --amqp-listen 127.0.0.1:0 \
  --max-connections 200000 --max-connections-per-address 200000 >"$dir/server.log" 2>&1 &
server=$!
# Until the MQTT port accepts (the server writes its certificates and opens its store first).
for _ in $(seq 600); do
  if (exec 3<>/dev/tcp/127.0.0.1/8883) 2>/dev/null; then break; fi
  kill -0 "$server" || { cat "$dir/server.log"; exit 1; }
  sleep 0.1
done
echo "server resident memory at the start: $(rss) KiB"

# The server's resident memory every 2 s while the fleet runs; the peak is printed at the end.
(
  peak=0
  while kill -0 "$server" 2>/dev/null; do
    now=$(rss || echo 0)
    if [ "${now:-0}" -gt "$peak" ]; then peak=$now; echo "$peak" >"$dir/peak"; fi
    sleep 2
  done
) &
sampler=$!

started=$(date +%s)
"$ironhub" simulate --data-dir "$dir/data" --create --device-count "$devices" \
  --msg-interval 60 --duration "${SCALE_SECONDS:-300}" --source-addresses 127.0.1.0/24 --no-progress -o json "$@" \
  >"$dir/report.json" || echo "simulate exited with status $?"
echo "simulate took $(($(date +%s) - started)) s (device creation included)"
kill "$sampler" 2>/dev/null || true
echo "server resident memory: peak $(cat "$dir/peak" 2>/dev/null || echo '?') KiB, now $(rss) KiB"
echo "server's peak resident memory (VmHWM): $(awk '/^VmHWM/ {print $2}' "/proc/$server/status") KiB"
python3 -c '
import json, sys
r = json.load(open(sys.argv[1]))
print("devices:", r["devices"])
print("connects/s: %.0f" % r["connectsPerSecond"])
print("messages:", r["messages"])
print("connect latency ms:", r["latencyMs"].get("connect"))
print("errors:", r["errors"] or "none", r["firstErrors"] or "")
' "$dir/report.json"
echo "server errors logged: $(grep -ci error "$dir/server.log" || true)"
