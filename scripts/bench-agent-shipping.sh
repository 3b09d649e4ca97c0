#!/usr/bin/env bash
# Agent RSS and CPU while shipping RATE log records/s (default 5000) from Felix-format files
# written by a simulated cluster, through the tunnel into the management plane's store.
# Usage: scripts/bench-agent-shipping.sh [RATE] [SECONDS]   (after cargo build --release)
set -euo pipefail
RATE=${1:-5000}; SECS=${2:-30}
B=${CATTERY_BIN:-$(dirname "$0")/../target/release/cattery}
D=$(mktemp -d); trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$D"' EXIT
port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
API=$(port); TUN=$(port); SIM=$(port)
"$B" server --data-dir "$D/s" --api-addr 127.0.0.1:$API --tunnel-addr 127.0.0.1:$TUN >/dev/null 2>"$D/server.log" &
SERVER=$!
for _ in $(seq 100); do [ -s "$D/s/admin.token" ] && break; sleep 0.1; done
export CATTERY_SERVER=https://127.0.0.1:$API CATTERY_TOKEN=$(cat "$D/s/admin.token") CATTERY_CA_FILE=$D/s/ca.crt
for _ in $(seq 100); do "$B" cluster list >/dev/null 2>&1 && break; sleep 0.1; done
"$B" cluster add bench --format agent-config > "$D/agent.yaml"
"$B" agent --config "$D/agent.yaml" --upstream http://127.0.0.1:$SIM --spool-dir "$D/spool" \
  --log-file flows="$D/felix/flows.log" --log-file dns="$D/felix/dns.log" --log-file l7="$D/felix/l7.log" 2>"$D/agent.log" &
AGENT=$!
"$B" sim-cluster --listen 127.0.0.1:$SIM --name bench --logs-dir "$D/felix" --log-rate "$RATE" \
  --log-interval 100ms --flow-aggregation none --log-max-bytes 104857600 >/dev/null 2>&1 &
stored() { curl -s --cacert "$CATTERY_CA_FILE" -H "Authorization: Bearer $CATTERY_TOKEN" "$CATTERY_SERVER/metrics" \
  | awk '/^cattery_logs_records_stored_total/ {s+=$2} END {print s+0}'; }
ticks() { awk '{print $14+$15}' /proc/$1/stat; }
sleep 5  # warm-up: the agent connects and the pipeline reaches a steady state
s0=$(stored); a0=$(ticks $AGENT); v0=$(ticks $SERVER); t0=$(date +%s.%N)
rss_max=0
for _ in $(seq "$SECS"); do
  sleep 1
  r=$(awk '/VmRSS/ {print $2}' /proc/$AGENT/status); [ "$r" -gt "$rss_max" ] && rss_max=$r
done
s1=$(stored); a1=$(ticks $AGENT); v1=$(ticks $SERVER); t1=$(date +%s.%N)
python3 - "$s0" "$s1" "$a0" "$a1" "$v0" "$v1" "$t0" "$t1" "$rss_max" "$RATE" <<'PY'
import sys
s0,s1,a0,a1,v0,v1,t0,t1,rss,rate=map(float,sys.argv[1:])
dt=t1-t0
print(f"| offered records/s | stored records/s | agent CPU | agent peak RSS | server CPU |")
print(f"|--:|--:|--:|--:|--:|")
print(f"| {rate:.0f} | {(s1-s0)/dt:,.0f} | {(a1-a0)/100/dt*100:.0f} % of a core | {rss/1024:.1f} MiB | {(v1-v0)/100/dt*100:.0f} % of a core |")
PY
