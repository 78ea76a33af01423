#!/usr/bin/env bash
# `bench/run.sh cluster`: MQTT connects and QoS 1 telemetry on one node against three nodes of
# one hub (`serve --store postgres://… --nats …`), on the same machine and under the same load:
# three `ironhub simulate` fleets at once, DEVICES/3 devices each sending MESSAGES messages,
# all against node 1 (one node) or one fleet a node (three nodes). Each setup gets a fresh
# database and a fresh nats-server. Prints both runs and the three-node/one-node ratios. Run
# by run.sh inside a private network namespace (the nodes listen on CLUSTER_NET.1-3, the
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

# One setup: NODES nodes over a fresh database and nats-server, three fleets spread over them;
# prints "connects/s messages/s" (the fleets' sums) and keeps the reports.
run() {
  local nodes=$1 run=$dir/run-$1 db
  mkdir -p "$run"
  db="postgresql://postgres@/ironhub_$nodes?host=$dir"
  "${as[@]}" psql "postgresql://postgres@/postgres?host=$dir" -qc "CREATE DATABASE ironhub_$nodes" >/dev/null
  nats-server -js -a "$net.10" -p 4222 -sd "$run/nats" >"$run/nats.log" 2>&1 &
  servers+=($!)
  wait_port "$net.10" 4222
  for i in $(seq "$nodes"); do
    "$ironhub" serve --data-dir "$run/node-$i" --store "$db" --nats "nats://$net.10:4222" \
      --node-id "node-$i" --hostname "$net.1,$net.2,$net.3" --https-listen "$net.$i:443" \
      --mqtt-listen "$net.$i:8883" --amqp-listen "$net.$i:5671" \
      --max-connections 200000 --max-connections-per-address 200000 >"$run/node-$i.log" 2>&1 &
    servers+=($!)
  done
  for i in $(seq "$nodes"); do wait_port "$net.$i" 8883; done
  local info login ca
  info=$("$ironhub" info --store "$db" --data-dir "$run/node-1" --json)
  login=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["hub"]["connectionString"])' "$info")
  ca=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["tls"]["caCertificate"])' "$info")
  local fleets=()
  for k in 1 2 3; do
    local node=$(( nodes == 1 ? 1 : k ))
    "$ironhub" simulate --login "${login/HostName=$net.1;/HostName=$net.$node;}" --ca-file "$ca" \
      --create --device-count "$per_fleet" --device-prefix "f$k-" --msg-count "$messages" \
      --msg-interval 0.01 --no-progress -o json >"$run/report-$k.json" 2>"$run/simulate-$k.log" &
    fleets+=($!)
  done
  local failed=0
  for p in "${fleets[@]}"; do wait "$p" || failed=1; done
  stop_servers
  [ "$failed" = 0 ] || { tail -n 5 "$run"/simulate-*.log >&2; return 1; }
  python3 - "$run" <<'PY'
import json, pathlib, sys
reports = [json.loads(p.read_text()) for p in sorted(pathlib.Path(sys.argv[1]).glob("report-*.json"))]
for r in reports:
    if r["errors"]:
        print("errors:", r["errors"], r["firstErrors"], file=sys.stderr)
print("%.1f %.1f %d %d" % (sum(r["connectsPerSecond"] for r in reports), sum(r["messages"]["perSecond"] for r in reports),
                            sum(r["devices"]["connected"] for r in reports), sum(r["messages"]["acknowledged"] for r in reports)))
PY
}

one=$(run 1)
three=$(run 3)
python3 - "$one" "$three" "$devices" "$messages" <<'PY'
import sys
one, three = (list(map(float, a.split())) for a in sys.argv[1:3])
print(f"cluster: {sys.argv[3]} devices, {sys.argv[4]} QoS 1 messages each, three simulate fleets at once")
print(f"{'':28}{'1 node':>12}{'3 nodes':>12}{'3/1':>8}")
for name, i in (("connects/s", 0), ("messages/s (PUBACKed)", 1)):
    ratio = three[i] / one[i] if one[i] else float("nan")
    print(f"{name:28}{one[i]:12.0f}{three[i]:12.0f}{ratio:8.2f}")
print(f"{'devices connected':28}{one[2]:12.0f}{three[2]:12.0f}")
print(f"{'messages acknowledged':28}{one[3]:12.0f}{three[3]:12.0f}")
PY
