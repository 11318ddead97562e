// The course's WebSocket chat on npm `ws`: `json` subprotocol, the snapshot
// {"msg":[...],"last":N} on connect and after every message, built once per broadcast.
import http from 'node:http';
import { WebSocketServer, WebSocket } from 'ws';
import { post, snapshot, ready, port } from './chat.mjs';

const server = http.createServer((req, res) => {
  res.writeHead(404, { 'content-type': 'application/json' });
  res.end('{"error":"not found"}');
});
// WS_DEFLATE=1: permessage-deflate with ws's own defaults (compress messages of 1 KiB and
// more, per connection, with context takeover), for bench/deflate.sh.
const wss = new WebSocketServer({
  server,
  handleProtocols: (protocols) => (protocols.has('json') ? 'json' : false),
  perMessageDeflate: process.env.WS_DEFLATE === '1',
});

wss.on('connection', (ws) => {
  ws.send(JSON.stringify(snapshot()));
  ws.on('message', (data) => {
    let body;
    try {
      body = JSON.parse(data);
    } catch {
      ws.send(JSON.stringify({ error: 'body is not valid JSON' }));
      return;
    }
    const msg = post(body);
    if (typeof msg === 'string') {
      ws.send(JSON.stringify({ error: msg }));
      return;
    }
    const frame = JSON.stringify(snapshot());
    for (const client of wss.clients) {
      if (client.readyState === WebSocket.OPEN) client.send(frame);
    }
  });
});

server.listen(port, '127.0.0.1', () => ready(server, 'node-ws'));
