// One chat across transports: a Socket.IO client, a long-poll client, an SSE client and a raw
// WebSocket client post in turn, and every one of them sees every message, in the same order;
// then the same in two rooms at once, where each message reaches exactly its room's clients.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { io } from 'socket.io-client';
import WebSocket from 'ws';
import { startServer, waitUntil } from './lib/server.mjs';
import { connected } from './lib/socket.mjs';

let server;
before(async () => {
  server = await startServer();
});
after(async () => {
  await server?.stop();
});

/** Socket.IO: msg:new for every message (of `room`, joined with room:join, when given; the
 * socket also stays in general), posts acknowledged. */
async function socketioClient(base, room) {
  const seen = [];
  const s = io(base, { forceNew: true, auth: { snapshots: false } });
  s.on('msg:new', (m) => { if ((m.room ?? 'general') === (room ?? 'general')) seen.push(m); });
  await connected(s);
  if (room) {
    const ack = await s.timeout(5000).emitWithAck('room:join', { room });
    assert.equal(ack.room, room, JSON.stringify(ack));
  }
  return {
    name: 'socket.io',
    seen,
    async post(user, text) {
      const ack = await s.timeout(5000).emitWithAck('msg:post', room ? { room, user, text } : { user, text });
      assert.equal(ack.status, 'ok', JSON.stringify(ack));
    },
    close: () => s.disconnect(),
  };
}

/** Long polling: GET /poll?since=ID in a loop, POST /poll (under /rooms/{room} when given). */
async function longPollClient(base, room) {
  const seen = [];
  const ctl = new AbortController();
  const at = room ? `${base}/rooms/${room}` : base;
  let last = (await (await fetch(`${at}/poll`)).json()).last;
  (async () => {
    while (!ctl.signal.aborted) {
      try {
        const res = await fetch(`${at}/poll?since=${last}&timeout=5`, { signal: ctl.signal });
        const body = await res.json();
        for (const m of [...body.msg].reverse()) seen.push(m);
        last = body.last;
      } catch {
        return;
      }
    }
  })();
  return {
    name: 'long-poll',
    seen,
    async post(user, text) {
      const res = await fetch(`${at}/poll`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ user, text }),
      });
      assert.equal(res.status, 200);
    },
    close: () => ctl.abort(),
  };
}

/** Server-Sent Events: GET /events (/rooms/{room}/events); it posts with POST /poll like a
 * browser page would. */
async function sseClient(base, room) {
  const seen = [];
  const ctl = new AbortController();
  const res = await fetch(room ? `${base}/rooms/${room}/events` : `${base}/events`, { signal: ctl.signal, headers: { Accept: 'text/event-stream' } });
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type'), /text\/event-stream/);
  (async () => {
    const decoder = new TextDecoder();
    let buf = '';
    try {
      for await (const chunk of res.body) {
        buf += decoder.decode(chunk, { stream: true });
        let end;
        while ((end = buf.indexOf('\n\n')) >= 0) {
          const block = buf.slice(0, end);
          buf = buf.slice(end + 2);
          let event = 'message';
          const data = [];
          for (const line of block.split('\n')) {
            if (line.startsWith('event:')) event = line.slice(6).trim();
            else if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''));
          }
          if (event === 'message' && data.length) seen.push(JSON.parse(data.join('\n')));
        }
      }
    } catch {
      /* aborted */
    }
  })();
  const poster = await longPollClient(base, room);
  poster.close();
  return { name: 'sse', seen, post: poster.post, close: () => ctl.abort() };
}

/**
 * Raw WebSocket at /ws with the course's subprotocol `json`: a snapshot
 * `{"msg":[...],"last":N}` (newest first) on connect and after every message; posts are
 * `{"user","text"}`; an invalid post gets `{"error":"..."}`. Fails unless the server upgrades.
 */
async function wsClient(base) {
  const url = `${base.replace(/^http/, 'ws')}/ws`;
  const seen = [];
  const problems = [];
  const ws = new WebSocket(url, 'json');
  await new Promise((resolve, reject) => {
    ws.once('open', resolve);
    ws.once('unexpected-response', (_req, res) => reject(new Error(`GET /ws answered ${res.statusCode}, not 101`)));
    ws.once('error', reject);
  });
  assert.equal(ws.protocol, 'json', 'the server chose the subprotocol json');
  const ids = new Set();
  ws.on('message', (data, isBinary) => {
    let body;
    try {
      body = JSON.parse(String(data));
    } catch {
      problems.push(`not JSON: ${data}`);
      return;
    }
    if (isBinary || !Array.isArray(body?.msg)) {
      problems.push(`not a snapshot: ${String(data)}`);
      return;
    }
    for (const m of [...body.msg].reverse()) {
      if (!ids.has(m.id)) {
        ids.add(m.id);
        seen.push(m);
      }
    }
  });
  return {
    name: 'websocket',
    seen,
    problems,
    async post(user, text) {
      ws.send(JSON.stringify({ user, text }));
    },
    close: () => ws.close(),
  };
}

test('every transport sees every message, in the same order', { timeout: 30000 }, async () => {
  const clients = [
    await socketioClient(server.url), await longPollClient(server.url), await sseClient(server.url),
    await wsClient(server.url),
  ];
  try {
    const texts = [];
    for (let round = 0; round < 2; round++) {
      for (const c of clients) {
        const text = `${c.name} says ${round}`;
        texts.push(text);
        const before = c.seen.length;
        await c.post(c.name, text);
        // Wait until the poster saw its own message, so "in turn" has a defined order.
        await waitUntil(() => c.seen.slice(before).some((m) => m.text === text), { what: `${c.name} echo` });
      }
    }
    for (const c of clients) {
      await waitUntil(() => c.seen.length >= texts.length, { what: `${c.name} sees all ${texts.length}` });
    }
    const reference = clients[0].seen.map((m) => `${m.id}:${m.user}:${m.text}`);
    assert.deepEqual(clients[0].seen.map((m) => m.text), texts);
    for (const c of clients) {
      assert.deepEqual(c.seen.map((m) => `${m.id}:${m.user}:${m.text}`), reference, `${c.name} saw the same chat`);
      assert.deepEqual(c.problems ?? [], [], `${c.name}: only well-formed frames`);
    }
  } finally {
    for (const c of clients) c.close();
  }
});

/** rtchat.v1 WebSocket in one room (`/ws?rooms=R`): `msg` frames of that room, posts with
 * `room`, acknowledged by `ref`. */
async function v1Client(base, room) {
  const ws = new WebSocket(`${base.replace(/^http/, 'ws')}/ws?rooms=${room}`, 'rtchat.v1');
  await new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject); });
  const seen = [];
  const problems = [];
  const acks = new Map();
  ws.on('message', (data) => {
    const frame = JSON.parse(String(data));
    if (frame.room !== undefined && frame.room !== room) problems.push(`a frame of another room: ${data}`);
    if (frame.type === 'msg') seen.push(frame.msg);
    if (frame.type === 'ack' || frame.type === 'error') acks.get(frame.ref)?.(frame);
  });
  let ref = 0;
  return {
    name: 'rtchat.v1',
    seen,
    problems,
    async post(user, text) {
      const mine = ++ref;
      const answer = new Promise((resolve) => acks.set(mine, resolve));
      ws.send(JSON.stringify({ type: 'post', room, user, text, ref: mine }));
      const frame = await answer;
      assert.equal(frame.type, 'ack', JSON.stringify(frame));
    },
    close: () => ws.close(),
  };
}

test('in rooms a and b, each message reaches exactly its room on every transport, in one order', { timeout: 30000 }, async () => {
  const rooms = {};
  for (const room of ['xa', 'xb']) {
    rooms[room] = [
      await socketioClient(server.url, room), await longPollClient(server.url, room),
      await sseClient(server.url, room), await v1Client(server.url, room),
    ];
  }
  const all = Object.values(rooms).flat();
  try {
    const texts = { xa: [], xb: [] };
    for (let round = 0; round < 2; round++) {
      for (const [room, clients] of Object.entries(rooms)) {
        for (const c of clients) {
          const text = `${c.name} in ${room} says ${round}`;
          texts[room].push(text);
          const before = c.seen.length;
          await c.post(c.name, text);
          await waitUntil(() => c.seen.slice(before).some((m) => m.text === text), { what: `${c.name} echo in ${room}` });
        }
      }
    }
    for (const [room, clients] of Object.entries(rooms)) {
      for (const c of clients) {
        await waitUntil(() => c.seen.length >= texts[room].length, { what: `${c.name} sees all of ${room}` });
      }
      // Ids are the room's own (1, 2, ...), the order the same on every transport, and
      // nothing of the other room.
      const expected = texts[room].map((text, i) => `${i + 1}:${text}`);
      for (const c of clients) {
        assert.deepEqual(c.seen.map((m) => `${m.id}:${m.text}`), expected, `${c.name} in ${room}`);
        assert.deepEqual(c.problems ?? [], [], `${c.name}: only frames of its room`);
      }
    }
  } finally {
    for (const c of all) c.close();
  }
});
