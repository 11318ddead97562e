// Chromium against rtchat's permessage-deflate (RFC 7692) and WebSockets over HTTP/2
// (RFC 8441). Over HTTPS the page's connection is HTTP/2 and the server advertises
// SETTINGS_ENABLE_CONNECT_PROTOCOL, so Chromium opens its WebSockets on that connection as
// extended CONNECT streams: the /websocket chat and the Socket.IO page's WebSocket transport
// (engineioxide's, translated at the door) must both work that way, and the server's request
// log must show the CONNECTs. Over plain HTTP, the HTTP/1.1 upgrade negotiates compression.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { launchBrowser, scenario } from './lib/browser.mjs';
import { gotoOk, item, openChat, sendOk, token, waitDot } from './lib/chat.mjs';
import { postMessage, startServer, waitUntil } from './lib/server.mjs';

const DEFLATE = 'permessage-deflate; server_no_context_takeover; client_no_context_takeover';

let browser;
before(async () => { browser = await launchBrowser({ tls: true }); });
after(async () => { await browser?.close(); });

/** Open a WebSocket from the page; resolve with its extensions, protocol and first message. */
function probe(page, url) {
  return page.evaluate((u) => new Promise((resolve, reject) => {
    const ws = new WebSocket(u, 'rtchat.v1');
    ws.onmessage = (e) => { resolve({ extensions: ws.extensions, protocol: ws.protocol, first: JSON.parse(e.data) }); ws.close(); };
    ws.onerror = () => reject(new Error(`WebSocket to ${u} failed`));
  }), url);
}

describe('rfc8441 and permessage-deflate in chromium', () => {
  let server;
  before(async () => { server = await startServer([], { tls: true }); });
  after(async () => { await server?.stop(); });

  it('the /websocket chat runs on the page\'s HTTP/2 connection, compressed', { timeout: 30000 }, async () => {
    await scenario(browser, 'rfc8441-websocket', async ({ newPage }) => {
      // A history large enough to be compressed.
      for (let i = 0; i < 20; i++) await postMessage(server.url, 'node', `filler ${i} ${token()} to compress`);
      const a = await openChat(newPage, `${server.httpsUrl}/websocket`, 'alice');
      await waitUntil(() => server.requests({ method: 'CONNECT', path: '/ws', status: 200 }).length > 0,
        { what: 'an extended CONNECT to /ws in the request log' });
      const b = await openChat(newPage, `${server.httpsUrl}/websocket`, 'bob');
      const hello = `over h2 ${token()}`;
      await sendOk(a, hello);
      await item(b, hello).waitFor();
      const seen = await probe(a, server.httpsUrl.replace('https:', 'wss:') + '/ws');
      assert.equal(seen.extensions, DEFLATE);
      assert.equal(seen.protocol, 'rtchat.v1');
      assert.equal(seen.first.type, 'history');
      // No HTTP/1.1 upgrade reached the TLS port: every WebSocket was a CONNECT.
      assert.equal(server.requests({ method: 'GET', path: '/ws' }).length, 0);
    }, { server });
  });

  it('Socket.IO over HTTPS upgrades to its WebSocket transport over HTTP/2', { timeout: 30000 }, async () => {
    await scenario(browser, 'rfc8441-socketio', async ({ newPage }) => {
      const a = await newPage();
      await gotoOk(a, `${server.httpsUrl}/socketio`);
      await waitDot(a, 'ok');
      await a.waitForFunction(() => window.rtchatDebug.transport === 'websocket');
      await waitUntil(() => server.requests({ method: 'CONNECT', path: '/socket.io/', status: 200 }).length > 0,
        { what: 'an extended CONNECT to /socket.io/ in the request log' });
      await a.fill('#user', 'carol');
      const b = await openChat(newPage, `${server.httpsUrl}/socketio`, 'dave');
      await b.waitForFunction(() => window.rtchatDebug.transport === 'websocket');
      const hi = `socket.io over h2 ${token()}`;
      await sendOk(a, hi);
      await item(b, hi).waitFor();
    }, { server });
  });

  it('over plain HTTP the HTTP/1.1 upgrade negotiates permessage-deflate', { timeout: 30000 }, async () => {
    await scenario(browser, 'deflate-http1', async ({ newPage }) => {
      const a = await openChat(newPage, `${server.url}/websocket`, 'erin');
      const seen = await probe(a, server.url.replace('http:', 'ws:') + '/ws');
      assert.equal(seen.extensions, DEFLATE);
      assert.equal(seen.first.type, 'history');
      assert.ok(server.requests({ method: 'GET', path: '/ws', status: 101 }).length > 0);
    }, { server });
  });
});

describe('--ws-deflate off', () => {
  let server;
  before(async () => { server = await startServer(['--ws-deflate', 'off']); });
  after(async () => { await server?.stop(); });

  it('chromium gets no extension and still chats', { timeout: 30000 }, async () => {
    await scenario(browser, 'deflate-off', async ({ newPage }) => {
      const a = await openChat(newPage, `${server.url}/websocket`, 'frank');
      const seen = await probe(a, server.url.replace('http:', 'ws:') + '/ws');
      assert.equal(seen.extensions, '');
      const hi = `uncompressed ${token()}`;
      await sendOk(a, hi);
    }, { server });
  });
});
