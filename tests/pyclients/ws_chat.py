"""A chat client on Python's `websockets` (which offers permessage-deflate by default), for
tests/ws_deflate.rs. Connects, reads the first frame, posts one message, reads until its own
message comes back, and prints one JSON line: the negotiated extension header, the
subprotocol, the first message, and how many bytes arrived on the socket (the wire) against
the payload bytes they carried.

usage: ws_chat.py URL PROTOCOL TEXT [--no-deflate]
"""
import asyncio
import json
import sys

from websockets.asyncio.client import connect


async def main(url, protocol, text, deflate):
    async with connect(
        url,
        subprotocols=[protocol],
        compression="deflate" if deflate else None,
        max_size=None,
        ping_interval=None,
    ) as ws:
        wire = 0
        receive = ws.protocol.receive_data

        def counting(data):
            nonlocal wire
            wire += len(data)
            receive(data)

        ws.protocol.receive_data = counting
        first = json.loads(await ws.recv())
        payload = 0
        if protocol == "rtchat.v1":
            await ws.send(json.dumps({"type": "post", "user": "py", "text": text, "ref": 1}))
        else:
            await ws.send(json.dumps({"user": "py", "text": text}))
        seen = False
        while not seen:
            raw = await ws.recv()
            payload += len(raw.encode())
            frame = json.loads(raw)
            msgs = frame.get("msg")
            if isinstance(msgs, dict):
                msgs = [msgs]
            seen = any(m.get("text") == text for m in msgs or [])
        print(
            json.dumps(
                {
                    "extensions": ws.response.headers.get("Sec-WebSocket-Extensions"),
                    "subprotocol": ws.subprotocol,
                    "first_type": first.get("type"),
                    "first_count": len(first.get("msg", [])),
                    "wire_bytes": wire,  # frames after the first (connect reads that one)
                    "payload_bytes": payload,
                }
            ),
            flush=True,
        )


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    asyncio.run(main(args[0], args[1], args[2], "--no-deflate" not in sys.argv))
