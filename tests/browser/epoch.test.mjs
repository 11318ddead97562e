// Epochs: a `--store memory` server restarts and hands out the page's ids again (more
// messages than the page had seen) before the page reconnects. The page resumes with the
// old epoch (/http2: /msgs?since=N&epoch=E; /websocket: /ws?since=N&epoch=E; /sse: the
// browser's own Last-Event-ID E:N; /polling: the long poll right after the shutdown's answer,
// /poll?since=N&epoch=E), so the server answers with a reset and its whole history: the page
// shows the new server's messages, all of them, in order, and keeps the old ones only marked
// "before the server restarted" (/polling replaces its list) — never a mix of the two runs.
// (Judged by the id alone, the resume would have looked valid: the page would have shown the
// new server's third message right after the old second one and never its first two.)
// /socketio has the same check in tests/socketio/browser.test.mjs.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { launchBrowser, saveScreenshot, scenario } from './lib/browser.mjs';
import { debug, item, openChat, sendOk, token } from './lib/chat.mjs';
import { startProxy } from './lib/proxy.mjs';
import { postMessage, startServer, waitUntil } from './lib/server.mjs';

let browser;
before(async () => { browser = await launchBrowser(); });
after(async () => { await browser?.close(); });

/** Every message shown, newest first (the page shows them oldest first, newest at the bottom):
 * id, text, and whether it is marked as from before. */
const shown = (page) => page.locator('#messages > li').evaluateAll((els) => els.map((e) => ({
  id: Number(e.dataset.id),
  text: e.querySelector('.msg-text').textContent,
  old: e.classList.contains('msg-before-restart'),
})).reverse());

for (const path of ['/http2', '/websocket', '/sse']) {
  describe(`epochs: ${path} after a restart that reuses the ids`, () => {
    let server;
    let second;
    let proxy;
    before(async () => {
      server = await startServer([], { store: 'memory' });
      proxy = await startProxy(server.port);
    });
    after(async () => {
      await proxy?.close();
      await second?.stop();
      await server?.stop();
    });

    it('resuming with the old epoch gets the reset history, not a mix of both runs', { timeout: 40000 }, async () => {
      await scenario(browser, `epoch${path}`, async ({ newPage }) => {
        const page = await openChat(newPage, `${proxy.url}${path}?base=200&cap=1000`, 'olga');
        const tag = token();
        const old = [`old 1 ${tag}`, `old 2 ${tag}`];
        for (const t of old) await sendOk(page, t);
        const { serverEpoch: oldEpoch, lastId } = await debug(page);
        assert.match(oldEpoch, /^[a-z0-9]{8}$/, 'the page knows the epoch of the history it shows');
        assert.equal(lastId, 2);

        // The page's reconnect waits at the proxy while the server restarts empty and hands
        // out ids 1-3 again.
        proxy.hold();
        proxy.cut();
        await waitUntil(() => proxy.held >= 1, { timeout: 15000, what: 'the page to reconnect (held at the proxy)' });
        await server.stop();
        second = await startServer([], { store: 'memory', listen: `127.0.0.1:${server.port}` });
        const fresh = [`new 1 ${tag}`, `new 2 ${tag}`, `new 3 ${tag}`];
        const ids = [];
        for (const t of fresh) ids.push((await postMessage(second.url, 'node', t)).body.id);
        assert.deepEqual(ids, [1, 2, 3], 'the new server hands out the same ids again');
        proxy.release();

        await item(page, fresh[2]).waitFor();
        const d = await debug(page);
        assert.equal(d.resets, 1, 'the server said reset');
        assert.match(d.serverEpoch, /^[a-z0-9]{8}$/);
        assert.notEqual(d.serverEpoch, oldEpoch, 'the page follows the new epoch');
        const list = await shown(page);
        assert.deepEqual(list.filter((m) => !m.old).map((m) => [m.id, m.text]),
          [[3, fresh[2]], [2, fresh[1]], [1, fresh[0]]], 'the new server\'s whole history, in order');
        assert.deepEqual(list.filter((m) => m.old).map((m) => m.text), [old[1], old[0]],
          'what was shown before stays, marked "before the server restarted"');
        assert.deepEqual(list.map((m) => m.old), [false, false, false, true, true], 'the new run on top');
        await saveScreenshot(page, `epoch-${path.slice(1)}.png`);

        // And the page goes on with the new ids.
        const live = `live ${tag}`;
        await sendOk(page, live);
        assert.equal(await item(page, live).getAttribute('data-id'), '4');
        assert.deepEqual((await shown(page))[0], { id: 4, text: live, old: false });
      }, { server });
    });
  });
}

describe('epochs: /polling after a restart that reuses the ids', () => {
  let server;
  let second;
  let proxy;
  before(async () => {
    server = await startServer([], { store: 'memory' });
    proxy = await startProxy(server.port);
  });
  after(async () => {
    await proxy?.close();
    await second?.stop();
    await server?.stop();
  });

  it('the long poll after the shutdown\'s answer names the old epoch and gets the reset list', { timeout: 40000 }, async () => {
    await scenario(browser, 'epoch/polling', async ({ newPage }) => {
      const page = await openChat(newPage, `${proxy.url}/polling?interval=200&step=200&cap=1000`, 'olga');
      const tag = token();
      const old = [`old 1 ${tag}`, `old 2 ${tag}`];
      for (const t of old) await sendOk(page, t);
      await page.waitForFunction(() => window.rtchatDebug.mode === 'long' && window.rtchatDebug.inFlight
        && window.rtchatDebug.last === 2);
      const { epoch: oldEpoch } = await debug(page);
      assert.match(oldEpoch, /^[a-z0-9]{8}$/);
      const polls = [];
      page.on('request', (r) => {
        const u = new URL(r.url());
        if (u.pathname === '/poll' && r.method() === 'GET') polls.push(u.search);
      });

      // Stopping answers the parked long poll (nothing new, the old epoch); the page asks
      // again at once, and that request waits at the proxy while the server restarts empty
      // and hands out ids 1-3 again.
      proxy.hold();
      await server.stop();
      await waitUntil(() => proxy.held >= 1, { timeout: 15000, what: 'the next long poll (held at the proxy)' });
      second = await startServer([], { store: 'memory', listen: `127.0.0.1:${server.port}` });
      const fresh = [`new 1 ${tag}`, `new 2 ${tag}`, `new 3 ${tag}`];
      for (const t of fresh) await postMessage(second.url, 'node', t);
      proxy.release();

      await item(page, fresh[2]).waitFor();
      const list = await shown(page);
      assert.deepEqual(list.map((m) => [m.id, m.text]), [[3, fresh[2]], [2, fresh[1]], [1, fresh[0]]],
        'the new server\'s whole list, nothing of the old run');
      assert.equal(polls[0], `?since=2&epoch=${oldEpoch}`,
        'the held poll resumed after 2, in the old epoch (not a re-read after a failure)');
      const d = await debug(page);
      assert.notEqual(d.epoch, oldEpoch);
      assert.equal(d.last, 3);
    }, { server });
  });
});
