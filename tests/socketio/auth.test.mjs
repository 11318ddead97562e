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

  test('auth.user naming someone else is refused at connect', T, async () => {
    const s = open({ auth: { token: good('u-ann', 'Ann'), user: 'Bob' } });
    const err = await connectError(s);
    assert.match(err.message, /not_your_name/, err.message);
  });
});
