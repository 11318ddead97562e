#!/bin/bash
# usage: bench/rooms_cpu.sh [TRANSPORT=ws] [ROUNDS=3]  (BIN=path/to/rtchat; runs alternated)
# 1 room x 10 subscribers vs 1000 rooms x 10 subscribers, same total rate; server CPU per delivery.
T=${1:-ws}
BIN=${BIN:-target/release/rtchat}
for round in $(seq ${2:-3}); do
  for rooms in 1 1000; do
    n=$((rooms*10))
    d=$(mktemp -d)
    $BIN --listen 127.0.0.1:0 --no-tls --no-h3 --data-dir $d --post-rate 0 --max-connections-per-ip 0 > $d/out 2>/dev/null &
    pid=$!
    for i in $(seq 50); do grep -q listening $d/out && break; sleep 0.1; done
    url=$(grep -o 'http://[0-9.:]*' $d/out | head -1)
    $BIN bench fanout --url $url --server-pid $pid -t $T -n $n --rooms $rooms -m 3000 -r 200 --timeout 300 --json --quiet > $d/r.json 2>$d/err
    python3 - "$d/r.json" $rooms $T <<'PY'
import json,sys
r=json.load(open(sys.argv[1])); res=r["resources"]
cpu=res.get("server_cpu_s") or 0
print(f'{sys.argv[3]} rooms={sys.argv[2]:>5} subs={r["connected"]:>6} delivered={r["delivered"]:>6} frac={r["delivered_fraction"]:.3f} server_cpu={cpu:.3f}s per_delivery={cpu/max(r["delivered"],1)*1e6:.2f}us p50={r["latency"]["p50_ms"]}ms p99={r["latency"]["p99_ms"]}ms rss={res.get("server_rss_kib")}KiB')
PY
    kill $pid; wait $pid 2>/dev/null; rm -rf $d
  done
done
