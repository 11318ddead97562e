// Rooms, presence and typing on the transport pages (issue 13). Two pages join a room of their
// own by typing its name, chat, see each other in the member list (green dots) and "bob is
// typing…"; a third page, in `general`, sees none of it, only a dot on the room in its room
// list, and finds it all when it opens the room. Then: a bad room name is refused the way the
// server words it, and at 375 px (a phone) the room list and the composer work without
// scrolling sideways. /socketio has the same room scenario in tests/socketio/browser.test.mjs.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { saveScreenshot, scenario, sharedBrowserAndTlsServer } from './lib/browser.mjs';
import {
  gotoOk, item, joinRoom, member, onlineMembers, roomEntry, sendOk, textsNewestFirst, token, waitDot,
  waitInRoom, waitMember, waitTyping,
} from './lib/chat.mjs';
import { startProxy } from './lib/proxy.mjs';
import { postMessage, startServer, waitUntil } from './lib/server.mjs';

const shared = sharedBrowserAndTlsServer();

// The room list is re-read every 400 ms here (?refresh=), so news shows up quickly.
const PAGES = {
  polling: () => `${shared.server.url}/polling?refresh=400`,
  sse: () => `${shared.server.url}/sse?refresh=400`,
  websocket: () => `${shared.server.url}/websocket?refresh=400`,
  http2: () => `${shared.server.httpsUrl}/http2?refresh=400`,
  socketio: () => `${shared.server.url}/socketio?refresh=400`,
};

/**
 * Open a transport page as `user` and count the typing signals it sends: `POST
 * /rooms/{room}/typing` over HTTP, `{"type":"typing"}` frames over the WebSocket.
 */
async function open(newPage, transport, user) {
  const page = await newPage();
  page.typingSent = 0;
  page.on('request', (r) => {
    if (r.method() === 'POST' && /^\/rooms\/[^/]+\/typing$/.test(new URL(r.url()).pathname)) page.typingSent += 1;
  });
  page.on('websocket', (ws) => ws.on('framesent', (f) => {
    try { if (JSON.parse(f.payload).type === 'typing') page.typingSent += 1; } catch { /* not JSON */ }
  }));
  await gotoOk(page, PAGES[transport]());
  await waitDot(page, 'ok');
  await page.fill('#user', user);
  return page;
}

/** Pages that are told who types (streaming ones; a polling page only tells). */
const HEARS_TYPING = new Set(['sse', 'websocket', 'http2']);

// [ann's page, bob's page, carol's page in general]
const SCENARIOS = [
  ['websocket', 'websocket', 'websocket'],
  ['sse', 'sse', 'sse'],
  ['http2', 'http2', 'http2'],
  ['sse', 'polling', 'polling'],
];

for (const [annT, bobT, carolT] of SCENARIOS) {
  describe(`rooms: ${annT} + ${bobT} in a room, ${carolT} in general`, () => {
    it('the two chat and see each other (members, typing); the page in general sees none of it', { timeout: 60000 }, async () => {
      await scenario(shared.browser, `rooms-${annT}-${bobT}`, async ({ newPage }) => {
        assert.ok(HEARS_TYPING.has(annT), 'ann\'s page is the one watching the typing line');
        const room = `r-${annT}-${bobT}-${token()}`;
        const carol = await open(newPage, carolT, 'carol');
        const ann = await open(newPage, annT, 'ann');
        const bob = await open(newPage, bobT, 'bob');
        await carol.locator('#rooms li[data-room="general"] button[aria-current="true"]').waitFor();
        assert.equal(await roomEntry(carol, room).count(), 0, 'the room does not exist yet');

        // Typing the name in the room box creates the room; the page shows which transport
        // reads it.
        await joinRoom(ann, room);
        await joinRoom(bob, room);
        for (const [page, transport] of [[ann, annT], [bob, bobT]]) {
          const endpoint = { sse: 'events', http2: 'msgs', polling: 'poll' }[transport];
          if (endpoint) assert.equal(await page.locator('#endpoint').textContent(), `/rooms/${room}/${endpoint}`);
        }
        assert.match(ann.url(), new RegExp(`[?&]room=${room}(&|$)`), 'the address names the room');

        // Each sees both names online, their own marked.
        for (const page of [ann, bob]) {
          await waitMember(page, 'ann');
          await waitMember(page, 'bob');
        }
        assert.equal(await member(ann, 'ann').locator('.member-you').textContent(), '(you)');
        assert.deepEqual(await onlineMembers(bob), ['ann', 'bob']);

        // Bob types a few characters: ann reads "bob is typing…"; bob's page sent it once.
        await bob.locator('#text').pressSequentially('hello th', { delay: 25 });
        await waitTyping(ann, 'bob is typing…');
        assert.equal(bob.typingSent, 1, 'one typing signal for a burst of keystrokes (at most one a second)');
        assert.equal(await bob.locator('#typing').textContent(), '', 'nobody is told about their own typing');
        if (annT === 'websocket') {
          // Without a repeat it goes away after 5 s.
          const seen = Date.now();
          await waitTyping(ann, '', 8000);
          const shown = Date.now() - seen;
          assert.ok(shown > 4000 && shown < 6500, `"bob is typing…" was shown for ${shown} ms`);
        }

        // They chat.
        const hello = `hello ${room}`;
        await sendOk(ann, hello);
        await item(bob, hello).waitFor();
        const reply = `hi ann, bob here ${token()}`;
        await sendOk(bob, reply);
        await item(ann, reply).waitFor();
        assert.deepEqual(await textsNewestFirst(ann), [reply, hello]);
        assert.deepEqual(await textsNewestFirst(bob), [reply, hello]);

        // Carol, in general, sees none of it: a message posted to general after all that
        // reaches her, the room's do not; nobody of the room is in her member list, nobody
        // types. Her room list shows the room, with a dot: news from while she was elsewhere.
        const sentinel = `general goes on ${token()}`;
        assert.equal((await postMessage(shared.server.url, 'node', sentinel)).status, 200);
        await item(carol, sentinel).waitFor();
        assert.equal(await item(carol, hello).count(), 0);
        assert.equal(await item(carol, reply).count(), 0);
        assert.equal(await member(carol, 'ann').count(), 0);
        assert.equal(await member(carol, 'bob').count(), 0);
        assert.equal(await carol.locator('#typing').textContent(), '');
        await roomEntry(carol, room).locator('.unread-dot:visible').waitFor();
        assert.equal(await roomEntry(ann, room).locator('.unread-dot:visible').count(), 0, 'no dot on the room one is in');

        // Ann goes back to general: bob sees her leave.
        await roomEntry(ann, 'general').locator('button').click();
        await waitInRoom(ann, 'general');
        await item(ann, sentinel).waitFor();
        await waitMember(bob, 'ann', false);

        // Carol opens the room: the dot goes, the messages are there, bob sees her come.
        await roomEntry(carol, room).locator('button').click();
        await waitInRoom(carol, room);
        await item(carol, reply).waitFor();
        assert.deepEqual(await textsNewestFirst(carol), [reply, hello]);
        assert.equal(await roomEntry(carol, room).locator('.unread-dot:visible').count(), 0);
        await waitMember(bob, 'carol');
        await waitMember(carol, 'bob');
        await saveScreenshot(bob, `rooms-${annT}-${bobT}.png`);
      }, { server: shared.server });
    });
  });
}

describe('rooms: names', () => {
  it('a name the server would refuse is refused with the server\'s words; the page stays where it was', { timeout: 30000 }, async () => {
    await scenario(shared.browser, 'rooms-bad-name', async ({ newPage }) => {
      const res = await fetch(`${shared.server.url}/rooms/${encodeURIComponent('Foo!')}/poll`);
      assert.equal(res.status, 400);
      const { error } = await res.json();
      const page = await open(newPage, 'polling', 'dora');
      await page.fill('#room-name', 'Foo!');
      await page.press('#room-name', 'Enter');
      await page.locator('#room-error', { hasText: error }).waitFor();
      assert.equal(await page.locator('#room-error').textContent(), error);
      assert.equal(await page.locator('#room-title').textContent(), '#general');
      assert.equal(await page.inputValue('#room-name'), 'Foo!', 'the name stays, to be corrected');

      // A good name clears the error; the room survives a reload (the address names it).
      const room = `ok-${token()}`;
      await joinRoom(page, room);
      assert.equal(await page.locator('#room-error').textContent(), '');
      await page.reload();
      await waitInRoom(page, room);
      await waitMember(page, 'dora');
    }, { server: shared.server });
  });
});

describe('rooms: a server at its --max-rooms', () => {
  // One room only: general. Joining another is refused (403 over HTTP, an error frame, an
  // error ack); the page says why and goes back to general, where the chat works on.
  let full;
  before(async () => { full = await startServer(['--max-rooms', '1']); });
  after(async () => { await full?.stop(); });
  const refusal = 'this server already holds its maximum of 1 rooms (--max-rooms); join or post in an existing room';

  for (const transport of ['sse', 'websocket', 'http2', 'socketio']) {
    it(`${transport}: joining one more room shows the server's refusal and goes back to general`, { timeout: 30000 }, async () => {
      await scenario(shared.browser, `rooms-full-${transport}`, async ({ newPage }) => {
        const page = await newPage();
        await gotoOk(page, `${full.url}/${transport}?base=200&cap=1000`);
        await waitDot(page, 'ok');
        await page.fill('#user', 'erin');
        await page.fill('#room-name', 'one-too-many');
        await page.press('#room-name', 'Enter');
        await page.locator('#room-error', { hasText: refusal }).waitFor();
        await waitInRoom(page, 'general');
        await waitDot(page, 'ok');
        assert.equal(await roomEntry(page, 'one-too-many').count(), 0, 'the refused room is not listed');
        await sendOk(page, `still chatting ${token()}`);
      }, { server: full });
    });
  }

  it('polling: reads never create a room, so the refusal comes with the first post', { timeout: 30000 }, async () => {
    await scenario(shared.browser, 'rooms-full-polling', async ({ newPage }) => {
      const page = await newPage();
      await gotoOk(page, `${full.url}/polling`);
      await waitDot(page, 'ok');
      await joinRoom(page, 'one-too-many');
      await page.fill('#text', 'hello?');
      await page.press('#text', 'Enter');
      await page.waitForFunction((t) => document.getElementById('post-error').textContent === t, refusal);
      assert.equal(await page.inputValue('#text'), 'hello?', 'the text is kept');
    }, { server: full });
  });
});

describe('rooms: a dropped connection resumes in the room', () => {
  // The page's reconnect waits at a proxy while three messages are posted to its room (and one
  // to general); it comes back in the room, with exactly those three. (The room list is
  // re-read at its default pace here, so the reconnect is what the proxy holds.)
  let own;
  let proxy;
  before(async () => {
    own = await startServer();
    proxy = await startProxy(own.port);
  });
  after(async () => {
    await proxy?.close();
    await own?.stop();
  });
  const post = async (path, text) => {
    const res = await fetch(`${own.url}${path}`, {
      method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ user: 'node', text }),
    });
    const body = await res.json();
    assert.equal(res.status, 200, JSON.stringify(body));
    return body.id;
  };

  for (const transport of ['websocket', 'sse', 'http2', 'polling', 'socketio']) {
    it(`${transport}: back in the room, with what it missed there and nothing of general`, { timeout: 30000 }, async () => {
      await scenario(shared.browser, `rooms-resume-${transport}`, async ({ newPage }) => {
        const page = await newPage();
        await gotoOk(page, `${proxy.url}/${transport}?base=200&cap=1000&interval=200&step=200`);
        await waitDot(page, 'ok');
        await page.fill('#user', 'rita');
        const room = `resume-${transport}-${token()}`;
        await joinRoom(page, room);
        await sendOk(page, 'before the cut');

        const missed = ['missed 1', 'missed 2', 'missed 3'];
        const ids = [];
        proxy.hold();
        try {
          proxy.cut();
          await waitUntil(() => proxy.held >= 1, { what: 'the page to reconnect (held at the proxy)' });
          for (const t of missed) ids.push(await post(`/rooms/${room}/poll`, t));
          await post('/poll', 'meanwhile in general');
        } finally {
          proxy.release();
        }

        await item(page, 'missed 3').waitFor();
        await waitDot(page, 'ok');
        assert.deepEqual(await textsNewestFirst(page), ['missed 3', 'missed 2', 'missed 1', 'before the cut']);
        assert.equal(await item(page, 'meanwhile in general').count(), 0);
        assert.equal(await page.locator('#room-title').textContent(), `#${room}`);
        if (['websocket', 'sse', 'http2'].includes(transport)) {
          await page.waitForFunction((t) => document.getElementById('stream-status').textContent === t,
            `Resumed after message ${ids[0] - 1} — 3 missed.`);
        }
        await waitMember(page, 'rita');
      }, { server: own });
    });
  }
});

describe('rooms: a phone-sized screen (375 px)', () => {
  // The longest names there are: 64 characters without a space, for the room and the user.
  const longRoom = (t) => `${t}-${'r'.repeat(63 - t.length)}`;
  const longUser = 'u'.repeat(64);

  for (const transport of ['polling', 'sse', 'websocket', 'http2', 'socketio']) {
    it(`${transport}: the room list and the composer are usable, and nothing scrolls sideways`, { timeout: 30000 }, async () => {
      await scenario(shared.browser, `rooms-375-${transport}`, async ({ newContext, newPage }) => {
        const ctx = await newContext({ viewport: { width: 375, height: 740 } });
        const page = await newPage(ctx);
        await gotoOk(page, PAGES[transport]());
        await waitDot(page, 'ok');
        await page.fill('#user', longUser);
        const room = longRoom(`p-${transport}-${token()}`);
        assert.equal(room.length, 64);
        await joinRoom(page, room);
        await waitMember(page, longUser);
        await sendOk(page, `from a phone ${token()}`);

        const box = async (selector) => page.locator(selector).first().boundingBox();
        for (const selector of ['#room-name', '#room-join', `#rooms li[data-room="${room}"] button`,
          '#rooms li[data-room="general"] button', '#members li', '#user', '#text', '#send', '#messages li']) {
          const b = await box(selector);
          assert.ok(b, `${selector} is shown`);
          assert.ok(b.x >= 0 && b.x + b.width <= 375, `${selector} fits in 375 px: x=${b.x} width=${b.width}`);
        }
        const widths = await page.evaluate(() => ({
          scroll: document.documentElement.scrollWidth, client: document.documentElement.clientWidth,
        }));
        assert.ok(widths.scroll <= widths.client, `no horizontal scroll: ${JSON.stringify(widths)}`);
        await saveScreenshot(page, `rooms-375-${transport}.png`);

        // Back to general with a tap on the room list.
        await roomEntry(page, 'general').locator('button').click();
        await waitInRoom(page, 'general');
      }, { server: shared.server });
    });
  }
});
