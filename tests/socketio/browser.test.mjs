// Headless Chromium: two /socketio pages chat through rtchat, with the default transports
// (polling upgraded to WebSocket) and with WebSockets disabled for the page
// (?transports=polling); and a page that resumes (auth {last, epoch}) on a `--store memory`
// server restarted meanwhile, which has handed out the page's ids again; and two pages that
// chat in a room of their own (room:join), see each other in the member list and "… is
// typing", while a third page in general sees none of it.
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, test } from 'node:test';
import { chromium } from 'playwright-core';
import {
  item, joinRoom, member, onlineMembers, roomEntry, texts, waitInRoom, waitMember, waitTyping,
} from '../browser/lib/chat.mjs';
import { startProxy } from '../browser/lib/proxy.mjs';
import { postPoll, startServer, waitUntil } from './lib/server.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const ARTIFACTS = path.join(here, 'artifacts');
const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

let server;
let browser;
before(async () => {
  server = await startServer();
  browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ARGS });
});
after(async () => {
  await browser?.close();
  await server?.stop();
});

/** Open /socketio as `name`; `setup(page)` runs before the page loads (to watch its traffic). */
async function openPage(query, name, base = server.url, setup = undefined) {
  const context = await browser.newContext();
  context.setDefaultTimeout(10000);
  const page = await context.newPage();
  await setup?.(page);
  const errors = [];
  const sockets = [];
  page.on('pageerror', (e) => errors.push(e.message));
  page.on('websocket', (ws) => sockets.push(ws.url()));
  await page.addInitScript((n) => window.localStorage.setItem('rtchat.user', n), name);
  await page.goto(`${base}/socketio${query}`);
  await page.locator('#status-text', { hasText: 'live · Socket.IO' }).waitFor();
  return { page, context, errors, sockets };
}

async function say(page, text) {
  await page.fill('#text', text);
  await page.press('#text', 'Enter');
  await page.waitForFunction(() => document.getElementById('text').value === '');
}

async function expectMessage(page, user, text) {
  const li = page.locator('#messages li.msg', { hasText: text }).first();
  await li.waitFor();
  assert.equal(await li.locator('.msg-user').textContent(), user);
  assert.equal(await li.locator('.msg-text').textContent(), text);
}

async function chat(query, label) {
  const a = await openPage(query, `ann-${label}`);
  const b = await openPage(query, `bob-${label}`);
  try {
    await say(a.page, `hi bob over ${label}`);
    await expectMessage(b.page, `ann-${label}`, `hi bob over ${label}`);
    await expectMessage(a.page, `ann-${label}`, `hi bob over ${label}`);
    // User text is text, never markup.
    const tricky = `<img src=x onerror="window.pwned=1"> <b>bold</b> ${label}`;
    await say(b.page, tricky);
    await expectMessage(a.page, `bob-${label}`, tricky);
    assert.equal(await a.page.locator('#messages b, #messages img').count(), 0);
    assert.equal(await a.page.evaluate(() => window.pwned), undefined);
    // A blank text is not sent at all: Send is disabled.
    await a.page.fill('#text', '   ');
    assert.equal(await a.page.locator('#send').isDisabled(), true, 'Send is disabled for a blank text');
    assert.deepEqual([...a.errors, ...b.errors], []);
    return { a, b };
  } catch (err) {
    await fs.mkdir(ARTIFACTS, { recursive: true });
    await a.page.screenshot({ path: path.join(ARTIFACTS, `${label}-a.png`) }).catch(() => {});
    await b.page.screenshot({ path: path.join(ARTIFACTS, `${label}-b.png`) }).catch(() => {});
    await a.context.close();
    await b.context.close();
    throw err;
  }
}

test('two /socketio pages chat (polling upgraded to WebSocket)', { timeout: 60000 }, async () => {
  const { a, b } = await chat('', 'default');
  try {
    await a.page.waitForFunction(() => window.rtchatDebug.transport === 'websocket');
    assert.ok(a.sockets.some((u) => u.includes('/socket.io/')), 'the page upgraded to a WebSocket');
    await fs.mkdir(ARTIFACTS, { recursive: true });
    await b.page.screenshot({ path: path.join(ARTIFACTS, 'socketio-two-users.png'), fullPage: true });
  } finally {
    await a.context.close();
    await b.context.close();
  }
});

test('with WebSockets disabled for the page (transports: polling) it still works', { timeout: 60000 }, async () => {
  const { a, b } = await chat('?transports=polling', 'polling');
  try {
    assert.equal(await a.page.evaluate(() => window.rtchatDebug.transport), 'polling');
    assert.equal(await a.page.locator('#transport').textContent(), 'polling');
    assert.deepEqual([...a.sockets, ...b.sockets], [], 'no WebSocket was opened');
  } finally {
    await a.context.close();
    await b.context.close();
  }
});

test('after a --store memory restart that reuses the ids, a resumed page shows the new history, not a mix', { timeout: 60000 }, async () => {
  // The page's reconnect waits at a proxy while the server restarts empty and hands out the
  // page's ids again; it resumes with auth {last: 2, epoch: <the old one>} and is told to
  // start over (judged by the id alone, it would have been sent message 3 only, next to the
  // old 1 and 2).
  const first = await startServer(['--store', 'memory']);
  let second;
  const proxy = await startProxy(first.port);
  const { page, context, errors } = await openPage('', 'olga', proxy.url);
  try {
    const old = ['old 1', 'old 2'];
    for (const t of old) {
      await say(page, t);
      await expectMessage(page, 'olga', t);
    }
    const before = await page.evaluate(() => ({ ...window.rtchatDebug }));
    assert.equal(before.last, 2);
    assert.match(before.epoch, /^[a-z0-9]{8}$/, 'the page knows the epoch of its history');

    proxy.hold();
    proxy.cut();
    await waitUntil(() => proxy.held >= 1, { timeout: 15000, what: 'the page to reconnect (held at the proxy)' });
    await first.stop();
    second = await startServer(['--store', 'memory'], { listen: `127.0.0.1:${first.port}` });
    const fresh = ['new 1', 'new 2', 'new 3'];
    const ids = [];
    for (const t of fresh) ids.push((await postPoll(second.url, 'node', t)).body.id);
    assert.deepEqual(ids, [1, 2, 3], 'the new server hands out the same ids again');
    proxy.release();

    await expectMessage(page, 'node', 'new 3');
    await page.waitForFunction(() => window.rtchatDebug.connected);
    const shown = await page.locator('#messages li.msg').evaluateAll((els) => els.map((e) => [
      Number(e.dataset.id), e.querySelector('.msg-text').textContent]));
    assert.deepEqual(shown, [[1, 'new 1'], [2, 'new 2'], [3, 'new 3']],
      'the new server\'s whole history, and nothing of the old run');
    const now = await page.evaluate(() => ({ ...window.rtchatDebug }));
    assert.equal(now.last, 3);
    assert.match(now.epoch, /^[a-z0-9]{8}$/);
    assert.notEqual(now.epoch, before.epoch, 'the page follows the new epoch');

    // Live again, with the new ids.
    await say(page, 'live');
    await expectMessage(page, 'olga', 'live');
    assert.equal(await page.locator('#messages li.msg', { hasText: 'live' }).getAttribute('data-id'), '4');
    assert.deepEqual(errors, []);
    await fs.mkdir(ARTIFACTS, { recursive: true });
    await page.screenshot({ path: path.join(ARTIFACTS, 'socketio-epoch-reset.png'), fullPage: true });
  } catch (err) {
    await fs.mkdir(ARTIFACTS, { recursive: true });
    await page.screenshot({ path: path.join(ARTIFACTS, 'epoch-reset.png') }).catch(() => {});
    throw err;
  } finally {
    await context.close();
    await proxy.close();
    await second?.stop();
    await first.stop();
  }
});

test('two /socketio pages in a room chat and see each other (members, typing); a page in general sees none of it', { timeout: 60000 }, async () => {
  const room = `sio-${Math.random().toString(36).slice(2, 8)}`;
  const pages = [];
  const open = async (name) => {
    // Typing signals the page sends, over the WebSocket or a polling request: 42["typing",...].
    const sent = { typing: 0 };
    const count = (payload) => { if (/^42\["typing"/.test(String(payload))) sent.typing += 1; };
    const p = await openPage('?refresh=400', name, server.url, (page) => {
      page.on('websocket', (ws) => ws.on('framesent', (f) => count(f.payload)));
      page.on('request', (r) => {
        if (r.method() === 'POST') for (const part of String(r.postData() ?? '').split('\x1e')) count(part);
      });
    });
    pages.push(p);
    Object.defineProperty(p, 'typingSent', { get: () => sent.typing });
    return p;
  };
  try {
    const carol = await open('carol');
    const ann = await open('ann');
    const bob = await open('bob');
    // auth.user names the sockets in general, where they all start.
    await waitMember(carol.page, 'ann');
    await waitMember(carol.page, 'bob');
    for (const p of [ann, bob]) {
      await p.page.waitForFunction(() => window.rtchatDebug.transport === 'websocket');
      await joinRoom(p.page, room);
    }
    for (const p of [ann, bob]) {
      await waitMember(p.page, 'ann');
      await waitMember(p.page, 'bob');
    }
    assert.deepEqual(await onlineMembers(ann.page), ['ann', 'bob']);
    // They left general for the room: carol sees them go.
    await waitMember(carol.page, 'ann', false);
    await waitMember(carol.page, 'bob', false);

    await bob.page.locator('#text').pressSequentially('hello th', { delay: 25 });
    await waitTyping(ann.page, 'bob is typing…');
    assert.equal(bob.typingSent, 1, 'one typing signal for a burst of keystrokes');
    assert.equal(await bob.page.locator('#typing').textContent(), '');

    await say(ann.page, `hello ${room}`);
    await expectMessage(bob.page, 'ann', `hello ${room}`);
    await say(bob.page, 'hi ann');
    await expectMessage(ann.page, 'bob', 'hi ann');
    assert.deepEqual(await texts(ann.page), [`hello ${room}`, 'hi ann'], 'oldest first, newest at the bottom');

    // Carol, in general: a later general message reaches her, the room's do not, nobody types;
    // the room has a dot in her room list.
    const sentinel = `general goes on ${room}`;
    assert.equal((await postPoll(server.url, 'node', sentinel)).status, 200);
    await expectMessage(carol.page, 'node', sentinel);
    assert.equal(await item(carol.page, 'hi ann').count(), 0);
    assert.equal(await item(carol.page, `hello ${room}`).count(), 0);
    const online = await onlineMembers(carol.page);
    assert.ok(!online.includes('ann') && !online.includes('bob'), `online in general: ${online}`);
    assert.equal(await carol.page.locator('#typing').textContent(), '');
    await roomEntry(carol.page, room).locator('.unread-dot:visible').waitFor();

    // Carol opens the room: the messages are there, bob sees her come.
    await roomEntry(carol.page, room).locator('button').click();
    await waitInRoom(carol.page, room);
    await expectMessage(carol.page, 'bob', 'hi ann');
    await waitMember(bob.page, 'carol');
    assert.equal(await member(carol.page, 'ann').getAttribute('data-online'), 'true');
    assert.deepEqual(pages.flatMap((p) => p.errors), []);
    await fs.mkdir(ARTIFACTS, { recursive: true });
    await bob.page.screenshot({ path: path.join(ARTIFACTS, 'socketio-room.png'), fullPage: true });
  } catch (err) {
    await fs.mkdir(ARTIFACTS, { recursive: true });
    for (const [i, p] of pages.entries()) {
      await p.page.screenshot({ path: path.join(ARTIFACTS, `socketio-room-${i}.png`) }).catch(() => {});
    }
    throw err;
  } finally {
    for (const p of pages) await p.context.close();
  }
});
