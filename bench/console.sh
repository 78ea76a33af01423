#!/usr/bin/env bash
# The web console's page times at fleet size: DEVICES devices with twins generated straight
# into an embedded store (`ironhub-bench query --only none`, the million-twin query's
# generator), one `ironhub serve` on it, then each page fetched RUNS times with curl as the
# signed-in owner policy. Prints one line per page: the first fetch, the median, the slowest.
#
#   bench/console.sh [IRONHUB] [IRONHUB_BENCH]
#
# IRONHUB / IRONHUB_BENCH default to target/debug/ironhub and target/debug/ironhub-bench.
# DEVICES (100000), RUNS (5), ADDRESS (127.0.151.86, where the server listens; ports 443,
# 8883, 5671), NEXT (50: how many "next page" links the later-page figure follows).
# The data lives in a temporary directory, removed at the end.
set -euo pipefail
ironhub=${1:-target/debug/ironhub}
bench=${2:-target/debug/ironhub-bench}
devices=${DEVICES:-100000}
runs=${RUNS:-5}
address=${ADDRESS:-127.0.151.86}
next=${NEXT:-50}
dir=$(mktemp -d)
server=
cleanup() {
  if [ -n "$server" ]; then kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; fi
  rm -rf "$dir"
}
trap cleanup EXIT

started=$(date +%s)
"$bench" query --devices "$devices" --data-dir "$dir/data" --only no-query-runs | grep generated
echo "fleet written in $(($(date +%s) - started)) s"

"$ironhub" serve --data-dir "$dir/data" --hostname "$address" --https-listen "$address:443" \
  --mqtt-listen "$address:8883" --amqp-listen "$address:5671" >"$dir/server.log" 2>&1 &
server=$!
for _ in $(seq 600); do
  if (exec 3<>"/dev/tcp/$address/443") 2>/dev/null; then break; fi
  kill -0 "$server" || { cat "$dir/server.log"; exit 1; }
  sleep 0.1
done

base="https://$address"
jar="$dir/cookies"
key=$("$ironhub" hub connection-string show --policy-name iothubowner --data-dir "$dir/data" \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["connectionString"].split("SharedAccessKey=")[1])')
curl -sk -c "$jar" -o /dev/null --data-urlencode policy=iothubowner --data-urlencode "key=$key" "$base/console/signin"
get() { curl -sk -b "$jar" "$@"; }
csrf=$(get "$base/console/devices" | sed -n 's/.*name="csrf" value="\([^"]*\)".*/\1/p' | head -1)
# A module to show (created through the console's own form).
get -o /dev/null --data-urlencode "csrf=$csrf" --data-urlencode module_id=sensor "$base/console/devices/dev-0050000/modules"

# The later page: NEXT "next page" links followed from the first page.
later="/console/devices"
for _ in $(seq "$next"); do
  link=$(get "$base$later" | sed -n 's/.*id="next-page" href="\([^"]*\)".*/\1/p' | sed 's/&amp;/\&/g')
  [ -n "$link" ] || break
  later=$link
done

time_page() { # name path
  local times
  times=$(for _ in $(seq "$runs"); do get -o /dev/null -w '%{http_code} %{time_total}\n' "$base$2"; done)
  if grep -qv '^200 ' <<<"$times"; then echo "$1: not 200: $times"; return; fi
  local first
  first=$(head -1 <<<"$times" | awk '{printf "%.0f", $2 * 1000}')
  sort -g -k2 <<<"$times" | awk -v name="$1" -v first="$first" '{t[NR] = $2 * 1000} END {
    printf "| %s | %s | %.0f | %.0f |\n", name, first, t[int((NR + 1) / 2)], t[NR] }'
}
enc() { python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1]))' "$1"; }

echo "| page (ms) | first | median | slowest |"
echo "|---|---|---|---|"
time_page "overview (counts)" /console
time_page "device list, first page" /console/devices
time_page "device list, page $((next + 1))" "$later"
time_page "filter: deviceId = 'dev-0099999'" "/console/devices?q=$(enc "deviceId = 'dev-0099999'")"
time_page "filter: status = 'disabled' (no match)" "/console/devices?q=$(enc "status = 'disabled'")"
time_page "filter: connectionState = 'Connected' (no match)" "/console/devices?q=$(enc "connectionState = 'Connected'")"
time_page "filter: status = 'enabled' AND connectionState = 'Disconnected' (all)" "/console/devices?q=$(enc "status = 'enabled' AND connectionState = 'Disconnected'")"
time_page "query: SELECT * … WHERE tags.site = 'site-7'" "/console/devices?q=$(enc "SELECT * FROM devices WHERE tags.site = 'site-7'")"
time_page "query: … WHERE properties.reported.powerState = '0'" "/console/devices?q=$(enc "SELECT * FROM devices WHERE properties.reported.powerState = '0'")"
time_page "device page" /console/devices/dev-0050000
time_page "module page" /console/devices/dev-0050000/modules/sensor
time_page "routes" /console/routes
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg), $(nproc) cores"
