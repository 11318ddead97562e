// One chat across transports: a Socket.IO client, a long-poll client, an SSE client and a raw
// WebSocket client post in turn, and every one of them sees every message, in the same order.
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

/** Socket.IO: msg:new for every message, posts acknowledged. */
async function socketioClient(base) {
  const seen = [];
  const s = io(base, { forceNew: true, auth: { snapshots: false } });
  s.on('msg:new', (m) => seen.push(m));
  await connected(s);
  return {
    name: 'socket.io',
    seen,
    async post(user, text) {
      const ack = await s.timeout(5000).emitWithAck('msg:post', { user, text });
      assert.equal(ack.status, 'ok', JSON.stringify(ack));
    },
    close: () => s.disconnect(),
  };
}

/** Long polling: GET /poll?since=ID in a loop, POST /poll. */
async function longPollClient(base) {
  const seen = [];
  const ctl = new AbortController();
  let last = (await (await fetch(`${base}/poll`)).json()).last;
  (async () => {
    while (!ctl.signal.aborted) {
      try {
        const res = await fetch(`${base}/poll?since=${last}&timeout=5`, { signal: ctl.signal });
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
      const res = await fetch(`${base}/poll`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ user, text }),
      });
      assert.equal(res.status, 200);
    },
    close: () => ctl.abort(),
  };
}

/** Server-Sent Events: GET /events; it posts with POST /poll like a browser page would. */
async function sseClient(base) {
  const seen = [];
  const ctl = new AbortController();
  const res = await fetch(`${base}/events`, { signal: ctl.signal, headers: { Accept: 'text/event-stream' } });
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
  const poster = await longPollClient(base);
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
