#!/usr/bin/env python3
"""What idle rooms cost (issue 13's target: at most 2 KiB each in RSS beyond their messages).

usage: bench/rooms_idle.py [--rooms 10000] [--bin target/release/rtchat] [--store sqlite|memory]

Starts an rtchat (post limits off, a temporary data directory), reads its RSS, posts one
short message into each of N new rooms over one keep-alive HTTP connection
(`POST /rooms/idle-K/poll`), reads the RSS again at once (every room is still held in memory:
the worst case, before the 30 s sweep lets unused rooms go), then after the next sweep, and
prints the difference per room. `GET /rooms` must list all N (plus general).
"""
import argparse
import http.client
import json
import os
import subprocess
import sys
import tempfile
import time


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rooms", type=int, default=10_000)
    ap.add_argument("--bin", default="target/release/rtchat")
    ap.add_argument("--store", default="sqlite", choices=["sqlite", "memory"])
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as data:
        proc = subprocess.Popen(
            [args.bin, "--listen", "127.0.0.1:0", "--no-tls", "--data-dir", data,
             "--store", args.store, "--post-rate", "0", "--max-rooms", str(args.rooms + 10)],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env={**os.environ, "RUST_LOG": "warn"}, text=True)
        try:
            line = proc.stdout.readline()
            addr = line.strip().rsplit("http://", 1)[1]
            host, port = addr.rsplit(":", 1)
            conn = http.client.HTTPConnection(host, int(port))
            # Warm up the paths (first-use allocations are not the rooms' cost).
            for i in range(100):
                conn.request("POST", "/poll", json.dumps({"user": "w", "text": f"warm {i}"}),
                             {"Content-Type": "application/json"})
                conn.getresponse().read()
            time.sleep(1)
            before = rss_kib(proc.pid)
            started = time.time()
            for i in range(args.rooms):
                conn.request("POST", f"/rooms/idle-{i}/poll",
                             json.dumps({"user": "ann", "text": f"hello room {i}"}),
                             {"Content-Type": "application/json"})
                r = conn.getresponse()
                body = r.read()
                if r.status != 200:
                    sys.exit(f"POST /rooms/idle-{i}/poll: {r.status} {body!r}")
            took = time.time() - started
            held = rss_kib(proc.pid)
            conn.request("GET", "/rooms")
            rooms = json.loads(conn.getresponse().read())["rooms"]
            listed = sum(1 for r in rooms if r["name"].startswith("idle-"))
            if listed != args.rooms:
                sys.exit(f"GET /rooms lists {listed} of {args.rooms} rooms")
            conn.close()
            # The sweep runs every 30 s; wait past one.
            time.sleep(32)
            swept = rss_kib(proc.pid)
            per = lambda kib: kib * 1024 / args.rooms
            print(f"{args.rooms} rooms, one message each ({args.store}), posted in {took:.1f} s")
            print(f"RSS before {before} KiB, all rooms held {held} KiB (+{per(held - before):.0f} B per room), "
                  f"after the sweep {swept} KiB (+{per(swept - before):.0f} B per room)")
        finally:
            proc.terminate()
            proc.wait()


if __name__ == "__main__":
    main()
