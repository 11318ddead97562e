#!/usr/bin/env bash
# The standard comparison of rtchat with minimal Node.js peers (bench/peers: npm ws, socket.io,
# Express) on this machine, like for like: snapshots against snapshots (WebSocket `json`,
# Socket.IO `msg:get`) and deltas against deltas (rtchat.v1, Socket.IO `msg:new`), each at a
# steady RATE and saturated. Each scenario runs rtchat and the peer back to back, round after round,
# every run on a freshly started server (the machine is shared and noisy: compare the ratios
# within a round). Writes bench/results/compare.md (the table), bench/results/fanout-latency.svg
# (the plot) and every run's JSON under bench/results/raw/.
#
# usage: bench/compare.sh [ROUNDS]
#   env: SUBSCRIBERS=1000 MESSAGES=500 RATE=50 IDLE=10000 WRK_SECONDS=10 OUT=bench/results
#        SAT_MESSAGES=2000 SAT_RATE=1000 (the saturation fan-out: more than any server here keeps
#        up with, so deliveries/s is each server's sustained throughput, not the offered rate)
#        SERVER_BIN=path (the rtchat server measured, e.g. an older build to compare with;
#        the load tool is always this checkout's)
#        BUILD=0 (use target/release/rtchat as it is: built just before, say)
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${1:-${ROUNDS:-2}}
SUBSCRIBERS=${SUBSCRIBERS:-1000}
MESSAGES=${MESSAGES:-500}
RATE=${RATE:-50}
IDLE=${IDLE:-10000}
WRK_SECONDS=${WRK_SECONDS:-10}
SAT_MESSAGES=${SAT_MESSAGES:-2000}
SAT_RATE=${SAT_RATE:-1000}
OUT=${OUT:-bench/results}
RAW=$OUT/raw
BIN=target/release/rtchat
SERVER_BIN=${SERVER_BIN:-$BIN}

echo "== building rtchat (release), installing the Node peers and wrk"
[ "${BUILD:-1}" = 0 ] || cargo build --release --bin rtchat
(cd bench/peers && npm ci --no-audit --no-fund --loglevel=error)
if ! command -v wrk >/dev/null; then
  [ "$(id -u)" = 0 ] || { echo "compare.sh: please install wrk (apt-get install wrk)" >&2; exit 1; }
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null
fi
rm -rf "$RAW" && mkdir -p "$RAW"

SERVER_PID=
SERVER_URL=
# start NAME COMMAND...: starts a server on a free port and waits for its "listening on" line.
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
  echo "compare.sh: the server did not start: $*" >&2
  cat "$log" >&2
  exit 1
}
stop() {
  kill "$SERVER_PID" 2>/dev/null || true
  wait "$SERVER_PID" 2>/dev/null || true
  sleep 0.5 # let the kernel reap the sockets
}
# Post rate limits off, so every figure stays comparable (a build from before them has none).
NO_POST_LIMITS=()
if "$SERVER_BIN" serve --help 2>/dev/null | grep -q -- '--post-rate'; then NO_POST_LIMITS=(--post-rate 0); fi
rtchat() { start "$1" env RUST_LOG=warn "$SERVER_BIN" serve --listen 127.0.0.1:0 --no-tls --store memory "${NO_POST_LIMITS[@]}"; }
# The same server with --auth token (issue 15: tokens are checked per connection, never per
# message, so its fan-out should be within noise of --auth off). The bench's subscribers and
# posts carry a token named `bench`.
AUTH_SECRET=$(mktemp)
trap 'rm -f "$AUTH_SECRET"' EXIT
head -c 48 /dev/urandom | base64 >"$AUTH_SECRET"
BENCH_TOKEN=$("$BIN" token --jwt-secret-file "$AUTH_SECRET" --user bench --name bench --ttl 24h)
rtchat_auth() { start "$1" env RUST_LOG=warn "$SERVER_BIN" serve --listen 127.0.0.1:0 --no-tls --store memory "${NO_POST_LIMITS[@]}" --auth token --jwt-secret-file "$AUTH_SECRET"; }
node_peer() { start "$1" env PORT=0 node "bench/peers/$2"; }
# bench FILE LABEL ARGS...: one measurement of the running server, JSON to RAW/FILE.json.
bench() {
  local file=$1 label=$2
  shift 2
  echo "-- $label: $*"
  "$BIN" bench "$@" --url "$SERVER_URL" --server-pid "$SERVER_PID" --label "$label" --json -q \
    --timeout 180 >"$RAW/$file.json" || true
  jq -r '"   delivered \(.delivered_fraction // "-") p99 \(.latency.p99_ms // "-") ms deliveries/s \(.deliveries_per_sec // "-" | tostring | .[0:8]) per-CPU-s \(if .resources.server_cpu_s then (.delivered / .resources.server_cpu_s | floor) else "-" end) per-conn \(.per_connection_kib // "-") KiB errors \(.errors) load \(.run_info.machine.loadavg_start[0] // "-")→\(.run_info.machine.loadavg_end[0] // "-")"' "$RAW/$file.json" || true
}
# rtchat runs with --general: the course's room and paths, like the Node peers and the earlier results
# (the bench otherwise uses a room of its own).
FANOUT=(fanout -n "$SUBSCRIBERS" -m "$MESSAGES" -r "$RATE")
SATURATE=(fanout -n "$SUBSCRIBERS" -m "$SAT_MESSAGES" -r "$SAT_RATE" --drain 30)
# wrk_poll FILE LABEL: seeds the same 50 messages, then wrk -t2 -c100 on GET /poll.
wrk_poll() {
  for i in $(seq 50); do
    curl -s -o /dev/null -H 'content-type: application/json' \
      -d "{\"user\":\"bench\",\"text\":\"seed message number $i\"}" "$SERVER_URL/poll"
  done
  echo "-- $2: wrk -t2 -c100 -d${WRK_SECONDS}s $SERVER_URL/poll"
  local rps
  rps=$(wrk -t2 -c100 -d"${WRK_SECONDS}s" "$SERVER_URL/poll" | awk '/Requests\/sec/ {print $2}')
  echo "   requests/s $rps"
  printf '{"kind":"wrk","label":"%s","requests_per_sec":%s}\n' "$2" "${rps:-0}" >"$RAW/$1.json"
}

for round in $(seq "$ROUNDS"); do
  echo "== round $round of $ROUNDS"
  # Like for like: each protocol on rtchat and on the Node peer that speaks it, back to back.
  # Snapshots: the course's WebSocket `json` and Socket.IO `msg:get` (every message sends the
  # newest 50, ~5 KB). Deltas: rtchat.v1 `msg` frames and Socket.IO `msg:new` (one message
  # each). The delta runs use --general (the peers have only the room general).
  rtchat rt; bench "ws-rtchat-$round" "rtchat ws (json snapshots)" "${FANOUT[@]}" -t ws-json; stop
  node_peer nws ws-server.mjs; bench "ws-node-$round" "node ws (json snapshots)" "${FANOUT[@]}" -t ws-json; stop
  node_peer nws ws-server.mjs; bench "wsv1-node-$round" "node ws (rtchat.v1 deltas)" "${FANOUT[@]}" -t ws --general; stop
  rtchat rt; bench "wsv1-rtchat-$round" "rtchat ws (rtchat.v1 deltas)" "${FANOUT[@]}" -t ws --general; stop
  rtchat rt; bench "sio-rtchat-$round" "rtchat socket.io (msg:get)" "${FANOUT[@]}" -t socketio-snapshots; stop
  node_peer nsio socketio-server.mjs; bench "sio-node-$round" "node socket.io (msg:get)" "${FANOUT[@]}" -t socketio-snapshots; stop
  node_peer nsio socketio-server.mjs; bench "siodelta-node-$round" "node socket.io (msg:new deltas)" "${FANOUT[@]}" -t socketio --general; stop
  rtchat rt; bench "siodelta-rtchat-$round" "rtchat socket.io (msg:new deltas)" "${FANOUT[@]}" -t socketio --general; stop
  rtchat rt; bench "msgs-rtchat-$round" "rtchat /msgs (HTTP/1.1)" "${FANOUT[@]}" -t stream --general; stop
  # --auth token against --auth off (wsv1-rtchat above), the same delta fan-out.
  rtchat_auth rt; bench "auth-wsv1-rtchat-$round" "rtchat ws (rtchat.v1 deltas), --auth token" "${FANOUT[@]}" -t ws --general --token "$BENCH_TOKEN"; stop

  # Saturation: the same fan-out offered at SAT_RATE, for sustained deliveries per second.
  node_peer nws ws-server.mjs; bench "sat-ws-node-$round" "node ws (json snapshots), saturated" "${SATURATE[@]}" -t ws-json; stop
  rtchat rt; bench "sat-ws-rtchat-$round" "rtchat ws (json snapshots), saturated" "${SATURATE[@]}" -t ws-json; stop
  rtchat rt; bench "sat-wsv1-rtchat-$round" "rtchat ws (rtchat.v1 deltas), saturated" "${SATURATE[@]}" -t ws --general; stop
  node_peer nws ws-server.mjs; bench "sat-wsv1-node-$round" "node ws (rtchat.v1 deltas), saturated" "${SATURATE[@]}" -t ws --general; stop
  node_peer nsio socketio-server.mjs; bench "sat-sio-node-$round" "node socket.io (msg:get), saturated" "${SATURATE[@]}" -t socketio-snapshots; stop
  rtchat rt; bench "sat-sio-rtchat-$round" "rtchat socket.io (msg:get), saturated" "${SATURATE[@]}" -t socketio-snapshots; stop
  rtchat rt; bench "sat-siodelta-rtchat-$round" "rtchat socket.io (msg:new deltas), saturated" "${SATURATE[@]}" -t socketio --general; stop
  node_peer nsio socketio-server.mjs; bench "sat-siodelta-node-$round" "node socket.io (msg:new deltas), saturated" "${SATURATE[@]}" -t socketio --general; stop
  rtchat_auth rt; bench "sat-auth-wsv1-rtchat-$round" "rtchat ws (rtchat.v1 deltas), --auth token, saturated" "${SATURATE[@]}" -t ws --general --token "$BENCH_TOKEN"; stop

  # Result names (idle-ws, idle-poll...) stay those of earlier runs; the transports are the
  # same as before the names were unified (ws = the course's json, poll = parked long polls).
  for t in ws poll msgs sse socketio; do
    case $t in
      ws) tt=ws-json ;; poll) tt=longpoll ;; msgs) tt=stream ;; socketio) tt=socketio-snapshots ;; *) tt=$t ;;
    esac
    rtchat rt; bench "idle-$t-rtchat-$round" "rtchat $t" idle -n "$IDLE" -t "$tt" --general; stop
    case $t in
      ws) node_peer nws ws-server.mjs; bench "idle-ws-node-$round" "node ws" idle -n "$IDLE" -t ws-json; stop ;;
      socketio) node_peer nsio socketio-server.mjs; bench "idle-socketio-node-$round" "node socket.io" idle -n "$IDLE" -t socketio-snapshots; stop ;;
    esac
  done

  rtchat rt; wrk_poll "wrk-rtchat-$round" "rtchat GET /poll"; stop
  node_peer nexp express-poll.mjs; wrk_poll "wrk-express-$round" "express GET /poll"; stop
done

"$BIN" bench plot --out "$OUT/fanout-latency.svg" \
  --title "Fan-out, $SUBSCRIBERS subscribers, $RATE msg/s (round 1)" "$RAW"/{ws,wsv1,sio,siodelta,msgs}-*-1.json
python3 bench/table.py "$RAW" "$ROUNDS" >"$OUT/compare.md"
{
  echo
  echo "Machine: $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), $(free -g | awk '/Mem:/ {print $2}') GiB, $(uname -sr); node $(node --version); $(wrk --version 2>&1 | head -1 | cut -d' ' -f1-2)."
  echo "Build: rtchat $(jq -r '.run_info.rtchat_version + " (commit " + .run_info.git_commit + ")"' "$RAW/ws-rtchat-1.json" 2>/dev/null || echo unknown); every run's JSON in $RAW records its server's command line and the load average at its start and end."
  echo "Command: bench/compare.sh $ROUNDS (SUBSCRIBERS=$SUBSCRIBERS MESSAGES=$MESSAGES RATE=$RATE SAT_MESSAGES=$SAT_MESSAGES SAT_RATE=$SAT_RATE IDLE=$IDLE WRK_SECONDS=$WRK_SECONDS)"
} >>"$OUT/compare.md"
cat "$OUT/compare.md"
