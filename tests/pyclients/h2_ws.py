"""An RFC 8441 client on Python's `h2`: one HTTP/2 connection (TLS with ALPN h2, or h2c by
prior knowledge), the server's SETTINGS checked for SETTINGS_ENABLE_CONNECT_PROTOCOL, then a
WebSocket opened as an extended CONNECT (`:protocol websocket`) on a stream. It speaks
rtchat.v1 inside: reads `history`, posts, waits for the ack and its own message, and prints
one JSON line of what it saw (tests/rfc8441.rs). The WebSocket framing (masking, the
permessage-deflate inflate) is done here by hand, independently of the server's crate.

usage: h2_ws.py tls|h2c HOST PORT PATH TEXT [--deflate]
"""
import json
import os
import socket
import ssl
import struct
import sys
import zlib

import h2.config
import h2.connection
import h2.events
import h2.settings


def frame(opcode, payload):
    """A masked client frame (FIN set)."""
    mask = os.urandom(4)
    head = bytes([0x80 | opcode])
    n = len(payload)
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0x80 | 126]) + struct.pack("!H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack("!Q", n)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def parse(buf):
    """(rsv1, opcode, payload, rest) of the first whole server frame, or None."""
    if len(buf) < 2:
        return None
    b0, b1 = buf[0], buf[1]
    assert b1 & 0x80 == 0, "server frames are not masked"
    n, off = b1 & 0x7F, 2
    if n == 126:
        if len(buf) < 4:
            return None
        n, off = struct.unpack("!H", buf[2:4])[0], 4
    elif n == 127:
        if len(buf) < 10:
            return None
        n, off = struct.unpack("!Q", buf[2:10])[0], 10
    if len(buf) < off + n:
        return None
    assert b0 & 0x80, "this client expects unfragmented server messages"
    return bool(b0 & 0x40), b0 & 0x0F, buf[off:off + n], buf[off + n:]


def main(mode, host, port, path, text, deflate):
    raw = socket.create_connection((host, port), timeout=10)
    if mode == "tls":
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        ctx.set_alpn_protocols(["h2"])
        sock = ctx.wrap_socket(raw, server_hostname="localhost")
        assert sock.selected_alpn_protocol() == "h2", sock.selected_alpn_protocol()
        scheme = "https"
    else:
        sock, scheme = raw, "http"
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    sock.sendall(conn.data_to_send())
    out = {"enable_connect_protocol": None}
    stream = None
    wsbuf = b""
    messages = []
    state = "settings"
    while state != "done":
        data = sock.recv(65536)
        if not data:
            raise SystemExit("connection closed: %s" % json.dumps(out))
        for ev in conn.receive_data(data):
            if isinstance(ev, h2.events.RemoteSettingsChanged) and state == "settings":
                s = ev.changed_settings.get(h2.settings.SettingCodes.ENABLE_CONNECT_PROTOCOL)
                out["enable_connect_protocol"] = s.new_value if s else None
                stream = conn.get_next_available_stream_id()
                headers = [
                    (":method", "CONNECT"),
                    (":protocol", "websocket"),
                    (":scheme", scheme),
                    (":path", path),
                    (":authority", "%s:%d" % (host, port)),
                    ("sec-websocket-version", "13"),
                    ("sec-websocket-protocol", "rtchat.v1"),
                ]
                if deflate:
                    headers.append(("sec-websocket-extensions", "permessage-deflate"))
                conn.send_headers(stream, headers)
                state = "response"
            elif isinstance(ev, h2.events.ResponseReceived):
                h = {k.decode(): v.decode() for k, v in ev.headers}
                out["status"] = h.get(":status")
                out["protocol"] = h.get("sec-websocket-protocol")
                out["extensions"] = h.get("sec-websocket-extensions")
                if out["status"] != "200":
                    state = "done"
            elif isinstance(ev, h2.events.DataReceived) and ev.stream_id == stream:
                conn.acknowledge_received_data(ev.flow_controlled_length, stream)
                wsbuf += ev.data
                while True:
                    f = parse(wsbuf)
                    if f is None:
                        break
                    rsv1, opcode, payload, wsbuf = f
                    if rsv1:
                        out["compressed_frames"] = out.get("compressed_frames", 0) + 1
                        d = zlib.decompressobj(-15)
                        payload = d.decompress(payload + b"\x00\x00\xff\xff")
                    if opcode != 1:
                        continue
                    msg = json.loads(payload)
                    messages.append(msg.get("type"))
                    if msg.get("type") == "history":
                        post = {"type": "post", "user": "h2", "text": text, "ref": 7}
                        conn.send_data(stream, frame(1, json.dumps(post).encode()))
                    elif msg.get("type") == "ack":
                        out["ack_ref"] = msg.get("ref")
                    elif msg.get("type") == "msg" and msg["msg"]["text"] == text:
                        out["echoed"] = True
                    if "ack_ref" in out and out.get("echoed"):
                        conn.send_data(stream, frame(8, struct.pack("!H", 1000)))
                        state = "done"
            elif isinstance(ev, (h2.events.StreamReset, h2.events.ConnectionTerminated)):
                out["ended"] = type(ev).__name__
                state = "done"
        sock.sendall(conn.data_to_send())
    out["messages"] = messages
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    a = [x for x in sys.argv[1:] if not x.startswith("--")]
    main(a[0], a[1], int(a[2]), a[3], a[4], "--deflate" in sys.argv)
