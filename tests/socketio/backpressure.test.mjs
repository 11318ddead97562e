// Socket.IO clients that are far behind or do not read (issue 14): a resume from 0 over
// 100,000 messages is served by the resuming socket's own task, paced on what that client
// reads, while the other clients keep getting live messages; a client whose packet buffer
// fills gets msg:error and a disconnect instead of silently missing messages.
//
// The slow clients are raw Engine.IO WebSocket clients (npm ws), so a test can stop reading
// (ws.pause(): the TCP window closes and rtchat's buffer for that socket fills) and go on.
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { io } from 'socket.io-client';
import WebSocket from 'ws';
import { postPoll, startServer, waitUntil } from './lib/server.mjs';
import { connected } from './lib/socket.mjs';

/** A raw Engine.IO v4 / Socket.IO v5 client over WebSocket that records every event. */
class RawSocket {
  constructor(url, auth, { answerPings = true } = {}) {
    this.answerPings = answerPings;
    this.pings = 0;
    this.events = []; // {event, data} in arrival order; {event: 'disconnect'} for a `41`
    this.ids = []; // message ids from msg:since pages (oldest first) and msg:new, in order
    this.since = [];
    this.connected = false;
    this.disconnected = false;
    this.closed = false;
    this.ws = new WebSocket(`${url.replace(/^http/, 'ws')}/socket.io/?EIO=4&transport=websocket`);
    this.ws.on('message', (data) => this.packet(data.toString()));
    this.ws.on('close', () => {
      this.closed = true;
    });
    this.ws.on('error', () => {});
    this.auth = auth;
  }

  packet(p) {
    if (p.startsWith('0')) return this.ws.send(`40${JSON.stringify(this.auth)}`);
    if (p === '2') {
      this.pings++;
      if (this.answerPings) this.ws.send('3');
      return;
    }
    if (p.startsWith('40')) {
      this.connected = true;
      return;
    }
    if (p.startsWith('41')) {
      this.disconnected = true;
      this.events.push({ event: 'disconnect' });
      return;
    }
    if (p.startsWith('42')) {
      const [event, data] = JSON.parse(p.slice(2));
      this.events.push({ event, data });
      if (event === 'msg:since') {
        this.since.push({ more: data.more === true, truncated: data.truncated === true, last: data.last, n: data.msg.length });
        for (let i = data.msg.length - 1; i >= 0; i--) this.ids.push(data.msg[i].id);
      } else if (event === 'msg:new') {
        this.ids.push(data.id);
      }
    }
  }

  /** Stops reading: rtchat's writes block once the TCP buffers are full. */
  pause() {
    this.ws.pause();
  }

  resume() {
    this.ws.resume();
  }

  close() {
    this.ws.terminate();
  }
}

/** A socket.io-client socket (WebSocket, msg:new only) that records the ids it gets. */
function observer(url) {
  const ids = [];
  const s = io(url, { forceNew: true, transports: ['websocket'], reconnection: false, auth: { snapshots: false } });
  s.on('msg:new', (m) => ids.push(m.id));
  s.on('msg:since', (page) => {
    for (const m of [...page.msg].reverse()) ids.push(m.id);
  });
  return { s, ids };
}

/**
 * Posts `n` messages fast over `sockets` rtchat.v1 WebSockets, `window` unacknowledged each
 * (not over Socket.IO: its sockets get every message too, and a small --sio-buffer is the
 * point of these tests).
 */
async function seed(url, n, { sockets = 4, window = 100, text = (i) => `seed ${i}` } = {}) {
  let next = 0;
  const ids = [];
  await Promise.all(Array.from({ length: sockets }, () => new Promise((resolve, reject) => {
    const ws = new WebSocket(`${url.replace(/^http/, 'ws')}/ws`, 'rtchat.v1');
    let inFlight = 0;
    const fill = () => {
      while (next < n && inFlight < window) {
        const i = next++;
        inFlight++;
        ws.send(JSON.stringify({ type: 'post', user: 'seed', text: text(i), ref: i }));
      }
      if (inFlight === 0) {
        ws.close();
        resolve();
      }
    };
    ws.on('open', fill);
    ws.on('error', reject);
    ws.on('message', (data) => {
      const frame = JSON.parse(data.toString());
      if (frame.type === 'error') return reject(new Error(`post refused: ${data}`));
      if (frame.type !== 'ack') return;
      ids.push(frame.id);
      inFlight--;
      fill();
    });
  })));
  return ids;
}

describe('Socket.IO heartbeat', () => {
  test('a client that answers pings stays, one that does not is closed after the ping timeout', { timeout: 30000 }, async () => {
    const server = await startServer(['--store', 'memory', '--sio-ping-interval', '0.3', '--sio-ping-timeout', '0.5']);
    try {
      const alive = new RawSocket(server.url, {});
      const silent = new RawSocket(server.url, {}, { answerPings: false });
      await waitUntil(() => alive.connected && silent.connected, { what: 'both connected' });
      await waitUntil(() => silent.closed, { what: 'the silent client closed', timeout: 10000 });
      assert.equal(silent.pings, 1, 'closed after its first unanswered ping');
      await waitUntil(() => alive.pings >= 4, { what: 'pings every --sio-ping-interval', timeout: 10000 });
      assert.ok(!alive.closed, 'a client that answers stays');
      alive.close();
    } finally {
      await server.stop();
    }
  });
});

describe('Socket.IO resumes and slow clients', () => {
  let server;
  after(async () => {
    await server?.stop();
  });

  test('a resume from 0 over 100,000 messages goes at its client\'s pace, off the broadcasts', { timeout: 300000 }, async () => {
    const N = 100_000;
    // A small buffer: a resume that filled it instead of waiting for its client would lose
    // pages; one served by the broadcaster would hold up every other client.
    server = await startServer(['--store', 'memory', '--retain', '200000', '--max-resume', '200000',
      '--post-rate', '0', '--sio-buffer', '64']);
    const seeded = await seed(server.url, N, { text: (i) => `message number ${i} of the history, long enough to fill some pages ${'.'.repeat(60)}` });
    assert.equal(seeded.length, N);
    const watcher = observer(server.url);
    await connected(watcher.s);

    const resumer = new RawSocket(server.url, { last: 0, snapshots: false });
    await waitUntil(() => resumer.since.length > 0, { what: 'the first msg:since page', timeout: 30000 });
    // The resumer stops reading: its resume can only go as far as its buffers.
    resumer.pause();
    const live = [];
    for (let i = 0; i < 3; i++) live.push((await postPoll(server.url, 'live', `live ${i}`)).body.id);
    await waitUntil(() => live.every((id) => watcher.ids.includes(id)), { what: 'the live messages at the other client during the resume' });
    assert.ok(!resumer.since.some((p) => !p.more), 'the resume is not over yet: its last page has not come');

    resumer.resume();
    const total = N + live.length;
    await waitUntil(() => resumer.since.some((p) => !p.more), { what: 'the last msg:since page', timeout: 120000, every: 200 });
    const after = (await postPoll(server.url, 'live', 'after the resume')).body.id;
    await waitUntil(() => resumer.ids.includes(after), { what: 'a live message after the resume' });

    const want = Array.from({ length: total }, (_, i) => i + 1);
    assert.equal(resumer.ids.length, total + 1, 'every message exactly once');
    assert.deepEqual(resumer.ids.slice(0, total), want, 'in order, none twice, none missing');
    assert.equal(resumer.ids[total], after, 'then the live ones');
    assert.ok(resumer.since.slice(0, -1).every((p) => p.more), 'every page but the last says more');
    assert.ok(resumer.since.every((p) => !p.truncated), 'nothing truncated under --max-resume 200000');
    assert.ok(resumer.since.every((p) => p.n <= 50), 'pages of at most --history messages');
    const eventsSeen = resumer.events.map((e) => e.event);
    assert.equal(eventsSeen[0], 'msg:get', 'the history first');
    assert.ok(!eventsSeen.includes('msg:error'));
    resumer.close();
    watcher.s.disconnect();
    await server.stop();
  });

  test('a client whose buffer fills gets msg:error, then a disconnect; the others miss nothing', { timeout: 120000 }, async () => {
    server = await startServer(['--store', 'memory', '--post-rate', '0', '--sio-buffer', '16']);
    const slow = new RawSocket(server.url, {});
    await waitUntil(() => slow.connected, { what: 'the slow client connected' });
    await waitUntil(() => slow.events.some((e) => e.event === 'msg:get'), { what: 'history' });
    const watcher = observer(server.url);
    await connected(watcher.s);

    // It stops reading; big messages fill the TCP buffers (each msg:get carries the newest
    // 50), then its 16 packets.
    slow.pause();
    const posted = [];
    const big = 'x'.repeat(1900);
    while (!server.text().includes('fell too far behind')) {
      assert.ok(posted.length < 5000, 'the buffer should have filled by now');
      posted.push((await postPoll(server.url, 'big', `${posted.length} ${big}`)).body.id);
    }
    // The others go on as before.
    const more = (await postPoll(server.url, 'big', 'after the overflow')).body.id;
    posted.push(more);
    await waitUntil(() => posted.every((id) => watcher.ids.includes(id)), { what: 'every message at the other client' });
    assert.deepEqual(watcher.ids, posted);
    assert.ok(watcher.s.connected);

    // Reading again, the slow client gets what was queued, then the reason, then the end.
    slow.resume();
    await waitUntil(() => slow.disconnected, { what: 'the Socket.IO disconnect', timeout: 30000 });
    const events = slow.events;
    assert.equal(events.at(-1).event, 'disconnect');
    const error = events.at(-2);
    assert.equal(error.event, 'msg:error', `the reason just before the disconnect, got ${JSON.stringify(events.at(-2)).slice(0, 200)}`);
    assert.match(error.data.error, /fell too far behind/);
    assert.match(error.data.error, /--sio-buffer/);
    // What it got before the reason has no gap: it missed messages, but not silently.
    const got = slow.ids;
    assert.ok(got.length > 0 && got.length < posted.length, `${got.length} of ${posted.length}`);
    assert.deepEqual(got, posted.slice(0, got.length), 'a prefix of the messages, in order, without a gap');
    assert.ok(!got.includes(more), 'nothing after the overflow');
    slow.close();
    watcher.s.disconnect();
  });
});
