#!/usr/bin/env bash
# permessage-deflate (RFC 7692): bytes on the wire and server CPU per delivery, rtchat against
# Node's `ws` (bench/peers/ws-server.mjs), each with compression off and on, same run, round
# after round, every run on a freshly started server. Subscribers offer permessage-deflate as
# browsers do (`rtchat bench fanout --deflate`); the server decides. Writes
# bench/results/deflate.md and every run's JSON under bench/results/raw-deflate/.
#
# usage: bench/deflate.sh [ROUNDS]
#   env: SUBSCRIBERS=1000 MESSAGES=500 RATE=50 OUT=bench/results
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${1:-${ROUNDS:-2}}
SUBSCRIBERS=${SUBSCRIBERS:-1000}
MESSAGES=${MESSAGES:-500}
RATE=${RATE:-50}
OUT=${OUT:-bench/results}
RAW=$OUT/raw-deflate
BIN=${CARGO_TARGET_DIR:-target}/release/rtchat

echo "== building rtchat (release), installing the Node peers"
cargo build --release --bin rtchat
(cd bench/peers && npm ci --no-audit --no-fund --loglevel=error)
rm -rf "$RAW" && mkdir -p "$RAW"

SERVER_PID=
SERVER_URL=
start() {
  local log="$RAW/$1.log"
  shift
  "$@" >"$log" 2>&1 &
  SERVER_PID=$!
  for _ in $(seq 200); do
    if SERVER_URL=$(grep -o -m1 'listening on http://[0-9.:]*' "$log"); then
      SERVER_URL=${SERVER_URL#listening on }
      return
    fi
    kill -0 "$SERVER_PID" 2>/dev/null || break
    sleep 0.05
  done
  echo "deflate.sh: the server did not start: $*" >&2
  cat "$log" >&2
  exit 1
}
stop() {
  kill "$SERVER_PID" 2>/dev/null || true
  wait "$SERVER_PID" 2>/dev/null || true
  sleep 0.5
}
# Post rate limits off, so every figure stays comparable.
rtchat() { local n=$1; shift; start "$n" env RUST_LOG=warn "$BIN" serve --listen 127.0.0.1:0 --no-tls --store memory --post-rate 0 "$@"; }
node_ws() { start "$1" env PORT=0 WS_DEFLATE="$2" node bench/peers/ws-server.mjs; }
bench() {
  local file=$1 label=$2
  shift 2
  echo "-- $label: $*"
  "$BIN" bench fanout -n "$SUBSCRIBERS" -m "$MESSAGES" -r "$RATE" --deflate "$@" --url "$SERVER_URL" \
    --server-pid "$SERVER_PID" --label "$label" --json -q --timeout 180 >"$RAW/$file.json" || true
}

for round in $(seq "$ROUNDS"); do
  echo "== round $round of $ROUNDS"
  rtchat "r-off-$round" --ws-deflate off; bench "snap-rtchat-off-$round" "rtchat, off" -t ws-json; stop
  rtchat "r-on-$round" --ws-deflate on; bench "snap-rtchat-on-$round" "rtchat, on" -t ws-json; stop
  node_ws "n-off-$round" 0; bench "snap-node-off-$round" "node ws, off" -t ws-json; stop
  node_ws "n-on-$round" 1; bench "snap-node-on-$round" "node ws, on" -t ws-json; stop
  rtchat "v-off-$round" --ws-deflate off; bench "v1-rtchat-off-$round" "rtchat v1, off" -t ws; stop
  rtchat "v-on-$round" --ws-deflate on; bench "v1-rtchat-on-$round" "rtchat v1, on (threshold 256)" -t ws; stop
  rtchat "v-on0-$round" --ws-deflate on --ws-deflate-threshold 0; bench "v1-rtchat-on0-$round" "rtchat v1, on (threshold 0)" -t ws; stop
done

python3 - "$RAW" "$ROUNDS" "$SUBSCRIBERS" "$MESSAGES" "$RATE" >"$OUT/deflate.md" <<'PY'
import json, sys
raw, rounds, subs, msgs, rate = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
def load(name, r):
    try:
        return json.load(open("%s/%s-%d.json" % (raw, name, r)))
    except Exception:
        return None
def per_delivery(j):
    d = j.get("delivered") or 0
    res = j.get("resources", {})
    wire = res.get("ws_wire_bytes")
    cpu = res.get("server_cpu_s")
    return (wire / d if wire and d else None, cpu * 1e6 / d if cpu and d else None)
rows = [("snap-rtchat-off", "rtchat, course snapshots, compression off"),
        ("snap-rtchat-on", "rtchat, course snapshots, compression on"),
        ("snap-node-off", "node ws, course snapshots, perMessageDeflate off"),
        ("snap-node-on", "node ws, course snapshots, perMessageDeflate on"),
        ("v1-rtchat-off", "rtchat, rtchat.v1 deltas, compression off"),
        ("v1-rtchat-on", "rtchat, rtchat.v1 deltas, compression on (threshold 256: deltas stay plain)"),
        ("v1-rtchat-on0", "rtchat, rtchat.v1 deltas, compression on, --ws-deflate-threshold 0")]
print("Each cell: round 1 / round 2 / ... (%s subscribers, %s messages at %s msg/s; wire = bytes the subscribers read from their sockets)." % (subs, msgs, rate))
print()
print("| run | delivered | p99 | wire bytes per delivery | server CPU µs per delivery |")
print("| --- | --- | --- | --- | --- |")
figs = {}
for key, label in rows:
    cells = [[], [], [], []]
    for r in range(1, rounds + 1):
        j = load(key, r)
        if not j:
            for c in cells: c.append("-")
            continue
        w, c = per_delivery(j)
        figs.setdefault(key, []).append((w, c))
        cells[0].append("%.1f%%" % (100 * (j.get("delivered_fraction") or 0)))
        cells[1].append("%.1f ms" % (j.get("latency", {}).get("p99_ms") or 0))
        cells[2].append("%.0f" % w if w else "-")
        cells[3].append("%.2f" % c if c else "-")
    print("| %s | %s |" % (label, " | ".join(" / ".join(c) for c in cells)))
def ratio(a, b, i):
    out = []
    for x, y in zip(figs.get(a, []), figs.get(b, [])):
        out.append("%.2f" % (x[i] / y[i]) if x[i] and y[i] else "-")
    return " / ".join(out) or "-"
print()
print("- wire bytes, rtchat off / on: %s (target ≥ 3)" % ratio("snap-rtchat-off", "snap-rtchat-on", 0))
cheaper = []
for r in range(rounds):
    try:
        ours = figs["snap-rtchat-on"][r][1]
        node = min(x for x in (figs["snap-node-off"][r][1], figs["snap-node-on"][r][1]) if x)
        cheaper.append("%.2f" % (ours / node))
    except Exception:
        cheaper.append("-")
print("- server CPU per delivery, rtchat on / Node's cheaper configuration: %s (target ≤ 0.5)" % " / ".join(cheaper))
print("- server CPU per delivery, rtchat off / node off: %s" % ratio("snap-rtchat-off", "snap-node-off", 1))
PY
cat "$OUT/deflate.md"
