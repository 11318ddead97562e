// Direct messages and private rooms on the pages (`rtchat serve --auth token`). Users sign up
// through the pages; Ann opens a direct message with Bob by his user id (the DM form by the
// room list: `POST /me/dm/{uid}`), both chat in it, each seeing it listed as "@<the other>"
// (`GET /me/rooms`) while everything else keeps its real name `dm:<16 hex>`; Carol, signed in
// too, neither sees it listed nor can read it: typing its name in the join box shows the
// server's refusal. Then Ann makes a room Bob is in private (`PUT /rooms/{room}`): Bob's page
// says he was removed, is back in general, and does not try the room again by itself.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import {
  DM_ROOM, PASSWORD, fetchInPage, openSignedOut, roomLabel, signUpThroughPage, waitInRoomShownAs,
  waitRoomNotice, watchMentions,
} from './lib/accounts.mjs';
import { launchBrowser, saveScreenshot, scenario } from './lib/browser.mjs';
import { item, joinRoom, roomEntry, sendOk, token, waitDot, waitInRoom, waitMember } from './lib/chat.mjs';
import { withServer } from './lib/server.mjs';

const AUTH = ['--auth', 'token'];
// The room list (and GET /me/rooms) is re-read every 400 ms here, so a DM opened by the other
// user shows up soon; a reconnect waits at most a second.
const PAGES = {
  websocket: '/websocket?refresh=400&base=200&cap=1000',
  sse: '/sse?refresh=400&base=200&cap=1000',
  socketio: '/socketio?refresh=400&base=200&cap=1000',
  polling: '/polling?refresh=400&timeout=5&interval=200&step=200',
  http2: '/http2?refresh=400&base=200&cap=1000',
};

let browser;
before(async () => { browser = await launchBrowser(); });
after(async () => { await browser?.close(); });

/** The server's refusal of a private room (or someone else's direct message). */
const privateRefusal = (room) => `the room "${room}" is private: only its owner and members may use it`;

/** A new browser context with a page signed up as `name` on `transport`; the page and the signup answer. */
async function signedUpPage(newPage, newContext, server, transport, name, room) {
  const page = await newPage(await newContext());
  const mentions = room ? watchMentions(page, room) : null;
  await openSignedOut(page, `${server.url}${PAGES[transport]}`);
  const account = await signUpThroughPage(page, name);
  return { page, account, mentions };
}

/** Wait until the room list shows `room` labelled `label`. */
function waitListedAs(page, room, label) {
  return page.waitForFunction(([r, l]) => {
    const el = document.querySelector(`#rooms li[data-room="${r}"] .room-name`);
    return el !== null && el.textContent === l;
  }, [room, label]);
}

describe('direct messages', () => {
  const s = withServer(AUTH);
  // [Ann's page, Bob's page, Carol's page]
  const CASES = [
    ['websocket', 'sse', 'websocket'],
    ['sse', 'socketio', 'sse'],
    ['socketio', 'websocket', 'socketio'],
    ['polling', 'http2', 'http2'],
    ['http2', 'polling', 'polling'],
  ];
  for (const [annT, bobT, carolT] of CASES) {
    it(`Ann on /${annT} opens a DM with Bob on /${bobT} by his user id; they chat; Carol on /${carolT} can neither see nor read it`, { timeout: 60000 }, async () => {
      await scenario(browser, `private-dm-${annT}-${bobT}-${carolT}`, async ({ newPage, newContext }) => {
        const annName = `ann-${token()}`;
        const bobName = `bob-${token()}`;
        const carolName = `carol-${token()}`;
        const { page: a, account: ann } = await signedUpPage(newPage, newContext, s.server, annT, annName);
        const { page: b, account: bob } = await signUpAndCheck(newPage, newContext, s.server, bobT, bobName);
        const { page: c } = await signedUpPage(newPage, newContext, s.server, carolT, carolName);

        // The DM form: Bob's user id (from his signup answer), then "Message".
        assert.equal(await a.locator('#dm-form').isVisible(), true, 'the DM form is shown when signed in');
        assert.equal(await a.locator('label[for="dm-uid"]').textContent(), 'Direct message (their user id)');
        const opened = a.waitForResponse((r) => new URL(r.url()).pathname === `/me/dm/${bob.uid}`);
        await a.fill('#dm-uid', bob.uid);
        await a.click('#dm-open');
        const res = await opened;
        assert.equal(res.request().method(), 'POST');
        assert.equal(res.status(), 200);
        const dm = await res.json();
        assert.match(dm.room, DM_ROOM);
        assert.deepEqual(dm.with, { uid: bob.uid, name: bobName });

        // Ann is in it, shown as "@bob" (title, room list); the real name is in the data
        // attributes and the address.
        await waitInRoomShownAs(a, dm.room, `@${bobName}`);
        assert.equal(await roomLabel(a, dm.room), `@${bobName}`);
        assert.equal(new URL(a.url()).searchParams.get('room'), dm.room, 'the address names the real room');
        assert.equal(await a.inputValue('#dm-uid'), '', 'the form is emptied');
        assert.equal(await a.locator('#room-error').textContent(), '');
        assert.equal(await a.locator('#dm-error').textContent(), '');

        // Bob's room list shows it as "@ann" (GET /me/rooms); a click opens it.
        await waitListedAs(b, dm.room, `@${annName}`);
        await roomEntry(b, dm.room).locator('button').click();
        await waitInRoomShownAs(b, dm.room, `@${annName}`);
        assert.equal(new URL(b.url()).searchParams.get('room'), dm.room);

        // They chat in it.
        const hello = `psst ${bobName}, ${token()}`;
        await sendOk(a, hello);
        await item(b, hello).waitFor();
        assert.equal(await item(b, hello).locator('.msg-user').textContent(), annName);
        const reply = `hi ${annName}, ${token()}`;
        await sendOk(b, reply);
        await item(a, reply).waitFor();
        assert.equal(await item(a, reply).locator('.msg-user').textContent(), bobName);
        if (annT === 'websocket') await saveScreenshot(a, 'private-dm.png');

        // The DM exists now: GET /rooms lists it for its two users only.
        const names = async (page) => (await fetchInPage(page, '/rooms')).body.rooms.map((r) => r.name);
        assert.ok((await names(a)).includes(dm.room), 'Ann\'s GET /rooms lists the DM');
        assert.ok((await names(b)).includes(dm.room), 'Bob\'s GET /rooms lists the DM');
        assert.ok(!(await names(c)).includes(dm.room), 'Carol\'s GET /rooms does not list it');

        // Carol: a room list read after the DM had messages does not list it, and reading it
        // is refused.
        const reread = c.waitForResponse((r) => new URL(r.url()).pathname === '/rooms');
        assert.ok(!(await (await reread).json()).rooms.some((r) => r.name === dm.room));
        await c.locator('#rooms li[data-room="general"] button[aria-current="true"]').waitFor();
        assert.equal(await roomEntry(c, dm.room).count(), 0, 'Carol\'s room list does not show the DM');
        const poll = await fetchInPage(c, `/rooms/${dm.room}/poll`);
        assert.equal(poll.status, 403);
        assert.equal(poll.body.code, 'not_a_member');

        // Carol types its name in the join box: the server's refusal, and she stays in general.
        await c.fill('#room-name', dm.room);
        await c.press('#room-name', 'Enter');
        await c.locator('#room-error', { hasText: privateRefusal(dm.room) }).waitFor();
        assert.equal(await c.locator('#room-error').textContent(), privateRefusal(dm.room));
        await waitInRoom(c, 'general');
        await waitDot(c, 'ok');
        assert.equal(await roomEntry(c, dm.room).count(), 0, 'the refused room is not listed');
        assert.equal(await item(c, hello).count(), 0, 'nothing of the DM reached Carol');
        assert.equal(await item(c, reply).count(), 0);
        // Carol's page chats on in general (and Ann, who is in the DM, does not get it).
        const carolSays = `carol in general ${token()}`;
        await sendOk(c, carolSays);
        assert.equal(await item(a, carolSays).count(), 0);

        // Ann's id in her own DM form is refused before anything is sent.
        await a.fill('#dm-uid', ann.uid);
        await a.click('#dm-open');
        await a.waitForFunction(() => document.getElementById('dm-error').textContent !== '');
        await waitInRoomShownAs(a, dm.room, `@${bobName}`);
      }, { server: s.server });
    });
  }

  it('a DM whose party has no name is listed as "@<uid>"; a reload opens it from the address', { timeout: 60000 }, async () => {
    await scenario(browser, 'private-dm-uid-label', async ({ newPage, newContext }) => {
      const { page: a } = await signedUpPage(newPage, newContext, s.server, 'websocket', `ann-${token()}`);
      const { account: bob } = await signedUpPage(newPage, newContext, s.server, 'sse', `bob-${token()}`);
      const dm = (await fetchInPage(a, `/me/dm/${bob.uid}`, { method: 'POST' })).body;
      assert.match(dm.room, DM_ROOM);
      // The server knows every account's name; a token of another issuer may carry none. Such
      // an answer, made here: the page falls back to the uid.
      await a.route('**/me/rooms', async (route) => {
        const res = await route.fetch();
        const body = await res.json();
        for (const r of body.rooms) if (r.with) r.with.name = null;
        await route.fulfill({ response: res, json: body });
      });
      await a.goto(`${s.server.url}${PAGES.websocket}&room=${encodeURIComponent(dm.room)}`);
      await waitInRoomShownAs(a, dm.room, `@${bob.uid}`);
      await waitDot(a, 'ok');
      await sendOk(a, `hello ${token()}`);
    }, { server: s.server });
  });
});

/** signedUpPage, and the user id the page shows for others to message it by. */
async function signUpAndCheck(newPage, newContext, server, transport, name) {
  const got = await signedUpPage(newPage, newContext, server, transport, name);
  assert.equal(await got.page.locator('#my-uid').textContent(), got.account.uid, 'the page shows its user id');
  return got;
}

describe('private rooms: taken out of a room that turns private', () => {
  const s = withServer(AUTH);
  for (const bobT of ['websocket', 'sse', 'socketio', 'polling', 'http2']) {
    it(`Ann makes her room private: Bob's /${bobT} page says he was removed and is back in general, for good`, { timeout: 60000 }, async () => {
      await scenario(browser, `private-removed-${bobT}`, async ({ newPage, newContext }) => {
        const room = `club-${token()}`;
        const annName = `ann-${token()}`;
        const bobName = `bob-${token()}`;
        const { page: a, account: ann } = await signedUpPage(newPage, newContext, s.server, 'websocket', annName);
        const { page: b, mentions } = await signedUpPage(newPage, newContext, s.server, bobT, bobName, room);

        // Ann makes the room (its owner), Bob comes in; they chat.
        await joinRoom(a, room);
        await joinRoom(b, room);
        await waitMember(a, bobName);
        const before = `before ${token()}`;
        await sendOk(a, before);
        await item(b, before).waitFor();

        // Ann, the owner, makes it private: only she is a member.
        const put = await fetchInPage(a, `/rooms/${room}`, {
          method: 'PUT', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ private: true }),
        });
        assert.equal(put.status, 200, JSON.stringify(put.body));
        assert.deepEqual(put.body, { room, private: true, owner: ann.uid, members: [ann.uid] });

        // Bob's page: the notice, back in general, the room no longer listed.
        const notice = `You were removed from ${room}: ${privateRefusal(room)}`;
        await waitRoomNotice(b, notice);
        mentions.start();
        await waitInRoom(b, 'general');
        await waitDot(b, 'ok');
        assert.equal(await b.locator('#room-notice').getAttribute('role'), 'alert');
        assert.equal(new URL(b.url()).searchParams.get('room'), null, 'the address is general\'s');
        await b.waitForFunction((r) => !document.querySelector(`#rooms li[data-room="${r}"]`), room);
        if (bobT === 'websocket') await saveScreenshot(b, 'private-removed.png');

        // Ann is still in it and chats on; Bob sees none of it, chats in general, and his page
        // asks nothing more of the room (no reconnecting into it).
        // (A polling user stays present for the server's --presence-window after their last
        // poll, removed or not: only the streaming pages are seen leaving at once.)
        if (bobT !== 'polling') await waitMember(a, bobName, false);
        const after = `after ${token()}`;
        await sendOk(a, after);
        const inGeneral = `bob back in general ${token()}`;
        await sendOk(b, inGeneral);
        await b.waitForFunction(() => window.rtchatDebug.room === 'general');
        assert.equal(await item(b, after).count(), 0, 'nothing of the private room reaches Bob');
        assert.equal(await item(b, before).count(), 0, 'the room\'s messages are gone from the page');
        assert.equal(await b.locator('#room-notice').textContent(), notice, 'the notice stays');
        assert.deepEqual(mentions.seen, [], 'Bob\'s page asked nothing of the room after leaving it');

        // Joining it again is refused with the server's reason; the page stays in general.
        await b.fill('#room-name', room);
        await b.press('#room-name', 'Enter');
        await b.locator('#room-error', { hasText: privateRefusal(room) }).waitFor();
        await waitInRoom(b, 'general');
        await waitDot(b, 'ok');
        assert.equal(await item(b, after).count(), 0);
        assert.equal(await b.locator('#room-notice').textContent(), '', 'a room of one\'s choosing clears the notice');

        // An address naming the room (a bookmark, a reload): the same refusal, then general,
        // where the page connects and chats (the WebSocket page, whose refused upgrade the
        // browser hides, asks the room why before it would retry).
        await b.goto(`${s.server.url}${PAGES[bobT]}&room=${room}`);
        await b.locator('#room-error', { hasText: privateRefusal(room) }).waitFor();
        await waitInRoom(b, 'general');
        await waitDot(b, 'ok');
        await sendOk(b, `reloaded into general ${token()}`);
        assert.equal(await item(b, after).count(), 0);
      }, { server: s.server });
    });
  }
});

describe('direct messages on a phone-sized screen (375 px)', () => {
  const s = withServer(AUTH);
  it('the DM form and a DM\'s room list entry fit, nothing scrolls sideways', { timeout: 60000 }, async () => {
    await scenario(browser, 'private-dm-375', async ({ newPage, newContext }) => {
      const { account: bob } = await signedUpPage(newPage, newContext, s.server, 'sse', `bob-${token()}`);
      const page = await newPage(await newContext({ viewport: { width: 375, height: 740 } }));
      await openSignedOut(page, `${s.server.url}${PAGES.websocket}`);
      await signUpThroughPage(page, `ann-${token()}`, PASSWORD);
      await page.fill('#dm-uid', bob.uid);
      await page.click('#dm-open');
      await page.waitForFunction(() => /^dm:/.test(window.rtchatDebug.room));
      const room = await page.evaluate(() => window.rtchatDebug.room);
      await waitInRoomShownAs(page, room, `@${bob.name}`);
      await sendOk(page, `from a phone ${token()}`);
      for (const selector of ['#dm-uid', '#dm-open', 'label[for="dm-uid"]', '#my-uid', `#rooms li[data-room="${room}"] button`, '#text', '#send']) {
        const box = await page.locator(selector).first().boundingBox();
        assert.ok(box, `${selector} is shown`);
        assert.ok(box.x >= 0 && box.x + box.width <= 375, `${selector} fits in 375 px: x=${box.x} width=${box.width}`);
      }
      const widths = await page.evaluate(() => ({
        scroll: document.documentElement.scrollWidth, client: document.documentElement.clientWidth,
      }));
      assert.ok(widths.scroll <= widths.client, `no horizontal scroll: ${JSON.stringify(widths)}`);
      await saveScreenshot(page, 'private-dm-375.png');
    }, { server: s.server });
  });
});
