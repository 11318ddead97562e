// Helpers for the pages against `rtchat serve --auth token`: signing up through a page's
// sign-in box, direct messages and private rooms (the room list's "@Name" entries, the notice a
// page shows when the server takes it out of a room).
import assert from 'node:assert/strict';
import { gotoOk, waitDot } from './chat.mjs';

export const PASSWORD = 'correct horse battery';

/** Open `url` and wait for the sign-in box (the page is signed out). */
export async function openSignedOut(page, url) {
  await gotoOk(page, url);
  await page.locator('#auth').waitFor({ state: 'visible' });
  await page.waitForFunction(() => window.rtchatDebug.auth.state === 'out');
}

/**
 * Sign up as `user` through the page's sign-in box, wait until it is signed in and connected,
 * and return the server's signup answer ({token, expires, uid, name, admin}).
 */
export async function signUpThroughPage(page, user, password = PASSWORD) {
  await page.fill('#auth-user', user);
  await page.fill('#auth-password', password);
  const answer = page.waitForResponse((r) => new URL(r.url()).pathname === '/auth/signup');
  await page.click('#auth-signup');
  const res = await answer;
  assert.equal(res.status(), 201, `POST /auth/signup for ${user}`);
  const body = await res.json();
  assert.equal(body.name, user);
  assert.match(body.uid, /^u-/);
  await page.waitForFunction((u) => window.rtchatDebug.auth.state === 'in' && window.rtchatDebug.auth.name === u, user);
  await waitDot(page, 'ok');
  return body;
}

/**
 * `fetch(path, init)` from inside the page (its origin, its session cookie); resolves to
 * {status, body} (the body parsed as JSON when it is JSON).
 */
export function fetchInPage(page, path, init = {}) {
  return page.evaluate(async ([p, i]) => {
    const res = await fetch(p, { cache: 'no-store', credentials: 'same-origin', ...i });
    const raw = await res.text();
    let body = raw;
    try { body = JSON.parse(raw); } catch { /* not JSON */ }
    return { status: res.status, body };
  }, [path, init]);
}

/** A direct message's room name: `dm:` and 16 lowercase hex digits. */
export const DM_ROOM = /^dm:[0-9a-f]{16}$/;

/**
 * Wait until the page is in `room` (its real name) shown as `label` ("@bob", "#club"): the
 * title, the room list's entry marked current, the history loaded.
 */
export async function waitInRoomShownAs(page, room, label) {
  await page.waitForFunction(([r, l]) => {
    const title = document.getElementById('room-title');
    return title.textContent === l && title.getAttribute('data-room') === r &&
      document.querySelector(`#rooms li[data-room="${r}"] button[aria-current="true"]`) !== null;
  }, [room, label]);
  await page.waitForFunction(() => {
    const empty = document.getElementById('empty');
    return empty.hidden || empty.textContent === 'No messages yet.';
  });
}

/** The label the room list shows for `room` (its entry's .room-name), or null when not listed. */
export function roomLabel(page, room) {
  return page.evaluate((r) => {
    const el = document.querySelector(`#rooms li[data-room="${r}"] .room-name`);
    return el ? el.textContent : null;
  }, room);
}

/** Wait until the notice above the conversation (`#room-notice`) reads exactly `text`. */
export function waitRoomNotice(page, text) {
  return page.waitForFunction((t) => document.getElementById('room-notice').textContent === t, text);
}

/**
 * Watch what a page sends that names `room` (request URLs and bodies, WebSocket frames:
 * rtchat.v1 and Socket.IO alike). Call it before the page connects (a WebSocket opened before
 * is not seen). Counting starts at `counter.start()`: `counter.n` is the count since, `counter.seen`
 * the first few.
 */
export function watchMentions(page, room) {
  const counter = {
    n: 0, seen: [], on: false,
    start() { this.n = 0; this.seen = []; this.on = true; },
  };
  const note = (what) => {
    if (!counter.on) return;
    counter.n += 1;
    if (counter.seen.length < 10) counter.seen.push(what);
  };
  page.on('request', (r) => {
    const text = `${r.url()} ${r.postData() || ''}`;
    if (text.includes(room) || text.includes(encodeURIComponent(room))) note(`${r.method()} ${r.url()}`);
  });
  page.on('websocket', (ws) => ws.on('framesent', (f) => {
    if (typeof f.payload === 'string' && f.payload.includes(room)) note(`frame ${f.payload}`);
  }));
  return counter;
}
