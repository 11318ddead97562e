// A chat, not a log (issue 20): what a newcomer meets in the first minutes.
// - Errors outlive their cause no longer: the server goes away, the page says so ("Could not
//   reach the server (…)" on /polling, "Not connected to the server; …" on /websocket) and
//   offers "Reconnect now" while it waits out its backoff; the server comes back on the same
//   port, and the button (/polling) or the browser's `online` event (/websocket) reconnects at
//   once (the backoff is 20 s here, far beyond the waits), the error goes, messages arrive.
// - Own messages carry the class `mine`; message texts and user names have dir="auto" (Arabic
//   runs right to left).
// - Send is disabled for an empty or blank text; the server's refusals are shown in plain words.
// - One status vocabulary on every page: "live · …", "offline · retrying…".
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { launchBrowser, scenario } from './lib/browser.mjs';
import {
  gotoOk, item, openChat, send, sendOk, token, waitDot, waitPostError,
} from './lib/chat.mjs';
import { postMessage, startServer, withServer } from './lib/server.mjs';

let browser;
before(async () => { browser = await launchBrowser(); });
after(async () => { await browser?.close(); });

/** Wait until the status word (next to the dot) matches `re`. */
function waitStatus(page, re, timeout) {
  return page.waitForFunction((src) => new RegExp(src).test(document.getElementById('status-text').textContent),
    re.source, timeout ? { timeout } : undefined);
}

/** Stop `ctx.server` and start it again on the same port and data dir (the same history). */
async function stopServer(ctx) {
  await ctx.server.stop({ keepDataDir: true });
}
async function restartServer(ctx) {
  const old = ctx.server;
  ctx.server = await startServer([], {
    listen: `127.0.0.1:${old.port}`, dataDir: old.dataDir, ownDataDir: true,
  });
}

// The second retry waits 20 s: a page back within the waits below reconnected at once.
const RECOVERY = [
  {
    transport: 'polling',
    query: '?interval=200&step=20000&cap=60000&jitter=0',
    error: /^Could not reach the server \(.+\)$/,
    how: 'the "Reconnect now" button',
    trigger: (page) => page.click('#reconnect'),
  },
  {
    transport: 'websocket',
    query: '?base=20000&cap=60000&jitter=0',
    error: /^Not connected to the server; try again in a moment$/,
    how: 'the browser\'s online event',
    // The browser goes offline and online again: a real `online` event.
    trigger: async (page) => {
      await page.context().setOffline(true);
      await page.context().setOffline(false);
    },
  },
];

for (const r of RECOVERY) {
  describe(`first minutes: /${r.transport} when the server goes away and comes back`, () => {
    const s = withServer();
    it(`shows the error while it is down, clears it once ${r.how} reconnects at once, then chats`, { timeout: 60000 }, async () => {
      await scenario(browser, `firstminutes-recover-${r.transport}`, async ({ newPage }) => {
        const page = await openChat(newPage, `${s.server.url}/${r.transport}${r.query}`, 'ann');
        await waitStatus(page, /^live · /);
        assert.equal(await page.locator('#reconnect').isHidden(), true, 'no "Reconnect now" while live');

        await stopServer(s);
        await waitDot(page, 'error');
        // Retried at once, failed again: now it waits out the backoff and says how long.
        await waitStatus(page, /^offline · retrying in 20 s$/);
        await page.locator('#reconnect').waitFor({ state: 'visible' });

        const failed = `while down ${token()}`;
        await send(page, failed);
        await page.waitForFunction((src) => new RegExp(src).test(document.getElementById('post-error').textContent),
          r.error.source);
        assert.equal(await page.inputValue('#text'), failed, 'the text is kept');

        await restartServer(s);
        // Nothing has retried yet: the error is still up (20 s to go).
        assert.match(await page.locator('#post-error').textContent(), r.error);

        await r.trigger(page);
        // Far sooner than the 20 s backoff.
        await waitDot(page, 'ok', 8000);
        await waitStatus(page, /^live · /, 8000);
        await waitPostError(page, '');
        assert.equal(await page.locator('#reconnect').isHidden(), true, 'the button goes once live');

        // Messages arrive again, and the kept text goes through.
        const fromNode = `back ${token()}`;
        const res = await postMessage(s.server.url, 'bob', fromNode);
        assert.equal(res.status, 200);
        await item(page, fromNode).waitFor();
        await page.press('#text', 'Enter');
        await page.waitForFunction(() => document.getElementById('text').value === '');
        await item(page, failed).waitFor();
        assert.equal(await item(page, failed).evaluate((li) => li.classList.contains('mine')), true);
        assert.equal(await item(page, fromNode).evaluate((li) => li.classList.contains('mine')), false);
      }, { server: s.server });
    });
  });
}

describe('first minutes: the tab focused again reconnects at once', () => {
  const s = withServer();
  it('/polling: on focus it polls at once, the missed message arrives and "Could not reach the server" goes', { timeout: 60000 }, async () => {
    await scenario(browser, 'firstminutes-arrival-clears', async ({ newPage }) => {
      // Short polling every 200 ms, at once after a failure, then 20 s.
      const page = await openChat(newPage, `${s.server.url}/polling?interval=200&step=20000&cap=60000&jitter=0`, 'ann');
      await stopServer(s);
      await waitStatus(page, /^offline · retrying in 20 s$/);
      await send(page, `lost ${token()}`);
      await page.waitForFunction(() => /^Could not reach the server/.test(document.getElementById('post-error').textContent));
      await restartServer(s);
      const news = `news ${token()}`;
      await postMessage(s.server.url, 'bob', news);
      // The tab is looked at again (focus): the page polls at once, the message arrives.
      await page.evaluate(() => window.dispatchEvent(new Event('focus')));
      await item(page, news).waitFor({ timeout: 8000 });
      await waitPostError(page, '');
      await waitStatus(page, /^live · /);
    }, { server: s.server });
  });
});

describe('first minutes: own messages, right-to-left text', () => {
  const s = withServer();
  it('messages by the name in the composer are marked `mine`; names and texts have dir="auto"', { timeout: 30000 }, async () => {
    await scenario(browser, 'firstminutes-mine', async ({ newPage }) => {
      const ann = await openChat(newPage, `${s.server.url}/websocket`, 'ann');
      const bob = await openChat(newPage, `${s.server.url}/sse`, 'bob');
      const a = `from ann ${token()}`;
      const arabic = `مرحبا بكم ${token()}`;
      await sendOk(ann, a);
      await sendOk(bob, arabic);
      await item(ann, arabic).waitFor();
      await item(bob, a).waitFor();

      const mine = (page, text) => item(page, text).evaluate((li) => li.classList.contains('mine'));
      assert.equal(await mine(ann, a), true);
      assert.equal(await mine(ann, arabic), false);
      assert.equal(await mine(bob, a), false);
      assert.equal(await mine(bob, arabic), true);

      // dir="auto": the Arabic message runs right to left, the English one left to right.
      for (const page of [ann, bob]) {
        const li = item(page, arabic);
        assert.equal(await li.locator('.msg-text').getAttribute('dir'), 'auto');
        assert.equal(await li.locator('.msg-user').getAttribute('dir'), 'auto');
        assert.equal(await li.locator('.msg-text').evaluate((el) => getComputedStyle(el).direction), 'rtl');
        assert.equal(await item(page, a).locator('.msg-text').evaluate((el) => getComputedStyle(el).direction), 'ltr');
      }

      // A new name in the composer: the marks follow it.
      await ann.fill('#user', 'bob');
      await ann.waitForFunction((t) => [...document.querySelectorAll('#messages > li.mine .msg-text')]
        .map((e) => e.textContent).join('|') === t, arabic);
    }, { server: s.server });
  });
});

describe('first minutes: the composer', () => {
  const s = withServer(['--max-text', '20']);
  it('Send is disabled for an empty or blank text; refusals are in plain words', { timeout: 30000 }, async () => {
    await scenario(browser, 'firstminutes-composer', async ({ newPage }) => {
      for (const transport of ['polling', 'websocket']) {
        const page = await openChat(newPage, `${s.server.url}/${transport}`, 'ann');
        const sendButton = page.locator('#send');
        assert.equal(await sendButton.isDisabled(), true, `${transport}: disabled while the text box is empty`);
        await page.fill('#text', '   ');
        assert.equal(await sendButton.isDisabled(), true, `${transport}: disabled for a blank text`);
        await page.fill('#text', 'hi');
        assert.equal(await sendButton.isDisabled(), false, `${transport}: enabled with a text`);

        // The server's words, and what the page says instead.
        const noName = await postMessage(s.server.url, '', 'hi');
        assert.equal(noName.body.error, '"user" must not be empty');
        await page.fill('#user', '');
        await send(page, 'hi');
        await waitPostError(page, 'Your name is empty');

        // Too long: the page knows the limit (GET /config) and says so before sending; the
        // server's own refusal, should one come, is in plain words too.
        const long = 'x'.repeat(25);
        const tooLong = await postMessage(s.server.url, 'ann', long);
        assert.equal(tooLong.body.error, '"text" is too long: 25 characters, at most 20 allowed');
        await page.waitForFunction(() => window.rtchatDebug.pageConfig !== null);
        await page.fill('#user', 'ann');
        await send(page, long);
        await waitPostError(page, 'Your message is 25 characters; the limit is 20');
        assert.equal(await sendButton.isDisabled(), true, `${transport}: disabled for a text over the limit`);
        assert.equal(await page.inputValue('#text'), long, 'the text is kept');
        assert.equal(await page.evaluate(() => window.RtChat.friendlyError('"text" is too long: 25 characters, at most 20 allowed')),
          'Your message is too long (25 characters; at most 20)');

        // A good message clears the error and empties the box: Send is disabled again.
        const ok = `ok ${token()}`.slice(0, 20);
        await sendOk(page, ok);
        await waitPostError(page, '');
        assert.equal(await sendButton.isDisabled(), true, `${transport}: disabled again after sending`);

        // The empty-text refusal (unreachable from the box now) and an unknown one.
        const words = await page.evaluate(() => [
          window.RtChat.friendlyError('"text" must not be empty'),
          window.RtChat.friendlyError('something the page does not know'),
        ]);
        assert.deepEqual(words, ['Your message is empty', 'something the page does not know']);
      }
    }, { server: s.server });
  });
});

describe('first minutes: one status vocabulary', () => {
  const s = withServer();
  it('/polling, /sse, /websocket, /http2: "live · …", then "offline · retrying…", then live again', { timeout: 60000 }, async () => {
    await scenario(browser, 'firstminutes-status', async ({ newPage }) => {
      const pages = {};
      for (const [t, q] of [['polling', '?interval=200&step=200&cap=400'], ['sse', '?base=200&cap=400'],
        ['websocket', '?base=200&cap=400'], ['http2', '?base=200&cap=400']]) {
        const page = await newPage();
        await gotoOk(page, `${s.server.url}/${t}${q}`);
        pages[t] = page;
      }
      const expectLive = {
        polling: /^live · long polling$/, sse: /^live · SSE$/, websocket: /^live · WebSocket$/, http2: /^live · /,
      };
      for (const [t, page] of Object.entries(pages)) {
        await waitStatus(page, expectLive[t]);
        await waitDot(page, 'ok');
      }
      await stopServer(s);
      for (const page of Object.values(pages)) {
        await waitDot(page, 'error');
        await waitStatus(page, /^offline · retrying( in \d+(\.\d)? s| now)?$/);
      }
      await restartServer(s);
      for (const [t, page] of Object.entries(pages)) {
        await waitStatus(page, expectLive[t]);
        await waitDot(page, 'ok');
      }
    }, { server: s.server });
  });
});
