// rtchat's own pages carry a strict Content-Security-Policy (no inline script or style, this
// origin only) and the usual security headers; every page still works under it: the scenario
// fails on any CSP violation reported in the console (see lib/browser.mjs).
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { launchBrowser, scenario } from './lib/browser.mjs';
import { item, openChat, sendOk, token } from './lib/chat.mjs';
import { startServer } from './lib/server.mjs';

let browser;
let server;
before(async () => {
  [browser, server] = await Promise.all([launchBrowser({ tls: true }), startServer([], { tls: true })]);
});
after(async () => {
  await browser?.close();
  await server?.stop();
});

describe('security headers on the pages', () => {
  it('every page is served with the policy and chats without a violation', { timeout: 60000 }, async () => {
    await scenario(browser, 'csp', async ({ newPage }) => {
      const home = await newPage();
      const res = await home.goto(`${server.url}/`);
      const csp = res.headers()['content-security-policy'];
      assert.match(csp, /script-src 'self'/);
      assert.match(csp, /frame-ancestors 'none'/);
      assert.equal(res.headers()['x-frame-options'], 'DENY');
      assert.equal(res.headers()['referrer-policy'], 'no-referrer');

      const pages = [
        `${server.url}/polling?interval=500`,
        `${server.url}/sse`,
        `${server.url}/websocket`,
        `${server.url}/socketio`,
        `${server.httpsUrl}/http2`,
      ];
      for (const url of pages) {
        const page = await openChat(newPage, url, 'csp-user');
        const text = `under the policy ${token()}`;
        await sendOk(page, text);
        await item(page, text).waitFor();
      }
    }, { server });
  });
});
