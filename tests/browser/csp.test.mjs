// rtchat's own pages carry a strict Content-Security-Policy (no inline script or style, this
// origin only) and the usual security headers; every page still works under it: the scenario
// fails on any CSP violation reported in the console (see lib/browser.mjs).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { scenario, sharedBrowserAndTlsServer } from './lib/browser.mjs';
import { item, openChat, sendOk, token } from './lib/chat.mjs';

const shared = sharedBrowserAndTlsServer();

describe('security headers on the pages', () => {
  it('every page is served with the policy and chats without a violation', { timeout: 60000 }, async () => {
    await scenario(shared.browser, 'csp', async ({ newPage }) => {
      const home = await newPage();
      const res = await home.goto(`${shared.server.url}/`);
      const csp = res.headers()['content-security-policy'];
      assert.match(csp, /script-src 'self'/);
      assert.match(csp, /frame-ancestors 'none'/);
      assert.equal(res.headers()['x-frame-options'], 'DENY');
      assert.equal(res.headers()['referrer-policy'], 'no-referrer');

      const pages = [
        `${shared.server.url}/polling?interval=500`,
        `${shared.server.url}/sse`,
        `${shared.server.url}/websocket`,
        `${shared.server.url}/socketio`,
        `${shared.server.httpsUrl}/http2`,
      ];
      for (const url of pages) {
        const page = await openChat(newPage, url, 'csp-user');
        const text = `under the policy ${token()}`;
        await sendOk(page, text);
        await item(page, text).waitFor();
      }
    }, { server: shared.server });
  });
});
