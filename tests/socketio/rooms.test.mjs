// Rooms, presence and typing over Socket.IO (issue 13), against the official socket.io-client
// and a real rtchat process: room isolation with ids per room, the room:join acknowledgement
// and room:history before any live message, resume per room across a restart (SQLite),
// presence per user name, typing (not to the typer, 1 a second, never stored), refusals
// (bad names, --max-rooms, --max-joined-rooms) that leave the socket connected, and the
// course's msg:get unchanged. Every wait waits for an event (or a round trip), never a time.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { io } from 'socket.io-client';
import { startServer, waitUntil } from './lib/server.mjs';
import { connected } from './lib/socket.mjs';

const T = { timeout: 60000 };

const BAD_NAME = 'room names are 1 to 64 characters of a-z, 0-9, - and _ (or a direct message\'s dm:<16 hex digits>); got "Foo!"';

/**
 * A socket.io-client socket that records every event in arrival order (`log`), with the
 * acknowledgements of its room:join requests in that order too, and follows each room's
 * position (the newest id it holds and the epoch) from room:history, msg:new and msg:since.
 */
function client(url, { user, snapshots = false, rejoin = false, ...opts } = {}) {
  const rec = { log: [], rooms: {}, connects: 0 };
  const room = (name) => (rec.rooms[name] ??= { ids: [], last: null, epoch: null, history: [], since: [] });
  const auth = { snapshots };
  if (user !== undefined) auth.user = user;
  const s = io(url, {
    forceNew: true,
    reconnectionDelay: 200,
    reconnectionDelayMax: 1000,
    ...opts,
    auth,
  });
  const see = (r, id) => {
    r.ids.push(id);
    if (r.last === null || id > r.last) r.last = id;
  };
  s.onAny((event, data) => {
    rec.log.push({ event, data });
    if (event === 'room:history') {
      const r = room(data.room);
      r.history.push(data);
      r.epoch = data.epoch;
      if (r.last === null || data.reset) r.last = data.last;
    } else if (event === 'msg:new') {
      see(room(data.room), data.id);
    } else if (event === 'msg:since') {
      const r = room(data.room);
      r.since.push(data);
      r.epoch = data.epoch;
      for (const m of [...data.msg].reverse()) see(r, m.id);
    }
  });
  const c = {
    s,
    rec,
    room,
    /** room:join with an acknowledgement, logged in arrival order among the events. */
    join(name, extra = {}) {
      return new Promise((resolve, reject) => {
        s.timeout(10000).emit('room:join', { room: name, ...extra }, (err, ack) => {
          if (err) return reject(err);
          rec.log.push({ event: 'ack', data: ack });
          if (!ack.error) room(name).epoch = ack.epoch;
          resolve(ack);
        });
      });
    },
    /** room:join resuming from what this client holds in the room. */
    rejoin(name) {
      const r = room(name);
      return c.join(name, r.last === null ? {} : { last: r.last, epoch: r.epoch });
    },
    leave: (name) => s.timeout(10000).emitWithAck('room:leave', { room: name }),
    post: (body) => s.timeout(10000).emitWithAck('msg:post', body),
    typing: (body) => s.timeout(10000).emitWithAck('typing', body),
    events: (name) => rec.log.filter((e) => e.event === name).map((e) => e.data),
    news: (name) => c.events('msg:new').filter((m) => m.room === name),
  };
  if (rejoin) {
    // After a reconnection the socket is in general only: join the rooms again, resuming.
    s.on('connect', () => {
      rec.connects++;
      if (rec.connects > 1) for (const name of rejoin) c.rejoin(name).catch(() => {});
    });
  }
  return c;
}

/** Joined and past its history: every later message of the room comes live. */
async function joined(c, name, extra) {
  const ack = await c.join(name, extra);
  assert.equal(ack.error, undefined, JSON.stringify(ack));
  await waitUntil(() => c.room(name).history.length > 0 || c.room(name).since.some((p) => !p.more), {
    what: `${name}: history`,
  });
  return ack;
}

describe('Socket.IO rooms', () => {
  let server;
  before(async () => {
    server = await startServer(['--post-rate', '0']);
  });
  after(async () => {
    await server?.stop();
  });

  test('each message reaches exactly the sockets of its room; ids are per room; msg:new names the room', T, async () => {
    const a1 = client(server.url, { user: 'ann' });
    const a2 = client(server.url, { user: 'amy' });
    const b1 = client(server.url, { user: 'bob' });
    const g = client(server.url);
    const all = [a1, a2, b1, g];
    try {
      await Promise.all(all.map((c) => connected(c.s)));
      await joined(a1, 'iso-a');
      await joined(a2, 'iso-a');
      await joined(b1, 'iso-b');
      // A socket may leave general too.
      assert.deepEqual(await a2.leave('general'), { room: 'general' });

      const aIds = [];
      const bIds = [];
      for (let i = 0; i < 3; i++) {
        const ack = await a1.post({ room: 'iso-a', user: 'ann', text: `a${i}` });
        assert.deepEqual(ack, { status: 'ok', id: ack.id });
        aIds.push(ack.id);
      }
      for (let i = 0; i < 2; i++) bIds.push((await b1.post({ room: 'iso-b', user: 'bob', text: `b${i}` })).id);
      const gId = (await g.post({ user: 'gus', text: 'in general' })).id;
      assert.deepEqual(aIds, [1, 2, 3], 'a new room counts from 1');
      assert.deepEqual(bIds, [1, 2], 'each room has its own ids');

      for (const c of [a1, a2]) {
        await waitUntil(() => c.news('iso-a').length === 3, { what: 'the messages of iso-a' });
        assert.deepEqual(c.news('iso-a').map((m) => m.id), aIds);
        assert.deepEqual(c.news('iso-a').map((m) => m.text), ['a0', 'a1', 'a2']);
        const m = c.news('iso-a')[0];
        assert.deepEqual(Object.keys(m).sort(), ['id', 'room', 'text', 'time', 'user']);
      }
      await waitUntil(() => b1.news('iso-b').length === 2, { what: 'the messages of iso-b' });
      assert.deepEqual(b1.news('iso-b').map((m) => m.id), bIds);
      for (const c of [a1, b1, g]) {
        const m = await waitUntil(() => c.news('general').find((n) => n.id === gId), { what: 'the message of general' });
        assert.equal(m.text, 'in general');
      }
      // One more round trip per socket (a post answered after every broadcast above).
      for (const c of all) await c.post({ room: 'iso-z', user: 'zed', text: 'elsewhere' });

      assert.deepEqual(a1.news('iso-b'), [], 'nothing of iso-b in iso-a');
      assert.deepEqual(a2.news('iso-b'), []);
      assert.deepEqual(b1.news('iso-a'), [], 'nothing of iso-a in iso-b');
      assert.deepEqual(g.news('iso-a').concat(g.news('iso-b')), [], 'nothing of the rooms in general');
      assert.deepEqual(a2.news('general'), [], 'a socket that left general gets nothing of it');
      assert.deepEqual(all.flatMap((c) => c.news('iso-z')), [], 'posting in a room is not joining it');
      for (const c of all) {
        assert.ok(c.events('msg:new').every((m) => typeof m.room === 'string'), 'every msg:new names its room');
        assert.ok(c.s.connected);
      }
    } finally {
      for (const c of all) c.s.disconnect();
    }
  });

  test('room:join is acknowledged, then room:history, before any live msg:new of the room', T, async () => {
    const poster = client(server.url, { user: 'pat' });
    const joiners = Array.from({ length: 5 }, (_, i) => client(server.url, { user: `j${i}` }));
    try {
      await Promise.all([poster, ...joiners].map((c) => connected(c.s)));
      // Messages keep coming while the sockets join.
      const ids = [];
      let posting = true;
      const posts = (async () => {
        for (let i = 0; posting || i < 20; i++) {
          ids.push((await poster.post({ room: 'busy', user: 'pat', text: `m${i}` })).id);
        }
      })();
      const acks = [];
      for (const j of joiners) {
        await waitUntil(() => ids.length >= 3 * (acks.length + 1), { what: 'more messages' });
        acks.push(await j.join('busy'));
      }
      posting = false;
      await posts;
      const final = ids.at(-1);
      for (const [i, j] of joiners.entries()) {
        await waitUntil(() => j.room('busy').last === final, { what: `joiner ${i}: every message` });
        const ofRoom = ['room:history', 'msg:new', 'msg:since'];
        const log = j.rec.log.filter((e) => e.event === 'ack' || (ofRoom.includes(e.event) && e.data.room === 'busy'));
        assert.equal(log[0].event, 'ack', 'the acknowledgement first');
        assert.deepEqual(Object.keys(log[0].data).sort(), ['epoch', 'last', 'room']);
        assert.equal(log[0].data.room, 'busy');
        assert.equal(log[1].event, 'room:history', 'then the history');
        const history = log[1].data;
        assert.equal(history.room, 'busy');
        assert.equal(history.last, acks[i].last, 'the history the acknowledgement announced');
        assert.equal(history.epoch, acks[i].epoch);
        assert.equal(history.msg[0]?.id ?? 0, history.last, 'newest first, up to last');
        const live = log.slice(2);
        assert.ok(live.every((e) => e.event === 'msg:new'), live.map((e) => e.event).join());
        const want = ids.filter((id) => id > history.last);
        assert.deepEqual(live.map((e) => e.data.id), want, 'then every later message once, in order');
      }
    } finally {
      for (const c of [poster, ...joiners]) c.s.disconnect();
    }
  });

  test('presence: joins and leaves per user name, several sockets of one user counted once', T, async () => {
    const ann = client(server.url, { user: 'ann' });
    const bob1 = client(server.url, { user: 'bob' });
    const bob2 = client(server.url, { user: 'bob' });
    const carl = client(server.url, { user: 'carl' });
    const anon = client(server.url);
    const all = [ann, bob1, bob2, carl, anon];
    const presence = () => ann.events('presence').filter((p) => p.room === 'pres');
    const joinedNames = () => presence().flatMap((p) => p.joined);
    const leftNames = () => presence().flatMap((p) => p.left);
    try {
      await Promise.all(all.map((c) => connected(c.s)));
      await joined(ann, 'pres');
      await joined(bob1, 'pres');
      await waitUntil(() => joinedNames().includes('bob'), { what: 'ann sees bob join' });
      const p = presence().find((e) => e.joined.includes('bob'));
      assert.deepEqual(Object.keys(p).sort(), ['joined', 'left', 'room']);
      // bob's second socket: bob is in already. bob's first leaves: bob is still in.
      await joined(bob2, 'pres');
      assert.deepEqual(await bob1.leave('pres'), { room: 'pres' });
      // An unnamed socket is counted, never listed.
      await joined(anon, 'pres');
      await joined(carl, 'pres');
      await waitUntil(() => joinedNames().includes('carl'), { what: 'ann sees carl join' });
      assert.deepEqual(leftNames(), [], 'bob did not leave: his other socket is in');
      assert.deepEqual(joinedNames().filter((n) => n === 'bob'), ['bob'], 'bob joined once');
      assert.ok(!joinedNames().includes(undefined) && joinedNames().every((n) => typeof n === 'string'));
      // bob's last socket leaves: bob leaves. A disconnect is a leave.
      await bob2.leave('pres');
      await waitUntil(() => leftNames().includes('bob'), { what: 'ann sees bob leave' });
      carl.s.disconnect();
      await waitUntil(() => leftNames().includes('carl'), { what: 'ann sees carl go' });
      assert.deepEqual(leftNames().sort(), ['bob', 'carl']);
      assert.ok(presence().every((e) => e.room === 'pres'));
      // Presence of general reaches the sockets in general too, with its room.
      const named = client(server.url, { user: 'gina' });
      all.push(named);
      await connected(named.s);
      await waitUntil(() => anon.events('presence').some((e) => e.room === 'general' && e.joined.includes('gina')), {
        what: 'presence in general',
      });
    } finally {
      for (const c of all) c.s.disconnect();
    }
  });

  test('typing reaches the others, not the typer\'s own sockets, at most once a second, and is never stored', T, async () => {
    const ann1 = client(server.url, { user: 'ann' });
    const ann2 = client(server.url, { user: 'ann' });
    const bob = client(server.url, { user: 'bob' });
    const anon = client(server.url);
    const all = [ann1, ann2, bob, anon];
    const typing = (c) => c.events('typing').filter((t) => t.room === 'typ');
    try {
      await Promise.all(all.map((c) => connected(c.s)));
      for (const c of all) await joined(c, 'typ');
      const before = (await bob.post({ room: 'typ', user: 'bob', text: 'before typing' })).id;

      assert.deepEqual(await ann1.typing({ room: 'typ' }), { room: 'typ' });
      const seen = await waitUntil(() => typing(bob)[0], { what: 'bob sees ann typing' });
      assert.deepEqual(seen, { room: 'typ', user: 'ann' });
      await waitUntil(() => typing(anon).length === 1, { what: 'the unnamed socket sees it too' });
      const firstAt = Date.now();
      // More within the second are dropped silently (still acknowledged).
      for (let i = 0; i < 3; i++) assert.deepEqual(await ann1.typing({ room: 'typ' }), { room: 'typ' });
      assert.deepEqual(await ann2.typing({ room: 'typ' }), { room: 'typ' }, 'one user, one limit');
      // A message after them: once it is everywhere, so would any typing sent before it.
      const marker = (await bob.post({ room: 'typ', user: 'bob', text: 'marker' })).id;
      for (const c of all) await waitUntil(() => c.room('typ').ids.includes(marker), { what: 'the marker' });
      assert.equal(typing(bob).length, 1, 'at most one a second');
      assert.deepEqual(typing(ann1), [], 'not to the typer');
      assert.deepEqual(typing(ann2), [], "not to the typer's other sockets");

      // Once the second has passed, the next one goes through.
      await waitUntil(async () => {
        await ann2.typing({ room: 'typ' });
        return typing(bob).length === 2;
      }, { what: 'a second typing signal', timeout: 5000, every: 100 });
      const gap = Date.now() - firstAt;
      assert.ok(gap >= 900, `the second came ${gap} ms after the first`);

      // Never stored: the room holds the two messages only.
      const late = client(server.url);
      all.push(late);
      await connected(late.s);
      await joined(late, 'typ');
      const history = late.room('typ').history[0];
      assert.deepEqual(history.msg.map((m) => m.id), [marker, before]);
      assert.equal(history.last, marker);

      // Refusals: a room the socket is not in; a socket with no name.
      const notIn = await bob.typing({ room: 'elsewhere' });
      assert.equal(notIn.room, 'elsewhere');
      assert.match(notIn.error, /not in room "elsewhere"/);
      const nameless = await anon.typing({ room: 'typ' });
      assert.match(nameless.error, /typing needs a name/);
      assert.deepEqual(await anon.typing({ room: 'typ', user: 'guest' }), { room: 'typ' }, 'an unnamed socket may name itself');
      await waitUntil(() => typing(bob).some((t) => t.user === 'guest'), { what: 'guest typing' });
      for (const c of all) assert.ok(c.s.connected);
    } finally {
      for (const c of all) c.s.disconnect();
    }
  });

  test('the course\'s msg:get is unchanged and only about general', T, async () => {
    const course = io(server.url, { forceNew: true }); // no auth, like the course's client
    const gets = [];
    const other = [];
    course.on('msg:get', (body) => gets.push(body));
    course.onAny((event) => other.push(event));
    const roomer = client(server.url);
    try {
      await Promise.all([connected(course), connected(roomer.s)]);
      await waitUntil(() => gets.length === 1, { what: 'msg:get on connect' });
      assert.deepEqual(Object.keys(gets[0]).sort(), ['epoch', 'last', 'msg']);
      await joined(roomer, 'side');
      const side = (await roomer.post({ room: 'side', user: 'sid', text: 'aside' })).id;
      await waitUntil(() => roomer.room('side').ids.includes(side), { what: 'the side message' });
      const main = (await roomer.post({ user: 'sid', text: 'in general' })).id;
      await waitUntil(() => gets.length === 2, { what: 'msg:get after the general post' });
      await waitUntil(() => roomer.room('general').ids.includes(main), { what: 'the general message' });
      assert.deepEqual(Object.keys(gets[1]).sort(), ['epoch', 'last', 'msg']);
      assert.equal(gets[1].msg[0].id, main);
      assert.deepEqual(Object.keys(gets[1].msg[0]).sort(), ['id', 'text', 'time', 'user'], 'messages in msg:get are as before');
      assert.equal(gets.length, 2, 'a message of another room makes no msg:get');
      assert.ok(!other.includes('room:history'));
    } finally {
      course.disconnect();
      roomer.s.disconnect();
    }
  });
});

describe('Socket.IO room refusals', () => {
  let server;
  before(async () => {
    server = await startServer(['--max-rooms', '4', '--max-joined-rooms', '3', '--post-rate', '0']);
  });
  after(async () => {
    await server?.stop();
  });

  test('bad names, --max-joined-rooms and --max-rooms are refused; the socket stays connected', T, async () => {
    const x = client(server.url, { user: 'xena' });
    const y = client(server.url, { user: 'yuri' });
    try {
      await Promise.all([connected(x.s), connected(y.s)]);
      // Bad names: the error acknowledgement, or msg:error without a callback.
      assert.deepEqual(await x.join('Foo!'), { error: BAD_NAME, room: 'Foo!' });
      x.s.emit('room:join', { room: 'Foo!' });
      const e = await waitUntil(() => x.events('msg:error')[0], { what: 'msg:error' });
      assert.deepEqual(e, { error: BAD_NAME, room: 'Foo!' });
      assert.deepEqual(await x.post({ room: 'Foo!', user: 'xena', text: 'hi' }), { error: BAD_NAME, room: 'Foo!' });
      assert.deepEqual(await x.typing({ room: 'Foo!' }), { error: BAD_NAME, room: 'Foo!' });
      assert.deepEqual(await x.leave('Foo!'), { error: BAD_NAME, room: 'Foo!' });
      const long = 'x'.repeat(65);
      assert.match((await x.join(long)).error, /^room names are 1 to 64 characters/);
      assert.deepEqual(await x.join(''), { error: 'room names are 1 to 64 characters of a-z, 0-9, - and _ (or a direct message\'s dm:<16 hex digits>); got ""', room: '' });
      assert.deepEqual(
        await x.s.timeout(5000).emitWithAck('room:join', {}),
        { error: 'room:join takes {room, last?, epoch?}: "room" is missing' },
      );
      assert.deepEqual(
        await x.s.timeout(5000).emitWithAck('room:join', { room: 'ok', last: 'seven' }),
        { error: 'room:join takes {room, last?, epoch?}: "last" must be a message id (a whole number, 0 or more), got "seven"', room: 'ok' },
      );
      assert.match((await x.leave('never-joined')).error, /not in room "never-joined"/);

      // --max-joined-rooms 3: general and two more.
      await joined(x, 'j-a');
      await joined(x, 'j-b');
      assert.deepEqual(await x.join('j-c'), {
        error: 'this connection is already in 3 rooms, its maximum (--max-joined-rooms); leave one first',
        room: 'j-c',
      });
      assert.match((await x.join('j-a')).error, /already in room "j-a"/);
      // Leaving one makes room for another.
      await x.leave('j-b');
      await joined(x, 'j-b');

      // --max-rooms 4: general, j-a, j-b and one more (a post creates a room too).
      assert.equal((await y.post({ room: 'mr-a', user: 'yuri', text: 'first' })).status, 'ok');
      const tooMany = 'this server already holds its maximum of 4 rooms (--max-rooms); join or post in an existing room';
      assert.deepEqual(await y.join('mr-b'), { error: tooMany, room: 'mr-b' });
      assert.deepEqual(await y.post({ room: 'mr-c', user: 'yuri', text: 'no' }), { error: tooMany, room: 'mr-c' });
      // Rooms that exist are joined as ever.
      await joined(y, 'mr-a');
      assert.deepEqual(y.room('mr-a').history[0].msg.map((m) => m.text), ['first']);
      await joined(y, 'j-a');

      // Still connected, and served.
      for (const c of [x, y]) {
        assert.ok(c.s.connected);
        assert.equal((await c.post({ user: 'ok', text: 'still here' })).status, 'ok');
      }
    } finally {
      x.s.disconnect();
      y.s.disconnect();
    }
  });
});

describe('Socket.IO resume per room', () => {
  let server;
  after(async () => {
    await server?.stop();
  });

  test('room:join with last/epoch resumes each room exactly once across a restart (SQLite)', T, async () => {
    server = await startServer(['--post-rate', '0']);
    const port = server.port;
    const c = client(server.url, { user: 'rex', rejoin: ['r1', 'r2'], reconnectionDelay: 300, reconnectionDelayMax: 300 });
    let helper = client(server.url, { user: 'hal' });
    try {
      await Promise.all([connected(c.s), connected(helper.s)]);
      await joined(c, 'r1');
      await joined(c, 'r2');
      const r1 = [];
      const r2 = [];
      for (let i = 0; i < 3; i++) r1.push((await helper.post({ room: 'r1', user: 'hal', text: `r1 live ${i}` })).id);
      r2.push((await helper.post({ room: 'r2', user: 'hal', text: 'r2 live' })).id);
      await waitUntil(() => c.room('r1').last === r1.at(-1) && c.room('r2').last === r2.at(-1), { what: 'the live messages' });
      const epochs = { r1: c.room('r1').epoch, r2: c.room('r2').epoch };
      helper.s.disconnect();

      const dropped = new Promise((r) => c.s.once('disconnect', r));
      await server.stop();
      assert.equal(await dropped, 'transport close');
      const logged = c.rec.log.length;
      server = await startServer(['--post-rate', '0'], { listen: `127.0.0.1:${port}`, dataDir: server.dataDir });
      helper = client(server.url, { user: 'hal' });
      await connected(helper.s);
      // Posted while rex is away, in both rooms: ids go on where they were.
      for (let i = 0; i < 2; i++) r1.push((await helper.post({ room: 'r1', user: 'hal', text: `r1 away ${i}` })).id);
      r2.push((await helper.post({ room: 'r2', user: 'hal', text: 'r2 away' })).id);
      assert.deepEqual(r1, [1, 2, 3, 4, 5]);
      assert.deepEqual(r2, [1, 2]);

      await waitUntil(() => c.s.connected, { what: 'automatic reconnection', timeout: 15000 });
      await waitUntil(() => c.room('r1').last === r1.at(-1) && c.room('r2').last === r2.at(-1), {
        what: 'the missed messages',
      });
      const since = c.rec.log.slice(logged);
      const acks = since.filter((e) => e.event === 'ack').map((e) => e.data);
      assert.deepEqual(acks.map((a) => a.room).sort(), ['r1', 'r2']);
      for (const a of acks) assert.equal(a.epoch, epochs[a.room], 'the same epoch: the store kept the room');
      assert.ok(!since.some((e) => e.event === 'room:history'), 'a resume, not a fresh history');
      // Each room: its acknowledgement, then its msg:since pages (the last one comes even when
      // nothing was missed), then its live messages. What was missed came in the pages, or,
      // posted while the socket was reconnecting, live: once either way.
      for (const [name, ids, away] of [['r1', r1, [4, 5]], ['r2', r2, [2]]]) {
        const ofRoom = since.filter((e) => e.event === 'ack' || e.data?.room === name)
          .filter((e) => e.event !== 'ack' || e.data.room === name)
          .filter((e) => e.event !== 'presence' && e.event !== 'typing');
        assert.equal(ofRoom[0].event, 'ack', name);
        const pages = ofRoom.filter((e) => e.event === 'msg:since').map((e) => e.data);
        assert.ok(pages.length > 0 && !pages.at(-1).more, `${name}: the last page`);
        const lastPage = ofRoom.findIndex((e) => e.event === 'msg:since' && !e.data.more);
        assert.ok(ofRoom.slice(1, lastPage).every((e) => e.event === 'msg:since'), `${name}: pages first`);
        assert.ok(ofRoom.slice(lastPage + 1).every((e) => e.event === 'msg:new'), `${name}: then live`);
        const got = ofRoom.slice(1).flatMap((e) => (e.event === 'msg:new' ? [e.data.id] : [...e.data.msg].reverse().map((m) => m.id)));
        assert.deepEqual(got, away, `${name}: exactly what was missed`);
        assert.deepEqual(ids.slice(-away.length), away);
      }

      // Live again, each message once.
      r1.push((await helper.post({ room: 'r1', user: 'hal', text: 'r1 after' })).id);
      await waitUntil(() => c.room('r1').last === r1.at(-1), { what: 'live after the resume' });
      assert.deepEqual(c.room('r1').ids, r1, 'r1: every message exactly once, in order');
      assert.deepEqual(c.room('r2').ids, r2, 'r2: every message exactly once, in order');
    } finally {
      c.s.disconnect();
      helper.s.disconnect();
    }
  });

  test('a join naming another epoch gets the history again with reset', T, async () => {
    server ??= await startServer();
    const c = client(server.url, { user: 'eve' });
    try {
      await connected(c.s);
      await joined(c, 'ep');
      const id = (await c.post({ room: 'ep', user: 'eve', text: 'one' })).id;
      await c.leave('ep');
      const ack = await c.join('ep', { last: id, epoch: 'not-this-one' });
      assert.equal(ack.room, 'ep');
      const reset = await waitUntil(() => c.room('ep').history.find((h) => h.reset), { what: 'room:history reset' });
      assert.deepEqual(reset.msg.map((m) => m.id), [id]);
      assert.equal(reset.room, 'ep');
    } finally {
      c.s.disconnect();
    }
  });
});
