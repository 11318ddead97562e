// The chat on npm `ws`, in both of rtchat's WebSocket subprotocols (docs/PROTOCOL.md):
//
// * `json` (the course's, and what a client offering none gets): the snapshot
//   {"msg":[...],"last":N,"epoch":E} on connect and after every message;
// * `rtchat.v1` (deltas): {"type":"history","room":"general",...} on connect, then one
//   {"type":"msg","room":"general","msg":{...}} per new message; a post
//   {"type":"post","user","text","ref"} is answered {"type":"ack","room","ref","id"} (or
//   {"type":"error","ref","error"}). Only the room `general`: no join, leave, typing, presence
//   or resume (what `rtchat bench -t ws --general` uses).
//
// Every broadcast frame is encoded once (one Buffer) and handed to each connection of its
// subprotocol: the same work per delivery as rtchat, which also encodes each frame once.
import http from 'node:http';
import { WebSocketServer, WebSocket } from 'ws';
import { post, snapshot, ready, port, ROOM } from './chat.mjs';

const V1 = 'rtchat.v1';
const server = http.createServer((req, res) => {
  res.writeHead(404, { 'content-type': 'application/json' });
  res.end('{"error":"not found"}');
});
// WS_DEFLATE=1: permessage-deflate with ws's own defaults (compress messages of 1 KiB and
// more, per connection, with context takeover), for bench/deflate.sh.
const wss = new WebSocketServer({
  server,
  // rtchat's choice: rtchat.v1 if offered, else json if offered, else none (json behaviour).
  handleProtocols: (protocols) => (protocols.has(V1) ? V1 : protocols.has('json') ? 'json' : false),
  perMessageDeflate: process.env.WS_DEFLATE === '1',
});
const json = new Set();
const v1 = new Set();

function broadcast(clients, object) {
  if (clients.size === 0) return;
  const frame = Buffer.from(JSON.stringify(object));
  for (const client of clients) {
    if (client.readyState === WebSocket.OPEN) client.send(frame, { binary: false });
  }
}

/** Stores a post from any connection; the message, or the refusal's text. */
function store(body) {
  const msg = post(body);
  if (typeof msg === 'string') return msg;
  broadcast(v1, { type: 'msg', room: ROOM, msg });
  broadcast(json, snapshot());
  return msg;
}

wss.on('connection', (ws) => {
  const deltas = ws.protocol === V1;
  const mine = deltas ? v1 : json;
  mine.add(ws);
  ws.on('close', () => mine.delete(ws));
  ws.send(JSON.stringify(deltas ? { type: 'history', room: ROOM, ...snapshot() } : snapshot()));
  ws.on('message', (data) => {
    let body;
    try {
      body = JSON.parse(data);
    } catch {
      ws.send(JSON.stringify(deltas ? { type: 'error', ref: null, error: 'frame is not valid JSON' } : { error: 'body is not valid JSON' }));
      return;
    }
    if (!deltas) {
      const msg = store(body);
      if (typeof msg === 'string') ws.send(JSON.stringify({ error: msg }));
      return;
    }
    const ref = body?.ref ?? null;
    const refuse = (error) => ws.send(JSON.stringify({ type: 'error', ref, error }));
    if (body?.type !== 'post') return refuse('this peer takes only "post" frames (room general)');
    if (body.room !== undefined && body.room !== ROOM) return refuse('this peer has only the room general');
    const msg = store(body);
    if (typeof msg === 'string') return refuse(msg);
    ws.send(JSON.stringify({ type: 'ack', room: ROOM, ref, id: msg.id }));
  });
});

server.listen(port, '127.0.0.1', () => ready(server, 'node-ws'));
