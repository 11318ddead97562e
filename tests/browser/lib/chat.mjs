// Helpers shared by the chat page tests (every page has the same form, list and dot).
import assert from 'node:assert/strict';

export const token = () => Math.random().toString(36).slice(2, 8);

/** A message <li> in a page's list, found by (unique) text. */
export const item = (page, text) => page.locator('#messages > li', { hasText: text });

/** The texts of a page's messages, in the order shown (oldest first: newest at the bottom). */
export const texts = (page) => page.locator('#messages > li .msg-text').allTextContents();

/** The same, newest first: what the page shows from the bottom up. */
export const textsNewestFirst = async (page) => (await texts(page)).reverse();

/** Navigate and insist on a 200 (a 404 page would otherwise only show up as a timeout). */
export async function gotoOk(page, url) {
  const res = await page.goto(url);
  assert.equal(res?.status(), 200, `GET ${url}`);
  return res;
}

/** Wait until the presence dot is in `state` ('ok', 'error', 'connecting'). */
export function waitDot(page, state, timeout) {
  return page.waitForFunction(
    (s) => document.getElementById('status-dot')?.dataset.state === s, state, timeout ? { timeout } : undefined);
}

/** Start recording every state the status dot passes through (`"<state> <aria-label>"`), for
 * a state that may last only a moment (a page whose first retry is immediate). */
export function recordDot(page) {
  return page.evaluate(() => {
    const dot = document.getElementById('status-dot');
    window.dotStates = [];
    new MutationObserver(() => window.dotStates.push(`${dot.dataset.state} ${dot.getAttribute('aria-label')}`))
      .observe(dot, { attributes: true, attributeFilter: ['data-state', 'aria-label'] });
  });
}

/** Wait until the dot has passed through a state matching `re` since [`recordDot`]. */
export function waitDotSeen(page, re) {
  return page.waitForFunction((src) => window.dotStates.some((s) => new RegExp(src).test(s)), re.source);
}

/** Open a chat page, wait for a green dot, and set the user name. */
export async function openChat(newPage, url, user, ctx) {
  const page = await newPage(ctx);
  await gotoOk(page, url);
  await waitDot(page, 'ok');
  if (user !== undefined) await page.fill('#user', user);
  return page;
}

/** Type a message and press Enter. */
export async function send(page, text) {
  await page.fill('#text', text);
  await page.press('#text', 'Enter');
}

/** Send, and wait until the page's own POST/frame was answered (the input is cleared). */
export async function sendOk(page, text) {
  await send(page, text);
  await page.waitForFunction(() => document.getElementById('text').value === '');
  await item(page, text).waitFor();
}

/** Wait until the post error line reads exactly `text`. */
export function waitPostError(page, text) {
  return page.waitForFunction((t) => document.getElementById('post-error').textContent === t, text);
}

export const debug = (page) => page.evaluate(() => ({ ...window.rtchatDebug }));

// ---- rooms (the room list, the member list and the typing line every chat page has) ----

/** Join (or create) a room the way a user does: type its name in the room box, press Enter. */
export async function joinRoom(page, room) {
  await page.fill('#room-name', room);
  await page.press('#room-name', 'Enter');
  await waitInRoom(page, room);
}

/** Wait until the page shows `room`: its title, its entry marked current, its history loaded. */
export async function waitInRoom(page, room) {
  await page.locator('#room-title', { hasText: new RegExp(`^#${room}$`) }).waitFor();
  await page.locator(`#rooms li[data-room="${room}"] button[aria-current="true"]`).waitFor();
  await page.waitForFunction(() => {
    const empty = document.getElementById('empty');
    return empty.hidden || empty.textContent === 'No messages yet.';
  });
}

/** A name in the member list (`online`: with a green dot; false: greyed, left). */
export const member = (page, name) => page.locator(`#members li[data-user="${name}"]`);

/** Wait until `name` is listed as online (true) or as gone (false) in the member list. */
export function waitMember(page, name, online = true) {
  return page.locator(`#members li[data-user="${name}"][data-online="${online}"] .dot[data-state="${online ? 'ok' : 'paused'}"]`).waitFor();
}

/** The names in the member list shown as online. */
export const onlineMembers = (page) => page.locator('#members li[data-online="true"] .member-name').allTextContents();

/** Wait until the typing line reads exactly `text` ('' once it is hidden). */
export function waitTyping(page, text, timeout) {
  return page.waitForFunction((t) => document.getElementById('typing').textContent === t, text,
    timeout ? { timeout } : undefined);
}

/** A room's entry in the room list. */
export const roomEntry = (page, room) => page.locator(`#rooms li[data-room="${room}"]`);
