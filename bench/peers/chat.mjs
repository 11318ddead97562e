// The chat state every peer shares: the newest HISTORY messages, newest first, exactly as
// rtchat keeps them ({"id","user","text","time"}), the history's epoch, and the course's
// validation. Only the room `general`: the peers are the course's chat, with rtchat's delta
// events where a peer speaks them (ws-server.mjs's rtchat.v1, socketio-server.mjs's msg:new).
export const HISTORY = Number(process.env.HISTORY ?? 50);
export const ROOM = 'general';

const messages = [];
let last = 0;
// Like rtchat's --store memory: a fresh 8-character [a-z0-9] epoch at every start.
export const epoch = Array.from({ length: 8 }, () => 'abcdefghijklmnopqrstuvwxyz0123456789'[Math.floor(Math.random() * 36)]).join('');

/** Stores a post; returns the message, or an error string. */
export function post(body) {
  if (body === null || typeof body !== 'object') return 'body must be a JSON object with "user" and "text"';
  const { user, text } = body;
  if (typeof user !== 'string' || user.trim() === '') return '"user" must be a non-empty string';
  if (typeof text !== 'string' || text.trim() === '') return '"text" must be a non-empty string';
  const msg = { id: ++last, user, text, time: Date.now() };
  messages.unshift(msg);
  if (messages.length > HISTORY) messages.pop();
  return msg;
}

/** The course's snapshot object: the history, newest first. */
export function snapshot() {
  return { msg: messages, last, epoch };
}

/** Prints the ready line bench/compare.sh waits for. */
export function ready(server, what) {
  const { port } = server.address();
  console.log(`${what} listening on http://127.0.0.1:${port}`);
}

export const port = Number(process.env.PORT ?? 0);
