// Browser tests of the admin page (/admin) against `rtchat serve --auth token`: an account made
// administrator with the real `rtchat user grant-admin` signs in there, sees the live counts
// (GET /admin/overview, re-read every `?refresh=MS`), who is online where, and moderates a user
// chatting on /websocket: kick (the page's WebSocket is closed 4004), ban with a reason (the
// bans list, the user's next sign-in refused), unban, mute in general (the user's post refused);
// every action shows in the audit list. An account that is not an administrator is told so.
// No sleeps: every wait is for a DOM or page condition.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import {
  grantAdmin, openAdminSignedOut, recordWebSocketCloses, signUpApi, submitAdminSignIn, waitAdminView,
  waitWebSocketClosed,
} from './lib/admin.mjs';
import { fetchInPage, openSignedOut, PASSWORD, signUpThroughPage } from './lib/accounts.mjs';
import { launchBrowser, saveScreenshot, scenario } from './lib/browser.mjs';
import { gotoOk, send, token, waitDot } from './lib/chat.mjs';
import { startServer, withServer } from './lib/server.mjs';

const AUTH = ['--auth', 'token'];

let browser;
before(async () => { browser = await launchBrowser(); });
after(async () => { await browser?.close(); });

/** Wait until the admin page's client count for `transport` is at least `n`. */
function waitTransportCount(page, transport, n) {
  return page.waitForFunction(([t, k]) => {
    const cell = document.querySelector(`#transports tr[data-transport="${t}"] .count`);
    return cell !== null && Number(cell.textContent) >= k;
  }, [transport, n]);
}

/** The admin page's entry for user `uid` online in `room`. */
const onlineUser = (page, room, uid) =>
  page.locator(`#online .online-room[data-room="${room}"] li.online-user[data-uid="${uid}"]`);

/** Wait for an audit entry `action` on `target` on the admin page. */
const auditEntry = (page, action, target) =>
  page.locator(`#audit li[data-action="${action}"][data-target="${target}"]`);

describe('the admin page', () => {
  it('an administrator sees who is online and kicks, bans, unbans and mutes them', { timeout: 120000 }, async () => {
    const server = await startServer(AUTH);
    try {
      await scenario(browser, 'admin moderates', async ({ newPage }) => {
        // The administrator: an account, made admin with the real command.
        const root = await signUpApi(server.url, 'root');
        assert.equal(root.admin, false);
        const said = await grantAdmin(server.dataDir, root.uid);
        assert.match(said, /administrator/);

        // Bob chats on the WebSocket page.
        const bobPage = await newPage();
        await recordWebSocketCloses(bobPage);
        await openSignedOut(bobPage, `${server.url}/websocket`);
        const bob = await signUpThroughPage(bobPage, 'bob');

        // The admin signs in on /admin.
        const admin = await newPage();
        await openAdminSignedOut(admin, server.url, '?refresh=250');
        await submitAdminSignIn(admin, 'root');
        await waitAdminView(admin, 'in');
        assert.equal(await admin.locator('#signin').isVisible(), false);
        assert.equal(await admin.evaluate(() => window.rtchatAdmin.refresh), 250);
        await admin.locator('#session-name', { hasText: 'Signed in as root (administrator)' }).waitFor();

        // Live counts: bob's WebSocket, general with him in it.
        await waitTransportCount(admin, 'ws', 1);
        await onlineUser(admin, 'general', bob.uid).waitFor();
        assert.equal(await onlineUser(admin, 'general', bob.uid).locator('strong').textContent(), 'bob');
        await admin.locator('#rooms tr[data-room="general"] .online').waitFor();
        assert.ok(Number(await admin.locator('#rooms tr[data-room="general"] .online').textContent()) >= 1);
        // The same figures as the overview the page read.
        const overview = await fetchInPage(admin, '/admin/overview');
        assert.equal(overview.status, 200);
        assert.ok(overview.body.transports.find((t) => t.transport === 'ws').clients >= 1);

        // Kick: bob's connection is closed 4004, the audit list shows it.
        await admin.fill('#reason', 'take a break');
        await onlineUser(admin, 'general', bob.uid).getByRole('button', { name: 'Kick bob' }).click();
        await waitWebSocketClosed(bobPage, 4004);
        await auditEntry(admin, 'kick', bob.uid).waitFor();
        assert.match(await auditEntry(admin, 'kick', bob.uid).textContent(), /root.*kick.*bob.*take a break/);
        await admin.locator('#action-result[data-ok="true"]', { hasText: 'Kick bob' }).waitFor();
        // A kick is no ban: bob's page is back.
        await waitDot(bobPage, 'ok');
        await onlineUser(admin, 'general', bob.uid).waitFor();

        // Ban with a reason and a duration: in the bans list, bob's connection ends (4003) and
        // his next sign-in is refused.
        await admin.fill('#reason', 'spamming the room');
        await admin.fill('#duration', '1h');
        await onlineUser(admin, 'general', bob.uid).getByRole('button', { name: 'Ban bob' }).click();
        const ban = admin.locator(`#bans li[data-uid="${bob.uid}"]`);
        await ban.waitFor();
        assert.equal(await ban.locator('.reason').textContent(), 'spamming the room');
        assert.match(await ban.textContent(), /until .* by /);
        await auditEntry(admin, 'ban', bob.uid).waitFor();
        await waitWebSocketClosed(bobPage, 4003);
        await onlineUser(admin, 'general', bob.uid).waitFor({ state: 'detached' });

        const again = await newPage();
        await openSignedOut(again, `${server.url}/websocket`);
        await again.fill('#auth-user', 'bob');
        await again.fill('#auth-password', PASSWORD);
        await again.click('#auth-login');
        await again.waitForFunction(() => /banned/.test(document.getElementById('auth-error').textContent));
        assert.match(await again.locator('#auth-error').textContent(), /spamming the room/);
        await saveScreenshot(admin, 'admin-ban.png');

        // Unban: the list empties, the audit says so, bob signs in again.
        await ban.getByRole('button', { name: /^Unban / }).click();
        await ban.waitFor({ state: 'detached' });
        await admin.locator('#bans-empty').waitFor({ state: 'visible' });
        await auditEntry(admin, 'unban', bob.uid).waitFor();
        await again.click('#auth-login');
        await again.waitForFunction(() => window.rtchatDebug.auth.state === 'in');
        await waitDot(again, 'ok');
        await onlineUser(admin, 'general', bob.uid).waitFor();

        // Mute in general: listed, and bob's post there is refused with the reason.
        await admin.fill('#reason', 'cool down');
        await admin.fill('#duration', '');
        await onlineUser(admin, 'general', bob.uid).getByRole('button', { name: 'Mute bob in general' }).click();
        const mute = admin.locator(`#mutes li[data-uid="${bob.uid}"][data-room="general"]`);
        await mute.waitFor();
        assert.match(await mute.textContent(), /until lifted/);
        await auditEntry(admin, 'mute', bob.uid).waitFor();
        await send(again, `muted words ${token()}`);
        await again.waitForFunction(() => /muted/.test(document.getElementById('post-error').textContent));
        assert.match(await again.locator('#post-error').textContent(), /cool down/);

        // Unmute: gone from the list.
        await mute.getByRole('button', { name: /^Unmute / }).click();
        await mute.waitFor({ state: 'detached' });
        await auditEntry(admin, 'unmute', bob.uid).waitFor();

        // The audit list is newest first.
        const actions = await admin.locator('#audit li').evaluateAll((lis) => lis.map((li) => li.dataset.action));
        assert.deepEqual(actions.slice(0, 5), ['unmute', 'mute', 'unban', 'ban', 'kick']);

        // Delete a message: the page shows the server's answer, whatever it is.
        await admin.fill('#delete-room', 'general');
        await admin.fill('#delete-id', '999999');
        await admin.click('#delete-submit');
        await admin.locator('#delete-result[data-ok]').waitFor();
        const res = await admin.locator('#delete-result').textContent();
        assert.match(res, /^(Deleted message 999999|Message 999999 in general was not deleted: .*HTTP \d{3})/);
        await saveScreenshot(admin, 'admin-page.png');
      }, { server });
    } finally {
      await server.stop();
    }
  });

  it('an account that is not an administrator is told so', { timeout: 60000 }, async () => {
    const server = await startServer(AUTH);
    try {
      await scenario(browser, 'admin not an administrator', async ({ newPage }) => {
        await signUpApi(server.url, 'carol');
        const page = await newPage();
        await openAdminSignedOut(page, server.url);
        // A wrong password first: said plainly.
        await submitAdminSignIn(page, 'carol', 'not the password');
        await page.locator('#signin-error', { hasText: 'Wrong name or password' }).waitFor();
        await submitAdminSignIn(page, 'carol');
        await waitAdminView(page, 'not-admin');
        assert.match(await page.locator('#not-admin-text').textContent(), /not an administrator/);
        assert.equal(await page.locator('#dashboard').isVisible(), false);
        // The API agrees, and a reload (the session cookie) says the same.
        const r = await fetchInPage(page, '/admin/overview');
        assert.equal(r.status, 403);
        assert.equal(r.body.code, 'admin_only');
        await page.reload();
        await waitAdminView(page, 'not-admin');
        assert.match(await page.locator('#not-admin-text').textContent(), /not an administrator/);
        // Log out: back to the sign-in box.
        await page.click('#not-admin-logout');
        await waitAdminView(page, 'out');
      }, { server });
    } finally {
      await server.stop();
    }
  });

  describe('with --auth off', () => {
    const ctx = withServer();
    it('the page says there is nothing to administer; the API answers 404 auth_off', async () => {
      await scenario(browser, 'admin auth off', async ({ newPage }) => {
        const page = await newPage();
        await gotoOk(page, `${ctx.server.url}/admin`);
        await waitAdminView(page, 'off');
        assert.match(await page.locator('#admin-status').textContent(), /--auth token/);
        const r = await fetchInPage(page, '/admin/overview');
        assert.equal(r.status, 404);
        assert.equal(r.body.code, 'auth_off');
      }, { server: ctx.server });
    });
  });

  it('works at 375 px wide without sideways scrolling', { timeout: 60000 }, async () => {
    const server = await startServer(AUTH);
    try {
      await scenario(browser, 'admin narrow', async ({ newContext, newPage }) => {
        const root = await signUpApi(server.url, 'root');
        await grantAdmin(server.dataDir, root.uid);
        const ctx = await newContext({ viewport: { width: 375, height: 800 } });
        const page = await newPage(ctx);
        await openAdminSignedOut(page, server.url);
        await submitAdminSignIn(page, 'root');
        await waitAdminView(page, 'in');
        await page.locator('#transports tr[data-transport="ws"]').waitFor();
        const wide = await page.evaluate(() => document.documentElement.scrollWidth);
        assert.ok(wide <= 375, `the page is ${wide} px wide`);
        await saveScreenshot(page, 'admin-375.png');
      }, { server });
    } finally {
      await server.stop();
    }
  });
});
