// Headless Chromium: two /socketio pages chat through rtchat, with the default transports
// (polling upgraded to WebSocket) and with WebSockets disabled for the page
// (?transports=polling).
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, test } from 'node:test';
import { chromium } from 'playwright-core';
import { startServer } from './lib/server.mjs';

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

async function openPage(query, name) {
  const context = await browser.newContext();
  context.setDefaultTimeout(10000);
  const page = await context.newPage();
  const errors = [];
  const sockets = [];
  page.on('pageerror', (e) => errors.push(e.message));
  page.on('websocket', (ws) => sockets.push(ws.url()));
  await page.addInitScript((n) => window.localStorage.setItem('rtchat.user', n), name);
  await page.goto(`${server.url}/socketio${query}`);
  await page.locator('#status-text', { hasText: 'connected' }).waitFor();
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
    // A rejected post shows the server's reason and is not sent.
    await a.page.fill('#text', '   ');
    await a.page.press('#text', 'Enter');
    await a.page.locator('#post-error', { hasText: '"text" must not be empty' }).waitFor();
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
