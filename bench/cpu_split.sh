#!/usr/bin/env bash
# Where a WebSocket fan-out's server CPU goes: user space vs the kernel, for rtchat (course
# snapshots, permessage-deflate on and off) and Node's `ws` (perMessageDeflate off, its
# cheaper configuration), same run, each on a fresh server. The kernel's share is mostly the
# one `writev` per delivery (and, on loopback, the receiving client's TCP softirq, which runs
# in the sender's system call): no user-space change removes it. With `perf` installed it
# also records where the time went (perf report -i bench/results/raw-cpu-split/NAME.perf) when
# PERF=1 (recording costs CPU of its own, in the kernel: the split without it is the one to quote).
#
# usage: bench/cpu_split.sh [ROUNDS]
#   env: SUBSCRIBERS=1000 MESSAGES=500 RATE=50 OUT=bench/results PERF=0
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${1:-${ROUNDS:-2}}
SUBSCRIBERS=${SUBSCRIBERS:-1000}
MESSAGES=${MESSAGES:-500}
RATE=${RATE:-50}
OUT=${OUT:-bench/results}
RAW=$OUT/raw-cpu-split
BIN=${CARGO_TARGET_DIR:-target}/release/rtchat
TICK=$(getconf CLK_TCK)

cargo build --release --bin rtchat
(cd bench/peers && npm ci --no-audit --no-fund --loglevel=error)
rm -rf "$RAW" && mkdir -p "$RAW"

# run NAME -- server command: starts it, runs the fan-out, prints "NAME deliveries user_s sys_s".
run() {
  local name=$1 log="$RAW/$1.log" url= pid
  shift
  "$@" >"$log" 2>&1 &
  pid=$!
  for _ in $(seq 200); do
    url=$(grep -o -m1 'listening on http://[0-9.:]*' "$log") && break
    sleep 0.05
  done
  url=${url#listening on }
  [ -n "$url" ] || { echo "cpu_split.sh: $name did not start" >&2; cat "$log" >&2; exit 1; }
  local perf_pid=
  if [ "${PERF:-0}" = 1 ]; then
    perf record -q -g -p "$pid" -o "$RAW/$name.perf" -- sleep $((MESSAGES / RATE + 4)) >/dev/null 2>&1 &
    perf_pid=$!
  fi
  read -r u0 s0 < <(awk '{print $14, $15}' "/proc/$pid/stat")
  "$BIN" bench fanout -n "$SUBSCRIBERS" -m "$MESSAGES" -r "$RATE" --deflate -t ws-json --url "$url" \
    --server-pid "$pid" --label "$name" --json -q --timeout 180 >"$RAW/$name.json" 2>/dev/null || true
  read -r u1 s1 < <(awk '{print $14, $15}' "/proc/$pid/stat")
  [ -n "$perf_pid" ] && wait "$perf_pid" || true
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  local delivered
  delivered=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1])).get('delivered', 0))" "$RAW/$name.json")
  echo "$name $delivered $(( u1 - u0 )) $(( s1 - s0 ))" >>"$RAW/ticks"
}

for round in $(seq "$ROUNDS"); do
  echo "== round $round of $ROUNDS"
  run "rtchat-on-$round" env RUST_LOG=warn "$BIN" serve --listen 127.0.0.1:0 --no-tls --store memory --post-rate 0 --ws-deflate on
  run "rtchat-off-$round" env RUST_LOG=warn "$BIN" serve --listen 127.0.0.1:0 --no-tls --store memory --post-rate 0 --ws-deflate off
  run "node-off-$round" env PORT=0 WS_DEFLATE=0 node bench/peers/ws-server.mjs
done

python3 - "$RAW/ticks" "$TICK" "$SUBSCRIBERS" "$MESSAGES" "$RATE" >"$OUT/cpu-split.md" <<'PY'
import sys
ticks, hz, subs, msgs, rate = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
rows = [l.split() for l in open(ticks)]
print(f"# Server CPU per delivery, user space vs kernel ({subs} subscribers, {msgs} course snapshots at {rate}/s)\n")
print("| run | delivered | user µs / delivery | kernel µs / delivery | total µs / delivery | kernel share |")
print("| --- | --- | --- | --- | --- | --- |")
for name, delivered, user, system in rows:
    d = max(int(delivered), 1)
    u = int(user) / hz / d * 1e6
    s = int(system) / hz / d * 1e6
    print(f"| {name} | {int(delivered)} | {u:.2f} | {s:.2f} | {u + s:.2f} | {s / (u + s):.0%} |")
PY
cat "$OUT/cpu-split.md"
