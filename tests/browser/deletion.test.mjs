// Deleting messages on the pages (`rtchat serve --auth token`, `DELETE /rooms/{room}/msgs/{id}`).
// Ann, signed in, posts in general; Bob has every transport page open there (one browser
// context: one session). Each of Ann's own messages carries a "Delete" button (aria-label
// "Delete message <id>"), none of Bob's pages shows one on her message. Ann deletes it with
// its button: her page drops it at once, and so does each of Bob's pages when the server tells
// it (rtchat.v1 `deleted`, SSE `event: deleted`, Socket.IO `msg:deleted`, a fresh `/msgs`
// snapshot, the polling page's next full read). With `--edit-window 0s` the server refuses
// and the page shows its words. With `--auth off` (the course's anonymous mode) no page shows
// a Delete button.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { fetchInPage, openSignedOut, signUpThroughPage } from './lib/accounts.mjs';
import { launchBrowser, saveScreenshot, scenario } from './lib/browser.mjs';
import { gotoOk, item, openChat, sendOk, token, waitDot, waitPostError } from './lib/chat.mjs';
import { withServer } from './lib/server.mjs';

const AUTH = ['--auth', 'token'];
// A reconnect waits at most a second; the polling page holds its long polls for 1 s, so its
// full re-read (which shows a deletion) comes within a couple of seconds.
const PAGES = {
  websocket: '/websocket?base=200&cap=1000',
  sse: '/sse?base=200&cap=1000',
  socketio: '/socketio?base=200&cap=1000',
  http2: '/http2?base=200&cap=1000',
  polling: '/polling?timeout=1&interval=200&step=200',
};
const TRANSPORTS = Object.keys(PAGES);

let browser;
before(async () => { browser = await launchBrowser(); });
after(async () => { await browser?.close(); });

/** A message's Delete button on `page`, by its id. */
const deleteButton = (page, id) => page.getByRole('button', { name: `Delete message ${id}`, exact: true });

/** The id of the message showing `text` (its data-id). */
async function messageId(page, text) {
  const id = await item(page, text).getAttribute('data-id');
  assert.match(id ?? '', /^\d+$/, `the message "${text}" has an id`);
  return Number(id);
}

/** Open another page of the signed-in context `ctx`: the session cookie signs it in by itself. */
async function openSignedIn(newPage, ctx, url, name) {
  const page = await newPage(ctx);
  await gotoOk(page, url);
  await page.waitForFunction((u) => window.rtchatDebug.auth.state === 'in' && window.rtchatDebug.auth.name === u, name);
  await waitDot(page, 'ok');
  return page;
}

describe('deleting one\'s own message', () => {
  const s = withServer(AUTH);

  it('Ann deletes her message with its Delete button: every one of Bob\'s pages stops showing it', { timeout: 90000 }, async () => {
    await scenario(browser, 'deletion-all-pages', async ({ newPage, newContext, pageErrors }) => {
      const annName = `ann-${token()}`;
      const bobName = `bob-${token()}`;
      const a = await newPage(await newContext());
      await openSignedOut(a, `${s.server.url}${PAGES.websocket}`);
      const ann = await signUpThroughPage(a, annName);

      // Bob: one session (one context), a page per transport, all in general.
      const bobCtx = await newContext({ viewport: { width: 375, height: 740 } });
      const first = await newPage(bobCtx);
      await openSignedOut(first, `${s.server.url}${PAGES[TRANSPORTS[0]]}`);
      const bob = await signUpThroughPage(first, bobName);
      const bobPages = { [TRANSPORTS[0]]: first };
      for (const t of TRANSPORTS.slice(1)) {
        bobPages[t] = await openSignedIn(newPage, bobCtx, `${s.server.url}${PAGES[t]}`, bobName);
      }

      // Ann posts; every page of Bob's shows it, without a Delete button.
      const text = `to be deleted ${token()}`;
      const kept = `stays ${token()}`;
      await sendOk(a, kept);
      await sendOk(a, text);
      const id = await messageId(a, text);
      await deleteButton(a, id).waitFor();
      assert.equal(await deleteButton(a, id).textContent(), 'Delete');
      assert.equal(await item(a, text).getAttribute('data-uid'), ann.uid);
      for (const [t, b] of Object.entries(bobPages)) {
        await item(b, text).waitFor();
        await item(b, kept).waitFor();
        assert.equal(await item(b, text).locator('.msg-delete').count(), 0, `no Delete button on Ann's message on Bob's /${t}`);
        assert.equal(await b.locator('#messages .msg-delete').count(), 0, `no Delete button at all on Bob's /${t} yet`);
      }

      // Bob's own message gets one on his pages; Ann's page shows none on it.
      const bobSays = `bob's own ${token()}`;
      await sendOk(bobPages.sse, bobSays);
      const bobId = await messageId(bobPages.sse, bobSays);
      for (const [t, b] of Object.entries(bobPages)) {
        await item(b, bobSays).waitFor();
        await deleteButton(b, bobId).waitFor();
        assert.equal(await b.locator('#messages .msg-delete').count(), 1, `only Bob's own message has a Delete button on his /${t}`);
      }
      await item(a, bobSays).waitFor();
      assert.equal(await item(a, bobSays).locator('.msg-delete').count(), 0, 'no Delete button on Bob\'s message on Ann\'s page');
      // The server would refuse Bob anyway (general has no owner; he is no admin).
      const refused = await fetchInPage(bobPages.websocket, `/rooms/general/msgs/${id}`, { method: 'DELETE' });
      assert.equal(refused.status, 403);
      assert.equal(refused.body.code, 'not_allowed');
      await saveScreenshot(bobPages.websocket, 'deletion-before-375.png');

      // Ann deletes it with its button.
      const answer = a.waitForResponse((r) => new URL(r.url()).pathname === `/rooms/general/msgs/${id}`);
      await deleteButton(a, id).click();
      const res = await answer;
      assert.equal(res.request().method(), 'DELETE');
      assert.equal(res.status(), 200);
      assert.deepEqual(await res.json(), { status: 'ok', room: 'general', id });
      await item(a, text).waitFor({ state: 'detached' });
      assert.equal(await a.locator('#post-error').textContent(), '');

      // Every one of Bob's pages drops it (and keeps the rest).
      await Promise.all(Object.values(bobPages).map((b) => item(b, text).waitFor({ state: 'detached' })));
      for (const [t, b] of Object.entries(bobPages)) {
        assert.equal(await item(b, kept).count(), 1, `Bob's /${t} still shows the other message`);
        assert.equal(await item(b, bobSays).count(), 1, `Bob's /${t} still shows his own message`);
      }
      const dbg = await Promise.all(TRANSPORTS.map((t) => bobPages[t].evaluate(() => ({ ...window.rtchatDebug }))));
      const by = Object.fromEntries(TRANSPORTS.map((t, i) => [t, dbg[i]]));
      assert.equal(by.websocket.deleted, 1, 'the websocket page was told by a `deleted` frame');
      assert.equal(by.sse.deleted, 1, 'the sse page was told by `event: deleted`');
      assert.equal(by.socketio.deleted, 1, 'the socketio page was told by `msg:deleted`');
      assert.ok(by.http2.pruned >= 1, 'the http2 page dropped it from a fresh snapshot');

      // It stays gone: Bob's websocket page goes to another room and back.
      const room = `side-${token()}`;
      await bobPages.websocket.fill('#room-name', room);
      await bobPages.websocket.press('#room-name', 'Enter');
      await bobPages.websocket.locator('#room-title', { hasText: `#${room}` }).waitFor();
      await bobPages.websocket.locator('#rooms li[data-room="general"] button').click();
      await item(bobPages.websocket, kept).waitFor();
      assert.equal(await item(bobPages.websocket, text).count(), 0, 'back in general: still gone');

      // Once more: it was deleted (404), so the button does not come back on Ann's page either.
      const again = await fetchInPage(a, `/rooms/general/msgs/${id}`, { method: 'DELETE' });
      assert.equal(again.status, 404);
      assert.equal(again.body.code, 'no_such_message');
      assert.equal(await deleteButton(a, id).count(), 0);
      assert.deepEqual(pageErrors, []);
      assert.ok(bob.uid !== ann.uid);
    }, { server: s.server });
  });
});

describe('deleting after the edit window', () => {
  const s = withServer([...AUTH, '--edit-window', '0s']);

  it('the server refuses, and the page shows its words and keeps the message', { timeout: 60000 }, async () => {
    await scenario(browser, 'deletion-refused', async ({ newPage, newContext }) => {
      const annName = `ann-${token()}`;
      const a = await newPage(await newContext({ viewport: { width: 375, height: 740 } }));
      await openSignedOut(a, `${s.server.url}${PAGES.sse}`);
      await signUpThroughPage(a, annName);
      const text = `too late to delete ${token()}`;
      await sendOk(a, text);
      const id = await messageId(a, text);
      await a.waitForTimeout(5); // (the window is 0 s: any age is past it)
      const answer = a.waitForResponse((r) => new URL(r.url()).pathname === `/rooms/general/msgs/${id}`);
      await deleteButton(a, id).click();
      const res = await answer;
      assert.equal(res.status(), 403);
      const body = await res.json();
      assert.equal(body.code, 'not_allowed');
      await waitPostError(a, body.error);
      assert.match(body.error, /within 0s of posting/);
      assert.equal(await item(a, text).count(), 1, 'the message stays');
      assert.equal(await deleteButton(a, id).isEnabled(), true, 'the button can be pressed again');
    }, { server: s.server });
  });
});

describe('anonymous mode (--auth off)', () => {
  const s = withServer([]);

  it('no page shows a Delete button', { timeout: 60000 }, async () => {
    await scenario(browser, 'deletion-auth-off', async ({ newPage }) => {
      const pages = [];
      for (const t of TRANSPORTS) pages.push([t, await openChat(newPage, `${s.server.url}${PAGES[t]}`, `anon-${t}`)]);
      const texts = [];
      for (const [t, p] of pages) {
        const text = `anonymous on ${t} ${token()}`;
        await sendOk(p, text);
        texts.push(text);
      }
      for (const [t, p] of pages) {
        for (const text of texts) await item(p, text).waitFor();
        assert.equal(await p.locator('#messages .msg-delete').count(), 0, `no Delete button on /${t}`);
        assert.equal(await p.locator('#messages > li.mine').count(), 1, `/${t} still marks its own message`);
      }
    }, { server: s.server });
  });
});
