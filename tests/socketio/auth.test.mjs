// `rtchat serve --auth token` over Socket.IO, with the official socket.io-client: the token
// travels in the handshake's `auth: {token}`; a missing, malformed, wrongly signed, expired or
// not-yet-valid one is refused with a `connect_error` naming its code; a good one posts under
// its name and id, and a post (or an `auth.user`) under another name is refused.
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { io } from 'socket.io-client';
import { startServer } from './lib/server.mjs';
import { connected, connectError } from './lib/socket.mjs';

const T = { timeout: 30000 };
const SECRET = 'an rtchat test secret of at least thirty-two bytes';

const b64url = (v) => Buffer.from(typeof v === 'string' ? v : JSON.stringify(v)).toString('base64url');

/** An HS256 JWT with `claims`, signed with `secret` (Node's own HMAC: an independent minter). */
function jwt(claims, secret = SECRET) {
  const head = `${b64url({ alg: 'HS256', typ: 'JWT', kid: 'secret-file' })}.${b64url(claims)}`;
  const sig = crypto.createHmac('sha256', secret).update(head).digest('base64url');
  return `${head}.${sig}`;
}

const now = () => Math.floor(Date.now() / 1000);
const good = (sub, name) => jwt({ sub, name, exp: now() + 3600 });

describe('Socket.IO with --auth token', () => {
  let server;
  const sockets = [];
  const open = (opts) => {
    const s = io(server.url, { forceNew: true, reconnection: false, ...opts });
    sockets.push(s);
    return s;
  };

  before(async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rtchat-sio-auth-'));
    const file = path.join(dir, 'secret');
    fs.writeFileSync(file, SECRET);
    server = await startServer(['--auth', 'token', '--jwt-secret-file', file, '--token-grace', '0']);
  });
  after(async () => {
    for (const s of sockets) s.close();
    await server?.stop();
  });

  const bad = [
    ['no token', undefined, 'token_missing'],
    ['not a JWT', 'not-a-jwt', 'token_malformed'],
    ['signed with another secret', jwt({ sub: 'u1', exp: now() + 3600 }, 'another secret of thirty-two bytes or more!'), 'token_bad_signature'],
    ['expired', jwt({ sub: 'u1', exp: now() - 60 }), 'token_expired'],
    ['not yet valid', jwt({ sub: 'u1', exp: now() + 3600, nbf: now() + 600 }), 'token_not_yet_valid'],
  ];
  for (const transports of [['polling'], ['websocket']]) {
    for (const [what, token, code] of bad) {
      test(`${transports[0]}: ${what} is refused with ${code}`, T, async () => {
        const s = open({ transports, auth: token === undefined ? {} : { token } });
        const err = await connectError(s);
        assert.match(err.message, new RegExp(code), err.message);
      });
    }
  }

  test('a good token posts under its name and id; another name is refused', T, async () => {
    const ann = open({ auth: { token: good('u-ann', 'Ann') } });
    const bob = open({ transports: ['websocket'], auth: { token: good('u-bob', 'Bob'), snapshots: false } });
    await Promise.all([connected(ann), connected(bob)]);
    const seen = new Promise((resolve) => bob.on('msg:new', resolve));
    const ack = await ann.timeout(5000).emitWithAck('msg:post', { text: 'hello from Ann' });
    assert.equal(ack.status, 'ok', JSON.stringify(ack));
    const msg = await seen;
    assert.equal(msg.user, 'Ann');
    assert.equal(msg.uid, 'u-ann');
    assert.equal(msg.text, 'hello from Ann');

    const refused = await ann.timeout(5000).emitWithAck('msg:post', { user: 'Bob', text: 'as Bob' });
    assert.match(refused.error, /"Ann"/, JSON.stringify(refused));
    const same = await ann.timeout(5000).emitWithAck('msg:post', { user: 'Ann', text: 'as Ann' });
    assert.equal(same.status, 'ok', JSON.stringify(same));
  });

  test('an expiring token ends the socket with auth:expired unless auth:refresh renews it', T, async () => {
    // Expires within 1 to 2 s (whole seconds); --token-grace 0.
    const short = jwt({ sub: 'u-cy', name: 'Cy', exp: now() + 2 });
    const lapsing = open({ auth: { token: short } });
    const renewed = open({ transports: ['websocket'], auth: { token: short } });
    await Promise.all([connected(lapsing), connected(renewed)]);
    const expired = new Promise((resolve) => lapsing.on('auth:expired', resolve));
    const gone = new Promise((resolve) => lapsing.on('disconnect', resolve));

    const wrong = await renewed.timeout(5000).emitWithAck('auth:refresh', { token: good('u-other', 'Other') });
    assert.match(wrong.error, /same user/, JSON.stringify(wrong));
    const ok = await renewed.timeout(5000).emitWithAck('auth:refresh', { token: good('u-cy', 'Cy') });
    assert.equal(ok.status, 'ok', JSON.stringify(ok));
    assert.ok(ok.expires > now() + 600, JSON.stringify(ok));

    assert.deepEqual(await expired, { reason: 'token expired' });
    assert.equal(await gone, 'io server disconnect');
    // The renewed socket outlived the first token.
    assert.ok(renewed.connected);
    const ack = await renewed.timeout(5000).emitWithAck('msg:post', { text: 'still here' });
    assert.equal(ack.status, 'ok', JSON.stringify(ack));
  });

  test('logging out revokes the token: its socket gets auth:revoked and is disconnected', T, async () => {
    const token = jwt({ sub: 'u-dee', name: 'Dee', exp: now() + 3600, jti: 'dee-session' });
    const s = open({ auth: { token } });
    await connected(s);
    const revoked = new Promise((resolve) => s.on('auth:revoked', resolve));
    const gone = new Promise((resolve) => s.on('disconnect', resolve));
    const res = await fetch(`${server.url}/auth/logout`, { method: 'POST', headers: { authorization: `Bearer ${token}` } });
    assert.equal(res.status, 200, await res.text());
    assert.deepEqual(await revoked, { reason: 'token revoked' });
    assert.equal(await gone, 'io server disconnect');
    const again = open({ auth: { token } });
    assert.match((await connectError(again)).message, /token_revoked/);
  });

  test("a token's rooms claim keeps its socket out of general and out of other rooms", T, async () => {
    const token = jwt({ sub: 'u-eve', name: 'Eve', exp: now() + 3600, rooms: ['a'] });
    const s = open({ transports: ['websocket'], auth: { token, snapshots: false } });
    const got = [];
    s.on('msg:get', (m) => got.push(['get', m]));
    s.on('msg:new', (m) => got.push(['new', m]));
    await connected(s);
    const general = await s.timeout(5000).emitWithAck('msg:post', { text: 'into general' });
    assert.match(general.error, /rooms claim/, JSON.stringify(general));
    const b = await s.timeout(5000).emitWithAck('room:join', { room: 'b' });
    assert.match(b.error, /rooms claim/, JSON.stringify(b));
    const a = await s.timeout(5000).emitWithAck('room:join', { room: 'a' });
    assert.equal(a.error, undefined, JSON.stringify(a));
    // Someone else posts in general (acknowledged first), then Eve in a.
    const other = open({ transports: ['websocket'], auth: { token: good('u-fay', 'Fay') } });
    await connected(other);
    const inGeneral = await other.timeout(5000).emitWithAck('msg:post', { text: 'for general only' });
    assert.equal(inGeneral.status, 'ok', JSON.stringify(inGeneral));
    const seen = new Promise((resolve) => s.on('msg:new', (m) => m.text === 'into a' && resolve()));
    const ack = await s.timeout(5000).emitWithAck('msg:post', { room: 'a', text: 'into a' });
    assert.equal(ack.status, 'ok', JSON.stringify(ack));
    await seen;
    // Nothing of general reached it.
    assert.ok(!JSON.stringify(got).includes('for general only'), JSON.stringify(got));
    for (const [kind, m] of got) if (kind === 'new') assert.equal(m.room, 'a', JSON.stringify(m));
  });

  /** `METHOD path` on the server as `token`'s user: [status, JSON body]. */
  async function call(method, path, token, body) {
    const res = await fetch(`${server.url}${path}`, {
      method,
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    return [res.status, await res.json()];
  }

  test('a direct message is its two users only: a third socket cannot join, resume into or post to it', T, async () => {
    const [ann, bob, cat] = [good('u-ann', 'Ann'), good('u-bob', 'Bob'), good('u-cat', 'Cat')];
    const [status, opened] = await call('POST', '/me/dm/u-bob', ann);
    assert.equal(status, 200, JSON.stringify(opened));
    const room = opened.room;
    assert.match(room, /^dm:[0-9a-f]{16}$/);
    const a = open({ transports: ['websocket'], auth: { token: ann, snapshots: false } });
    const b = open({ transports: ['websocket'], auth: { token: bob, snapshots: false } });
    const c = open({ transports: ['websocket'], auth: { token: cat, snapshots: false } });
    const catSaw = [];
    c.on('msg:new', (m) => catSaw.push(m));
    await Promise.all([connected(a), connected(b), connected(c)]);
    assert.equal((await b.timeout(5000).emitWithAck('room:join', { room })).error, undefined);
    for (const join of [{ room }, { room, last: 0 }]) {
      const refused = await c.timeout(5000).emitWithAck('room:join', join);
      assert.match(refused.error, /private/, JSON.stringify(refused));
    }
    const post = await c.timeout(5000).emitWithAck('msg:post', { room, text: 'let me in' });
    assert.match(post.error, /private/, JSON.stringify(post));

    const seen = new Promise((resolve) => b.on('msg:new', (m) => m.room === room && resolve(m)));
    const ack = await a.timeout(5000).emitWithAck('msg:post', { room, text: 'just us' });
    assert.equal(ack.status, 'ok', JSON.stringify(ack));
    const msg = await seen;
    assert.equal(msg.text, 'just us');
    assert.equal(msg.uid, 'u-ann');
    // Cat's socket (still connected) got nothing of it: a message of her own arrives first.
    const own = new Promise((resolve) => c.on('msg:new', (m) => m.text === 'mine' && resolve()));
    assert.equal((await c.timeout(5000).emitWithAck('msg:post', { text: 'mine' })).status, 'ok');
    await own;
    assert.ok(catSaw.every((m) => m.room !== room), JSON.stringify(catSaw));
  });

  test('a room turned private takes a non-member socket out of it with room:left', T, async () => {
    const [ann, bob] = [good('u-ann2', 'Ann2'), good('u-bob2', 'Bob2')];
    const a = open({ transports: ['websocket'], auth: { token: ann, snapshots: false } });
    const b = open({ transports: ['websocket'], auth: { token: bob, snapshots: false } });
    const bobSaw = [];
    b.on('msg:new', (m) => bobSaw.push(m));
    await Promise.all([connected(a), connected(b)]);
    // Ann makes the room (her join), Bob joins it too.
    assert.equal((await a.timeout(5000).emitWithAck('room:join', { room: 'sio-club' })).error, undefined);
    assert.equal((await b.timeout(5000).emitWithAck('room:join', { room: 'sio-club' })).error, undefined);
    const left = new Promise((resolve) => b.on('room:left', resolve));
    const [status, settings] = await call('PUT', '/rooms/sio-club', ann, { private: true });
    assert.equal(status, 200, JSON.stringify(settings));
    assert.equal(settings.owner, 'u-ann2');
    const removed = await left;
    assert.equal(removed.room, 'sio-club');
    assert.match(removed.reason, /private/);

    // Nothing more of it reaches Bob: Ann's next general message is the next thing he gets.
    const inGeneral = new Promise((resolve) => b.on('msg:new', (m) => m.text === 'for everyone' && resolve()));
    assert.equal((await a.timeout(5000).emitWithAck('msg:post', { room: 'sio-club', text: 'members only' })).status, 'ok');
    assert.equal((await a.timeout(5000).emitWithAck('msg:post', { text: 'for everyone' })).status, 'ok');
    await inGeneral;
    assert.ok(!bobSaw.some((m) => m.text === 'members only'), JSON.stringify(bobSaw));
    const again = await b.timeout(5000).emitWithAck('room:join', { room: 'sio-club', last: 0 });
    assert.match(again.error, /private/, JSON.stringify(again));
    assert.ok(b.connected, 'the socket stays connected');
  });

  const admin = () => jwt({ sub: 'u-root', name: 'Root', exp: now() + 3600, admin: true });

  test('an admin ban ends the socket with auth:banned; a kick with auth:kicked; a mute refuses posts', T, async () => {
    const banned = open({ transports: ['websocket'], auth: { token: good('u-ban', 'Ban') } });
    const kicked = open({ auth: { token: good('u-kick', 'Kick') } });
    const muted = open({ transports: ['websocket'], auth: { token: good('u-mute', 'Mute') } });
    await Promise.all([connected(banned), connected(kicked), connected(muted)]);
    const events = (s, name) => Promise.all([
      new Promise((resolve) => s.on(name, resolve)),
      new Promise((resolve) => s.on('disconnect', resolve)),
    ]);
    const banEnd = events(banned, 'auth:banned');
    const kickEnd = events(kicked, 'auth:kicked');
    let [status, done] = await call('POST', '/admin/users/u-ban/ban', admin(), { reason: 'spam' });
    assert.equal(status, 200, JSON.stringify(done));
    [status, done] = await call('POST', '/admin/users/u-kick/kick', admin(), {});
    assert.equal(status, 200, JSON.stringify(done));
    assert.deepEqual(await banEnd, [{ reason: 'banned' }, 'io server disconnect']);
    assert.deepEqual(await kickEnd, [{ reason: 'kicked' }, 'io server disconnect']);
    // The banned user cannot connect again; the kicked one can.
    const again = open({ auth: { token: good('u-ban', 'Ban') } });
    assert.match((await connectError(again)).message, /banned/);
    const back = open({ auth: { token: good('u-kick', 'Kick') } });
    await connected(back);

    [status, done] = await call('POST', '/admin/rooms/general/mutes/u-mute', admin(), { reason: 'shouting' });
    assert.equal(status, 200, JSON.stringify(done));
    const refused = await muted.timeout(5000).emitWithAck('msg:post', { text: 'LOUD' });
    assert.match(refused.error, /muted.*shouting/, JSON.stringify(refused));
    const elsewhere = await muted.timeout(5000).emitWithAck('msg:post', { room: 'other', text: 'calm' });
    assert.equal(elsewhere.status, 'ok', JSON.stringify(elsewhere));
  });

  test('a deleted message: msg:deleted to the room, a fresh msg:get to snapshot sockets', T, async () => {
    const author = good('u-del', 'Del');
    const deltas = open({ transports: ['websocket'], auth: { token: good('u-d1', 'D1'), snapshots: false } });
    const snapshots = open({ auth: { token: good('u-d2', 'D2') } });
    await Promise.all([connected(deltas), connected(snapshots)]);
    const [status, posted] = await call('POST', '/rooms/general/msgs', author, { text: 'regrettable' });
    assert.equal(status, 200, JSON.stringify(posted));
    const told = new Promise((resolve) => deltas.on('msg:deleted', resolve));
    const fresh = new Promise((resolve) => snapshots.on('msg:get', (page) => {
      if (!page.msg.some((m) => m.id === posted.id)) resolve(page);
    }));
    const [deleted, answer] = await call('DELETE', `/rooms/general/msgs/${posted.id}`, author);
    assert.equal(deleted, 200, JSON.stringify(answer));
    assert.deepEqual(await told, { room: 'general', id: posted.id });
    const page = await fresh;
    assert.ok(page.msg.every((m) => m.text !== 'regrettable'), JSON.stringify(page));
  });

  test('auth.user naming someone else is refused at connect', T, async () => {
    const s = open({ auth: { token: good('u-ann', 'Ann'), user: 'Bob' } });
    const err = await connectError(s);
    assert.match(err.message, /not_your_name/, err.message);
  });
});
