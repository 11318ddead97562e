// Browser tests of the /websocket page: the chat over the browser's WebSocket (ws://host/ws,
// subprotocol "json", the course contract). Skipped when the server has no WebSocket yet.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { launchBrowser, saveScreenshot, scenario } from './lib/browser.mjs';
import {
  debug, gotoOk, item, openChat, send, sendOk, texts, token, waitDot, waitPostError,
} from './lib/chat.mjs';
import { postMessage, probeWebSocket, startServer } from './lib/server.mjs';

/** Probe a fresh server once: does `GET /ws` (subprotocol json) answer 101? */
async function serverHasWebSocket() {
  const s = await startServer();
  try {
    return await probeWebSocket(s.url);
  } finally {
    await s.stop();
  }
}
const HAS_WS = await serverHasWebSocket();
const skip = HAS_WS ? false : 'server has no WebSocket yet';

let browser;
before(async () => { if (HAS_WS) browser = await launchBrowser(); });
after(async () => { await browser?.close(); });

function withServer(args = []) {
  const ctx = {};
  before(async () => { ctx.server = await startServer(args); });
  after(async () => { await ctx.server?.stop(); });
  return ctx;
}

describe('websocket: two pages chat', { skip }, () => {
  const s = withServer();
  it('two /websocket pages see each other\'s messages, newest first, over subprotocol json', { timeout: 30000 }, async () => {
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
      assert.deepEqual((await texts(a)).slice(0, 4), [fromNode, reply, hello, history]);
      assert.deepEqual(await texts(b), await texts(a));

      const d = await debug(a);
      assert.equal(d.protocol, 'json', 'the server chose the subprotocol json');
      assert.equal(d.connects, 1);
      assert.equal(d.pending, 0);
      assert.deepEqual(sockets, [`${s.server.url.replace('http:', 'ws:')}/ws`]);
      await saveScreenshot(a, 'websocket-two-users.png');
    }, { server: s.server });
  });

  it('an invalid post shows the server\'s {"error"} and stores nothing', { timeout: 30000 }, async () => {
    await scenario(browser, 'websocket-post-errors', async ({ newPage }) => {
      const page = await openChat(newPage, `${s.server.url}/websocket`, 'x'.repeat(65));
      // What the server says for the same posts over HTTP (the same validation, the same text).
      const bad1 = await postMessage(s.server.url, 'x'.repeat(65), 'nope');
      assert.equal(bad1.status, 422);
      const bad2 = await postMessage(s.server.url, 'carol', '');
      assert.equal(bad2.status, 422);
      const rejected = `rejected ${token()}`;
      await send(page, rejected);
      await page.waitForFunction(() => window.rtchatDebug.errors === 1);
      assert.equal(await page.locator('#post-error').textContent(), bad1.body.error);
      assert.equal(await page.inputValue('#text'), rejected, 'the text is kept');

      await page.fill('#user', 'carol');
      await send(page, '');
      await page.waitForFunction(() => window.rtchatDebug.errors === 2);
      assert.equal(await page.locator('#post-error').textContent(), bad2.body.error);

      const ok = `ok ${token()}`;
      await sendOk(page, ok);
      await waitPostError(page, '');
      assert.equal(await item(page, rejected).count(), 0, 'nothing was stored');
      assert.equal((await debug(page)).pending, 0);
    }, { server: s.server });
  });
});

describe('websocket: server restart', { skip }, () => {
  const s = withServer();
  let second;
  after(async () => { await second?.stop(); });

  it('the dot goes red when the server stops and green after a restart; the chat works again', { timeout: 40000 }, async () => {
    await scenario(browser, 'websocket-restart', async ({ newPage }) => {
      const page = await openChat(newPage, `${s.server.url}/websocket?base=200&cap=1000`, 'dave');
      await sendOk(page, `before restart ${token()}`);

      await s.server.stop();
      await waitDot(page, 'error');
      assert.match(await page.locator('#status-dot').getAttribute('aria-label'), /Disconnected/);

      second = await startServer([], { listen: `127.0.0.1:${s.server.port}` });
      await waitDot(page, 'ok');
      await page.waitForFunction(() => document.querySelectorAll('#messages > li').length === 0);
      const fresh = `after restart ${token()}`;
      await sendOk(page, fresh);
      assert.deepEqual(await texts(page), [fresh]);
      const d = await debug(page);
      assert.equal(d.failures, 0, 'backoff reset');
      assert.equal(d.delays[0], 0, 'the first retry is immediate');
      assert.ok(d.connects >= 2);
    }, { server: s.server });
  });
});
