// Helpers for the admin page (/admin) against `rtchat serve --auth token`: accounts made from
// Node, made administrators with the real `rtchat user grant-admin`, and the page's sign-in.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { PASSWORD } from './accounts.mjs';
import { gotoOk } from './chat.mjs';
import { BIN } from './server.mjs';

const run = promisify(execFile);

/** `POST /auth/signup` from Node; returns the answer ({token, uid, name, admin...}). */
export async function signUpApi(baseUrl, user, password = PASSWORD) {
  const res = await fetch(`${baseUrl}/auth/signup`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ user, password }),
  });
  const body = await res.json();
  assert.equal(res.status, 201, `POST /auth/signup for ${user}: ${JSON.stringify(body)}`);
  return body;
}

/** `rtchat user grant-admin UID --data-dir DIR` (next to the running server); its stdout. */
export async function grantAdmin(dataDir, uid) {
  const { stdout } = await run(BIN, ['user', 'grant-admin', uid, '--data-dir', dataDir]);
  return stdout;
}

/** The admin page's view: loading, out, not-admin, in, off. */
export function waitAdminView(page, view) {
  return page.waitForFunction((v) => window.rtchatAdmin && window.rtchatAdmin.view === v, view);
}

/** Open `/admin` (`query`, e.g. `?refresh=300`) signed out, and wait for its sign-in box. */
export async function openAdminSignedOut(page, baseUrl, query = '') {
  await gotoOk(page, `${baseUrl}/admin${query}`);
  await waitAdminView(page, 'out');
  await page.locator('#signin').waitFor({ state: 'visible' });
}

/** Sign in through the admin page's form (no wait for the outcome). */
export async function submitAdminSignIn(page, user, password = PASSWORD) {
  await page.fill('#signin-user', user);
  await page.fill('#signin-password', password);
  await page.click('#signin-submit');
}

/**
 * Record the close code of every WebSocket the page opens (`window.rtchatCloses`), from before
 * its scripts run: a close the page follows with a refused reconnect (1006) is still seen.
 */
export function recordWebSocketCloses(page) {
  return page.addInitScript(() => {
    window.rtchatCloses = [];
    const Native = window.WebSocket;
    window.WebSocket = class extends Native {
      constructor(...args) {
        super(...args);
        this.addEventListener('close', (ev) => window.rtchatCloses.push(ev.code));
      }
    };
  });
}

/** Wait until one of the page's WebSockets was closed with `code` (see recordWebSocketCloses). */
export function waitWebSocketClosed(page, code) {
  return page.waitForFunction((c) => window.rtchatCloses.includes(c), code);
}
