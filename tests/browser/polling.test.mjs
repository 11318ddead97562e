// Browser tests of the home page and the /polling chat page against a real rtchat server.
// Every scenario starts its own server on port 0 and stops it afterwards.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { launchBrowser, saveScreenshot, scenario } from './lib/browser.mjs';
import { postMessage, startServer } from './lib/server.mjs';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const token = () => Math.random().toString(36).slice(2, 8);

let browser;
before(async () => { browser = await launchBrowser(); });
after(async () => { await browser?.close(); });

/** A message <li> in a page's list, found by (unique) text. */
const item = (page, text) => page.locator('#messages > li', { hasText: text });

/** Navigate and insist on a 200 (a 404 page would otherwise only show up as a timeout). */
async function gotoOk(page, url) {
  const res = await page.goto(url);
  assert.equal(res?.status(), 200, `GET ${url}`);
  return res;
}

/** Open /polling (with optional query) and wait for the first successful poll. */
async function openChat(newPage, ctx, url, user) {
  const page = await newPage(ctx);
  await gotoOk(page, url);
  await page.waitForFunction(() => document.getElementById('status-dot')?.dataset.state === 'ok');
  if (user !== undefined) await page.fill('#user', user);
  return page;
}

async function send(page, text) {
  await page.fill('#text', text);
  await page.press('#text', 'Enter');
}

const debug = (page) => page.evaluate(() => ({ ...window.rtchatDebug }));

/** Make the page believe it is hidden / visible again, and tell it so. */
async function setHidden(page, hidden) {
  await page.evaluate((h) => {
    if (h) {
      Object.defineProperty(document, 'visibilityState', { configurable: true, get: () => 'hidden' });
      Object.defineProperty(document, 'hidden', { configurable: true, get: () => true });
    } else {
      delete document.visibilityState; // back to Document.prototype's getters
      delete document.hidden;
    }
    document.dispatchEvent(new Event('visibilitychange'));
  }, hidden);
}

function withServer(args = []) {
  const ctx = {};
  before(async () => { ctx.server = await startServer(args); });
  after(async () => { await ctx.server?.stop(); });
  return ctx;
}

describe('home page', () => {
  const s = withServer();
  it('explains rtchat and links every transport page, /polling, /sse and /websocket live, /http2 "TLS off" without TLS', { timeout: 30000 }, async () => {
    await scenario(browser, 'home', async ({ newPage }) => {
      const page = await newPage();
      const css = [];
      page.on('response', (r) => { if (r.url().endsWith('/static/style.css')) css.push(r.status()); });
      await gotoOk(page, `${s.server.url}/`);
      assert.equal(await page.title(), 'rtchat');
      assert.match(await page.locator('main p').first().textContent(), /rtchat/);
      assert.deepEqual(css, [200], 'style.css is served');
      for (const href of ['/polling', '/websocket', '/http2', '/sse', '/socketio']) {
        const card = page.locator('.transports > li', { has: page.locator(`a[href="${href}"]`) });
        assert.equal(await card.count(), 1, `a card linking ${href}`);
        // Each card says whether its page is live yet; these four are. (/socketio is its
        // own engineer's: only its having a badge is checked.)
        // The badges follow GET /config: this server runs with --no-tls, so HTTP/2 says "TLS off".
        await page.waitForFunction(() => document.body.dataset.config === 'applied');
        const live = await card.locator('.badge.live').count();
        assert.equal(await card.locator('.badge').count(), 1, `${href} has one badge`);
        if (['/polling', '/sse', '/websocket'].includes(href)) assert.equal(live, 1, `${href} is live`);
        if (href === '/http2') assert.equal(await card.locator('.badge').textContent(), 'TLS off');
      }
      await page.click('a[href="/polling"] >> nth=-1');
      await page.waitForURL(/\/polling$/);
      await page.locator('h1', { hasText: 'Chat With Me' }).waitFor();
    }, { server: s.server });
  });
});

describe('1. two pages see each other\'s messages', () => {
  const s = withServer();
  it('a message typed in A (Enter) shows in B, a reply from B shows in A', { timeout: 30000 }, async () => {
    await scenario(browser, 'sync', async ({ newContext, newPage }) => {
      const a = await openChat(newPage, await newContext(), `${s.server.url}/polling`, 'alice');
      const b = await openChat(newPage, await newContext(), `${s.server.url}/polling`, 'bob');

      const hello = `hello from alice ${token()}`;
      await send(a, hello);
      await item(b, hello).waitFor();
      assert.equal(await item(b, hello).locator('.msg-user').textContent(), 'alice');
      // The input is cleared once A's POST is answered (B may see the message first).
      await a.waitForFunction(() => document.getElementById('text').value === '');
      await item(a, hello).waitFor();

      const reply = `hi alice, bob here ${token()}`;
      await send(b, reply);
      await item(a, reply).waitFor();
      // Newest at the bottom (read here from the bottom up).
      const texts = (await a.locator('#messages > li .msg-text').allTextContents()).reverse();
      assert.deepEqual(texts.slice(0, 2), [reply, hello]);
      assert.match(await a.locator('#messages > li').first().locator('.msg-time').textContent(), /^\d{2}:\d{2}/);

      await saveScreenshot(a, 'polling-two-users.png');

      // The user name is remembered across a reload.
      await a.reload();
      await a.waitForFunction(() => document.getElementById('status-dot')?.dataset.state === 'ok');
      assert.equal(await a.inputValue('#user'), 'alice');
      await item(a, reply).waitFor();
    }, { server: s.server });
  });
});

describe('2. user text is never interpreted as HTML', () => {
  const s = withServer();
  it('<img src=x onerror=alert(1)> shows as literal text and runs nothing', { timeout: 30000 }, async () => {
    await scenario(browser, 'xss', async ({ newContext, newPage }) => {
      const ctx = await newContext();
      const dialogs = [];
      const paths = [];
      const page = await openChat(newPage, ctx, `${s.server.url}/polling`, 'mallory');
      page.on('dialog', (d) => { dialogs.push(d.message()); d.dismiss().catch(() => {}); });
      page.on('request', (r) => paths.push(new URL(r.url()).pathname));

      const payload = '<img src=x onerror=alert(1)>';
      const payload2 = '<b>bold</b><script>alert(2)</script>';
      await send(page, payload);
      await item(page, payload).waitFor();
      // Also arriving from another client, through the poll path only.
      assert.equal((await postMessage(s.server.url, '<i>eve</i>', payload2)).status, 200);
      await item(page, payload2).waitFor();
      // A later message: by the time it shows, any handler from the earlier ones would have run.
      const sentinel = `sentinel ${token()}`;
      await send(page, sentinel);
      await item(page, sentinel).waitFor();

      assert.equal(await item(page, payload).locator('.msg-text').textContent(), payload);
      assert.equal(await item(page, payload2).locator('.msg-text').textContent(), payload2);
      assert.equal(await item(page, payload2).locator('.msg-user').textContent(), '<i>eve</i>');
      assert.equal(await page.locator('#messages img, #messages script, #messages b, #messages i').count(), 0);
      assert.deepEqual(dialogs, [], 'no alert() ran');
      assert.ok(!paths.includes('/x'), 'the browser never tried to load the img src');
    }, { server: s.server });
  });
});

describe('4. long polling', () => {
  const s = withServer();
  it('switches to long polling and shows another client\'s message promptly', { timeout: 30000 }, async () => {
    await scenario(browser, 'long-poll', async ({ newPage }) => {
      const page = await newPage();
      const polls = [];
      page.on('request', (r) => {
        const u = new URL(r.url());
        if (u.pathname === '/poll' && r.method() === 'GET') polls.push(u.search);
      });
      // A long short-poll interval: only long polling can deliver within a few seconds.
      await gotoOk(page, `${s.server.url}/polling?interval=20000`);
      await page.waitForFunction(() => window.rtchatDebug.mode === 'long' && window.rtchatDebug.inFlight);
      assert.equal(polls[0], '', 'the first request is a plain GET /poll');
      const { epoch } = await debug(page);
      assert.match(epoch, /^[a-z0-9]{8}$/, 'the answers name the epoch of the history');
      assert.match(polls[1], new RegExp(`^\\?since=\\d+&epoch=${epoch}$`), 'then GET /poll?since=<last>&epoch=<epoch>');
      const before = (await debug(page)).requests;

      const text = `pushed from node ${token()}`;
      const t0 = Date.now();
      const res = await postMessage(s.server.url, 'node', text);
      assert.equal(res.status, 200);
      assert.equal(res.body.status, 'ok');
      assert.equal(typeof res.body.id, 'number');
      await item(page, text).waitFor({ timeout: 5000 });
      const took = Date.now() - t0;
      assert.ok(took < 3000, `message arrived after ${took} ms`);
      assert.equal(await item(page, text).getAttribute('data-id'), String(res.body.id));

      // Delivered by the held request; the page immediately holds a new one.
      await page.waitForFunction((n) => window.rtchatDebug.inFlight && window.rtchatDebug.requests === n + 1, before);
      const d = await debug(page);
      assert.equal(d.mode, 'long');
      assert.equal(d.last, res.body.id);
      assert.ok(polls.slice(1).every((q) => q.startsWith('?since=')), `all later polls use since: ${polls}`);
    }, { server: s.server });
  });
});

describe('5. post errors are shown', () => {
  const s = withServer();
  it('a 65-char user name shows the server error in plain words, an empty text cannot be sent; nothing is added', { timeout: 30000 }, async () => {
    await scenario(browser, 'post-errors', async ({ newPage }) => {
      const page = await openChat(newPage, undefined, `${s.server.url}/polling`, 'carol');
      const first = `first ${token()}`;
      await send(page, first);
      await item(page, first).waitFor();
      const countBefore = await page.locator('#messages > li').count();

      // What the server says for each bad input.
      const longName = 'x'.repeat(65);
      const bad1 = await postMessage(s.server.url, longName, 'too long name');
      assert.ok(bad1.status >= 400 && bad1.status < 500, `65-char user → ${bad1.status}`);
      assert.equal(typeof bad1.body.error, 'string');
      const bad2 = await postMessage(s.server.url, 'carol', '');
      assert.ok(bad2.status >= 400 && bad2.status < 500, `empty text → ${bad2.status}`);
      assert.equal(typeof bad2.body.error, 'string');

      const rejected = `rejected ${token()}`;
      await page.fill('#user', longName);
      await send(page, rejected);
      // Too long: the page knows the limit (GET /config) and says so before sending.
      assert.equal(bad1.body.error, '"user" is too long: 65 characters, at most 64 allowed');
      await page.waitForFunction((t) => document.getElementById('post-error').textContent === t,
        'Your name is 65 characters; the limit is 64');
      assert.equal(await page.locator('#send').isDisabled(), true, 'Send is disabled for a name over the limit');
      assert.equal(await page.inputValue('#text'), rejected, 'the text is kept so it can be re-sent');
      // What the page does not check itself, the server refuses, in its words.
      const disguised = 'ann\u202Ebob';
      const bad3 = await postMessage(s.server.url, disguised, 'hi');
      assert.equal(bad3.status, 422);
      await page.fill('#user', disguised);
      await send(page, rejected);
      await page.waitForFunction((t) => document.getElementById('post-error').textContent === t, bad3.body.error);
      assert.equal(await page.inputValue('#text'), rejected, 'the text is kept so it can be re-sent');

      // A good message clears the error.
      await page.fill('#user', 'carol');
      const ok = `ok ${token()}`;
      await send(page, ok);
      await item(page, ok).waitFor();
      await page.waitForFunction(() => document.getElementById('post-error').textContent === '');

      // An empty (or blank) text is never sent: Send is disabled, Enter does nothing.
      await page.fill('#text', '   ');
      assert.equal(await page.locator('#send').isDisabled(), true, 'Send is disabled for a blank text');
      await page.press('#text', 'Enter');
      assert.equal(await page.locator('#post-error').textContent(), '');

      // Nothing else got in: a later message from elsewhere shows up, the rejected one never did.
      const sentinel = `sentinel ${token()}`;
      await postMessage(s.server.url, 'dave', sentinel);
      await item(page, sentinel).waitFor();
      assert.equal(await item(page, rejected).count(), 0);
      assert.equal(await page.locator('#messages > li').count(), countBefore + 2);
      assert.equal(await page.locator('#post-error').getAttribute('role'), 'alert');
    }, { server: s.server });
  });
});

describe('6. polling pauses while the tab is hidden', () => {
  // Post rate limits off: a test posts 120 messages as fast as it can, past the per-address
  // burst of 100.
  const s = withServer(['--post-rate', '0']);
  it('no requests while hidden; polls at once and catches up (incl. `more`) when visible', { timeout: 40000 }, async () => {
    await scenario(browser, 'hidden', async ({ newPage }) => {
      // 1 s long-poll holds: about one request a second while visible.
      const page = await openChat(newPage, undefined, `${s.server.url}/polling?timeout=1`);
      await page.waitForFunction(() => window.rtchatDebug.mode === 'long' && window.rtchatDebug.requests >= 3);

      await setHidden(page, true);
      await page.waitForFunction(() => !window.rtchatDebug.inFlight, null, { timeout: 5000 });
      const hiddenAt = (await debug(page)).requests;
      const serverAt = s.server.requests({ method: 'GET', path: '/poll' }).length;

      // Meanwhile 120 messages arrive (more than the 50 the page keeps).
      for (let i = 1; i <= 120; i++) {
        assert.equal((await postMessage(s.server.url, 'bulk', `bulk ${i}`)).status, 200);
      }
      await sleep(2500); // measuring that nothing happens: at least two 1 s holds' worth
      const d = await debug(page);
      assert.equal(d.requests, hiddenAt, 'no request issued while hidden');
      assert.equal(d.paused, true);
      assert.equal(s.server.requests({ method: 'GET', path: '/poll' }).length, serverAt, 'server saw no poll');
      assert.equal(await item(page, 'bulk').count(), 0);

      await setHidden(page, false);
      await page.waitForFunction((n) => window.rtchatDebug.requests > n, hiddenAt, { timeout: 2000 });
      await page.locator('#messages > li').last().filter({ hasText: 'bulk 120' }).waitFor();
      const texts = (await page.locator('#messages > li .msg-text').allTextContents()).reverse();
      assert.equal(texts.length, 50, 'the newest 50 are kept');
      assert.deepEqual(texts, Array.from({ length: 50 }, (_, i) => `bulk ${120 - i}`));
      const after = await debug(page);
      assert.ok(after.more >= 1, `the server said "more" and the page followed (${after.more})`);
      assert.equal(after.mode, 'long');
    }, { server: s.server });
  });
});

describe('7. works with a server that does not know `since` (the course server)', () => {
  const s = withServer();
  it('stays on short polling when responses have no `last`', { timeout: 30000 }, async () => {
    await scenario(browser, 'legacy', async ({ newPage }) => {
      const page = await newPage();
      const polls = [];
      // Rewrite every GET /poll answer to the original {"msg":[{user,text,time}]} shape.
      await page.route((url) => url.pathname === '/poll', async (route) => {
        if (route.request().method() !== 'GET') return route.continue();
        polls.push(new URL(route.request().url()).search);
        const res = await route.fetch();
        const body = await res.json();
        const msg = body.msg.map(({ user, text, time }) => ({ user, text, time }));
        return route.fulfill({ response: res, json: { msg } });
      });
      await postMessage(s.server.url, 'old', 'from before');
      await gotoOk(page, `${s.server.url}/polling?interval=300`);
      await item(page, 'from before').waitFor();
      await page.waitForFunction(() => window.rtchatDebug.requests >= 4);
      const text = `legacy ${token()}`;
      await send(page, text);
      await item(page, text).waitFor();
      const d = await debug(page);
      assert.equal(d.mode, 'short');
      assert.ok(polls.every((q) => q === ''), `never sends since: ${polls}`);
      assert.equal(await page.locator('#status-dot').getAttribute('data-state'), 'ok');
      const texts = await page.locator('#messages > li .msg-text').allTextContents();
      assert.deepEqual(texts, ['from before', text], 'oldest first, newest at the bottom');
    }, { server: s.server });
  });
});

describe('8. backoff schedule and recovery after network errors', () => {
  const s = withServer();
  it('retries at once, then interval + n*step up to cap; dot red, then green again', { timeout: 30000 }, async () => {
    await scenario(browser, 'recover', async ({ newPage }) => {
      const page = await newPage();
      let failing = true;
      await page.route((url) => url.pathname === '/poll', (route) =>
        (failing && route.request().method() === 'GET' ? route.abort('connectionrefused') : route.continue()));
      // No jitter, so the schedule is exact: 0, 100+100, min(300, 100+200), 300, ...
      await gotoOk(page, `${s.server.url}/polling?interval=100&step=100&cap=300&jitter=0`);
      await page.waitForFunction(() => window.rtchatDebug.failures >= 4);
      const dot = page.locator('#status-dot');
      assert.equal(await dot.getAttribute('data-state'), 'error');
      assert.match(await dot.getAttribute('aria-label'), /fail/i);
      assert.equal(await dot.getAttribute('title'), await dot.getAttribute('aria-label'));
      assert.deepEqual((await debug(page)).delays.slice(0, 4), [0, 200, 300, 300]);

      failing = false;
      const text = `back ${token()}`;
      await postMessage(s.server.url, 'node', text);
      await item(page, text).waitFor();
      await page.waitForFunction(() => document.getElementById('status-dot').dataset.state === 'ok');
      const d = await debug(page);
      assert.equal(d.failures, 0);
      assert.equal(d.mode, 'long');
    }, { server: s.server });
  });
});

describe('9. survives a server restart', () => {
  const s = withServer();
  it('goes red while the server is down, then shows the new server\'s history', { timeout: 40000 }, async () => {
    let second;
    try {
      await scenario(browser, 'restart', async ({ newPage }) => {
        const page = await openChat(newPage, undefined, `${s.server.url}/polling?interval=200&step=200&cap=1000`);
        const old = `before restart ${token()}`;
        await postMessage(s.server.url, 'node', old);
        await item(page, old).waitFor();
        await page.waitForFunction(() => window.rtchatDebug.mode === 'long' && window.rtchatDebug.inFlight);

        await s.server.stop();
        await page.waitForFunction(() => document.getElementById('status-dot').dataset.state === 'error');

        // Same address, empty history, ids start again at 1.
        second = await startServer([], { listen: `127.0.0.1:${s.server.port}` });
        const fresh = `after restart ${token()}`;
        await postMessage(second.url, 'node', fresh);
        await item(page, fresh).waitFor();
        await page.waitForFunction(() => document.getElementById('status-dot').dataset.state === 'ok');
        assert.deepEqual(await page.locator('#messages > li .msg-text').allTextContents(), [fresh]);
        assert.equal((await debug(page)).mode, 'long');

        // And it keeps long polling against the new server.
        const next = `next ${token()}`;
        await postMessage(second.url, 'node', next);
        await item(page, next).waitFor();
      }, { server: s.server });
    } finally {
      await second?.stop();
    }
  });
});
