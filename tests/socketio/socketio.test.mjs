// rtchat's Socket.IO transport against the official socket.io-client (Node build), over a
// real rtchat process: both Engine.IO transports and the upgrade, history, broadcast, acks,
// validation errors, payload limit, namespaces, CORS/origins, resume and reconnection.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { io } from 'socket.io-client';
import { postPoll, sleep, startServer, waitUntil } from './lib/server.mjs';
import { connected, connectError } from './lib/socket.mjs';

const T = { timeout: 30000 };

/**
 * A socket.io-client socket that records what rtchat sends it. `last` is the newest message
 * id it holds, passed back as `auth.last` on every (re)connection, which is how rtchat
 * resumes.
 */
function client(url, { resume = false, ...opts } = {}) {
  const rec = { get: [], news: [], since: [], errors: [], ids: [], last: null };
  const auth = resume
    ? (cb) => cb(rec.last === null ? {} : { last: rec.last })
    : opts.auth;
  const s = io(url, {
    forceNew: true,
    reconnectionDelay: 200,
    reconnectionDelayMax: 1000,
    ...opts,
    auth,
  });
  const see = (id) => {
    if (rec.last === null || id > rec.last) rec.last = id;
  };
  s.on('msg:get', (body) => {
    rec.get.push(body);
    // The history sets the resume point only on a fresh start: on a resumed connection the
    // msg:since pages that follow are what fills the gap.
    if (body.reset) rec.last = null;
    if (rec.last === null && body.last > 0) see(body.last);
  });
  s.on('msg:new', (m) => {
    rec.news.push(m);
    rec.ids.push(m.id);
    see(m.id);
  });
  s.on('msg:since', (page) => {
    rec.since.push(page);
    // Pages are newest first, like every `msg` list.
    for (const m of [...page.msg].reverse()) {
      rec.ids.push(m.id);
      see(m.id);
    }
  });
  s.on('msg:error', (e) => rec.errors.push(e));
  return { s, rec };
}

const post = (s, body) => s.timeout(5000).emitWithAck('msg:post', body);

async function lastId(base) {
  const res = await fetch(`${base}/poll`);
  return (await res.json()).last;
}

describe('Socket.IO transports', () => {
  let server;
  before(async () => {
    // Post rate limits off: one test sends 30 posts from one socket at once, past the
    // default burst of 20 (the limits have their own tests below).
    server = await startServer(['--post-rate', '0']);
  });
  after(async () => {
    await server?.stop();
  });

  const modes = [
    { name: "transports ['polling'] only", opts: { transports: ['polling'] }, expect: 'polling' },
    { name: "transports ['websocket'] only", opts: { transports: ['websocket'] }, expect: 'websocket' },
    { name: 'default: polling upgraded to websocket', opts: {}, expect: 'websocket' },
  ];
  for (const mode of modes) {
    test(`${mode.name}: history on connect, post with ack, broadcast to every client`, T, async () => {
      const seeded = await postPoll(server.url, 'seed', `before ${mode.expect}`);
      assert.equal(seeded.status, 200);
      const a = client(server.url, mode.opts);
      const b = client(server.url, mode.opts);
      try {
        await Promise.all([connected(a.s), connected(b.s)]);
        // History on connect: msg:get {"msg": [...newest first], "last": N}.
        await waitUntil(() => a.rec.get.length > 0, { what: 'msg:get on connect' });
        const history = a.rec.get[0];
        assert.ok(Array.isArray(history.msg));
        assert.equal(history.msg[0].id, seeded.body.id, 'newest first');
        assert.equal(history.msg[0].text, `before ${mode.expect}`);
        assert.equal(history.last, seeded.body.id);
        if (mode.expect === 'websocket' && !mode.opts.transports) {
          await waitUntil(() => a.s.io.engine.transport.name === 'websocket', { what: 'upgrade to websocket' });
        }
        await waitUntil(() => b.rec.get.length > 0, { what: 'b history' });

        const ack = await post(a.s, { user: 'ann', text: `hello over ${mode.expect}` });
        assert.equal(ack.status, 'ok');
        assert.equal(typeof ack.id, 'number');
        for (const c of [a, b]) {
          const m = await waitUntil(() => c.rec.news.find((n) => n.id === ack.id), { what: 'msg:new' });
          assert.deepEqual(Object.keys(m).sort(), ['id', 'room', 'text', 'time', 'user']);
          assert.equal(m.room, 'general');
          assert.equal(m.user, 'ann');
          assert.equal(m.text, `hello over ${mode.expect}`);
          const snap = await waitUntil(() => c.rec.get.find((g) => g.msg[0]?.id === ack.id), { what: 'msg:get broadcast' });
          assert.equal(snap.msg[1].id, seeded.body.id, 'the new history, newest first');
        }
        // The message reached the other transports too.
        const poll = await (await fetch(`${server.url}/poll`)).json();
        assert.equal(poll.msg[0].id, ack.id);
        assert.equal(a.s.io.engine.transport.name, mode.expect);
        assert.equal(b.s.io.engine.transport.name, mode.expect);
      } finally {
        a.s.disconnect();
        b.s.disconnect();
      }
    });
  }

  test('posts from one socket are stored in the order they were sent', T, async () => {
    const a = client(server.url);
    try {
      await connected(a.s);
      const acks = await Promise.all(
        Array.from({ length: 30 }, (_, i) => post(a.s, { user: 'order', text: `n${i}` })),
      );
      const ids = acks.map((x) => x.id);
      assert.ok(acks.every((x) => x.status === 'ok'));
      for (let i = 1; i < ids.length; i++) assert.ok(ids[i] > ids[i - 1], `ids in send order: ${ids}`);
    } finally {
      a.s.disconnect();
    }
  });

  test('a client that asks for no ack gets errors as msg:error', T, async () => {
    const a = client(server.url);
    try {
      await connected(a.s);
      a.s.emit('msg:post', { user: 'x' });
      const e = await waitUntil(() => a.rec.errors[0], { what: 'msg:error' });
      assert.equal(e.error, '"text" is missing');
    } finally {
      a.s.disconnect();
    }
  });

  test('namespaces other than / are refused', T, async () => {
    const s = io(`${server.url}/admin`, { forceNew: true, reconnection: false });
    try {
      const err = await connectError(s);
      assert.match(err.message, /Invalid namespace/);
    } finally {
      s.disconnect();
    }
  });

  test('a malformed resume point is refused with a clear connect_error', T, async () => {
    const s = io(server.url, { forceNew: true, reconnection: false, auth: { last: 'seven' } });
    try {
      const err = await connectError(s);
      assert.match(err.message, /auth\.last must be a message id/);
    } finally {
      s.disconnect();
    }
  });

  test('the browser bundle is served at /socket.io/socket.io.min.js', T, async () => {
    const res = await fetch(`${server.url}/socket.io/socket.io.min.js`);
    const body = await res.text();
    assert.equal(res.status, 200, body.slice(0, 200));
    assert.match(res.headers.get('content-type'), /javascript/);
    assert.match(body, /Socket\.IO v4\./);
  });
});

describe('Socket.IO acks and validation', () => {
  let server;
  before(async () => {
    server = await startServer(['--max-user', '8', '--max-text', '20']);
  });
  after(async () => {
    await server?.stop();
  });

  test('msg:post is acknowledged with ok, and with each validation error', T, async () => {
    const a = client(server.url);
    const watcher = client(server.url);
    try {
      await Promise.all([connected(a.s), connected(watcher.s)]);
      const ok = await post(a.s, { user: 'ann', text: 'fine', extra: 'ignored' });
      assert.deepEqual(ok, { status: 'ok', id: ok.id });
      await waitUntil(() => watcher.rec.news.length === 1, { what: 'the valid post' });
      const before = await lastId(server.url);

      const cases = [
        [{ text: 'no user' }, '"user" is missing'],
        [{ user: 'ann' }, '"text" is missing'],
        [{ user: 7, text: 'x' }, '"user" must be a string'],
        [{ user: 'ann', text: ['x'] }, '"text" must be a string'],
        [{ user: 'ann', text: '' }, '"text" must not be empty'],
        [{ user: '   ', text: 'x' }, '"user" must not be empty'],
        [{ user: 'ann', text: ' \n\t ' }, '"text" must not be empty'],
        [{ user: 'a'.repeat(9), text: 'x' }, '"user" is too long: 9 characters, at most 8 allowed'],
        [{ user: 'ann', text: 'é'.repeat(21) }, '"text" is too long: 21 characters, at most 20 allowed'],
        // The input rules: control characters, bidirectional controls in names, invisible text.
        [{ user: 'ann', text: 'nul\u0000' }, '"text" contains the control character U+0000 at character 4; only newline and tab are allowed'],
        [{ user: 'an\nn', text: 'x' }, '"user" contains the control character U+000A at character 3; none are allowed in a name'],
        [{ user: 'ann\u202Eab', text: 'x' }, '"user" contains the bidirectional control U+202E at character 4, which can disguise a name'],
        [{ user: 'ann', text: '\u200B\u200D' }, '"text" has only invisible characters (zero-width or formatting marks)'],
        ['just a string', 'body must be a JSON object with "user" and "text"'],
        [null, 'body must be a JSON object with "user" and "text"'],
        // Binary (a Socket.IO attachment) is not text.
        [{ user: 'ann', text: Buffer.from('binary') }, 'binary attachments are not accepted: "user" and "text" must be strings'],
      ];
      for (const [body, error] of cases) {
        const ack = await post(a.s, body);
        assert.deepEqual(ack, { error }, `post ${JSON.stringify(body)}`);
      }
      // No arguments at all.
      const none = await a.s.timeout(5000).emitWithAck('msg:post');
      assert.deepEqual(none, { error: 'body must be a JSON object with "user" and "text"' });

      // Nothing invalid was stored or broadcast.
      await sleep(200);
      assert.equal(await lastId(server.url), before);
      assert.equal(watcher.rec.news.length, 1);
    } finally {
      a.s.disconnect();
      watcher.s.disconnect();
    }
  });
});

describe('Socket.IO limits and origins', () => {
  let server;
  before(async () => {
    server = await startServer(['--sio-max-payload', '2048', '--allow-origin', 'http://course.example:3000']);
  });
  after(async () => {
    await server?.stop();
  });

  test('the handshake announces the ping interval/timeout and the maximum payload', T, async () => {
    const res = await fetch(`${server.url}/socket.io/?EIO=4&transport=polling`);
    assert.equal(res.status, 200);
    const open = JSON.parse((await res.text()).slice(1));
    assert.equal(open.pingInterval, 25000);
    assert.equal(open.pingTimeout, 20000);
    assert.equal(open.maxPayload, 2048);
    assert.deepEqual(open.upgrades, ['websocket']);
  });

  test('a payload over --sio-max-payload is rejected (413 with a reason) and never stored', T, async () => {
    const before = await lastId(server.url);
    const hs = await fetch(`${server.url}/socket.io/?EIO=4&transport=polling`);
    const { sid } = JSON.parse((await hs.text()).slice(1));
    const big = `42${JSON.stringify(['msg:post', { user: 'big', text: 'x'.repeat(3000) }])}`;
    const res = await fetch(`${server.url}/socket.io/?EIO=4&transport=polling&sid=${sid}`, {
      method: 'POST',
      headers: { 'Content-Type': 'text/plain;charset=UTF-8' },
      body: big,
    });
    assert.equal(res.status, 413);
    assert.match((await res.json()).error, /larger than 2048 bytes \(--sio-max-payload\)/);

    // The official clients: the oversized packet closes the transport; nothing is stored.
    for (const transports of [['polling'], ['websocket']]) {
      const c = client(server.url, { transports, reconnection: false });
      try {
        await connected(c.s);
        const closed = new Promise((r) => c.s.once('disconnect', r));
        c.s.emit('msg:post', { user: 'big', text: 'x'.repeat(3000) });
        const reason = await closed;
        assert.match(reason, /transport (close|error)/, `${transports}: ${reason}`);
      } finally {
        c.s.disconnect();
      }
    }
    assert.equal(await lastId(server.url), before);
  });

  test('pages from --allow-origin origins connect; other origins are refused', T, async () => {
    const allowed = await fetch(`${server.url}/socket.io/?EIO=4&transport=polling`, {
      headers: { Origin: 'http://course.example:3000' },
    });
    assert.equal(allowed.status, 200);
    assert.equal(allowed.headers.get('access-control-allow-origin'), 'http://course.example:3000');
    const preflight = await fetch(`${server.url}/socket.io/?EIO=4&transport=polling`, {
      method: 'OPTIONS',
      headers: {
        Origin: 'http://course.example:3000',
        'Access-Control-Request-Method': 'POST',
        'Access-Control-Request-Headers': 'content-type',
      },
    });
    assert.ok(preflight.status < 300, `preflight ${preflight.status}`);
    assert.equal(preflight.headers.get('access-control-allow-origin'), 'http://course.example:3000');

    const foreign = await fetch(`${server.url}/socket.io/?EIO=4&transport=polling`, {
      headers: { Origin: 'http://elsewhere.example' },
    });
    assert.equal(foreign.status, 403);
    assert.match((await foreign.json()).error, /--allow-origin http:\/\/elsewhere\.example/);
    assert.equal(foreign.headers.get('access-control-allow-origin'), null);

    // WebSockets carry no CORS, so the server checks their Origin itself.
    for (const [origin, ok] of [['http://course.example:3000', true], ['http://elsewhere.example', false]]) {
      const s = io(server.url, {
        forceNew: true,
        reconnection: false,
        transports: ['websocket'],
        extraHeaders: { Origin: origin },
      });
      try {
        if (ok) await connected(s);
        else await connectError(s);
      } finally {
        s.disconnect();
      }
    }
  });
});

describe('Socket.IO resume and reconnection', () => {
  let server;
  before(async () => {
    // Post rate limits off: these tests post 60 and 120 messages as fast as they can.
    server = await startServer(['--post-rate', '0']);
  });
  after(async () => {
    await server?.stop();
  });

  test('a client that drops and reconnects gets exactly the messages it missed', T, async () => {
    const c = client(server.url, { resume: true, reconnectionDelay: 1000, randomizationFactor: 0 });
    try {
      await connected(c.s);
      const first = await post(c.s, { user: 'r', text: 'seen live' });
      await waitUntil(() => c.rec.ids.includes(first.id), { what: 'live message' });
      assert.equal(c.rec.since.length, 0, 'no resume on a fresh connection');

      // Drop the connection under the client (as a network failure would); it reconnects
      // by itself after reconnectionDelay and passes auth.last = the newest id it holds.
      const reconnected = new Promise((r) => c.s.io.once('reconnect', r));
      c.s.io.engine.close();
      const missed = [];
      for (let i = 0; i < 3; i++) missed.push((await postPoll(server.url, 'p', `missed ${i}`)).body.id);
      await reconnected;
      const page = await waitUntil(() => c.rec.since.find((p) => !p.more), { what: 'msg:since' });
      assert.deepEqual(page.msg.map((m) => m.id), [...missed].reverse(), 'exactly the missed messages, newest first');
      assert.deepEqual(page.msg.map((m) => m.text), ['missed 2', 'missed 1', 'missed 0']);
      assert.equal(page.last, missed[2]);
      assert.deepEqual(c.rec.ids, [first.id, ...missed], 'each message once, in order');

      // Live again.
      const next = await post(c.s, { user: 'r', text: 'after resume' });
      await waitUntil(() => c.rec.ids.includes(next.id), { what: 'live after resume' });
      assert.deepEqual(c.rec.ids, [first.id, ...missed, next.id]);
    } finally {
      c.s.disconnect();
    }
  });

  test('messages posted while a client reconnects arrive once each, in order, without gaps', T, async () => {
    const c = client(server.url, { resume: true, reconnectionDelay: 100, randomizationFactor: 0 });
    try {
      await connected(c.s);
      await waitUntil(() => c.rec.get.length > 0, { what: 'history' });
      const start = c.rec.last ?? 0;
      const posted = [];
      let drops = 0;
      // Keep posting from a polling client while the Socket.IO client keeps dropping.
      const posting = (async () => {
        for (let i = 0; i < 60; i++) {
          posted.push((await postPoll(server.url, 'busy', `m${i}`)).body.id);
          await sleep(15);
          if (i % 12 === 5 && c.s.connected) {
            drops++;
            c.s.io.engine.close();
          }
        }
      })();
      await posting;
      await waitUntil(() => c.s.connected && c.rec.last === posted[posted.length - 1], { what: 'all messages', timeout: 15000 });
      assert.ok(drops >= 2, `dropped ${drops} times`);
      assert.deepEqual(c.rec.ids.filter((id) => id > start), posted);
    } finally {
      c.s.disconnect();
    }
  });

  test('many missed messages come in msg:since pages, oldest page first', T, async () => {
    const c = client(server.url, { resume: true });
    try {
      await connected(c.s);
      await waitUntil(() => c.rec.get.length > 0, { what: 'history' });
      c.s.disconnect();
      const missed = [];
      for (let i = 0; i < 120; i++) missed.push((await postPoll(server.url, 'bulk', `b${i}`)).body.id);
      c.s.connect();
      await waitUntil(() => c.rec.since.some((p) => !p.more), { what: 'last msg:since page' });
      assert.ok(c.rec.since.length >= 3, `${c.rec.since.length} pages of at most 50`);
      assert.ok(c.rec.since.slice(0, -1).every((p) => p.more === true));
      assert.deepEqual(c.rec.ids.slice(-120), missed);
    } finally {
      c.s.disconnect();
    }
  });

  test('after a server restart the client reconnects by itself and resumes exactly', T, async () => {
    // The store is durable (SQLite): the restarted server keeps the history and the ids, and
    // the client's resume delivers exactly what was posted while it was away.
    const port = server.port;
    const c = client(server.url, { resume: true, reconnectionDelay: 1000, reconnectionDelayMax: 1000 });
    try {
      await connected(c.s);
      const first = await post(c.s, { user: 'r', text: 'before restart' });
      await waitUntil(() => c.rec.last === first.id, { what: 'a message' });
      const dropped = new Promise((r) => c.s.once('disconnect', r));
      await server.stop();
      const reason = await dropped;
      assert.equal(reason, 'transport close', 'the server closed the transport, not the Socket.IO session');
      server = await startServer([], { listen: `127.0.0.1:${port}`, dataDir: server.dataDir });
      const missed = [];
      for (const text of ['while away 1', 'while away 2']) {
        const res = await fetch(`${server.url}/poll`, {
          method: 'POST',
          headers: { 'Content-Type': 'application/json' },
          body: JSON.stringify({ user: 'other', text }),
        });
        missed.push((await res.json()).id);
      }
      assert.deepEqual(missed, [first.id + 1, first.id + 2], 'ids continue after the restart');
      await waitUntil(() => c.s.connected, { what: 'automatic reconnection', timeout: 15000 });
      await waitUntil(() => c.rec.last === missed[1], { what: 'the missed messages' });
      assert.deepEqual(c.rec.ids.filter((id) => id > first.id), missed, 'exactly the missed ones, once, in order');
      assert.ok(!c.rec.get.some((g) => g.reset), 'no reset: the server kept its history');
    } finally {
      c.s.disconnect();
    }
  });

  test('with --store memory a restarted server tells the client to start over', T, async () => {
    let memory = await startServer(['--store', 'memory']);
    const port = memory.port;
    const c = client(memory.url, { resume: true, reconnectionDelay: 200, reconnectionDelayMax: 500 });
    try {
      await connected(c.s);
      await post(c.s, { user: 'r', text: 'before restart' });
      await waitUntil(() => c.rec.last > 0, { what: 'a message' });
      const gets = c.rec.get.length;
      const dropped = new Promise((r) => c.s.once('disconnect', r));
      await memory.stop();
      await dropped;
      memory = await startServer(['--store', 'memory'], { listen: `127.0.0.1:${port}` });
      await waitUntil(() => c.s.connected, { what: 'automatic reconnection', timeout: 15000 });
      const fresh = await waitUntil(() => c.rec.get.slice(gets).find((g) => g.reset), { what: 'msg:get reset' });
      assert.deepEqual(fresh.msg, []);
      assert.equal(fresh.last, 0);
      const ack = await post(c.s, { user: 'r', text: 'after restart' });
      assert.deepEqual(ack, { status: 'ok', id: 1 });
      await waitUntil(() => c.rec.news.some((m) => m.text === 'after restart'), { what: 'live after restart' });
    } finally {
      c.s.disconnect();
      await memory.stop();
    }
  });
});

// Post rate limits, with a small burst and a slow rate so that refusals come after a few posts
// and a bucket refills in about a second.
const PER_SOCKET = /^posting too fast: at most 3 posts at once on one connection, then 1 a second \(--post-burst, --post-rate\); the post was not stored, try again in \d+\.\d{3} s$/;
const PER_ADDRESS = /^posting too fast: at most 2 posts at once from one address, then 1 a second \(--post-burst-per-ip, --post-rate-per-ip\); the post was not stored, try again in \d+\.\d{3} s$/;

function assertRetry(refusal) {
  assert.ok(Number.isInteger(refusal.retry_after_ms), JSON.stringify(refusal));
  assert.ok(refusal.retry_after_ms > 0 && refusal.retry_after_ms <= 1000, JSON.stringify(refusal));
}

describe('Socket.IO post rate limits per socket', () => {
  let server;
  before(async () => {
    server = await startServer(['--post-rate', '1', '--post-burst', '3', '--post-rate-per-ip', '0']);
  });
  after(async () => {
    await server?.stop();
  });

  test('posts past the burst get an error ack or msg:error, are not stored, and spare other sockets', T, async () => {
    const a = client(server.url);
    const b = client(server.url);
    try {
      await Promise.all([connected(a.s), connected(b.s)]);
      const before = await lastId(server.url);
      const acks = await Promise.all([1, 2, 3, 4].map((i) => post(a.s, { user: 'rate', text: `a${i}` })));
      for (const ack of acks.slice(0, 3)) assert.equal(ack.status, 'ok', JSON.stringify(acks));
      assert.deepEqual(Object.keys(acks[3]).sort(), ['error', 'retry_after_ms']);
      assert.match(acks[3].error, PER_SOCKET);
      assertRetry(acks[3]);

      // Without an ack callback the refusal is a msg:error.
      a.s.emit('msg:post', { user: 'rate', text: 'no ack' });
      const refused = await waitUntil(() => a.rec.errors[0], { what: 'msg:error' });
      assert.match(refused.error, PER_SOCKET);
      assertRetry(refused);

      // Another socket (same address) has its own bucket.
      assert.equal((await post(b.s, { user: 'rate', text: 'b1' })).status, 'ok');
      // Nothing refused was stored: a1..a3 and b1.
      assert.equal(await lastId(server.url), before + 4);

      // Once the announced wait is over, the socket posts again.
      await sleep(refused.retry_after_ms);
      const again = await post(a.s, { user: 'rate', text: 'a again' });
      assert.equal(again.status, 'ok', JSON.stringify(again));
      assert.ok(a.s.connected, 'refusals do not close a Socket.IO socket');
    } finally {
      a.s.disconnect();
      b.s.disconnect();
    }
  });
});

describe('Socket.IO post rate limits per address', () => {
  let server;
  before(async () => {
    server = await startServer(['--post-rate', '100', '--post-burst', '100', '--post-rate-per-ip', '1', '--post-burst-per-ip', '2']);
  });
  after(async () => {
    await server?.stop();
  });

  test('the sockets of one address share its bucket; another address has its own', T, async () => {
    // WebSocket only: socket.io-client's Node WebSocket takes `localAddress`, so `c` comes
    // from 127.0.0.2.
    const a = client(server.url, { transports: ['websocket'] });
    const b = client(server.url, { transports: ['websocket'] });
    const c = client(server.url, { transports: ['websocket'], localAddress: '127.0.0.2' });
    try {
      await Promise.all([connected(a.s), connected(b.s), connected(c.s)]);
      const before = await lastId(server.url);
      assert.equal((await post(a.s, { user: 'rate', text: 'a1' })).status, 'ok');
      assert.equal((await post(a.s, { user: 'rate', text: 'a2' })).status, 'ok');
      const refused = await post(b.s, { user: 'rate', text: 'b1' });
      assert.match(refused.error ?? '', PER_ADDRESS, JSON.stringify(refused));
      assertRetry(refused);
      // HTTP posts from the address share the bucket too.
      assert.equal((await postPoll(server.url, 'rate', 'http')).status, 429);
      for (const text of ['c1', 'c2']) {
        assert.equal((await post(c.s, { user: 'rate', text })).status, 'ok', `${text} from 127.0.0.2`);
      }
      assert.equal(await lastId(server.url), before + 4);
      await sleep(refused.retry_after_ms);
      const again = await post(b.s, { user: 'rate', text: 'b again' });
      assert.equal(again.status, 'ok', JSON.stringify(again));
    } finally {
      for (const x of [a, b, c]) x.s.disconnect();
    }
  });
});
