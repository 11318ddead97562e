// A chat app people use every day (issue 20, "the first five minutes", continued):
// - GET /config tells the pages the server's limits and listeners;
// - the composer counts characters as the server does and stops an over-long text or name;
// - links to the HTTP/2 page point to the HTTPS port the server really bound (or say there is none);
// - the home page's badges say what this build and this start really offer; /socketio without
//   its browser client says "unavailable" and turns the composer off;
// - newest at the bottom, kept in view unless the reader scrolled up ("New messages ↓");
// - "Reconnect now" on /sse and /socketio too.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { launchBrowser, saveScreenshot, scenario } from './lib/browser.mjs';
import {
  gotoOk, item, openChat, send, sendOk, token, waitDot, waitPostError,
} from './lib/chat.mjs';
import { postMessage, startServer, withServer } from './lib/server.mjs';

let browser;
before(async () => { browser = await launchBrowser(); });
after(async () => { await browser?.close(); });

/** Wait until the page has read GET /config (rtchatDebug.pageConfig). */
function waitConfig(page) {
  return page.waitForFunction(() => window.rtchatDebug && window.rtchatDebug.pageConfig !== null);
}

/** Wait until the status word (next to the dot) matches `re`. */
function waitStatus(page, re, timeout) {
  return page.waitForFunction((src) => new RegExp(src).test(document.getElementById('status-text').textContent),
    re.source, timeout ? { timeout } : undefined);
}

describe('chat app: GET /config', () => {
  const s = withServer(['--max-text', '10', '--max-user', '5', '--history', '7']);
  it('answers the limits of this start, no HTTPS port without TLS, and is not cached', async () => {
    const res = await fetch(`${s.server.url}/config`);
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('cache-control'), 'no-store');
    const body = await res.json();
    assert.equal(body.max_text, 10);
    assert.equal(body.max_user, 5);
    assert.equal(body.history, 7);
    assert.equal(body.https_port, null);
    assert.equal(body.h3, false);
    assert.equal(typeof body.socketio_client, 'boolean');
  });
});

describe('chat app: the composer knows the limits (--max-text 10, --max-user 5)', () => {
  const s = withServer(['--max-text', '10', '--max-user', '5']);
  for (const transport of ['polling', 'websocket']) {
    it(`/${transport}: counts characters as the server does, and stops an over-long text or name before sending`, { timeout: 30000 }, async () => {
      await scenario(browser, `chatlike-limits-${transport}`, async ({ newPage }) => {
        const page = await openChat(newPage, `${s.server.url}/${transport}`, 'ann');
        await waitConfig(page);
        const counter = page.locator('#text-count');
        const sendButton = page.locator('#send');

        await page.fill('#text', 'hello');
        assert.equal(await counter.isHidden(), true, 'no counter far from the limit');
        assert.equal(await sendButton.isDisabled(), false);

        // Near the limit: the counter shows.
        await page.fill('#text', 'x'.repeat(8));
        assert.equal(await counter.isVisible(), true, 'a counter near the limit');
        assert.equal(await counter.textContent(), '8 / 10');

        // 11 emoji are 22 UTF-16 units but 11 characters, as the server counts them.
        const over = '😀'.repeat(11);
        await page.fill('#text', over);
        assert.equal(await counter.textContent(), '11 / 10');
        assert.equal(await counter.evaluate((el) => el.classList.contains('over')), true);
        assert.equal(await sendButton.isDisabled(), true, 'Send is disabled over the limit');
        await waitPostError(page, 'Your message is 11 characters; the limit is 10');
        // Enter does not send it either: no post reaches the server.
        const posts = () => s.server.requests({ method: 'POST', path: '/poll' }).length;
        const before = posts();
        await page.press('#text', 'Enter');
        assert.equal(await page.inputValue('#text'), over, 'the text is kept');
        assert.equal(await sendButton.isDisabled(), true);

        // Exactly the limit (10 emoji = 20 UTF-16 units): fine, and the server takes it.
        const ten = `${'😀'.repeat(9)}${transport[0]}`;
        await page.fill('#text', ten);
        await waitPostError(page, '');
        assert.equal(await counter.textContent(), '10 / 10');
        assert.equal(await sendButton.isDisabled(), false);
        await sendOk(page, ten);
        if (transport === 'polling') assert.equal(posts(), before + 1, 'only the good post was sent');

        // The name likewise knows --max-user.
        await page.fill('#text', 'hi');
        await page.fill('#user', 'abcdef');
        await waitPostError(page, 'Your name is 6 characters; the limit is 5');
        assert.equal(await sendButton.isDisabled(), true);
        await page.fill('#user', 'abcde');
        await waitPostError(page, '');
        assert.equal(await sendButton.isDisabled(), false);
      }, { server: s.server });
    });
  }
});

describe('chat app: links to the HTTPS port the server really bound', () => {
  let server;
  before(async () => { server = await startServer([], { tls: true, tlsListen: '127.0.0.1:0' }); });
  after(async () => { await server?.stop(); });

  it('the home page and /http2 over plain http link to https://<host>:<bound port>/http2', { timeout: 30000 }, async () => {
    assert.ok(server.tlsPort > 0 && server.tlsPort !== 8443, `an ephemeral TLS port: ${server.tlsPort}`);
    const want = `https://127.0.0.1:${server.tlsPort}/http2`;
    await scenario(browser, 'chatlike-https-link', async ({ newPage }) => {
      const home = await newPage();
      await gotoOk(home, `${server.url}/`);
      const link = home.locator('#https-link');
      await link.waitFor();
      assert.equal(await link.getAttribute('href'), want);
      assert.equal(await link.textContent(), want);
      assert.equal(await home.locator('#badge-http2').textContent(), 'live');

      const page = await openChat(newPage, `${server.url}/http2`, 'ann');
      const note = page.locator('#h2-note #https-link');
      await note.waitFor();
      assert.equal(await note.getAttribute('href'), want);
    }, { server });
  });
});

describe('chat app: no TLS listener (--no-tls)', () => {
  const s = withServer();
  it('the home page says TLS is off instead of a dead link; so does /http2', { timeout: 30000 }, async () => {
    await scenario(browser, 'chatlike-no-tls', async ({ newPage }) => {
      const home = await newPage();
      await gotoOk(home, `${s.server.url}/`);
      await home.waitForFunction(() => document.body.dataset.config === 'applied');
      assert.equal(await home.locator('#badge-http2').textContent(), 'TLS off');
      assert.equal(await home.locator('#https-link').count(), 0, 'no link to a port nobody listens on');
      assert.match(await home.locator('#https-where').textContent(), /no HTTPS listener/);
      assert.equal(await home.locator('a[href^="https:"]').count(), 0);

      const page = await openChat(newPage, `${s.server.url}/http2`, 'ann');
      await page.locator('#h2-note', { hasText: 'no HTTPS listener' }).waitFor();
      assert.equal(await page.locator('#h2-note a').count(), 0);
    }, { server: s.server });
  });
});

describe('chat app: the home page badges follow GET /config', () => {
  const s = withServer();
  const stub = (page, body) => page.route('**/config', (route) => route.fulfill({
    status: 200, contentType: 'application/json', body: JSON.stringify(body),
  }));
  it('Socket.IO "unavailable" (with why) without its browser client; HTTP/2 "TLS off" without TLS', { timeout: 30000 }, async () => {
    await scenario(browser, 'chatlike-badges', async ({ newPage }) => {
      const page = await newPage();
      await stub(page, { max_text: 2000, max_user: 64, history: 50, https_port: null, h3: false, socketio_client: false });
      await gotoOk(page, `${s.server.url}/`);
      await page.waitForFunction(() => document.body.dataset.config === 'applied');
      const sio = page.locator('#badge-socketio');
      assert.equal(await sio.textContent(), 'unavailable');
      assert.equal(await sio.evaluate((el) => el.classList.contains('unavailable')), true);
      const note = page.locator('#socketio-note');
      assert.equal(await note.isVisible(), true);
      assert.match(await note.textContent(), /Socket\.IO browser client is not in this build/);
      assert.match(await note.textContent(), /scripts\/setup/);
      assert.equal(await page.locator('#badge-http2').textContent(), 'TLS off');
      await saveScreenshot(page, 'chatlike-badges-unavailable.png');

      const ok = await newPage();
      await stub(ok, { max_text: 2000, max_user: 64, history: 50, https_port: 9443, h3: true, socketio_client: true });
      await gotoOk(ok, `${s.server.url}/`);
      await ok.waitForFunction(() => document.body.dataset.config === 'applied');
      assert.equal(await ok.locator('#badge-socketio').textContent(), 'live');
      assert.equal(await ok.locator('#socketio-note').isHidden(), true);
      assert.equal(await ok.locator('#badge-http2').textContent(), 'live');
      assert.equal(await ok.locator('#https-link').getAttribute('href'), 'https://127.0.0.1:9443/http2');
    }, { server: s.server });
  });

  it('/socketio without the browser client: "unavailable", the composer off, never "connecting"', { timeout: 30000 }, async () => {
    await scenario(browser, 'chatlike-socketio-missing', async ({ newPage }) => {
      const page = await newPage();
      await page.route('**/socket.io/socket.io.min.js', (route) => route.fulfill({
        status: 404, contentType: 'text/plain', body: 'not in this build',
      }));
      await gotoOk(page, `${s.server.url}/socketio`);
      await page.locator('#missing-client').waitFor();
      await waitConfig(page); // reading the limits must not turn the composer back on
      assert.equal(await page.locator('#status-text').textContent(), 'unavailable');
      assert.equal(await page.locator('#transport').textContent(), 'unavailable');
      assert.equal(await page.locator('#text').isDisabled(), true);
      assert.equal(await page.locator('#send').isDisabled(), true);
      assert.equal(await page.locator('#reconnect').isHidden(), true);
    }, { server: s.server });
  });
});

/** Where the list is scrolled, and whether `text`'s message is inside the list's visible box. */
function listState(page, text) {
  return page.evaluate((t) => {
    const list = document.getElementById('messages');
    const box = list.getBoundingClientRect();
    const li = [...list.children].find((el) => el.querySelector('.msg-text').textContent === t);
    const r = li && li.getBoundingClientRect();
    return {
      fromBottom: list.scrollHeight - list.scrollTop - list.clientHeight,
      scrollable: list.scrollHeight > list.clientHeight + 10,
      visible: !!r && r.top >= box.top - 1 && r.bottom <= box.bottom + 1,
      last: list.lastElementChild.querySelector('.msg-text').textContent,
      button: !document.getElementById('new-messages').hidden,
    };
  }, text);
}

describe('chat app: newest at the bottom', () => {
  const s = withServer();
  it('oldest at the top; kept at the bottom; scrolled up, the place is kept and "New messages ↓" jumps down', { timeout: 60000 }, async () => {
    await scenario(browser, 'chatlike-bottom', async ({ newPage }) => {
      const page = await openChat(newPage, `${s.server.url}/websocket`, 'ann');
      const tag = token();
      const texts = [];
      for (let i = 1; i <= 60; i += 1) {
        texts.push(`m${i} ${tag}`);
        assert.equal((await postMessage(s.server.url, 'bob', texts[i - 1])).status, 200);
      }
      await item(page, texts[59]).waitFor();
      // Oldest at the top: the newest 50, in the order they were posted.
      const shown = await page.locator('#messages > li .msg-text').allTextContents();
      assert.deepEqual(shown, texts.slice(10));
      let st = await listState(page, texts[59]);
      assert.equal(st.scrollable, true, 'the list scrolls by itself');
      assert.equal(st.last, texts[59]);
      assert.equal(st.visible, true, 'the newest is in view');
      assert.ok(st.fromBottom <= 2, `at the bottom: ${st.fromBottom}`);
      assert.equal(st.button, false);

      // Scroll up to the middle: the reader reads older messages.
      await page.locator('#messages').evaluate((el) => { el.scrollTop = (el.scrollHeight - el.clientHeight) / 2; });
      await page.waitForFunction(() => window.rtchatDebug.stick === false);
      const anchor = await page.evaluate(() => {
        const list = document.getElementById('messages');
        const top = list.getBoundingClientRect().top;
        const li = [...list.children].find((el) => el.getBoundingClientRect().top >= top);
        return { text: li.querySelector('.msg-text').textContent, y: li.getBoundingClientRect().top };
      });
      const next = `m61 ${tag}`;
      await postMessage(s.server.url, 'bob', next);
      await item(page, next).waitFor({ state: 'attached' });
      await page.locator('#new-messages').waitFor({ state: 'visible' });
      st = await listState(page, next);
      assert.equal(st.visible, false, 'the new message did not pull the reader down');
      assert.ok(st.fromBottom > 50, `still scrolled up: ${st.fromBottom}`);
      const y = await item(page, anchor.text).evaluate((li) => li.getBoundingClientRect().top);
      assert.ok(Math.abs(y - anchor.y) <= 2, `"${anchor.text}" stayed in place: ${anchor.y} -> ${y}`);

      await page.click('#new-messages');
      await page.waitForFunction(() => {
        const l = document.getElementById('messages');
        return l.scrollHeight - l.scrollTop - l.clientHeight <= 2;
      });
      st = await listState(page, next);
      assert.equal(st.visible, true, 'the newest is in view again');
      assert.equal(await page.locator('#new-messages').isHidden(), true);

      // Back at the bottom, new messages keep it there.
      const more = `m62 ${tag}`;
      await postMessage(s.server.url, 'bob', more);
      await item(page, more).waitFor();
      await page.waitForFunction((t) => {
        const l = document.getElementById('messages');
        return l.lastElementChild.querySelector('.msg-text').textContent === t &&
          l.scrollHeight - l.scrollTop - l.clientHeight <= 2;
      }, more);

      // Scrolled up, one's own message brings the list down to it.
      await page.locator('#messages').evaluate((el) => { el.scrollTop = 0; });
      await page.waitForFunction(() => window.rtchatDebug.stick === false);
      const mine = `mine ${tag}`;
      await sendOk(page, mine);
      await page.waitForFunction(() => {
        const l = document.getElementById('messages');
        return l.scrollHeight - l.scrollTop - l.clientHeight <= 2;
      });
      assert.equal((await listState(page, mine)).visible, true);
    }, { server: s.server });
  });

  for (const transport of ['polling', 'sse', 'websocket', 'http2', 'socketio']) {
    it(`/${transport} at 375 × 667: the newest message and the composer are in view on load`, { timeout: 30000 }, async () => {
      await scenario(browser, `chatlike-375-${transport}`, async ({ newContext, newPage }) => {
        const ctx = await newContext({ viewport: { width: 375, height: 667 } });
        const page = await openChat(newPage, `${s.server.url}/${transport}`, undefined, ctx);
        // The newest message there is, and the page showing it (an SSE page's history comes
        // as events after it connects: its list may still be filling up).
        const newest = (await (await fetch(`${s.server.url}/poll`)).json()).msg[0].text;
        await item(page, newest).waitFor();
        await page.waitForFunction(() => {
          const l = document.getElementById('messages');
          return l.scrollHeight - l.scrollTop - l.clientHeight <= 2;
        });
        assert.equal((await listState(page, newest)).visible, true, 'the newest message is in view');
        for (const sel of ['#text', '#send', '#user']) {
          const b = await page.locator(sel).boundingBox();
          assert.ok(b && b.y >= 0 && b.y + b.height <= 667 && b.x >= 0 && b.x + b.width <= 375,
            `${sel} is in view without scrolling the page: ${JSON.stringify(b)}`);
        }
        const widths = await page.evaluate(() => ({
          scroll: document.documentElement.scrollWidth, client: document.documentElement.clientWidth,
        }));
        assert.ok(widths.scroll <= widths.client, `no horizontal scroll: ${JSON.stringify(widths)}`);
        await saveScreenshot(page, `chatlike-375-${transport}.png`);
      }, { server: s.server });
    });
  }
});

/** Stop `ctx.server` (keeping its data) and start it again on the same port. */
async function restartServer(ctx) {
  const old = ctx.server;
  ctx.server = await startServer([], {
    listen: `127.0.0.1:${old.port}`, dataDir: old.dataDir, ownDataDir: true,
  });
}

describe('chat app: "Reconnect now" on /sse', () => {
  const s = withServer();
  it('the server goes away: the button is offered; back, a click opens a new EventSource at once, resuming', { timeout: 60000 }, async () => {
    await scenario(browser, 'chatlike-reconnect-sse', async ({ newPage }) => {
      const page = await newPage();
      // The browser's own retries of the first EventSource (its URL has no `since`) fail for
      // as long as this test runs, so only the page's new EventSource (`?since=`) can connect.
      const resumes = [];
      let fresh = 0;
      await page.route(/\/events(\?|$)/, (route) => {
        const url = new URL(route.request().url());
        if (!url.searchParams.has('since') && (fresh += 1) > 1) return route.abort('connectionrefused');
        if (!url.searchParams.has('since')) return route.continue();
        resumes.push(url.search);
        return route.continue();
      });
      await gotoOk(page, `${s.server.url}/sse`);
      await waitStatus(page, /^live · SSE$/);
      await page.fill('#user', 'ann');
      const seen = `seen ${token()}`;
      await sendOk(page, seen);
      assert.equal(await page.locator('#reconnect').isHidden(), true, 'no button while live');

      await s.server.stop({ keepDataDir: true });
      await waitDot(page, 'error');
      await waitStatus(page, /^offline · retrying/);
      await page.locator('#reconnect').waitFor({ state: 'visible' });
      const failed = `while down ${token()}`;
      await send(page, failed);
      await page.waitForFunction(() => /^Could not reach the server/.test(document.getElementById('post-error').textContent));

      await restartServer(s);
      const missed = `missed ${token()}`;
      await postMessage(s.server.url, 'bob', missed);
      await page.click('#reconnect');
      await waitStatus(page, /^live · SSE$/, 8000);
      await waitDot(page, 'ok');
      await waitPostError(page, '');
      await item(page, missed).waitFor();
      assert.equal(await page.evaluate(() => window.rtchatDebug.reconnects), 1);
      assert.equal(resumes.length, 1, `one new EventSource, resuming: ${resumes}`);
      assert.match(resumes[0], /^\?since=\d+&epoch=/);
      assert.equal(await page.locator('#reconnect').isHidden(), true);
    }, { server: s.server });
  });
});

describe('chat app: "Reconnect now" on /socketio', () => {
  const s = withServer();
  it('the server goes away: the button is offered; back, a click connects at once (not after the 20 s backoff)', { timeout: 60000 }, async () => {
    await scenario(browser, 'chatlike-reconnect-socketio', async ({ newPage }) => {
      const page = await openChat(newPage, `${s.server.url}/socketio?base=20000&cap=60000&jitter=0`, 'ann');
      await waitStatus(page, /^live · Socket\.IO$/);
      assert.equal(await page.locator('#reconnect').isHidden(), true, 'no button while live');

      await s.server.stop({ keepDataDir: true });
      await waitDot(page, 'error');
      await waitStatus(page, /^offline · retrying/);
      await page.locator('#reconnect').waitFor({ state: 'visible' });
      const failed = `while down ${token()}`;
      await send(page, failed);
      await waitPostError(page, 'Not connected to the server; try again in a moment');
      assert.equal(await page.inputValue('#text'), failed, 'the text is kept');

      await restartServer(s);
      const missed = `missed ${token()}`;
      await postMessage(s.server.url, 'bob', missed);
      await page.click('#reconnect');
      // socket.io-client's own next try is 20 s away.
      await waitStatus(page, /^live · Socket\.IO$/, 8000);
      await waitDot(page, 'ok');
      await waitPostError(page, '');
      assert.equal(await page.locator('#reconnect').isHidden(), true);
      assert.equal(await page.evaluate(() => window.rtchatDebug.reconnects), 1);
      await item(page, missed).waitFor();
      // The kept text goes through now.
      await page.press('#text', 'Enter');
      await page.waitForFunction(() => document.getElementById('text').value === '');
      await item(page, failed).waitFor();
    }, { server: s.server });
  });
});
