#!/usr/bin/env python3
"""Turns bench/compare.sh's raw JSON results into the markdown table of README's Performance
section. usage: bench/table.py RAW_DIR ROUNDS

Each target is judged round by round (rtchat and its peer ran back to back in one round); it
is met only when every round meets it.
"""
import json
import os
import sys

raw, rounds = sys.argv[1], int(sys.argv[2])


def load(name, r):
    path = os.path.join(raw, f"{name}-{r}.json")
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def per_round(name):
    return [load(name, r) for r in range(1, rounds + 1)]


def fmt(values, f):
    return " / ".join("-" if v is None else f(v) for v in values)


def pct(d):
    return f"{100 * d['delivered_fraction']:.1f}%"


def p99(d):
    return f"{d['latency']['p99_ms']:.1f} ms"


def dps(d):
    return f"{d['deliveries_per_sec']:,.0f}/s"


def ratio(a, b, key):
    return [None if x is None or y is None or not y.get(key) else x[key] / y[key] for x, y in zip(a, b)]


def verdict(oks):
    return "met" if oks and all(oks) else "**missed**"


rows = []


def row(scenario, rtchat, peer, target, oks):
    rows.append(f"| {scenario} | {rtchat} | {peer} | {target} | {verdict(oks)} |")


ws_rt, ws_node, wsv1 = per_round("ws-rtchat"), per_round("ws-node"), per_round("wsv1-rtchat")
sio_rt, sio_node, msgs = per_round("sio-rtchat"), per_round("sio-node"), per_round("msgs-rtchat")

all_delivered = lambda d: d is not None and d["delivered_fraction"] >= 0.99999 and not d["timed_out"]
row("WebSocket fan-out, course `json` snapshots: delivered, p99",
    f"{fmt(ws_rt, pct)}, {fmt(ws_rt, p99)}", f"{fmt(ws_node, pct)}, {fmt(ws_node, p99)}",
    "all delivered, p99 ≤ 20 ms",
    [all_delivered(d) and d["latency"]["p99_ms"] <= 20 for d in ws_rt])
sat = {k: per_round(f"sat-{k}") for k in ["ws-node", "ws-rtchat", "wsv1-rtchat", "sio-node", "sio-rtchat", "siodelta-rtchat"]}
have_sat = any(d is not None for d in sat["wsv1-rtchat"])


def per_cpu(d):
    """Deliveries per CPU-second of the server: the work each delivery costs."""
    cpu = d["resources"].get("server_cpu_s")
    return d["delivered"] / cpu if cpu else None


def dcpu(d):
    v = per_cpu(d)
    return "-" if v is None else f"{v:,.0f}/CPU-s"


def cpu_ratio(a, b):
    return [None if x is None or y is None or not per_cpu(x) or not per_cpu(y) else per_cpu(x) / per_cpu(y)
            for x, y in zip(a, b)]


x_fmt = lambda v: f"{v:.1f}×"
# The deliveries/s targets are judged on the saturation runs (at RATE every server that keeps up
# delivers RATE × SUBSCRIBERS per second, so the ratio would read 1.0×).
def throughput_row(what, rt, peer, times):
    """A deliveries/s target: rtchat's runs against the peer's, judged round by round."""
    rs = ratio(rt, peer, "deliveries_per_sec")
    row(f"{what}: deliveries/s (per server CPU-second)",
        f"{fmt(rt, dps)} ({fmt(rt, dcpu)})", f"{fmt(peer, dps)} ({fmt(peer, dcpu)})",
        f"≥ {times}× (measured {fmt(rs, x_fmt)}; per CPU-s {fmt(cpu_ratio(rt, peer), x_fmt)})",
        [x is not None and x >= times for x in rs])


saturated = ", saturated" if have_sat else ""
throughput_row(f"WebSocket fan-out{saturated}, rtchat.v1 deltas vs node `ws` snapshots",
               *((sat["wsv1-rtchat"], sat["ws-node"]) if have_sat else (wsv1, ws_node)), 10)
row("Socket.IO fan-out (`msg:get`): delivered, p99",
    f"{fmt(sio_rt, pct)}, {fmt(sio_rt, p99)}",
    f"{fmt(sio_node, pct)}, {fmt(sio_node, p99)}",
    "all delivered, p99 ≤ 50 ms",
    [all_delivered(d) and d["latency"]["p99_ms"] <= 50 for d in sio_rt])
snode = sat["sio-node"] if have_sat else sio_node
throughput_row(f"Socket.IO fan-out{saturated} (`msg:get`)",
               sat["sio-rtchat"] if have_sat else sio_rt, snode, 3)
if have_sat:
    rs = ratio(sat["siodelta-rtchat"], snode, "deliveries_per_sec")
    rows.append(f"| Socket.IO fan-out, saturated, rtchat `msg:new` deltas vs node `msg:get`: deliveries/s | "
                f"{fmt(sat['siodelta-rtchat'], dps)} ({fmt(sat['siodelta-rtchat'], dcpu)}) | {fmt(snode, dps)} | "
                f"(for comparison: {fmt(rs, x_fmt)}) | - |")
rss = lambda d: f"{d['resources']['server_rss_kib'] / 1024:.0f} MiB"
row("1,000 `/msgs` streams (HTTP/1.1): delivered, p99, server RSS",
    f"{fmt(msgs, pct)}, {fmt(msgs, p99)}, {fmt(msgs, rss)}", "-",
    "all delivered, p99 ≤ 50 ms, RSS < 100 MiB",
    [all_delivered(d) and d["latency"]["p99_ms"] <= 50 and d["resources"]["server_rss_kib"] < 100 * 1024 for d in msgs])
kib = lambda d: f"{d['per_connection_kib']:.1f} KiB"
for t, name, limit, peer in [("ws", "WebSocket", 2, "ws"), ("poll", "parked long poll", 4, None),
                             ("msgs", "`/msgs` stream", 8, None), ("sse", "SSE stream", None, None),
                             ("socketio", "Socket.IO", 8, "socketio")]:
    rt = per_round(f"idle-{t}-rtchat")
    pe = per_round(f"idle-{t}-node") if peer else [None] * rounds
    ok = [d is not None and d["connected"] == d["connections"] for d in rt]
    if limit is None:
        target, oks = "(no target)", None
    else:
        target = f"≤ {limit} KiB"
        oks = [o and d["per_connection_kib"] <= limit for o, d in zip(ok, rt)]
    line = f"| Idle memory per connection, {name} (10,000 open) | {fmt(rt, kib)} | {fmt(pe, kib) if peer else '-'} | {target} | "
    rows.append(line + ("-" if oks is None else verdict(oks)) + " |")
wr, we = per_round("wrk-rtchat"), per_round("wrk-express")
rs = ratio(wr, we, "requests_per_sec")
rq = lambda d: f"{d['requests_per_sec']:,.0f} req/s"
row("`GET /poll`, `wrk -t2 -c100`", fmt(wr, rq), f"Express {fmt(we, rq)}",
    f"≥ 15× (measured {fmt(rs, lambda x: f'{x:.1f}×')})", [x is not None and x >= 15 for x in rs])

print(f"Each cell lists round 1 / round 2 / ... (rtchat and the peer back to back in each round).\n")
print("| scenario | rtchat | Node peer | target | |")
print("| --- | --- | --- | --- | --- |")
print("\n".join(rows))

print("\nEvery fan-out run (1,000 subscribers; the saturated ones are offered SAT_RATE messages per second):\n")
print("| run | round | delivered | p50 | p99 | max | deliveries/s | per server CPU-s | server CPU | server RSS | bench CPU |")
print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
for name in ["ws-rtchat", "ws-node", "wsv1-rtchat", "sio-rtchat", "sio-node", "msgs-rtchat"] + [f"sat-{k}" for k in sat]:
    for r, d in enumerate(per_round(name), 1):
        if d is None:
            continue
        lat, res = d["latency"], d["resources"]
        cpu = lambda v: "-" if v is None else f"{v:.0f}%"
        print(f"| {d['label']} | {r} | {pct(d)}{' (timed out)' if d['timed_out'] else ''} | {lat['p50_ms']:.1f} ms | "
              f"{lat['p99_ms']:.1f} ms | {lat['max_ms']:.0f} ms | {d['deliveries_per_sec']:,.0f} | {dcpu(d)} | "
              f"{cpu(res.get('server_cpu_percent'))} | {(res.get('server_rss_kib') or 0) / 1024:.0f} MiB | "
              f"{cpu(res.get('bench_cpu_percent'))} |")
