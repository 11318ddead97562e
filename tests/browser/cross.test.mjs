// One chat across transports: an HTTP/2 page (over HTTPS), an SSE page, a polling page and a
// WebSocket page. Each posts once; every page shows every message, in the same order.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { saveScreenshot, scenario, sharedBrowserAndTlsServer } from './lib/browser.mjs';
import { item, openChat, sendOk, textsNewestFirst, token } from './lib/chat.mjs';
import { postMessage } from './lib/server.mjs';

const shared = sharedBrowserAndTlsServer();

describe('cross-transport chat', () => {
  it('HTTP/2, SSE, polling and WebSocket pages see each other\'s messages in the same order', { timeout: 40000 }, async () => {
    await scenario(shared.browser, 'cross', async ({ newPage }) => {
      const history = `history ${token()}`;
      await postMessage(shared.server.url, 'node', history);
      const pages = {
        http2: await openChat(newPage, `${shared.server.httpsUrl}/http2`, 'http2-user'),
        sse: await openChat(newPage, `${shared.server.url}/sse`, 'sse-user'),
        polling: await openChat(newPage, `${shared.server.url}/polling?interval=500`, 'polling-user'),
        websocket: await openChat(newPage, `${shared.server.url}/websocket`, 'websocket-user'),
      };
      for (const page of Object.values(pages)) await item(page, history).waitFor();

      const sent = [];
      for (const [name, page] of Object.entries(pages)) {
        const text = `from the ${name} page ${token()}`;
        await sendOk(page, text);
        sent.push(text);
      }
      const expected = [...sent].reverse().concat(history);
      for (const [name, page] of Object.entries(pages)) {
        for (const text of sent) await item(page, text).waitFor();
        assert.deepEqual(await textsNewestFirst(page), expected, `${name} shows every message, newest first`);
        const ids = await page.locator('#messages > li').evaluateAll((els) => els.map((e) => e.dataset.id).reverse());
        assert.deepEqual(ids, expected.map((_, i) => String(expected.length - i)), `${name}: ids`);
        const users = (await page.locator('#messages > li .msg-user').allTextContents()).reverse();
        assert.deepEqual(users.slice(0, sent.length),
          Object.keys(pages).map((n) => `${n}-user`).reverse(), `${name}: users`);
      }
      await saveScreenshot(pages.sse, 'cross-sse.png');
    }, { server: shared.server });
  });
});
