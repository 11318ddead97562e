#!/usr/bin/env python3
"""Opens N idle connections of one kind to an rtchat server and prints the server's RSS per
connection (from /proc/PID/status): the closing-note figures until `rtchat bench idle` exists.

usage: bench/idle_conns.py PID PORT KIND [N]
  KIND: poll (parked long polls), ws (idle WebSockets), msgs (/msgs streams), sse (/events)
"""
import asyncio
import json
import sys
import urllib.request

REQUESTS = {
    "poll": "GET /poll?since={last}&timeout=300 HTTP/1.1\r\nHost: x\r\n\r\n",
    "ws": ("GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
           "Sec-WebSocket-Protocol: rtchat.v1\r\n\r\n"),
    "msgs": "GET /msgs HTTP/1.1\r\nHost: x\r\n\r\n",
    "sse": "GET /events HTTP/1.1\r\nHost: x\r\n\r\n",
}


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


async def hold(port, request, opened, release):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request.encode())
    await writer.drain()
    opened.append(1)
    await release.wait()
    writer.close()


def stats(base):
    return json.load(urllib.request.urlopen(base + "/stats"))


async def main():
    pid, port, kind = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    n = int(sys.argv[4]) if len(sys.argv) > 4 else 10_000
    base = f"http://127.0.0.1:{port}"
    first = stats(base)
    request = REQUESTS[kind].format(last=first["last_id"])
    field = "parked_polls" if kind == "poll" else "subscribers"
    before_count = first[field]
    before = rss_kib(pid)
    opened, release = [], asyncio.Event()
    tasks = []
    for i in range(n):
        tasks.append(asyncio.create_task(hold(port, request, opened, release)))
        if i % 500 == 499:
            await asyncio.sleep(0)
    while stats(base)[field] < before_count + n:
        await asyncio.sleep(0.2)
    await asyncio.sleep(1)
    during = rss_kib(pid)
    print(f"kind={kind} connections={n} rss_before_kib={before} rss_with_kib={during} "
          f"per_connection_kib={(during - before) / n:.2f}")
    release.set()
    await asyncio.gather(*tasks, return_exceptions=True)


if __name__ == "__main__":
    asyncio.run(main())
