#!/usr/bin/env python3
"""Parks N long polls (GET /poll?since=LAST&timeout=T) on an rtchat server and prints the
server's RSS before and with them parked. Used for the closing-note figure of issue 2.

usage: bench/park_polls.py PID PORT [N]
"""
import asyncio
import json
import sys
import urllib.request


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


async def park(port, since, ready):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET /poll?since={since}&timeout=120 HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    await writer.drain()
    ready.append(1)
    await reader.read(1)  # parked until the server answers
    writer.close()


async def main():
    pid, port = int(sys.argv[1]), int(sys.argv[2])
    n = int(sys.argv[3]) if len(sys.argv) > 3 else 10_000
    base = f"http://127.0.0.1:{port}"
    last = json.load(urllib.request.urlopen(base + "/poll"))["last"]
    before = rss_kib(pid)
    ready = []
    tasks = [asyncio.create_task(park(port, last, ready)) for _ in range(n)]
    while True:
        stats = json.load(urllib.request.urlopen(base + "/stats"))
        if stats["parked_polls"] >= n:
            break
        await asyncio.sleep(0.2)
    await asyncio.sleep(1)
    during = rss_kib(pid)
    print(f"parked={n} rss_before_kib={before} rss_parked_kib={during} "
          f"per_poll_kib={(during - before) / n:.2f}")
    req = urllib.request.Request(base + "/poll", data=b'{"user":"bench","text":"wake"}',
                                 headers={"content-type": "application/json"})
    urllib.request.urlopen(req).read()
    await asyncio.gather(*tasks)


if __name__ == "__main__":
    asyncio.run(main())
