#!/usr/bin/env bash
# One node against three (README "Running a cluster"), same run, same load: SUBSCRIBERS
# rtchat.v1 WebSocket subscribers and one publisher at RATE messages/s, through
#   1. one node, --store sqlite (no Redis: the baseline),
#   2. one node, --store redis:// (the Redis hop alone),
#   3. three nodes, --store redis://, behind HAProxy (round robin, no stickiness).
# Redis runs with appendonly yes, appendfsync always. For each: delivered fraction, latency
# percentiles, server CPU (every node + Redis, from /proc), deliveries per server CPU-second,
# and Redis commands per posted message (INFO commandstats, reset before each run).
# Writes bench/results/cluster.md and the raw JSON under bench/results/raw-cluster/.
#
# usage: bench/cluster.sh     env: SUBSCRIBERS=3000 MESSAGES=1000 RATE=100 BUILD=0
set -euo pipefail
cd "$(dirname "$0")/.."

SUBSCRIBERS=${SUBSCRIBERS:-3000}
MESSAGES=${MESSAGES:-1000}
RATE=${RATE:-100}
OUT=${OUT:-bench/results}
RAW=$OUT/raw-cluster
BIN=${BIN:-target/release/rtchat}
[ "${BUILD:-1}" = 0 ] || cargo build --release --bin rtchat
command -v redis-server >/dev/null && command -v haproxy >/dev/null \
  || { echo "cluster.sh: needs redis-server and haproxy (scripts/setup installs them)" >&2; exit 1; }
rm -rf "$RAW" && mkdir -p "$RAW"
TMP=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$TMP"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# CPU seconds (user + system) used so far by the given pids.
cpu() { python3 - "$@" <<'PY'
import os, sys
tck = os.sysconf("SC_CLK_TCK")
total = 0
for pid in sys.argv[1:]:
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    total += int(f[11]) + int(f[12])
print(total / tck)
PY
}
redis_cli() { redis-cli -p "$REDIS_PORT" "$@"; }

REDIS_PORT=$(free_port)
mkdir -p "$TMP/redis"
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$TMP/redis" --save "" \
  --appendonly yes --appendfsync always --logfile "$TMP/redis.log" --daemonize no &
REDIS_PID=$!
PIDS+=("$REDIS_PID")
until redis_cli ping >/dev/null 2>&1; do sleep 0.05; done
REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0"

NODE_FLAGS=(--no-tls --post-rate 0 --max-connections-per-ip 1000000 --trusted-proxy 127.0.0.1/32)
NODE_PIDS=()
# node NAME STORE: starts a node and records its pid and base URL.
node() {
  local log="$RAW/$1.log" port
  port=$(free_port)
  RUST_LOG=warn "$BIN" serve --listen "127.0.0.1:$port" --store "$2" --data-dir "$TMP/$1" \
    "${NODE_FLAGS[@]}" >"$log" 2>&1 &
  NODE_PIDS+=($!)
  PIDS+=($!)
  until grep -q "listening on http" "$log"; do sleep 0.05; done
  NODE_BASES+=("127.0.0.1:$port")
}
stop_nodes() {
  for p in "${NODE_PIDS[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  NODE_PIDS=()
  NODE_BASES=()
  sleep 1
}

# run NAME URL: the fan-out through URL; CPU of the nodes and Redis around it.
ROWS=()
run() {
  local name=$1 url=$2
  redis_cli config resetstat >/dev/null
  local before after
  before=$(cpu "${NODE_PIDS[@]}" "$REDIS_PID")
  local rbefore; rbefore=$(cpu "$REDIS_PID")
  "$BIN" bench fanout -t ws -n "$SUBSCRIBERS" -m "$MESSAGES" -r "$RATE" --url "$url" \
    --threads 1 --json --quiet >"$RAW/$name.json"
  after=$(cpu "${NODE_PIDS[@]}" "$REDIS_PID")
  local rafter; rafter=$(cpu "$REDIS_PID")
  local calls
  calls=$(redis_cli info commandstats | python3 -c '
import sys
total = 0
for line in sys.stdin:
    if line.startswith("cmdstat_"):
        total += int(line.split("calls=")[1].split(",")[0])
print(total)')
  ROWS+=("$name|$RAW/$name.json|$before|$after|$rbefore|$rafter|$calls")
}

echo "== 1 node, sqlite"
NODE_BASES=()
node sqlite sqlite
run "1 node, sqlite" "http://${NODE_BASES[0]}"
stop_nodes

echo "== 1 node, redis"
node redis1 "$REDIS_URL"
run "1 node, redis" "http://${NODE_BASES[0]}"
stop_nodes

echo "== 3 nodes, redis, haproxy"
for i in 1 2 3; do node "redis3-$i" "$REDIS_URL"; done
LB_PORT=$(free_port)
{
  printf 'global\n  maxconn 9000\ndefaults\n  mode http\n  timeout connect 2s\n  timeout client 120s\n  timeout server 120s\n  timeout tunnel 1h\n  option forwardfor\n'
  printf 'frontend fe\n  bind 127.0.0.1:%s\n  default_backend nodes\nbackend nodes\n  balance roundrobin\n' "$LB_PORT"
  for i in 0 1 2; do printf '  server n%s %s\n' "$i" "${NODE_BASES[$i]}"; done
} >"$TMP/haproxy.cfg"
haproxy -f "$TMP/haproxy.cfg" -db >"$RAW/haproxy.log" 2>&1 &
HAPROXY_PID=$!
PIDS+=("$HAPROXY_PID")
until (exec 3<>"/dev/tcp/127.0.0.1/$LB_PORT") 2>/dev/null; do
  kill -0 "$HAPROXY_PID" 2>/dev/null || { cat "$RAW/haproxy.log" >&2; exit 1; }
  sleep 0.05
done
HA_BEFORE=$(cpu "$HAPROXY_PID")
run "3 nodes, redis, haproxy" "http://127.0.0.1:$LB_PORT"
HA_AFTER=$(cpu "$HAPROXY_PID")
stop_nodes

python3 - "$OUT/cluster.md" "$SUBSCRIBERS" "$MESSAGES" "$RATE" "$HA_BEFORE" "$HA_AFTER" "${ROWS[@]}" <<'PY'
import json, sys
out, subs, msgs, rate, ha0, ha1, *rows = sys.argv[1:]
lines = [
    f"Fan-out, {subs} rtchat.v1 WebSocket subscribers, {msgs} messages at {rate}/s "
    "(bench/cluster.sh; one machine, 2 cores, shared: compare within the table).",
    "",
    "| setup | delivered | p50 ms | p99 ms | server CPU s (nodes + Redis) | of which Redis | deliveries per server CPU-s | Redis commands per message |",
    "|---|---|---|---|---|---|---|---|",
]
for row in rows:
    name, path, b, a, rb, ra, calls = row.split("|")
    r = json.load(open(path))
    lat = r["latency"]
    delivered = r["delivered_fraction"]
    deliveries = r["delivered"]
    cpu = float(a) - float(b)
    redis = float(ra) - float(rb)
    per_msg = int(calls) / int(msgs)
    lines.append(
        f"| {name} | {delivered:.4f} | {lat['p50_ms']:.1f} | {lat['p99_ms']:.1f} | {cpu:.1f} | {redis:.1f} | "
        f"{deliveries / cpu if cpu else float('nan'):.0f} | {per_msg:.2f} |"
    )
lines.append("")
lines.append(f"HAProxy itself used {float(ha1) - float(ha0):.1f} CPU s in the three-node run (not counted above).")
open(out, "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
PY
