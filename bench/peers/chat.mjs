// The chat state every peer shares: the newest HISTORY messages, newest first, exactly as
// rtchat keeps them ({"id","user","text","time"}), and the course's validation.
export const HISTORY = Number(process.env.HISTORY ?? 50);

const messages = [];
let last = 0;

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
  return { msg: messages, last };
}

/** Prints the ready line bench/compare.sh waits for. */
export function ready(server, what) {
  const { port } = server.address();
  console.log(`${what} listening on http://127.0.0.1:${port}`);
}

export const port = Number(process.env.PORT ?? 0);
