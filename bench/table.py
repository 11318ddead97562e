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


def row(scenario, rtchat, peer, times, target, oks):
    """One headline row; `oks` None: no target (verdict "-")."""
    v = "-" if oks is None else verdict(oks)
    rows.append(f"| {scenario} | {rtchat} | {peer} | {times} | {target} | {v} |")


all_delivered = lambda d: d is not None and d["delivered_fraction"] >= 0.99999 and not d["timed_out"]


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


def kernel_share(d):
    """The share of the server's CPU spent in the kernel (system time), or None."""
    r = d["resources"]
    return r["server_system_cpu_s"] / r["server_cpu_s"] if r.get("server_system_cpu_s") is not None and r.get("server_cpu_s") else None


def wire_per_delivery(d):
    """Bytes the subscribers read from their WebSockets per delivery (frames as sent)."""
    w = d["resources"].get("ws_wire_bytes")
    return w / d["delivered"] if w and d["delivered"] else None


x_fmt = lambda v: f"{v:.1f}×"
first = lambda runs: next((d for d in runs if d is not None), None)

# The like-for-like pairs: (name in the raw files, what, the saturated deliveries/s target,
# the steady target on rtchat's latency).
PAIRS = [
    ("ws", "WebSocket, course `json` snapshots", 10, 20),
    ("wsv1", "WebSocket, `rtchat.v1` deltas", 10, None),
    ("sio", "Socket.IO, course `msg:get` snapshots", 3, 50),
    ("siodelta", "Socket.IO, `msg:new` deltas", 3, None),
]
steady = {k: (per_round(f"{k}-rtchat"), per_round(f"{k}-node")) for k, *_ in PAIRS}
sat = {k: (per_round(f"sat-{k}-rtchat"), per_round(f"sat-{k}-node")) for k, *_ in PAIRS}
msgs = per_round("msgs-rtchat")
some = first(steady["ws"][0]) or first(msgs)
rate = f"{some['rate']:g}" if some else "RATE"

for key, what, times, p99_limit in PAIRS:
    rt, node = steady[key]
    # At a steady rate every server that keeps up delivers RATE × SUBSCRIBERS per second: the
    # figure that tells them apart is the CPU each delivery costs.
    if p99_limit is None:
        target, oks = "(no target)", None
    else:
        target = f"all delivered, p99 ≤ {p99_limit} ms"
        oks = [all_delivered(d) and d["latency"]["p99_ms"] <= p99_limit for d in rt]
    row(f"{what}, steady {rate} msg/s: delivered, p99, deliveries per server CPU-s",
        f"{fmt(rt, pct)}, {fmt(rt, p99)}, {fmt(rt, dcpu)}",
        f"{fmt(node, pct)}, {fmt(node, p99)}, {fmt(node, dcpu)}",
        f"per CPU-s {fmt(cpu_ratio(rt, node), x_fmt)}", target, oks)
    srt, snode = sat[key]
    rs = ratio(srt, snode, "deliveries_per_sec")
    row(f"{what}, saturated: deliveries/s (per server CPU-s)",
        f"{fmt(srt, dps)} ({fmt(srt, dcpu)})", f"{fmt(snode, dps)} ({fmt(snode, dcpu)})",
        f"{fmt(rs, x_fmt)} (per CPU-s {fmt(cpu_ratio(srt, snode), x_fmt)})",
        f"≥ {times}×", [x is not None and x >= times for x in rs])

# --auth token against --auth off: rtchat against itself, the same delta fan-out.
auth, sauth = per_round("auth-wsv1-rtchat"), per_round("sat-auth-wsv1-rtchat")
if any(d is not None for d in auth + sauth):
    off, soff = steady["wsv1"][0], sat["wsv1"][0]
    rows.append(f"| `--auth token` vs `--auth off` (rtchat against itself), `rtchat.v1` deltas, steady {rate} msg/s: delivered, p99, deliveries per server CPU-s | "
                f"{fmt(auth, pct)}, {fmt(auth, p99)}, {fmt(auth, dcpu)} | off: {fmt(off, pct)}, {fmt(off, p99)}, {fmt(off, dcpu)} | "
                f"per CPU-s {fmt(cpu_ratio(auth, off), x_fmt)} | within noise | - |")
    rs = ratio(sauth, soff, "deliveries_per_sec")
    rows.append(f"| `--auth token` vs `--auth off`, `rtchat.v1` deltas, saturated: deliveries/s (per server CPU-s) | "
                f"{fmt(sauth, dps)} ({fmt(sauth, dcpu)}) | off: {fmt(soff, dps)} ({fmt(soff, dcpu)}) | "
                f"{fmt(rs, x_fmt)} (per CPU-s {fmt(cpu_ratio(sauth, soff), x_fmt)}) | within noise | - |")

# The old headline, kept for comparison only: it compared two different protocols.
srt, snode = sat["wsv1"][0], sat["ws"][1]
rs = ratio(srt, snode, "deliveries_per_sec")
rows.append(f"| (for comparison, not like for like) WebSocket, saturated: rtchat `rtchat.v1` deltas vs Node `ws` `json` snapshots | "
            f"{fmt(srt, dps)} | {fmt(snode, dps)} | {fmt(rs, x_fmt)} | - | - |")
rss = lambda d: f"{d['resources']['server_rss_kib'] / 1024:.0f} MiB"
row(f"{first(msgs)['subscribers'] if first(msgs) else '?':,} `/msgs` streams (HTTP/1.1): delivered, p99, server RSS",
    f"{fmt(msgs, pct)}, {fmt(msgs, p99)}, {fmt(msgs, rss)}", "-", "-",
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
    line = f"| Idle memory per connection, {name} ({rt[0]['connections'] if rt[0] else '?':,} open) | {fmt(rt, kib)} | {fmt(pe, kib) if peer else '-'} | - | {target} | "
    rows.append(line + ("-" if oks is None else verdict(oks)) + " |")
wr, we = per_round("wrk-rtchat"), per_round("wrk-express")
rs = ratio(wr, we, "requests_per_sec")
rq = lambda d: f"{d['requests_per_sec']:,.0f} req/s"
row("`GET /poll`, `wrk -t2 -c100`", fmt(wr, rq), f"Express {fmt(we, rq)}", fmt(rs, x_fmt),
    "≥ 15×", [x is not None and x >= 15 for x in rs])

print("Each cell lists round 1 / round 2 / ... (rtchat and the peer back to back in each round). "
      "Targets are judged round by round: met only when every round meets them.\n")
print("| scenario | rtchat | Node peer | rtchat ÷ Node | target | |")
print("| --- | --- | --- | --- | --- | --- |")
print("\n".join(rows))


def spread(values, f):
    vs = [v for v in values if v is not None]
    if not vs:
        return "-"
    lo, hi = f(min(vs)), f(max(vs))
    return lo if lo == hi else f"{lo}–{hi}"


# Where the kernel, not rtchat, is the limit: the steady snapshot runs, where every delivery
# copies the whole history into a socket buffer.
pc = lambda v: f"{100 * v:.0f}%"
kb = lambda v: f"{v / 1000:.1f} KB"
b = lambda v: f"{v:.0f} B"
snap = [d for k in ("ws", "sio") for side in steady[k] for d in side if d is not None]
delta = [d for k in ("wsv1", "siodelta") for side in steady[k] for d in side if d is not None]
if snap and delta:
    def share(runs, who):
        return spread([kernel_share(d) for d in runs if d["label"].startswith(who)], pc)
    snap_ratio = spread([x for k in ("ws", "sio") for x in cpu_ratio(*steady[k])], x_fmt)
    delta_ratio = spread([x for k in ("wsv1", "siodelta") for x in cpu_ratio(*steady[k])], x_fmt)
    print(f"\n**Snapshots against deltas, at a steady {rate} msg/s to {some['subscribers']:,} subscribers.** A "
          f"snapshot delivery puts {spread([wire_per_delivery(d) for d in snap], kb)} on the wire (the newest "
          f"messages, up to the history), a delta {spread([wire_per_delivery(d) for d in delta], b)}. The kernel "
          f"(system time: copies into socket buffers, loopback TCP) takes {share(snap, 'rtchat')} of rtchat's CPU and "
          f"{share(snap, 'node')} of Node's in the snapshot runs, {share(delta, 'rtchat')} and {share(delta, 'node')} "
          f"with deltas; rtchat's deliveries per CPU-second are {snap_ratio} Node's with snapshots, {delta_ratio} "
          f"with deltas.")

print("\nEvery fan-out run (the saturated ones are offered SAT_RATE messages per second):\n")
print("| run | round | delivered | p50 | p99 | max | deliveries/s | per server CPU-s | server CPU | in the kernel | wire bytes per delivery | server RSS | bench CPU | load avg start → end |")
print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
names = [f"{k}-{side}" for k, *_ in PAIRS for side in ("rtchat", "node")] + ["msgs-rtchat", "auth-wsv1-rtchat"]
names += [f"sat-{n}" for n in names if not n.startswith("msgs")]
for name in names:
    for r, d in enumerate(per_round(name), 1):
        if d is None:
            continue
        lat, res = d["latency"], d["resources"]
        cpu = lambda v: "-" if v is None else f"{v:.0f}%"
        k = kernel_share(d)
        w = wire_per_delivery(d)
        m = d.get("run_info", {}).get("machine", {})
        la = lambda l: "?" if not l else f"{l[0]:.2f}"
        print(f"| {d['label']} | {r} | {pct(d)}{' (timed out)' if d['timed_out'] else ''} | {lat['p50_ms']:.1f} ms | "
              f"{lat['p99_ms']:.1f} ms | {lat['max_ms']:.0f} ms | {d['deliveries_per_sec']:,.0f} | {dcpu(d)} | "
              f"{cpu(res.get('server_cpu_percent'))} | {'-' if k is None else pc(k)} | {'-' if w is None else f'{w:,.0f} B'} | "
              f"{(res.get('server_rss_kib') or 0) / 1024:.0f} MiB | "
              f"{cpu(res.get('bench_cpu_percent'))} | {la(m.get('loadavg_start'))} → {la(m.get('loadavg_end'))} |")
