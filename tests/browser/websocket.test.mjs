// Browser tests of the /websocket page: the chat over the browser's WebSocket (ws://host/ws,
// subprotocol "rtchat.v1": history, per-message frames, acks, resume with ?since=).
// A server that does not upgrade `GET /ws` fails the suite (it is never skipped).
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { launchBrowser, saveScreenshot, scenario } from './lib/browser.mjs';
import {
  debug, gotoOk, item, openChat, recordDot, send, sendOk, textsNewestFirst, token, waitDot, waitDotSeen,
  waitPostError,
} from './lib/chat.mjs';
import { startProxy } from './lib/proxy.mjs';
import { postMessage, probeWebSocket, startServer, waitUntil, withServer } from './lib/server.mjs';

let browser;
before(async () => { browser = await launchBrowser(); });
after(async () => { await browser?.close(); });

describe('websocket: the upgrade', () => {
  const s = withServer();
  it('GET /ws with a WebSocket handshake (subprotocol json) answers 101', async () => {
    assert.equal(await probeWebSocket(s.server.url), true,
      'the server must upgrade GET /ws to a WebSocket (101 Switching Protocols)');
  });
});

describe('websocket: two pages chat', () => {
  const s = withServer();
  it('two /websocket pages see each other\'s messages, newest first, over subprotocol rtchat.v1', { timeout: 30000 }, async () => {
    await scenario(browser, 'websocket-two-pages', async ({ newPage }) => {
      const history = `history ${token()}`;
      await postMessage(s.server.url, 'node', history);
      const a = await newPage();
      const sockets = [];
      a.on('websocket', (ws) => sockets.push(ws.url()));
      await gotoOk(a, `${s.server.url}/websocket`);
      await waitDot(a, 'ok');
      await item(a, history).waitFor();
      await a.fill('#user', 'alice');
      const b = await openChat(newPage, `${s.server.url}/websocket`, 'bob');
      await item(b, history).waitFor();

      const hello = `hello from alice ${token()}`;
      await sendOk(a, hello);
      await item(b, hello).waitFor();
      assert.equal(await item(b, hello).locator('.msg-user').textContent(), 'alice');
      const reply = `hi alice, bob here ${token()}`;
      await sendOk(b, reply);
      await item(a, reply).waitFor();
      const fromNode = `from a polling client ${token()}`;
      await postMessage(s.server.url, 'node', fromNode);
      await item(a, fromNode).waitFor();
      await item(b, fromNode).waitFor();
      assert.deepEqual((await textsNewestFirst(a)).slice(0, 4), [fromNode, reply, hello, history]);
      assert.deepEqual(await textsNewestFirst(b), await textsNewestFirst(a));

      const d = await debug(a);
      assert.equal(d.protocol, 'rtchat.v1', 'the server chose the subprotocol rtchat.v1');
      assert.equal(d.connects, 1);
      assert.equal(d.histories, 1, 'one history frame, then per-message frames');
      assert.equal(d.pending, 0);
      assert.deepEqual(sockets, [`${s.server.url.replace('http:', 'ws:')}/ws`]);
      await saveScreenshot(a, 'websocket-two-users.png');
    }, { server: s.server });
  });

  it('an invalid post shows the server\'s {"type":"error"} text, keeps the text and stores nothing', { timeout: 30000 }, async () => {
    await scenario(browser, 'websocket-post-errors', async ({ newPage }) => {
      const page = await openChat(newPage, `${s.server.url}/websocket`, 'x'.repeat(65));
      // What the server says for the same posts over HTTP (the same validation, the same text).
      const bad1 = await postMessage(s.server.url, 'x'.repeat(65), 'nope');
      assert.equal(bad1.status, 422);
      const bad2 = await postMessage(s.server.url, 'carol', '');
      assert.equal(bad2.status, 422);
      const rejected = `rejected ${token()}`;
      // Too long: the page knows the limit (GET /config), says so and sends nothing.
      await page.waitForFunction(() => window.rtchatDebug.pageConfig !== null);
      await send(page, rejected);
      assert.equal(bad1.body.error, '"user" is too long: 65 characters, at most 64 allowed');
      await page.waitForFunction((t) => document.getElementById('post-error').textContent === t,
        'Your name is 65 characters; the limit is 64');
      assert.equal(await page.locator('#send').isDisabled(), true);
      assert.equal((await debug(page)).errors, 0, 'no post frame was sent');
      // What the page does not check itself, the server refuses: its {"type":"error"} words.
      const disguised = 'ann\u202Ebob';
      const bad3 = await postMessage(s.server.url, disguised, 'nope');
      assert.equal(bad3.status, 422);
      await page.fill('#user', disguised);
      await send(page, rejected);
      await page.waitForFunction((t) => document.getElementById('post-error').textContent === t, bad3.body.error);
      assert.ok((await debug(page)).errors >= 1, 'the server answered with an error frame');
      assert.equal(await page.inputValue('#text'), rejected, 'the text is kept');

      // An empty text is not sent at all (the server would refuse it: bad2).
      await page.fill('#user', 'carol');
      await page.fill('#text', '');
      const errorsBefore = (await debug(page)).errors;
      assert.equal(await page.locator('#send').isDisabled(), true, 'Send is disabled for an empty text');
      await page.press('#text', 'Enter');
      assert.equal((await debug(page)).errors, errorsBefore, 'no post frame was sent');

      const ok = `ok ${token()}`;
      await sendOk(page, ok);
      await waitPostError(page, '');
      assert.equal(await item(page, rejected).count(), 0, 'nothing was stored');
      assert.equal((await debug(page)).pending, 0);
    }, { server: s.server });
  });
});

/** Post from Node and return the new message's id. */
async function post(url, user, text) {
  const res = await postMessage(url, user, text);
  assert.equal(res.status, 200, JSON.stringify(res.body));
  return res.body.id;
}

/** The ids shown, newest first (the page shows them oldest first, newest at the bottom). */
const shownIds = (page) => page.locator('#messages > li')
  .evaluateAll((els) => els.map((e) => Number(e.dataset.id)).reverse());

/** Wait until the status line reads exactly `text`. */
const waitLine = (page, text) => page.waitForFunction(
  (t) => document.getElementById('stream-status').textContent === t, text);

describe('websocket: resume after the connection drops', () => {
  // A history of 5, and 8 messages missed: the catch-up must come from the store.
  const s = withServer(['--history', '5']);
  let proxy;
  before(async () => { proxy = await startProxy(s.server.port); });
  after(async () => { await proxy?.close(); });

  it('reconnects to /ws?since=<newest id> and shows every missed message once, in order', { timeout: 30000 }, async () => {
    await scenario(browser, 'websocket-resume', async ({ newPage }) => {
      const page = await newPage();
      const sockets = [];
      page.on('websocket', (ws) => sockets.push(ws.url()));
      await gotoOk(page, `${proxy.url}/websocket?base=200&cap=1000`);
      await waitDot(page, 'ok');
      await page.fill('#user', 'gina');
      const tag = token();
      const seen = [`seen 1 ${tag}`, `seen 2 ${tag}`];
      for (const t of seen) await sendOk(page, t);
      const seenId = Number(await item(page, seen[1]).getAttribute('data-id'));

      // The network drops; the page's reconnect is held at the proxy while 8 messages are
      // posted straight to the server.
      proxy.hold();
      proxy.cut();
      await waitUntil(() => proxy.held >= 1, { what: 'the page to reconnect (held at the proxy)' });
      assert.notEqual(await page.locator('#status-dot').getAttribute('data-state'), 'ok');
      const missed = [];
      const missedIds = [];
      for (let i = 1; i <= 8; i++) {
        missed.push(`missed ${i} ${tag}`);
        missedIds.push(await post(s.server.url, 'node', missed[i - 1]));
      }
      assert.deepEqual(missedIds, missedIds.map((_, i) => seenId + 1 + i));
      proxy.release();

      await waitLine(page, `Resumed after message ${seenId} — 8 missed.`);
      await waitDot(page, 'ok');
      const expected = [...missed].reverse().concat([...seen].reverse());
      assert.deepEqual(await textsNewestFirst(page), expected, 'every missed message once, newest first');
      assert.deepEqual(await shownIds(page), [...missedIds].reverse().concat([seenId, seenId - 1]));
      const { serverEpoch } = await debug(page);
      assert.match(serverEpoch, /^[a-z0-9]{8}$/);
      assert.equal(sockets.at(-1), `${proxy.url.replace('http:', 'ws:')}/ws?since=${seenId}&epoch=${serverEpoch}`);

      // Live messages go on after the catch-up, and posting works on the new socket.
      const after = `after resume ${token()}`;
      await sendOk(page, after);
      assert.deepEqual(await textsNewestFirst(page), [after, ...expected]);
      const d = await debug(page);
      assert.equal(d.histories, 1, 'the resumed socket got no history frame');
      assert.equal(d.frames, 2 + 8 + 1, 'one msg frame per message, none twice');
      assert.equal(d.protocol, 'rtchat.v1');
      assert.equal(d.failures, 0);
      assert.equal(d.truncated, 0);
      assert.equal(await page.locator('.msg-before-restart').count(), 0);
      await saveScreenshot(page, 'websocket-resumed.png');
    }, { server: s.server });
  });
});

describe('websocket: server restart (empty store)', () => {
  const s = withServer();
  let second;
  after(async () => { await second?.stop(); });

  it('red while down; after a restart with an empty store: reset, old messages kept and marked', { timeout: 40000 }, async () => {
    await scenario(browser, 'websocket-restart', async ({ newPage }) => {
      const page = await openChat(newPage, `${s.server.url}/websocket?base=200&cap=1000`, 'dave');
      const old = `before restart ${token()}`;
      await sendOk(page, old);

      // The first retry is immediate: see recordDot.
      await recordDot(page);
      await s.server.stop();
      await waitDotSeen(page, /^error .*Disconnected/);

      // Same port, a fresh data dir: the new server has no messages, ids start again.
      second = await startServer([], { listen: `127.0.0.1:${s.server.port}` });
      await page.waitForFunction(() => window.rtchatDebug.resets === 1);
      await waitDot(page, 'ok');
      assert.match(await page.locator('#stream-status').textContent(), /restarted/);
      const fresh = `after restart ${token()}`;
      await sendOk(page, fresh);
      assert.deepEqual(await textsNewestFirst(page), [fresh, old]);
      assert.equal(await item(page, fresh).getAttribute('data-id'), '1', 'ids start again');
      assert.match(await item(page, old).getAttribute('class'), /msg-before-restart/);
      assert.equal(await item(page, old).locator('.msg-note').textContent(), 'before the server restarted');
      assert.equal(await item(page, fresh).locator('.msg-note').count(), 0);
      const d = await debug(page);
      assert.equal(d.failures, 0, 'backoff reset');
      assert.equal(d.delays[0], 0, 'the first retry is immediate');
      assert.ok(d.connects >= 2);
    }, { server: s.server });
  });
});

describe('websocket: server restart (SQLite store, same data dir)', () => {
  const s = withServer();
  let second;
  after(async () => { await second?.stop(); });

  it('resumes after the last message: nothing missed, nothing marked, ids go on', { timeout: 40000 }, async () => {
    await scenario(browser, 'websocket-restart-durable', async ({ newPage }) => {
      const page = await openChat(newPage, `${s.server.url}/websocket?base=200&cap=1000`, 'frank');
      const one = `one ${token()}`;
      await sendOk(page, one);
      const oneId = Number(await item(page, one).getAttribute('data-id'));

      await s.server.stop({ keepDataDir: true });
      await waitDot(page, 'error');
      second = await startServer([], {
        listen: `127.0.0.1:${s.server.port}`, dataDir: s.server.dataDir, ownDataDir: true,
      });
      await waitLine(page, `Resumed after message ${oneId} — nothing missed.`);
      await waitDot(page, 'ok');
      const two = `two ${token()}`;
      await sendOk(page, two);
      assert.equal(await item(page, two).getAttribute('data-id'), String(oneId + 1), 'ids go on');
      assert.deepEqual(await textsNewestFirst(page), [two, one]);
      assert.equal(await page.locator('.msg-before-restart').count(), 0);
      assert.equal((await debug(page)).resets, 0);
    }, { server: s.server });
  });
});

describe('websocket: truncated', () => {
  const s = withServer(['--history', '2', '--retain', '2']);
  let proxy;
  before(async () => { proxy = await startProxy(s.server.port); });
  after(async () => { await proxy?.close(); });

  it('says older messages were lost when the server no longer keeps what the page missed', { timeout: 30000 }, async () => {
    await scenario(browser, 'websocket-truncated', async ({ newPage }) => {
      const page = await openChat(newPage, `${proxy.url}/websocket?base=200&cap=1000`);
      const seen = await post(s.server.url, 'node', `seen ${token()}`);
      await page.waitForFunction((id) => window.rtchatDebug.lastId === id, seen);
      proxy.hold();
      proxy.cut();
      await waitUntil(() => proxy.held >= 1, { what: 'the page to reconnect (held at the proxy)' });
      const later = [];
      for (let i = 1; i <= 5; i++) {
        later.push(`later ${i} ${token()}`);
        await post(s.server.url, 'node', later[i - 1]);
      }
      proxy.release();
      await item(page, later[4]).waitFor();
      await page.locator('#stream-status', { hasText: 'Older messages were lost' }).waitFor();
      assert.match(await page.locator('#stream-status').textContent(),
        new RegExp(`^Resumed after message ${seen} — \\d+ missed\\. Older messages were lost`));
      assert.equal((await debug(page)).truncated, 1);
      assert.equal(await item(page, later[4]).count(), 1);
    }, { server: s.server });
  });
});
