// The course's Socket.IO chat on npm `socket.io`: `msg:get` {"msg":[...],"last":N} on connect
// and after every message (one broadcast, encoded once), `msg:post` {user, text} with an
// optional ack.
import http from 'node:http';
import { Server } from 'socket.io';
import { post, snapshot, ready, port } from './chat.mjs';

const server = http.createServer();
const io = new Server(server, { serveClient: false, cors: { origin: '*' } });

io.on('connection', (socket) => {
  socket.emit('msg:get', snapshot());
  socket.on('msg:post', (body, ack) => {
    const msg = post(body);
    if (typeof msg === 'string') {
      if (typeof ack === 'function') ack({ error: msg });
      else socket.emit('msg:error', { error: msg });
      return;
    }
    io.emit('msg:get', snapshot());
    if (typeof ack === 'function') ack({ status: 'ok', id: msg.id });
  });
});

server.listen(port, '127.0.0.1', () => ready(server, 'node-socketio'));
