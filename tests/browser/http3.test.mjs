// Chromium over HTTP/3: headless Chromium forced onto QUIC for rtchat's HTTPS origin
// (--origin-to-force-quic-on), trusting rtchat's generated certificate by its SPKI hash only
// (--ignore-certificate-errors-spki-list, no blanket --ignore-certificate-errors), loads the
// /http2 streaming page over h3, reads the /msgs stream over h3, and chats with a /websocket
// page (its page over h3, its WebSocket over TCP, as browsers open WebSockets).
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { chromium } from 'playwright-core';
import { CHROMIUM, CHROMIUM_ARGS, scenario } from './lib/browser.mjs';
import { debug, gotoOk, item, openChat, sendOk, token, waitDot } from './lib/chat.mjs';
import { postMessage, startServer } from './lib/server.mjs';

/** base64(SHA-256(SubjectPublicKeyInfo)) of a PEM certificate, as Chromium's flag wants it. */
function spkiHash(pemFile) {
  const cert = new crypto.X509Certificate(fs.readFileSync(pemFile));
  const spki = cert.publicKey.export({ type: 'spki', format: 'der' });
  return crypto.createHash('sha256').update(spki).digest('base64');
}

/** Record the protocol ("h3", "h2", ...) of every response a page gets. */
async function watchProtocols(page) {
  const seen = [];
  const cdp = await page.context().newCDPSession(page);
  cdp.on('Network.responseReceived', (e) => {
    seen.push({ path: new URL(e.response.url).pathname, protocol: e.response.protocol });
  });
  await cdp.send('Network.enable');
  return seen;
}

describe('http3: Chromium forced onto QUIC', () => {
  let server;
  let browser;
  before(async () => {
    server = await startServer(['--store', 'memory'], { tls: true });
    assert.ok(server.stdout.some((l) => l === `rtchat listening on udp://127.0.0.1:${server.tlsPort} (HTTP/3)`),
      `HTTP/3 on the TLS port: ${server.stdout.join(' | ')}`);
    const args = CHROMIUM_ARGS.filter((a) => a !== '--disable-quic').concat([
      '--enable-quic',
      `--origin-to-force-quic-on=127.0.0.1:${server.tlsPort}`,
      `--ignore-certificate-errors-spki-list=${spkiHash(path.join(server.dataDir, 'tls/cert.pem'))}`,
    ]);
    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args });
  });
  after(async () => {
    await browser?.close();
    await server?.stop();
  });

  it('the streaming page and its /msgs stream come over h3 and chat with a WebSocket page', { timeout: 60000 }, async () => {
    await scenario(browser, 'http3-chromium', async ({ newPage }) => {
      const history = `history ${token()}`;
      assert.equal((await postMessage(server.url, 'node', history)).status, 200);

      const a = await newPage();
      const protocols = await watchProtocols(a);
      await gotoOk(a, `${server.httpsUrl}/http2`);
      await waitDot(a, 'ok');
      await item(a, history).waitFor();
      assert.equal((await debug(a)).protocol, 'h3', 'the navigation entry says h3');
      assert.match(await a.locator('#status-text').textContent(), /HTTP\/3/);
      assert.ok(protocols.some((p) => p.path === '/msgs' && p.protocol === 'h3'),
        `the /msgs stream over h3: ${JSON.stringify(protocols)}`);

      const b = await openChat(newPage, `${server.httpsUrl}/websocket`, 'bob');
      await item(b, history).waitFor();
      assert.equal(await b.evaluate(() => performance.getEntriesByType('navigation')[0].nextHopProtocol), 'h3');

      await a.fill('#user', 'alice');
      const hello = `over QUIC ${token()}`;
      await sendOk(a, hello);
      await item(b, hello).waitFor();
      const reply = `over the WebSocket ${token()}`;
      await sendOk(b, reply);
      await item(a, reply).waitFor();
      assert.ok(protocols.some((p) => p.path === '/msgs' && p.protocol === 'h3'));
    }, { server });
  });
});
