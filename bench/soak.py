#!/usr/bin/env python3
"""Soak test (not in CI): one rtchat server under a mixed load for a long time; reports the
server's RSS over time and every message a subscriber did not get.

usage: bench/soak.py [--minutes 30] [--bin target/release/rtchat] [--out DIR]

The load, in rounds until the time is up, all transports at once: for each of longpoll,
stream, sse, ws, ws-json, socketio and socketio-snapshots, one `rtchat bench fanout` with 50
subscribers and a publisher posting 300 messages at 5 a second (every round opens and closes
350 connections, so leaks of per-connection state show), plus 200 idle WebSockets held for
the whole soak. Each fan-out reports its delivered fraction: a delta transport must deliver
100 %; the snapshot transports (stream, ws-json, socketio-snapshots) carry every message in
the next snapshots at this rate, so they must too. A post the server refused (with an error:
the bench's publishers do not wait for acknowledgements, so under a stall a Socket.IO
publisher can exceed the 64 posts a socket may have in flight) was never accepted; the
shortfall it explains (50 deliveries each, counted from /metrics) is reported apart, and
any other shortfall is printed as lost.

Output: OUT/rss.csv (seconds, RSS KiB, metrics' client count), OUT/rounds.jsonl (every
fan-out report) and a summary on stdout. The server runs with --store sqlite in a temporary
directory (the default store), post limits and the per-address connection cap off (every
client is 127.0.0.x), and --metrics-listen.
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

TRANSPORTS = ["longpoll", "stream", "sse", "ws", "ws-json", "socketio", "socketio-snapshots"]


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def metric_sum(metrics_url, name):
    """The sum of every sample of `name` (all label values), -1 if the server does not answer."""
    try:
        text = urllib.request.urlopen(metrics_url, timeout=5).read().decode()
    except OSError:
        return -1
    return sum(float(m.group(1)) for m in re.finditer(rf"^{name}(?:\{{[^}}]*\}})? (\S+)$", text, re.M))


def clients(metrics_url):
    return metric_sum(metrics_url, "rtchat_clients")


def start_server(binary, data_dir):
    proc = subprocess.Popen(
        [binary, "serve", "--listen", "127.0.0.1:0", "--no-tls", "--no-h3", "--data-dir", data_dir,
         "--post-rate", "0", "--max-connections-per-ip", "0", "--metrics-listen", "127.0.0.1:0",
         "--drain-delay", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env={**os.environ, "RUST_LOG": "warn"})
    url = metrics = None
    for line in proc.stdout:
        if line.startswith("rtchat listening on http://"):
            url = line.split("on ", 1)[1].strip()
        if line.startswith("rtchat metrics on "):
            metrics = line.split("on ", 1)[1].strip()
        if url and metrics:
            break
    if not (url and metrics):
        sys.exit("soak: the server did not start")
    threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()
    return proc, url, metrics


def fanout(binary, url, pid, transport, timeout):
    out = subprocess.run(
        [binary, "bench", "fanout", "--url", url, "--server-pid", str(pid), "-t", transport,
         "-n", "50", "-m", "300", "-r", "5", "--drain", "30", "--timeout", str(timeout),
         "--json", "--quiet"],
        capture_output=True, text=True)
    try:
        return json.loads(out.stdout)
    except json.JSONDecodeError:
        return {"transport": transport, "error": (out.stderr or out.stdout)[-300:]}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=30)
    ap.add_argument("--bin", default="target/release/rtchat")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    out = args.out or tempfile.mkdtemp(prefix="rtchat-soak-")
    os.makedirs(out, exist_ok=True)
    data = tempfile.mkdtemp(prefix="rtchat-soak-data-")
    proc, url, metrics = start_server(args.bin, data)
    print(f"soak: server {url} (pid {proc.pid}), metrics {metrics}, output in {out}", flush=True)
    idle = subprocess.Popen(
        [args.bin, "bench", "idle", "--url", url, "--server-pid", str(proc.pid), "-t", "ws",
         "-n", "200", "--settle", str(args.minutes * 60 + 60), "--timeout", str(args.minutes * 60 + 120),
         "--quiet"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    start = time.time()
    end = start + args.minutes * 60
    stop = threading.Event()
    samples = []

    def sample():
        with open(os.path.join(out, "rss.csv"), "w") as f:
            f.write("seconds,rss_kib,clients\n")
            while not stop.is_set():
                row = (round(time.time() - start), rss_kib(proc.pid), clients(metrics))
                samples.append(row)
                f.write("%d,%d,%g\n" % row)
                f.flush()
                stop.wait(10)

    sampler = threading.Thread(target=sample)
    sampler.start()
    lost, rounds, failures, refused_total = {}, 0, [], 0
    with open(os.path.join(out, "rounds.jsonl"), "w") as log:
        while time.time() < end:
            rounds += 1
            refused_before = metric_sum(metrics, "rtchat_posts_refused_total")
            results = [None] * len(TRANSPORTS)
            threads = [threading.Thread(target=lambda i=i, t=t: results.__setitem__(
                i, fanout(args.bin, url, proc.pid, t, 180))) for i, t in enumerate(TRANSPORTS)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            # Posts the server refused (and said so: a Socket.IO publisher that outruns a
            # stalled store gets "too many in flight") were never accepted: each explains 50
            # missing deliveries, which are not lost.
            refused = int(metric_sum(metrics, "rtchat_posts_refused_total") - refused_before)
            refused_total += refused
            explained = refused * 50
            for r in results:
                log.write(json.dumps(r) + "\n")
                log.flush()
                if "error" in r or r.get("errors", 0) or r.get("timed_out"):
                    failures.append((rounds, r.get("transport"), r.get("error") or r.get("first_error")))
                missing = r.get("expected", 0) - r.get("delivered", 0)
                covered = min(missing, explained) if missing > 0 else 0
                explained -= covered
                if missing - covered > 0:
                    lost[r["transport"]] = lost.get(r["transport"], 0) + missing - covered
            elapsed = (time.time() - start) / 60
            print(f"soak: round {rounds} done at {elapsed:.1f} min, RSS {rss_kib(proc.pid) / 1024:.1f} MiB, "
                  f"lost so far {sum(lost.values())}", flush=True)
    stop.set()
    sampler.join()
    idle.terminate()
    proc.terminate()
    proc.wait()
    rss = [s[1] for s in samples]
    print(f"\nsoak: {args.minutes:g} min, {rounds} rounds x {len(TRANSPORTS)} transports "
          f"({rounds * len(TRANSPORTS) * 300} messages posted, each to 50 subscribers) + 200 idle WebSockets")
    if rss:
        quarter = max(1, len(rss) // 4)
        print(f"RSS MiB: first {rss[0] / 1024:.1f}, min {min(rss) / 1024:.1f}, max {max(rss) / 1024:.1f}, "
              f"last {rss[-1] / 1024:.1f}; mean of the first quarter {sum(rss[:quarter]) / quarter / 1024:.1f}, "
              f"of the last quarter {sum(rss[-quarter:]) / quarter / 1024:.1f}")
    print(f"posts refused by the server (answered with an error, never accepted): {refused_total}")
    print("lost deliveries (not explained by refused posts): " + (", ".join(f"{t} {n}" for t, n in lost.items()) if lost else "none"))
    print("failed runs: " + ("; ".join(f"round {r} {t}: {e}" for r, t, e in failures) if failures else "none"))
    sys.exit(1 if lost or failures else 0)


if __name__ == "__main__":
    main()
