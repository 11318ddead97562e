// One official socket.io-client socket in `general` (argv: URL): prints `ready` once it has
// the history, then waits (20 s at most) for a `msg:get` marked `"reset": true` — the room
// began a new epoch while it was connected — and prints it as JSON. Exits non-zero if the
// socket cannot connect. Used by tests/it/cluster/failures.rs.
import { io } from 'socket.io-client';

const [url] = process.argv.slice(2);
const socket = io(url, { transports: ['websocket'], reconnection: false, forceNew: true });
let ready = false;
const reset = new Promise((resolve) => socket.on('msg:get', (list) => {
  if (!ready) {
    ready = true;
    console.log('ready');
  } else if (list.reset === true) {
    resolve(list);
  }
}));
socket.on('connect_error', (e) => {
  console.error(`could not connect: ${e.message}`);
  process.exit(1);
});
const timeout = new Promise((resolve) => setTimeout(() => resolve(null), 20000));
const got = await Promise.race([reset, timeout]);
console.log(JSON.stringify({ reset: got, connected: socket.connected }));
socket.close();
