// Browser tests of the /sse page: the chat over EventSource('/events'), with resume after a
// dropped connection, `truncated`, and `reset` after a server restart.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { launchBrowser, saveScreenshot, scenario } from './lib/browser.mjs';
import {
  debug, gotoOk, item, openChat, sendOk, textsNewestFirst, token, waitDot,
} from './lib/chat.mjs';
import { startProxy } from './lib/proxy.mjs';
import { postMessage, startServer, withServer } from './lib/server.mjs';

let browser;
before(async () => { browser = await launchBrowser(); });
after(async () => { await browser?.close(); });

/** Post from Node and return the new message's id. */
async function post(url, user, text) {
  const res = await postMessage(url, user, text);
  assert.equal(res.status, 200, JSON.stringify(res.body));
  return res.body.id;
}

describe('sse: history and live messages', () => {
  const s = withServer();
  it('shows the history newest first, then live messages from Node and from the page', { timeout: 30000 }, async () => {
    await scenario(browser, 'sse-history-live', async ({ newPage }) => {
      const tag = token();
      const ids = [];
      for (const n of [1, 2, 3]) ids.push(await post(s.server.url, 'node', `history ${n} ${tag}`));

      const page = await newPage();
      const events = [];
      page.on('request', (r) => { if (new URL(r.url()).pathname === '/events') events.push(r.url()); });
      await gotoOk(page, `${s.server.url}/sse`);
      await waitDot(page, 'ok');
      await item(page, `history 1 ${tag}`).waitFor();
      assert.deepEqual(await textsNewestFirst(page), [3, 2, 1].map((n) => `history ${n} ${tag}`));
      assert.deepEqual(
        await page.locator('#messages > li').evaluateAll((els) => els.map((e) => Number(e.dataset.id))),
        ids, 'oldest first, newest at the bottom');

      const live = `live from node ${token()}`;
      const liveId = await post(s.server.url, 'node', live);
      await item(page, live).waitFor();
      await page.fill('#user', 'alice');
      const mine = `from the page ${token()}`;
      await sendOk(page, mine);
      assert.deepEqual((await textsNewestFirst(page)).slice(0, 2), [mine, live]);
      assert.equal(await item(page, live).getAttribute('data-id'), String(liveId));
      assert.equal(await page.locator('.msg-before-restart').count(), 0);
      assert.equal(await page.locator('#stream-status').textContent(), '', 'no status line before any reconnect');
      const d = await debug(page);
      assert.equal(d.opens, 1);
      assert.equal(d.lastId, liveId + 1);
      assert.equal(d.readyState, 1);
      assert.deepEqual(events, [`${s.server.url}/events`], 'one EventSource request');
    }, { server: s.server });
  });
});

describe('sse: resume after the connection drops', () => {
  const s = withServer();
  let proxy;
  before(async () => { proxy = await startProxy(s.server.port); });
  after(async () => { await proxy?.close(); });

  it('EventSource reconnects with Last-Event-ID and gets exactly what it missed', { timeout: 30000 }, async () => {
    await scenario(browser, 'sse-resume', async ({ newPage }) => {
      const page = await openChat(newPage, `${proxy.url}/sse`, 'bob');
      const headers = [];
      page.on('request', (r) => {
        // allHeaders(): what went on the wire, including what the network stack added.
        if (new URL(r.url()).pathname === '/events') headers.push(r.allHeaders().then((h) => h['last-event-id'] ?? null));
      });
      const first = `first ${token()}`;
      const firstId = await post(s.server.url, 'node', first);
      await item(page, first).waitFor();

      proxy.cut();
      await waitDot(page, 'error');
      assert.match(await page.locator('#stream-status').textContent(), /reconnecting/i);
      // Posted while the page is away (straight to the server, not through the proxy).
      const missed = [`missed 1 ${token()}`, `missed 2 ${token()}`];
      for (const t of missed) await post(s.server.url, 'node', t);

      await item(page, missed[1]).waitFor();
      await waitDot(page, 'ok');
      assert.equal(await page.locator('#stream-status').textContent(),
        `Resumed after message ${firstId} — 2 missed.`);
      assert.deepEqual((await textsNewestFirst(page)).slice(0, 3), [missed[1], missed[0], first]);
      assert.equal(await item(page, first).count(), 1, 'nothing twice');
      const d = await debug(page);
      assert.match(d.serverEpoch, /^[a-z0-9]{8}$/, 'the page learnt the epoch from the event ids');
      assert.deepEqual(await Promise.all(headers), [`${d.serverEpoch}:${firstId}`],
        'the reconnect sent Last-Event-ID EPOCH:ID (the last event\'s id)');
      assert.equal(d.opens, 2);
      assert.equal(d.recreated, 0, 'the browser\'s own reconnect did it');
      await saveScreenshot(page, 'sse-resumed.png');
    }, { server: s.server });
  });
});

describe('sse: when the browser gives up', () => {
  const s = withServer();
  let proxy;
  before(async () => { proxy = await startProxy(s.server.port); });
  after(async () => { await proxy?.close(); });

  it('after an HTTP error closes the EventSource, the page opens a new one with ?since=<newest id>', { timeout: 30000 }, async () => {
    await scenario(browser, 'sse-give-up', async ({ newPage }) => {
      const page = await newPage();
      const urls = [];
      let refuse = 0;
      await page.route((url) => url.pathname === '/events', (route) => {
        urls.push(new URL(route.request().url()).search);
        if (refuse > 0) {
          refuse -= 1;
          return route.fulfill({ status: 503, contentType: 'application/json', body: '{"error":"down"}' });
        }
        return route.continue();
      });
      await gotoOk(page, `${proxy.url}/sse?base=200&cap=1000&jitter=0`);
      await waitDot(page, 'ok');
      const first = `first ${token()}`;
      const firstId = await post(s.server.url, 'node', first);
      await item(page, first).waitFor();

      // The browser's reconnect gets a 503: EventSource gives up (CLOSED) and the page takes
      // over, with backoff: at once (503 again), then 200 ms, which works.
      refuse = 2;
      proxy.cut();
      await waitDot(page, 'error');
      const missed = `missed ${token()}`;
      await post(s.server.url, 'node', missed);
      await item(page, missed).waitFor();
      await waitDot(page, 'ok');
      const d = await debug(page);
      assert.equal(d.recreated, 2, 'the page opened two EventSources of its own');
      assert.deepEqual(d.delays, [0, 200]);
      assert.equal(d.failures, 0);
      const since = `?since=${firstId}&epoch=${d.serverEpoch}`;
      assert.match(d.serverEpoch, /^[a-z0-9]{8}$/);
      assert.deepEqual(urls.slice(-2), [since, since]);
      assert.equal(await page.locator('#stream-status').textContent(), `Resumed after message ${firstId} — 1 missed.`);
      assert.equal(await item(page, first).count(), 1);
    }, { server: s.server });
  });
});

describe('sse: truncated', () => {
  const s = withServer(['--history', '2', '--retain', '2']);
  let proxy;
  before(async () => { proxy = await startProxy(s.server.port); });
  after(async () => { await proxy?.close(); });

  it('says so when the server no longer keeps what the page missed', { timeout: 30000 }, async () => {
    await scenario(browser, 'sse-truncated', async ({ newPage }) => {
      const page = await openChat(newPage, `${proxy.url}/sse`);
      const seen = await post(s.server.url, 'node', `seen ${token()}`);
      await page.waitForFunction((id) => window.rtchatDebug.lastId === id, seen);
      proxy.cut();
      await waitDot(page, 'error');
      let lastText;
      for (let i = 1; i <= 5; i++) await post(s.server.url, 'node', (lastText = `later ${i} ${token()}`));
      await item(page, lastText).waitFor();
      await page.locator('#stream-status', { hasText: `Resumed after message ${seen}, but` }).waitFor();
      assert.match(await page.locator('#stream-status').textContent(), /missing/);
      assert.equal((await debug(page)).truncated, 1);
    }, { server: s.server });
  });
});

describe('sse: server restart (in-memory store)', () => {
  const s = withServer([], { store: 'memory' });
  let second;
  after(async () => { await second?.stop(); });

  it('keeps the messages from before the restart, marked, and goes on with the new server', { timeout: 40000 }, async () => {
    await scenario(browser, 'sse-restart', async ({ newPage }) => {
      const page = await openChat(newPage, `${s.server.url}/sse?base=200&cap=1000`, 'carol');
      const one = `one ${token()}`;
      const two = `two ${token()}`;
      await sendOk(page, one);
      await sendOk(page, two);

      await s.server.stop();
      await waitDot(page, 'error');
      second = await startServer([], { listen: `127.0.0.1:${s.server.port}`, store: 'memory' });
      // The page comes back with Last-Event-ID 2, newer than anything the new server knows.
      await page.waitForFunction(() => window.rtchatDebug.resets === 1);
      await waitDot(page, 'ok');
      assert.match(await page.locator('#stream-status').textContent(), /restarted/);

      const three = `three ${token()}`;
      await sendOk(page, three);
      assert.equal(await item(page, three).getAttribute('data-id'), '1', 'ids start again');
      assert.deepEqual(await textsNewestFirst(page), [three, two, one]);
      for (const t of [one, two]) {
        const li = item(page, t);
        assert.match(await li.getAttribute('class'), /msg-before-restart/);
        assert.equal(await li.locator('.msg-note').textContent(), 'before the server restarted');
      }
      assert.doesNotMatch(await item(page, three).getAttribute('class'), /msg-before-restart/);
      assert.equal(await item(page, three).locator('.msg-note').count(), 0);
      // Ids 1 and 2 exist twice now (old and new run): both old ones are still there.
      assert.equal(await page.locator('#messages > li[data-id="1"]').count(), 2);
      await saveScreenshot(page, 'sse-after-restart.png');
    }, { server: s.server });
  });
});

describe('sse: server restart (SQLite store, same data dir)', () => {
  const s = withServer();
  let second;
  after(async () => { await second?.stop(); });

  it('resumes after the last message: nothing missed, nothing marked', { timeout: 40000 }, async () => {
    await scenario(browser, 'sse-restart-durable', async ({ newPage }) => {
      const page = await openChat(newPage, `${s.server.url}/sse`, 'frank');
      const one = `one ${token()}`;
      const two = `two ${token()}`;
      await sendOk(page, one);
      await sendOk(page, two);
      const twoId = Number(await item(page, two).getAttribute('data-id'));

      await s.server.stop({ keepDataDir: true });
      await waitDot(page, 'error');
      second = await startServer([], { listen: `127.0.0.1:${s.server.port}`, dataDir: s.server.dataDir, ownDataDir: true });
      await page.waitForFunction(() => window.rtchatDebug.opens === 2);
      await waitDot(page, 'ok');
      assert.equal(await page.locator('#stream-status').textContent(), `Resumed after message ${twoId} — nothing missed.`);

      const three = `three ${token()}`;
      await sendOk(page, three);
      assert.equal(await item(page, three).getAttribute('data-id'), String(twoId + 1), 'ids go on');
      assert.deepEqual(await textsNewestFirst(page), [three, two, one]);
      assert.equal(await page.locator('.msg-before-restart').count(), 0);
      assert.equal((await debug(page)).resets, 0);
    }, { server: s.server });
  });
});
