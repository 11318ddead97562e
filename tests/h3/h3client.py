#!/usr/bin/env python3
"""An HTTP/3 client on aioquic, driven line by line: the independent client of tests/http3.rs.

Usage: h3client.py HOST PORT [--cafile PEM] [--server-name NAME] [--max-stream-data BYTES]

It opens ONE QUIC connection (ALPN h3) and then reads commands from stdin, one JSON object a
line, and writes what happens to stdout, one JSON object a line (flushed at once):

  {"op": "request", "id": 1, "method": "GET", "path": "/poll",
   "headers": [["accept", "text/plain"]], "body": "...", "end": true}
      -> {"id": 1, "event": "headers", "status": 200, "headers": [[name, value], ...]}
      -> {"id": 1, "event": "data", "data": "..."}            (each DATA chunk as it arrives)
      -> {"id": 1, "event": "end"}                            (end of the response)
      -> {"id": 1, "event": "reset", "error_code": N}         (the server reset the stream)
     "raw": [[":method", "GET"], ...] instead of method/path sends exactly those header
     fields (for malformed requests). "end": false leaves the request body open.
  {"op": "send", "id": 1, "body": "...", "end": true}  more request body on stream `id`
  {"op": "open_silent", "id": 1}                       open a request stream, send no head
      -> {"id": 1, "event": "stop_sending", "error_code": N}  (the server gave up on it)
  {"op": "cancel", "id": 1}                            reset stream `id` (H3_REQUEST_CANCELLED)
  {"op": "stop_reading", "id": 1}                      stop granting flow control on `id`
  {"op": "close"}                                      close the connection and exit

Connection events: {"event": "connected", "alpn": "h3"} first, and
{"event": "closed", "error_code": N, "reason": "..."} when the server closes the connection
(the script then exits 0). Any failure to connect exits non-zero with the reason on stderr.
"""

import argparse
import asyncio
import json
import ssl
import sys

from aioquic.asyncio.client import connect
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.h3.connection import H3_ALPN, H3Connection
from aioquic.h3.events import DataReceived, HeadersReceived
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import ConnectionTerminated, StopSendingReceived, StreamReset


def emit(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


class Client(QuicConnectionProtocol):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.h3 = H3Connection(self._quic)
        self.ids = {}  # stream id -> request id
        self.streams = {}  # request id -> stream id
        self.stopped = set()
        self.closed = asyncio.get_event_loop().create_future()

    def quic_event_received(self, event):
        if isinstance(event, ConnectionTerminated):
            if not self.closed.done():
                self.closed.set_result(None)
            emit({"event": "closed", "error_code": event.error_code, "reason": event.reason_phrase})
            return
        if isinstance(event, StreamReset):
            rid = self.ids.get(event.stream_id)
            if rid is not None:
                emit({"id": rid, "event": "reset", "error_code": event.error_code})
            return
        if isinstance(event, StopSendingReceived):
            rid = self.ids.get(event.stream_id)
            if rid is not None:
                emit({"id": rid, "event": "stop_sending", "error_code": event.error_code})
            return
        for h3_event in self.h3.handle_event(event):
            rid = self.ids.get(h3_event.stream_id)
            if rid is None:
                continue
            if isinstance(h3_event, HeadersReceived):
                headers = [[k.decode(), v.decode()] for k, v in h3_event.headers]
                status = next((int(v) for k, v in headers if k == ":status"), None)
                if status is None:  # trailers
                    emit({"id": rid, "event": "trailers", "headers": headers})
                else:
                    emit({"id": rid, "event": "headers", "status": status,
                          "headers": [h for h in headers if not h[0].startswith(":")]})
                if h3_event.stream_ended:
                    emit({"id": rid, "event": "end"})
            elif isinstance(h3_event, DataReceived):
                if h3_event.data:
                    emit({"id": rid, "event": "data", "data": h3_event.data.decode("utf-8", "replace")})
                if h3_event.stream_ended:
                    emit({"id": rid, "event": "end"})

    def request(self, cmd, authority):
        stream_id = self._quic.get_next_available_stream_id()
        rid = cmd["id"]
        self.ids[stream_id] = rid
        self.streams[rid] = stream_id
        if "raw" in cmd:
            headers = [(k.encode(), v.encode()) for k, v in cmd["raw"]]
        else:
            headers = [
                (b":method", cmd.get("method", "GET").encode()),
                (b":scheme", b"https"),
                (b":authority", authority.encode()),
                (b":path", cmd["path"].encode()),
            ] + [(k.encode(), v.encode()) for k, v in cmd.get("headers", [])]
        body = cmd.get("body")
        end = cmd.get("end", True)
        self.h3.send_headers(stream_id, headers, end_stream=end and body is None)
        if body is not None:
            self.h3.send_data(stream_id, body.encode(), end_stream=end)
        self.transmit()

    def open_silent(self, cmd):
        # A request stream that starts a HEADERS frame (its type byte) and sends no more.
        stream_id = self._quic.get_next_available_stream_id()
        self.ids[stream_id] = cmd["id"]
        self.streams[cmd["id"]] = stream_id
        self._quic.send_stream_data(stream_id, b"\x01", end_stream=False)
        self.transmit()

    def send(self, cmd):
        self.h3.send_data(self.streams[cmd["id"]], cmd.get("body", "").encode(),
                          end_stream=cmd.get("end", True))
        self.transmit()

    def cancel(self, cmd):
        stream_id = self.streams[cmd["id"]]
        self._quic.reset_stream(stream_id, 0x10C)
        self._quic.stop_stream(stream_id, 0x10C)
        self.transmit()

    def stop_reading(self, cmd):
        # aioquic grants a stream more credit (MAX_STREAM_DATA) as data arrives, whether or
        # not anyone reads it; a stopped stream gets none, as with a reader that stalls.
        if not self.stopped:
            grant = self._quic._write_stream_limits

            def grant_unless_stopped(builder, space, stream):
                if stream.stream_id not in self.stopped:
                    grant(builder, space, stream)

            self._quic._write_stream_limits = grant_unless_stopped
        self.stopped.add(self.streams[cmd["id"]])

async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("host")
    parser.add_argument("port", type=int)
    parser.add_argument("--cafile")
    parser.add_argument("--server-name", default="localhost")
    parser.add_argument("--max-stream-data", type=int, default=1048576,
                        help="initial flow-control window of each stream, bytes")
    args = parser.parse_args()

    config = QuicConfiguration(is_client=True, alpn_protocols=H3_ALPN,
                               server_name=args.server_name,
                               max_stream_data=args.max_stream_data)
    if args.cafile:
        config.load_verify_locations(args.cafile)
    else:
        config.verify_mode = ssl.CERT_NONE
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    authority = f"{args.host}:{args.port}"
    async with connect(args.host, args.port, configuration=config,
                       create_protocol=Client, wait_connected=True) as client:
        emit({"event": "connected", "alpn": client._quic.tls.alpn_negotiated})
        while True:
            line_task = asyncio.ensure_future(reader.readline())
            done, _ = await asyncio.wait([line_task, client.closed],
                                         return_when=asyncio.FIRST_COMPLETED)
            if client.closed in done and line_task not in done:
                line_task.cancel()
                return 0
            line = line_task.result().strip()
            if not line:
                if line_task.result() == b"":  # stdin closed
                    break
                continue
            cmd = json.loads(line)
            op = cmd["op"]
            if op == "request":
                client.request(cmd, authority)
            elif op == "send":
                client.send(cmd)
            elif op == "open_silent":
                client.open_silent(cmd)
            elif op == "cancel":
                client.cancel(cmd)
            elif op == "stop_reading":
                client.stop_reading(cmd)
            elif op == "close":
                break
            else:
                raise SystemExit(f"unknown op {op!r}")
        client.close()
        await client.wait_closed()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
