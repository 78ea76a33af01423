#!/usr/bin/env bash
# `bench/run.sh cluster`: the embedded engine against one node and three nodes of one hub over
# PostgreSQL + NATS JetStream (`serve --store postgres://… --nats …`), on the same machine and
# under the same load, in one run. Each setup gets a fresh data directory, database and
# nats-server, then two passes of three `ironhub simulate` fleets at once:
#   1. telemetry: DEVICES/3 created devices a fleet connect and send MESSAGES QoS 1 messages;
#   2. DPS: DEVICES/3 new devices a fleet provision through an enrollment group (symmetric key,
#      DPS over MQTT), then connect to the hub they were assigned.
# The embedded hub and the one-node cluster take all three fleets on node 1; with three nodes
# each fleet has its own node (the devices a DPS pass assigns then connect to the hub's host
# name, node 1). Prints every figure and the ratios one node/embedded and three nodes/one node.
# Run by run.sh inside a private network namespace (the nodes listen on CLUSTER_NET.1-3, the
# nats-server on CLUSTER_NET.10: 127.0.0 by default).
#
#   bench/cluster.sh IRONHUB [DEVICES [MESSAGES]]   (defaults: 3000 devices, 100 messages)
set -euo pipefail
ironhub=$1
devices=${2:-3000}
messages=${3:-100}
net=${CLUSTER_NET:-127.0.0}
per_fleet=$((devices / 3))
[ "$per_fleet" -ge 1 ] || { echo "DEVICES must be at least 3" >&2; exit 2; }
command -v nats-server >/dev/null || apt-get install -y --no-install-recommends nats-server
ls -d /usr/lib/postgresql/*/bin >/dev/null 2>&1 || apt-get install -y --no-install-recommends postgresql
dir=$(mktemp -d)
bin="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)"
as=()
if [ "$(id -u)" -eq 0 ]; then chown postgres: "$dir"; as=(runuser -u postgres --); fi
servers=()
stop_servers() {
  for p in "${servers[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${servers[@]}"; do wait "$p" 2>/dev/null || true; done
  servers=()
}
cleanup() {
  stop_servers
  "${as[@]}" "$bin/pg_ctl" -D "$dir/pg" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$dir"
}
trap cleanup EXIT

# PostgreSQL on a Unix socket only; fsync on, as a deployment has it.
"${as[@]}" "$bin/initdb" -D "$dir/pg" -U postgres --auth=trust -E UTF8 >/dev/null
"${as[@]}" "$bin/pg_ctl" -D "$dir/pg" -l "$dir/pg.log" -w \
  -o "-c listen_addresses='' -k $dir -c max_connections=300" start >/dev/null

listening() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }
wait_port() {
  for _ in $(seq 600); do
    if listening "$1" "$2"; then return 0; fi
    sleep 0.1
  done
  echo "nothing listens on $1:$2" >&2
  return 1
}

# One setup: "embedded", or NODES nodes over a fresh database and nats-server, three fleets
# spread over them; prints "connects/s messages/s connected acknowledged provisionings/s
# provisioned" (the fleets' sums) and keeps the reports.
run() {
  local setup=$1 run=$dir/run-$1 nodes db="" store=()
  mkdir -p "$run"
  if [ "$setup" = embedded ]; then
    nodes=1
  else
    nodes=$setup
    db="postgresql://postgres@/ironhub_$nodes?host=$dir"
    "${as[@]}" psql "postgresql://postgres@/postgres?host=$dir" -qc "CREATE DATABASE ironhub_$nodes" >/dev/null
    nats-server -js -a "$net.10" -p 4222 -sd "$run/nats" >"$run/nats.log" 2>&1 &
    servers+=($!)
    wait_port "$net.10" 4222
  fi
  for i in $(seq "$nodes"); do
    [ -n "$db" ] && store=(--store "$db" --nats "nats://$net.10:4222" --node-id "node-$i")
    "$ironhub" serve --data-dir "$run/node-$i" "${store[@]}" \
      --hostname "$net.1,$net.2,$net.3" --https-listen "$net.$i:443" \
      --mqtt-listen "$net.$i:8883" --amqp-listen "$net.$i:5671" \
      --max-connections 200000 --max-connections-per-address 200000 >"$run/node-$i.log" 2>&1 &
    servers+=($!)
  done
  for i in $(seq "$nodes"); do wait_port "$net.$i" 8883; done
  local info login ca scope dps_login
  [ -n "$db" ] && store=(--store "$db")
  info=$("$ironhub" info "${store[@]}" --data-dir "$run/node-1" --json)
  field() { python3 -c 'import json,sys; v=json.loads(sys.argv[1])
for k in sys.argv[2].split("."): v=v[k]
print(v)' "$info" "$1"; }
  login=$(field hub.connectionString)
  ca=$(field tls.caCertificate)
  scope=$(field dps.idScope)
  dps_login=$(field dps.serviceConnectionString)
  local key
  key=$(head -c 32 /dev/urandom | base64)
  "$ironhub" dps enrollment-group create --login "$dps_login" --cafile "$ca" \
    --enrollment-id bench --primary-key "$key" --secondary-key "$key" >/dev/null
  local fleets=() k node
  for k in 1 2 3; do
    node=$(( nodes == 1 ? 1 : k ))
    "$ironhub" simulate --login "${login/HostName=$net.1;/HostName=$net.$node;}" --ca-file "$ca" \
      --create --device-count "$per_fleet" --device-prefix "f$k-" --msg-count "$messages" \
      --msg-interval 0.01 --no-progress -o json >"$run/report-$k.json" 2>"$run/simulate-$k.log" &
    fleets+=($!)
  done
  local failed=0 p
  for p in "${fleets[@]}"; do wait "$p" || failed=1; done
  fleets=()
  if [ "$failed" = 0 ]; then
    for k in 1 2 3; do
      node=$(( nodes == 1 ? 1 : k ))
      "$ironhub" simulate --login "$login" --ca-file "$ca" --dps-scope "$scope" \
        --dps-endpoint "$net.$node" --group-key "$key" --device-count "$per_fleet" \
        --device-prefix "p$k-" --msg-count 0 --no-progress -o json \
        >"$run/dps-$k.json" 2>"$run/simulate-dps-$k.log" &
      fleets+=($!)
    done
    for p in "${fleets[@]}"; do wait "$p" || failed=1; done
  fi
  stop_servers
  [ "$failed" = 0 ] || { tail -n 5 "$run"/simulate-*.log >&2; return 1; }
  python3 - "$run" <<'PY'
import json, pathlib, sys
run = pathlib.Path(sys.argv[1])
reports = [json.loads(p.read_text()) for p in sorted(run.glob("report-*.json"))]
dps = [json.loads(p.read_text()) for p in sorted(run.glob("dps-*.json"))]
for r in reports + dps:
    if r["errors"]:
        print("errors:", r["errors"], r["firstErrors"], file=sys.stderr)
print("%.1f %.1f %d %d %.1f %d" % (
    sum(r["connectsPerSecond"] for r in reports), sum(r["messages"]["perSecond"] for r in reports),
    sum(r["devices"]["connected"] for r in reports), sum(r["messages"]["acknowledged"] for r in reports),
    sum(r["connectsPerSecond"] for r in dps), sum(r["devices"]["provisioned"] for r in dps)))
PY
}

embedded=$(run embedded)
one=$(run 1)
three=$(run 3)
python3 - "$embedded" "$one" "$three" "$devices" "$messages" <<'PY'
import sys
emb, one, three = (list(map(float, a.split())) for a in sys.argv[1:4])
print(f"cluster: {sys.argv[4]} devices, {sys.argv[5]} QoS 1 messages each, three simulate fleets at once;")
print(f"then {sys.argv[4]} more devices provisioned through DPS (group key) and connected")
ratio = lambda a, b: a / b if b else float("nan")
print(f"{'':30}{'embedded':>10}{'1 node':>10}{'3 nodes':>10}{'1/emb':>8}{'3/1':>8}")
for name, i in (("connects/s", 0), ("messages/s (PUBACKed)", 1), ("DPS provisionings+connect/s", 4)):
    print(f"{name:30}{emb[i]:10.0f}{one[i]:10.0f}{three[i]:10.0f}{ratio(one[i], emb[i]):8.2f}{ratio(three[i], one[i]):8.2f}")
for name, i in (("devices connected", 2), ("messages acknowledged", 3), ("devices provisioned", 5)):
    print(f"{name:30}{emb[i]:10.0f}{one[i]:10.0f}{three[i]:10.0f}")
PY
