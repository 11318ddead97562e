// The chat on npm `socket.io`, the course's events and rtchat's deltas (docs/PROTOCOL.md):
//
// * `msg:get` {"msg":[...],"last":N,"epoch":E} on connect, and after every message to the
//   sockets that want snapshots (the course's; the default);
// * `msg:new` {"id","user","text","time","room"} after every message to the sockets whose
//   handshake says `auth: {snapshots: false}` (rtchat's delta event; rtchat sends it to every
//   socket, this peer only to those, so that a snapshot socket costs it no more than the
//   course's server);
// * `msg:post` {user, text} with an optional ack ({"status":"ok","id"} or {"error"}).
//
// Only the room `general`. Each broadcast is one emit to a socket.io room, encoded once.
import http from 'node:http';
import { Server } from 'socket.io';
import { post, snapshot, ready, port, ROOM } from './chat.mjs';

const server = http.createServer();
const io = new Server(server, { serveClient: false, cors: { origin: '*' } });
const SNAPSHOTS = 'snapshots';
const DELTAS = 'deltas';

io.on('connection', (socket) => {
  const auth = socket.handshake.auth;
  const deltas = auth !== null && typeof auth === 'object' && auth.snapshots === false;
  socket.join(deltas ? DELTAS : SNAPSHOTS);
  socket.emit('msg:get', snapshot());
  socket.on('msg:post', (body, ack) => {
    const msg = post(body);
    if (typeof msg === 'string') {
      if (typeof ack === 'function') ack({ error: msg });
      else socket.emit('msg:error', { error: msg });
      return;
    }
    const rooms = io.of('/').adapter.rooms;
    if (rooms.get(DELTAS)?.size) io.to(DELTAS).emit('msg:new', { ...msg, room: ROOM });
    if (rooms.get(SNAPSHOTS)?.size) io.to(SNAPSHOTS).emit('msg:get', snapshot());
    if (typeof ack === 'function') ack({ status: 'ok', id: msg.id });
  });
});

server.listen(port, '127.0.0.1', () => ready(server, 'node-socketio'));
