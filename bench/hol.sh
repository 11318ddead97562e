#!/usr/bin/env bash
# Head-of-line blocking measured: HTTP/2 against HTTP/3 through a lossy 50 ms network that
# this script builds itself (network namespaces; root only; not part of CI).
#
#   client ns  --veth--  router ns  --veth--  server ns
#   rtchat bench hol     TUN relay (+25 ms each way)    rtchat serve --history 1
#                        nftables: numgen random mod 100 < LOSS drop
#
# The veths have MTU 1500 and segmentation offloads off (TSO, GSO, GRO, UDP GSO), so a TCP
# segment and a QUIC datagram are each one packet of at most 1500 bytes and a drop costs
# both protocols the same. The delay comes from bench/delay_relay.py on a TUN device in the
# router namespace (the kernel's netem qdisc is not available here); loss from nftables on
# the packets leaving that TUN (once per packet and direction). For each loss rate, one
# HTTP/2 connection and then one HTTP/3 connection carry STREAMS `/msgs` streams while
# MESSAGES messages are posted at RATE per second; `rtchat bench hol` records the latency of
# every delivery (from the message's store time on the server to its line on the stream).
#
# Usage: sudo bench/hol.sh [OUT_DIR]       (default bench/results/hol)
# Env:   RTCHAT (binary, default target/release/rtchat), LOSSES ("0 1 2 5"), STREAMS (20),
#        MESSAGES (600), RATE (20), DELAY_MS (25, one way), CCS ("bbr reno": congestion
#        control, the same for TCP, via the namespaces' sysctl, and for QUIC, via
#        --h3-congestion (reno is NewReno there); comparing CUBIC-QUIC against BBR-TCP would
#        measure the controllers. A namespace may only pick what the host's
#        net.ipv4.tcp_allowed_congestion_control lists; this script does not change it)
# Writes OUT_DIR/hol-CC-{h2,h3}-LOSS.json, OUT_DIR/hol-CC.svg and OUT_DIR/hol-CC.md (tables).
# Everything it creates (namespaces, processes, temporary files) is removed on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

OUT="${1:-bench/results/hol}"
RTCHAT="${RTCHAT:-target/release/rtchat}"
LOSSES="${LOSSES:-0 1 2 5}"
STREAMS="${STREAMS:-20}"
MESSAGES="${MESSAGES:-600}"
RATE="${RATE:-20}"
DELAY_MS="${DELAY_MS:-25}"
CCS="${CCS:-bbr reno}"

if [ "$(id -u)" != 0 ]; then
  echo "hol.sh: run as root (it creates network namespaces)" >&2
  exit 1
fi
for tool in ip nft ethtool python3; do
  command -v "$tool" >/dev/null || { echo "hol.sh: needs $tool (apt-get install iproute2 nftables ethtool python3)" >&2; exit 1; }
done
[ -x "$RTCHAT" ] || { echo "hol.sh: no $RTCHAT (cargo build --release)" >&2; exit 1; }
RTCHAT="$(realpath "$RTCHAT")"
mkdir -p "$OUT"

TAG="rtchol$$"
C="$TAG-c"; R="$TAG-r"; S="$TAG-s"
WORK="$(mktemp -d)"
PIDS=()
cleanup() {
  set +e
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; done
  # Anything else still running inside our namespaces (they live on while it does).
  for ns in "$C" "$R" "$S"; do
    pids=$(ip netns pids "$ns" 2>/dev/null)
    [ -n "$pids" ] && kill $pids 2>/dev/null
  done
  for ns in "$C" "$R" "$S"; do ip netns del "$ns" 2>/dev/null; done
  rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

nsx() { local ns=$1; shift; ip netns exec "$ns" "$@"; }

for ns in "$C" "$R" "$S"; do
  ip netns add "$ns"
  nsx "$ns" ip link set lo up
done
ip link add c0 netns "$C" type veth peer name r1 netns "$R"
ip link add s0 netns "$S" type veth peer name r2 netns "$R"
setup_link() {
  local ns=$1 dev=$2 addr=$3
  nsx "$ns" ip link set "$dev" mtu 1500
  for feature in tso gso gro tx-udp-segmentation; do
    nsx "$ns" ethtool -K "$dev" "$feature" off 2>/dev/null || true
  done
  nsx "$ns" ip addr add "$addr" dev "$dev"
  nsx "$ns" ip link set "$dev" up
}
setup_link "$C" c0 10.213.1.2/24
setup_link "$R" r1 10.213.1.1/24
setup_link "$R" r2 10.213.2.1/24
setup_link "$S" s0 10.213.2.2/24
nsx "$C" ip route add default via 10.213.1.1
nsx "$S" ip route add default via 10.213.2.1

# The router: everything arriving on a veth goes into the TUN, where the relay holds it for
# DELAY_MS and writes it back; from the TUN the main table routes it to the other side.
nsx "$R" sysctl -qw net.ipv4.ip_forward=1
for key in all default r1 r2; do nsx "$R" sysctl -qw "net.ipv4.conf.$key.rp_filter=0"; done
nsx "$R" ip tuntap add dev dly mode tun
nsx "$R" sysctl -qw net.ipv4.conf.dly.rp_filter=0
nsx "$R" ip link set dly mtu 1500 up
nsx "$R" ip route add default dev dly table 100
nsx "$R" ip rule add iif r1 lookup 100 priority 100
nsx "$R" ip rule add iif r2 lookup 100 priority 101
# (ip netns exec execs the command, so $! is the process itself.)
ip netns exec "$R" nice -n -10 python3 bench/delay_relay.py dly "$DELAY_MS" >"$WORK/relay.log" 2>&1 &
PIDS+=($!)
nsx "$R" nft -f - <<NFT
table inet hol {
  chain forward {
    type filter hook forward priority 0; policy accept;
  }
}
NFT
set_loss() {
  nsx "$R" nft flush chain inet hol forward
  if [ "$1" != 0 ]; then
    nsx "$R" nft add rule inet hol forward iifname "dly" numgen random mod 100 "<" "$1" drop
  fi
}

start_server() {
  ip netns exec "$S" env RUST_LOG=warn "$RTCHAT" serve --listen 10.213.2.2:8080 --tls-listen 10.213.2.2:8443 \
    --store memory --history 1 --data-dir "$WORK/data" --h3-congestion "$1" \
    >"$WORK/server.out" 2>"$WORK/server.log" &
  SERVER=$!
  PIDS+=("$SERVER")
  for _ in $(seq 100); do grep -q "udp://" "$WORK/server.out" 2>/dev/null && break; sleep 0.1; done
  grep -q "udp://" "$WORK/server.out" || { echo "hol.sh: the server did not start:" >&2; cat "$WORK/server.log" >&2; exit 1; }
}

for cc in $CCS; do
  # The same congestion control on both sides of the comparison: the kernel's for TCP (in
  # each namespace), rtchat's --h3-congestion for QUIC.
  for ns in "$C" "$S"; do
    nsx "$ns" sysctl -qw "net.ipv4.tcp_congestion_control=$cc" || {
      echo "hol.sh: TCP congestion control $cc is not allowed here (net.ipv4.tcp_allowed_congestion_control: $(sysctl -n net.ipv4.tcp_allowed_congestion_control)); set CCS" >&2
      exit 1
    }
  done
  case "$cc" in reno) quic_cc=newreno ;; *) quic_cc=$cc ;; esac
  start_server "$quic_cc"
  if [ -z "${rtt:-}" ]; then
    # The round trip, from TCP handshakes (SYN to SYN-ACK) to the server.
    set_loss 0
    rtt=$(nsx "$C" python3 -c '
import socket, time
best = []
for _ in range(5):
    t = time.monotonic()
    socket.create_connection(("10.213.2.2", 8080), timeout=5).close()
    best.append((time.monotonic() - t) * 1000)
print("%.1f" % min(best))')
    echo "hol.sh: network up; RTT ${rtt} ms (want about $((2 * DELAY_MS)))"
  fi
  for loss in $LOSSES; do
    set_loss "$loss"
    for proto in h2 h3; do
      flag=(); [ "$proto" = h3 ] && flag=(--http3)
      label="$([ "$proto" = h3 ] && echo HTTP/3 || echo HTTP/2), ${loss}% loss, $cc"
      nsx "$C" "$RTCHAT" bench hol --url https://10.213.2.2:8443 --post-url http://10.213.2.2:8080 \
        --streams "$STREAMS" --messages "$MESSAGES" --rate "$RATE" --insecure --json \
        --label "$label" "${flag[@]}" >"$OUT/hol-$cc-$proto-$loss.json"
      python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print("hol.sh: %-28s delivered %d/%d  p50 %.1f ms  p99 %.1f ms  max %.1f ms  late %.2f %%" % (r["label"], r["delivered"], r["expected"], r["p50_ms"], r["p99_ms"], r["max_ms"], 100 * r["late_fraction"]))' "$OUT/hol-$cc-$proto-$loss.json"
    done
  done
  set_loss 0
  kill "$SERVER"; wait "$SERVER" 2>/dev/null || true
done

for cc in $CCS; do
  python3 bench/hol_plot.py "$OUT" --cc "$cc" --rtt "$rtt" --streams "$STREAMS" --messages "$MESSAGES" --rate "$RATE"
done
echo "hol.sh: wrote $OUT/hol-CC.md and $OUT/hol-CC.svg for CC in $CCS"
