#!/usr/bin/env python3
"""The table and the plot of bench/hol.sh: reads DIR/hol-CC-{h2,h3}-LOSS.json, writes
DIR/hol-CC.md (a Markdown table for the README) and DIR/hol-CC.svg (p50 and p99 per loss rate,
HTTP/2 beside HTTP/3). Plain SVG, no plotting library.

Usage: hol_plot.py DIR [--cc cubic|bbr] [--rtt MS] [--streams N] [--messages N] [--rate R]
"""

import argparse
import glob
import json
import os
import re


def load(directory, cc):
    runs = {}
    for path in glob.glob(os.path.join(directory, f"hol-{cc}-*-*.json")):
        m = re.match(rf"hol-{cc}-(h2|h3)-(\d+)\.json$", os.path.basename(path))
        if m:
            with open(path) as f:
                runs[(m.group(1), int(m.group(2)))] = json.load(f)
    return runs


def table(runs, losses, note):
    lines = [
        "| loss | HTTP/2 p50 | HTTP/2 p99 | HTTP/2 max | HTTP/3 p50 | HTTP/3 p99 | HTTP/3 max | HTTP/3 p99 ÷ HTTP/2 p99 | late (h2 / h3) | deliveries (h2 / h3) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for loss in losses:
        h2, h3 = runs.get(("h2", loss)), runs.get(("h3", loss))
        cell = lambda r, k: f"{r[k]:.1f} ms" if r else "-"
        ratio = f"{h3['p99_ms'] / h2['p99_ms']:.2f}" if h2 and h3 and h2["p99_ms"] > 0 else "-"
        count = lambda r: f"{r['delivered']:,}/{r['expected']:,}" if r else "-"
        late = lambda r: f"{100 * r['late_fraction']:.2f} %" if r else "-"
        lines.append(
            f"| {loss} % | {cell(h2, 'p50_ms')} | {cell(h2, 'p99_ms')} | {cell(h2, 'max_ms')} "
            f"| {cell(h3, 'p50_ms')} | {cell(h3, 'p99_ms')} | {cell(h3, 'max_ms')} | {ratio} "
            f"| {late(h2)} / {late(h3)} | {count(h2)} / {count(h3)} |"
        )
    any_run = next(iter(runs.values()), None)
    late_note = (f"; late: deliveries slower than {any_run['late_ms']:g} ms"
                 if any_run else "")
    return "\n".join(lines) + "\n\n" + note + late_note + "\n"


def svg(runs, losses, note):
    width, height = 760, 420
    left, right, top, bottom = 70, 20, 50, 70
    plot_w, plot_h = width - left - right, height - top - bottom
    top_value = max([r["p99_ms"] for r in runs.values()] + [1.0])
    # A round upper bound for the axis.
    step = 10 ** len(str(int(top_value))) / 10
    while top_value / step > 8:
        step *= 2
    axis_max = step * (int(top_value / step) + 1)
    y = lambda v: top + plot_h - v / axis_max * plot_h
    colors = {("h2", "p50"): "#9ecae1", ("h2", "p99"): "#3182bd",
              ("h3", "p50"): "#fdae6b", ("h3", "p99"): "#e6550d"}
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'font-family="sans-serif" font-size="12">',
           f'<rect width="{width}" height="{height}" fill="white"/>',
           f'<text x="{width / 2}" y="22" text-anchor="middle" font-size="15">'
           f'Delivery latency, 20 streams on one connection: HTTP/2 vs HTTP/3</text>',
           f'<text x="{width / 2}" y="40" text-anchor="middle" fill="#555">{note}</text>']
    v = 0.0
    while v <= axis_max + 1e-9:
        out.append(f'<line x1="{left}" x2="{width - right}" y1="{y(v):.1f}" y2="{y(v):.1f}" stroke="#ddd"/>')
        out.append(f'<text x="{left - 6}" y="{y(v) + 4:.1f}" text-anchor="end">{v:g}</text>')
        v += step
    out.append(f'<text x="16" y="{top + plot_h / 2}" transform="rotate(-90 16 {top + plot_h / 2})" '
               f'text-anchor="middle">milliseconds</text>')
    group_w = plot_w / max(len(losses), 1)
    bar_w = group_w / 6
    for i, loss in enumerate(losses):
        x0 = left + i * group_w + bar_w
        for j, (proto, q) in enumerate([("h2", "p50"), ("h2", "p99"), ("h3", "p50"), ("h3", "p99")]):
            r = runs.get((proto, loss))
            if not r:
                continue
            value = r[f"{q}_ms"]
            x = x0 + j * bar_w
            out.append(f'<rect x="{x:.1f}" y="{y(value):.1f}" width="{bar_w - 2:.1f}" '
                       f'height="{top + plot_h - y(value):.1f}" fill="{colors[(proto, q)]}"/>')
            out.append(f'<text x="{x + bar_w / 2 - 1:.1f}" y="{y(value) - 4:.1f}" text-anchor="middle" '
                       f'font-size="10">{value:.0f}</text>')
        out.append(f'<text x="{left + i * group_w + group_w / 2:.1f}" y="{top + plot_h + 18}" '
                   f'text-anchor="middle">{loss} % loss</text>')
    legend = [("h2", "p50", "HTTP/2 p50"), ("h2", "p99", "HTTP/2 p99"),
              ("h3", "p50", "HTTP/3 p50"), ("h3", "p99", "HTTP/3 p99")]
    for k, (proto, q, label) in enumerate(legend):
        lx = left + k * 150
        out.append(f'<rect x="{lx}" y="{height - 28}" width="14" height="14" fill="{colors[(proto, q)]}"/>')
        out.append(f'<text x="{lx + 20}" y="{height - 16}">{label}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("dir")
    parser.add_argument("--cc", default="cubic", help="congestion control of the runs")
    parser.add_argument("--rtt", default="50")
    parser.add_argument("--streams", default="20")
    parser.add_argument("--messages", default="?")
    parser.add_argument("--rate", default="?")
    args = parser.parse_args()
    runs = load(args.dir, args.cc)
    losses = sorted({loss for (_, loss) in runs})
    note = (f"{args.streams} /msgs streams on one connection, {args.messages} messages at "
            f"{args.rate}/s, RTT {args.rtt} ms, {args.cc}, MTU 1500, offloads off")
    with open(os.path.join(args.dir, f"hol-{args.cc}.md"), "w") as f:
        f.write(table(runs, losses, note))
    with open(os.path.join(args.dir, f"hol-{args.cc}.svg"), "w") as f:
        f.write(svg(runs, losses, note))
    print(table(runs, losses, note))


if __name__ == "__main__":
    main()
