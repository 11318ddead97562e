"""Sends one text message of SIZE bytes of "a" with Python's `websockets` and permessage-deflate
(so it travels as a few KiB that inflate to SIZE), then prints how the server closed:
{"code": N, "reason": "..."} (tests/ws_deflate.rs: a decompression bomb).

usage: ws_bomb.py URL SIZE
"""
import asyncio
import json
import sys

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed


async def main(url, size):
    async with connect(url, subprotocols=["rtchat.v1"], max_size=None, ping_interval=None) as ws:
        await ws.recv()  # history
        await ws.send("a" * size)
        try:
            while True:
                await ws.recv()
        except ConnectionClosed as e:
            rcvd = e.rcvd
            print(json.dumps({"code": rcvd.code if rcvd else None,
                              "reason": rcvd.reason if rcvd else None}), flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
