// Browser tests of the /http2 page: the `GET /msgs` snapshot stream read with fetch + a
// streaming body reader, over HTTPS (HTTP/2) against a real rtchat server with TLS.
import assert from 'node:assert/strict';
import http from 'node:http';
import { after, before, describe, it } from 'node:test';
import { launchBrowser, saveScreenshot, scenario } from './lib/browser.mjs';
import {
  debug, gotoOk, item, openChat, recordDot, send, sendOk, textsNewestFirst, token, waitDot, waitDotSeen,
  waitPostError,
} from './lib/chat.mjs';
import { startProxy } from './lib/proxy.mjs';
import { postMessage, startServer, waitUntil } from './lib/server.mjs';

let browser;
before(async () => { browser = await launchBrowser({ tls: true }); });
after(async () => { await browser?.close(); });

/** Record the protocol ("h2", "http/1.1") of every response a page gets, by path. */
async function watchProtocols(page) {
  const seen = [];
  const cdp = await page.context().newCDPSession(page);
  cdp.on('Network.responseReceived', (e) => {
    seen.push({ path: new URL(e.response.url).pathname, method: e.type, protocol: e.response.protocol });
  });
  await cdp.send('Network.enable');
  return seen;
}

/** POST /msgs from Node over plain HTTP (same server, same validation). */
async function postMsgs(baseUrl, body) {
  const res = await fetch(`${baseUrl}/msgs`, {
    method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body),
  });
  return { status: res.status, body: await res.json() };
}

describe('http2: two pages over HTTPS', () => {
  let server;
  before(async () => { server = await startServer([], { tls: true }); });
  after(async () => { await server?.stop(); });

  it('two /http2 pages chat over h2; history, live messages, no http note', { timeout: 30000 }, async () => {
    await scenario(browser, 'http2-two-pages', async ({ newPage }) => {
      const before1 = `history ${token()}`;
      assert.equal((await postMessage(server.url, 'node', before1)).status, 200);

      const a = await newPage();
      const protocols = await watchProtocols(a);
      await gotoOk(a, `${server.httpsUrl}/http2`);
      await waitDot(a, 'ok');
      await item(a, before1).waitFor();
      await a.fill('#user', 'alice');
      const b = await openChat(newPage, `${server.httpsUrl}/http2`, 'bob');
      await item(b, before1).waitFor();

      const hello = `hello from alice ${token()}`;
      await sendOk(a, hello);
      await item(b, hello).waitFor();
      assert.equal(await item(b, hello).locator('.msg-user').textContent(), 'alice');
      const reply = `hi alice, bob here ${token()}`;
      await sendOk(b, reply);
      await item(a, reply).waitFor();
      const fromNode = `from another client ${token()}`;
      await postMessage(server.url, 'node', fromNode);
      await item(a, fromNode).waitFor();
      await item(b, fromNode).waitFor();
      assert.deepEqual((await textsNewestFirst(a)).slice(0, 4), [fromNode, reply, hello, before1], 'newest first');
      assert.deepEqual(await textsNewestFirst(b), await textsNewestFirst(a));

      // HTTP/2 for the page, its GET /msgs stream and its POST /msgs.
      const nav = await a.evaluate(() => performance.getEntriesByType('navigation')[0].nextHopProtocol);
      assert.equal(nav, 'h2', 'the page came over h2');
      const msgs = protocols.filter((p) => p.path === '/msgs');
      assert.ok(msgs.length >= 2, `GET and POST /msgs seen: ${JSON.stringify(protocols)}`);
      assert.ok(msgs.every((p) => p.protocol === 'h2'), `every /msgs response is h2: ${JSON.stringify(msgs)}`);
      const post = await a.evaluate(() => performance.getEntriesByType('resource')
        .filter((e) => new URL(e.name).pathname === '/msgs').map((e) => e.nextHopProtocol));
      assert.ok(post.length >= 1 && post.every((p) => p === 'h2'), `finished /msgs requests: ${post}`);

      assert.equal(await a.locator('#h2-note').isHidden(), true, 'no http note over https');
      assert.match(await a.locator('#status-dot').getAttribute('aria-label'), /HTTP\/2/);
      const d = await debug(a);
      assert.equal(d.connects, 1, 'one stream for the whole chat');
      assert.equal(d.badLines, 0);
      assert.ok(d.snapshots >= 4, `snapshots read: ${d.snapshots}`);
      await saveScreenshot(a, 'http2-two-users.png');
    }, { server });
  });

  it('shows the server\'s error for an invalid post and keeps the text', { timeout: 30000 }, async () => {
    await scenario(browser, 'http2-post-errors', async ({ newPage }) => {
      const page = await openChat(newPage, `${server.httpsUrl}/http2`, 'carol');
      const longName = 'x'.repeat(65);
      const bad1 = await postMsgs(server.url, { user: longName, text: 'too long name' });
      assert.equal(bad1.status, 422);
      const bad2 = await postMsgs(server.url, { user: 'carol', text: '   ' });
      assert.equal(bad2.status, 422);

      const rejected = `rejected ${token()}`;
      await page.fill('#user', longName);
      await send(page, rejected);
      // Too long: the page knows the limit (GET /config) and says so before sending.
      assert.equal(bad1.body.error, '"user" is too long: 65 characters, at most 64 allowed');
      await waitPostError(page, 'Your name is 65 characters; the limit is 64');
      assert.equal(await page.locator('#send').isDisabled(), true, 'Send is disabled for a name over the limit');
      assert.equal(await page.inputValue('#text'), rejected, 'the text is kept');
      // What the page does not check itself, the server refuses, in its words.
      const disguised = 'ann\u202Ebob';
      const bad3 = await postMsgs(server.url, { user: disguised, text: 'hi' });
      assert.equal(bad3.status, 422);
      await page.fill('#user', disguised);
      await send(page, rejected);
      await waitPostError(page, bad3.body.error);
      assert.equal(await page.inputValue('#text'), rejected, 'the text is kept');

      // A blank text is not sent at all (the server would refuse it: bad2).
      await page.fill('#user', 'carol');
      await page.fill('#text', '   ');
      assert.equal(await page.locator('#send').isDisabled(), true, 'Send is disabled for a blank text');

      const ok = `ok ${token()}`;
      await sendOk(page, ok);
      await waitPostError(page, '');
      assert.equal(await item(page, rejected).count(), 0, 'nothing was stored');
    }, { server });
  });

  it('over plain http: a note links to the HTTPS page, and the stream still works (HTTP/1.1)', { timeout: 30000 }, async () => {
    await scenario(browser, 'http2-plain-http', async ({ newPage }) => {
      const page = await openChat(newPage, `${server.url}/http2`, 'dave');
      const note = page.locator('#h2-note');
      await note.waitFor();
      // The port the server's HTTPS listener really bound (GET /config), on the page's own host.
      const https = `https://127.0.0.1:${server.tlsPort}/http2`;
      await note.locator('a').waitFor();
      assert.equal(await note.textContent(), `Plain http: the stream runs over HTTP/1.1 here. Open ${https} for HTTP/2.`);
      assert.equal(await note.locator('a').getAttribute('href'), https);
      const text = `over http/1.1 ${token()}`;
      await sendOk(page, text);
      await postMessage(server.url, 'node', `${text} again`);
      await item(page, `${text} again`).waitFor();
    }, { server });
  });
});

describe('http2: reading the stream', () => {
  // A stub server (plain HTTP/1.1) that serves the real page and assets from rtchat but writes
  // its own /msgs: several snapshots in one chunk, a snapshot cut into pieces (inside a
  // multi-byte character too), garbage lines, then the end of the stream.
  let server;
  let stub;
  let stubUrl;
  let streams = 0;
  const snap = (msgs) => `${JSON.stringify({ msg: msgs, last: msgs.length ? msgs[0].id : 0 })}\n`;
  const m = (id, text) => ({ id, user: 'stub', text, time: 1795779062042 + id });
  before(async () => {
    server = await startServer();
    stub = http.createServer(async (req, res) => {
      stub.urls ??= [];
      if (new URL(req.url, 'http://stub').pathname === '/msgs') {
        streams += 1;
        stub.urls.push(req.url);
        res.writeHead(200, { 'Content-Type': 'text/plain; charset=utf-8', 'Cache-Control': 'no-cache' });
        if (streams > 1) { // the reconnect: one snapshot, kept open
          res.write(snap([m(4, 'after reconnect'), m(3, 'héllo ✓ wörld'), m(2, 'two'), m(1, 'one')]));
          req.on('close', () => res.end());
          return;
        }
        const gate = new Promise((r) => { stub.next = r; });
        const released = new Promise((r) => { stub.release = r; });
        const third = Buffer.from(snap([m(3, 'héllo ✓ wörld'), m(2, 'two'), m(1, 'one')]));
        const cut = third.indexOf(Buffer.from('✓')) + 1; // inside the 3-byte check mark
        // Two lines at once; then (once the test saw them) the rest.
        res.write(snap([m(1, 'one')]) + snap([m(2, 'two'), m(1, 'one')]));
        await gate;
        const parts = [
          Buffer.from('not json\n\n'),
          third.subarray(0, 10), third.subarray(10, cut), third.subarray(cut), // one line in three
        ];
        for (const p of parts) {
          res.write(p);
          await new Promise((r) => setTimeout(r, 60));
        }
        // Wait for the test to see the third snapshot, then end with a partial line.
        await released;
        res.end('{"msg":[{"id":9,"user":"stub","text":"never sh');
        return;
      }
      const up = await fetch(`${server.url}${req.url}`);
      res.writeHead(up.status, { 'Content-Type': up.headers.get('content-type') || 'text/plain' });
      res.end(Buffer.from(await up.arrayBuffer()));
    });
    await new Promise((r) => stub.listen(0, '127.0.0.1', r));
    stubUrl = `http://127.0.0.1:${stub.address().port}`;
  });
  after(async () => {
    stub?.closeAllConnections();
    await new Promise((r) => (stub ? stub.close(r) : r()));
    await server?.stop();
  });

  it('renders the newest complete snapshot whatever the chunking, then reconnects at once, resuming', { timeout: 30000 }, async () => {
    await scenario(browser, 'http2-chunking', async ({ newPage }) => {
      const page = await newPage();
      await gotoOk(page, `${stubUrl}/http2?base=5000`);
      await page.locator('#messages > li').nth(1).waitFor();
      assert.deepEqual(await textsNewestFirst(page), ['two', 'one']);
      assert.equal((await debug(page)).snapshots, 1, 'two lines read at once render once, the newest');
      stub.next();
      await page.locator('#messages > li').nth(2).waitFor();
      assert.deepEqual(await textsNewestFirst(page), ['héllo ✓ wörld', 'two', 'one']);
      let d = await debug(page);
      assert.equal(d.snapshots, 2, 'the snapshot cut in pieces renders once, when complete');
      assert.equal(d.badLines, 1, 'the garbage line is skipped');
      assert.equal(d.last, 3);
      stub.release();
      // The stream ends (with half a line, never shown): red, then a reconnect at once.
      await item(page, 'after reconnect').waitFor();
      await waitDot(page, 'ok');
      d = await debug(page);
      assert.equal(d.connects, 2);
      assert.deepEqual(d.delays, [0], 'the first retry is immediate');
      assert.equal(await item(page, 'never sh').count(), 0);
      assert.equal(await page.locator('#messages > li').count(), 4);
      assert.deepEqual(stub.urls, ['/msgs', '/msgs?since=3'], 'the reconnect resumes after the newest id held');
      // The stub answers with a plain snapshot: merged by id, only message 4 is new.
      assert.equal(await page.locator('#stream-status').textContent(), 'Resumed after message 3 — 1 missed.');
    }, { server });
  });
});

describe('http2: server restart on the same ports', () => {
  let server;
  let second;
  before(async () => { server = await startServer([], { tls: true }); });
  after(async () => {
    await second?.stop();
    await server?.stop();
  });

  it('the dot turns red when the server stops, green after a restart, and the chat works', { timeout: 40000 }, async () => {
    await scenario(browser, 'http2-restart', async ({ newPage }) => {
      const page = await openChat(newPage, `${server.httpsUrl}/http2?base=200&cap=1000`, 'erin');
      const old = `before restart ${token()}`;
      await sendOk(page, old);

      // The first retry is immediate, so the red dot may last only a moment: every state the
      // dot passes through is recorded rather than sampled afterwards.
      await recordDot(page);
      await server.stop({ keepDataDir: true });
      await waitDotSeen(page, /^error .*Disconnected/);

      second = await startServer([], {
        tls: true,
        listen: `127.0.0.1:${server.port}`,
        tlsListen: `127.0.0.1:${server.tlsPort}`,
        dataDir: server.dataDir,
        ownDataDir: true,
      });
      assert.equal(second.httpsUrl, server.httpsUrl);
      await waitDot(page, 'ok');
      const oldId = Number(await item(page, old).getAttribute('data-id'));
      await page.waitForFunction((t) => document.getElementById('stream-status').textContent === t,
        `Resumed after message ${oldId} — nothing missed.`);
      // Same data dir, so the same (SQLite) history: the old message is still there, and ids go on.
      const fresh = `after restart ${token()}`;
      await sendOk(page, fresh);
      assert.deepEqual(await textsNewestFirst(page), [fresh, old]);
      assert.equal(Number(await item(page, fresh).getAttribute('data-id')),
        Number(await item(page, old).getAttribute('data-id')) + 1);
      const d = await debug(page);
      assert.equal(d.failures, 0, 'backoff reset');
      assert.ok(d.connects >= 3, `reconnected: ${d.connects} connects`);
      assert.equal(d.delays[0], 0, 'the first retry is immediate');
    }, { server });
  });
});

describe('http2: resume after the connection drops', () => {
  // A history of 5, and 8 messages missed: the catch-up comes in two pages (5 + 3, "more").
  let server;
  let proxy;
  before(async () => {
    server = await startServer(['--history', '5'], { tls: true });
    proxy = await startProxy(server.tlsPort);
  });
  after(async () => {
    await proxy?.close();
    await server?.stop();
  });

  it('reconnects to /msgs?since=<newest id> and shows every missed message once, in order', { timeout: 30000 }, async () => {
    await scenario(browser, 'http2-resume', async ({ newPage }) => {
      const page = await newPage();
      const streams = [];
      page.on('request', (r) => {
        const u = new URL(r.url());
        if (u.pathname === '/msgs' && r.method() === 'GET') streams.push(u.search);
      });
      await gotoOk(page, `https://127.0.0.1:${proxy.port}/http2?base=200&cap=1000`);
      await waitDot(page, 'ok');
      await page.fill('#user', 'hana');
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
        const res = await postMessage(server.url, 'node', missed[i - 1]);
        assert.equal(res.status, 200);
        missedIds.push(res.body.id);
      }
      assert.deepEqual(missedIds, missedIds.map((_, i) => seenId + 1 + i));
      proxy.release();

      await page.waitForFunction((t) => document.getElementById('stream-status').textContent === t,
        `Resumed after message ${seenId} — 8 missed.`);
      await waitDot(page, 'ok');
      const expected = [...missed].reverse().concat([...seen].reverse());
      assert.deepEqual(await textsNewestFirst(page), expected, 'every missed message once, newest first');
      const ids = await page.locator('#messages > li').evaluateAll((els) => els.map((e) => Number(e.dataset.id)).reverse());
      assert.deepEqual(ids, [...missedIds].reverse().concat([seenId, seenId - 1]));
      assert.equal(streams[0], '', 'the first stream starts fresh');
      const { serverEpoch } = await debug(page);
      assert.match(serverEpoch, /^[a-z0-9]{8}$/);
      assert.equal(streams.at(-1), `?since=${seenId}&epoch=${serverEpoch}`,
        'the reconnect resumes after the newest id held, in its epoch');

      // Snapshots go on after the catch-up (merged, not replacing: the 5-message snapshots
      // don't drop what the page holds beyond them).
      const after = `after resume ${token()}`;
      await sendOk(page, after);
      assert.deepEqual(await textsNewestFirst(page), [after, ...expected]);
      const d = await debug(page);
      assert.equal(d.pages, 2, 'two catch-up pages: 5 then 3');
      assert.equal(d.truncated, 0);
      assert.equal(d.resets, 0);
      assert.equal(d.failures, 0);
      assert.equal(d.badLines, 0);
      assert.equal(await page.locator('.msg-before-restart').count(), 0);
      await saveScreenshot(page, 'http2-resumed.png');
    }, { server });
  });
});

describe('http2: server restart with an empty store (reset)', () => {
  let server;
  let second;
  before(async () => { server = await startServer([], { tls: true, store: 'memory' }); });
  after(async () => {
    await second?.stop();
    await server?.stop();
  });

  it('keeps the messages from before the restart, marked, and goes on with the new ids', { timeout: 40000 }, async () => {
    await scenario(browser, 'http2-reset', async ({ newPage }) => {
      const page = await openChat(newPage, `${server.httpsUrl}/http2?base=200&cap=1000`, 'ivy');
      const one = `one ${token()}`;
      const two = `two ${token()}`;
      await sendOk(page, one);
      await sendOk(page, two);

      await server.stop({ keepDataDir: true });
      await waitDot(page, 'error');
      second = await startServer([], {
        tls: true,
        store: 'memory',
        listen: `127.0.0.1:${server.port}`,
        tlsListen: `127.0.0.1:${server.tlsPort}`,
        dataDir: server.dataDir,
        ownDataDir: true,
      });
      // /msgs?since=2 on a server that knows no id 2: the snapshot says "reset".
      await page.waitForFunction(() => window.rtchatDebug.resets === 1);
      await waitDot(page, 'ok');
      assert.match(await page.locator('#stream-status').textContent(), /restarted/);
      const three = `three ${token()}`;
      await sendOk(page, three);
      assert.equal(await item(page, three).getAttribute('data-id'), '1', 'ids start again');
      assert.deepEqual(await textsNewestFirst(page), [three, two, one]);
      for (const t of [one, two]) {
        assert.match(await item(page, t).getAttribute('class'), /msg-before-restart/);
        assert.equal(await item(page, t).locator('.msg-note').textContent(), 'before the server restarted');
      }
      assert.equal(await item(page, three).locator('.msg-note').count(), 0);
      assert.equal(await page.locator('#messages > li[data-id="1"]').count(), 2, 'old and new id 1');
    }, { server });
  });
});

describe('http2: truncated', () => {
  let server;
  let proxy;
  before(async () => {
    server = await startServer(['--history', '2', '--retain', '2'], { tls: true });
    proxy = await startProxy(server.tlsPort);
  });
  after(async () => {
    await proxy?.close();
    await server?.stop();
  });

  it('says older messages were lost when the server no longer keeps what the page missed', { timeout: 30000 }, async () => {
    await scenario(browser, 'http2-truncated', async ({ newPage }) => {
      const page = await openChat(newPage, `https://127.0.0.1:${proxy.port}/http2?base=200&cap=1000`);
      const first = await postMessage(server.url, 'node', `seen ${token()}`);
      const seen = first.body.id;
      await page.waitForFunction((id) => window.rtchatDebug.lastId === id, seen);
      proxy.hold();
      proxy.cut();
      await waitUntil(() => proxy.held >= 1, { what: 'the page to reconnect (held at the proxy)' });
      const later = [];
      for (let i = 1; i <= 5; i++) {
        later.push(`later ${i} ${token()}`);
        assert.equal((await postMessage(server.url, 'node', later[i - 1])).status, 200);
      }
      proxy.release();
      await item(page, later[4]).waitFor();
      await page.locator('#stream-status', { hasText: 'Older messages were lost' }).waitFor();
      assert.match(await page.locator('#stream-status').textContent(),
        new RegExp(`^Resumed after message ${seen} — \\d+ missed\\. Older messages were lost`));
      assert.equal((await debug(page)).truncated, 1);
      assert.equal(await item(page, later[4]).count(), 1);
    }, { server });
  });
});
