// Browser tests of the pages against `rtchat serve --auth token` (the built-in accounts):
// every chat page signs in through its sign-in box before it connects (the HttpOnly,
// SameSite=Strict session cookie then carries the session on every transport), chats under
// the account's name (not editable; own messages recognised by `uid`), logs out and in again,
// says what went wrong in plain words, and returns to the sign-in box when the server ends
// the session (a logout in another tab). With `--auth off` nothing of it shows.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { launchBrowser, saveScreenshot, scenario } from './lib/browser.mjs';
import { debug, gotoOk, item, joinRoom, sendOk, token, waitDot, waitMember } from './lib/chat.mjs';
import { startServer, withServer } from './lib/server.mjs';

const AUTH = ['--auth', 'token'];
const PASSWORD = 'correct horse battery';
// `?timeout=1`: the polling page's long polls are held 1 s, so it sees a revoked session soon.
const PAGES = {
  websocket: '/websocket',
  sse: '/sse',
  socketio: '/socketio',
  polling: '/polling?timeout=1',
  http2: '/http2',
};

let browser;
before(async () => { browser = await launchBrowser(); });
after(async () => { await browser?.close(); });

const authState = (page) => page.evaluate(() => window.rtchatDebug.auth);

/** Wait until the page shows its sign-in box (and not the chat). */
async function waitSignInBox(page) {
  await page.locator('#auth').waitFor({ state: 'visible' });
  await page.waitForFunction(() => window.rtchatDebug.auth.state === 'out');
  assert.equal(await page.locator('.chat-layout').isVisible(), false, 'the chat is hidden while signed out');
  assert.equal(await page.locator('#session').isVisible(), false);
}

/** Fill the sign-in box and press Log in or Sign up. */
async function submit(page, button, user, password) {
  await page.fill('#auth-user', user);
  await page.fill('#auth-password', password);
  await page.click(button);
}

/** Wait until the page is signed in as `user` and connected (green dot). */
async function waitSignedIn(page, user) {
  await page.waitForFunction((u) => window.rtchatDebug.auth.state === 'in' && window.rtchatDebug.auth.name === u, user);
  await page.locator('#session').waitFor({ state: 'visible' });
  assert.equal(await page.locator('#session > span').textContent(), `Signed in as ${user}`);
  assert.equal(await page.locator('#logout').textContent(), 'Log out');
  assert.equal(await page.locator('#auth').isVisible(), false, 'the sign-in box is gone');
  await waitDot(page, 'ok');
  // The composer's name is the account's, and cannot be edited.
  assert.equal(await page.inputValue('#user'), user);
  assert.equal(await page.locator('#user').getAttribute('readonly'), '');
  assert.equal(await page.locator('#user').isEditable(), false);
}

async function signUp(page, user, password = PASSWORD) {
  await submit(page, '#auth-signup', user, password);
  await waitSignedIn(page, user);
}

async function logIn(page, user, password = PASSWORD) {
  await submit(page, '#auth-login', user, password);
  await waitSignedIn(page, user);
}

/** Wait until the sign-in box's message reads exactly `text`. */
function waitAuthMessage(page, text) {
  return page.waitForFunction((t) => document.getElementById('auth-error').textContent === t, text);
}

async function openSignedOut(newPage, url, ctx) {
  const page = await newPage(ctx);
  await gotoOk(page, url);
  await waitSignInBox(page);
  return page;
}

/** Every message shown: [user, text, mine] oldest first. */
const shown = (page) => page.$$eval('#messages > li', (lis) => lis.map((li) => [
  li.querySelector('.msg-user').textContent, li.querySelector('.msg-text').textContent,
  li.classList.contains('mine'), li.getAttribute('data-uid')]));

describe('auth: sign up through the page, then chat across transports', () => {
  const s = withServer(AUTH);
  const pairs = [['websocket', 'sse'], ['sse', 'socketio'], ['socketio', 'websocket'], ['polling', 'http2']];
  for (const [one, two] of pairs) {
    it(`a /${one} page and a /${two} page, each signed up as its own user, chat under their names`, { timeout: 60000 }, async () => {
      await scenario(browser, `auth-chat-${one}-${two}`, async ({ newPage }) => {
        const ann = `ann-${token()}`;
        const bob = `bob-${token()}`;
        const a = await openSignedOut(newPage, `${s.server.url}${PAGES[one]}`);
        // Nothing connects before signing in: no request of the transport was made.
        assert.equal((await authState(a)).mode, 'token');
        assert.equal(await a.locator('#status-text').textContent(), 'signed out');
        if (one === 'websocket') {
          assert.equal((await debug(a)).connects, 0, 'no WebSocket before signing in');
          await saveScreenshot(a, 'auth-sign-in.png');
        }
        await signUp(a, ann);
        const b = await openSignedOut(newPage, `${s.server.url}${PAGES[two]}`);
        await signUp(b, bob);

        const hello = `hello from ${ann} over ${one} ${token()}`;
        await sendOk(a, hello);
        await item(b, hello).waitFor();
        assert.equal(await item(b, hello).locator('.msg-user').textContent(), ann);
        const reply = `hi ${ann}, ${bob} here over ${two} ${token()}`;
        await sendOk(b, reply);
        await item(a, reply).waitFor();
        assert.equal(await item(a, reply).locator('.msg-user').textContent(), bob);

        // Own messages by uid: each page marks its own, not the other's.
        const onA = (await shown(a)).filter(([, t]) => t === hello || t === reply);
        const onB = (await shown(b)).filter(([, t]) => t === hello || t === reply);
        assert.deepEqual(onA.map(([u, t, mine]) => [u, t, mine]), [[ann, hello, true], [bob, reply, false]]);
        assert.deepEqual(onB.map(([u, t, mine]) => [u, t, mine]), [[ann, hello, false], [bob, reply, true]]);
        const uidA = (await authState(a)).uid;
        const uidB = (await authState(b)).uid;
        assert.match(uidA, /^u-/);
        assert.notEqual(uidA, uidB);
        assert.deepEqual(onA.map(([, , , uid]) => uid), [uidA, uidB], 'messages carry the uid of their account');
        if (one === 'websocket') await saveScreenshot(a, 'auth-signed-in.png');
      }, { server: s.server });
    });
  }
});

describe('auth: rooms, signed in', () => {
  const s = withServer(AUTH);
  const pairs = [['websocket', 'socketio'], ['sse', 'polling'], ['http2', 'websocket']];
  for (const [one, two] of pairs) {
    it(`a /${one} page and a /${two} page join a room under their account names and chat there`, { timeout: 60000 }, async () => {
      await scenario(browser, `auth-room-${one}-${two}`, async ({ newPage }) => {
        const room = `auth-${token()}`;
        const ann = `ann-${token()}`;
        const bob = `bob-${token()}`;
        const a = await openSignedOut(newPage, `${s.server.url}${PAGES[one]}`);
        await signUp(a, ann);
        const b = await openSignedOut(newPage, `${s.server.url}${PAGES[two]}`);
        await signUp(b, bob);
        await joinRoom(a, room);
        await joinRoom(b, room);
        await waitMember(a, bob);
        await waitMember(b, ann);
        const hello = `in ${room} from ${ann} ${token()}`;
        await sendOk(a, hello);
        await item(b, hello).waitFor();
        assert.equal(await item(b, hello).locator('.msg-user').textContent(), ann);
        const reply = `in ${room} from ${bob} ${token()}`;
        await sendOk(b, reply);
        await item(a, reply).waitFor();
        assert.equal(await item(a, reply).locator('.msg-user').textContent(), bob);
        assert.equal(await item(a, hello).evaluate((li) => li.classList.contains('mine')), true);
        assert.equal(await item(a, reply).evaluate((li) => li.classList.contains('mine')), false);
      }, { server: s.server });
    });
  }
});

describe('auth: log out and in again, and what goes wrong in plain words', () => {
  for (const name of ['websocket', 'sse', 'socketio', 'polling', 'http2']) {
    const s = withServer(AUTH);
    it(`/${name}: sign up, a taken name, a short password, log out, a wrong password, log in again`, { timeout: 60000 }, async () => {
      await scenario(browser, `auth-relogin-${name}`, async ({ newPage, newContext }) => {
        const user = `carol-${token()}`;
        const page = await openSignedOut(newPage, `${s.server.url}${PAGES[name]}`);
        // Too short a password: said before anything is made.
        await submit(page, '#auth-signup', user, 'short');
        await waitAuthMessage(page, 'Passwords need at least 8 characters');
        assert.equal((await authState(page)).state, 'out');
        await signUp(page, user);
        const first = `first ${token()}`;
        await sendOk(page, first);

        // The same name again, from another browser: taken.
        const other = await openSignedOut(newPage, `${s.server.url}${PAGES[name]}`, await newContext());
        await submit(other, '#auth-signup', user, PASSWORD);
        await waitAuthMessage(other, 'That name is taken');

        // Log out: POST /auth/logout, then the sign-in box.
        const logout = page.waitForResponse((r) => new URL(r.url()).pathname === '/auth/logout');
        await page.click('#logout');
        assert.equal((await logout).status(), 200);
        await waitSignInBox(page);
        await waitAuthMessage(page, 'You logged out.');
        assert.equal(await page.locator('#messages > li').count(), 0, 'nothing of the chat stays shown');
        assert.equal((await page.context().cookies()).filter((c) => c.name === 'rtchat_session').length, 0,
          'the session cookie is gone');
        // Signed out, the page asks nothing of the transports any more.
        const quiet = s.server.log.length;
        await page.waitForTimeout(1500);
        const refused = s.server.log.slice(quiet).filter((l) => /request refused/.test(l.line));
        assert.deepEqual(refused.map((l) => l.line), [], 'no refused requests while signed out');

        // A wrong password.
        await submit(page, '#auth-login', user, 'not the password');
        await waitAuthMessage(page, 'Wrong name or password');
        assert.equal((await authState(page)).state, 'out');
        assert.equal(await page.inputValue('#auth-password'), '', 'the wrong password is cleared');

        // The right one: connected again, the history there, the name the account's.
        await logIn(page, user);
        await item(page, first).waitFor();
        assert.equal(await item(page, first).getAttribute('class').then((c) => /\bmine\b/.test(c)), true);
        const again = `again ${token()}`;
        await sendOk(page, again);
        assert.equal(await item(page, again).locator('.msg-user').textContent(), user);
        const d = await authState(page);
        assert.equal(d.signIns, 2);
        assert.equal(d.signOuts, 1);
      }, { server: s.server });
    });
  }
});

describe('auth: the session cookie', () => {
  const s = withServer(AUTH);
  it('is HttpOnly and SameSite=Strict (the browser\'s cookie jar and CDP), and not in document.cookie', { timeout: 30000 }, async () => {
    await scenario(browser, 'auth-cookie', async ({ newPage }) => {
      const page = await openSignedOut(newPage, `${s.server.url}/websocket`);
      await signUp(page, `dave-${token()}`);
      const cookies = (await page.context().cookies()).filter((c) => c.name === 'rtchat_session');
      assert.equal(cookies.length, 1);
      assert.equal(cookies[0].httpOnly, true);
      assert.equal(cookies[0].sameSite, 'Strict');
      assert.equal(cookies[0].path, '/');
      const cdp = await page.context().newCDPSession(page);
      const { cookies: raw } = await cdp.send('Network.getCookies', { urls: [s.server.url] });
      const session = raw.find((c) => c.name === 'rtchat_session');
      assert.ok(session, 'CDP sees the cookie');
      assert.equal(session.httpOnly, true);
      assert.equal(session.sameSite, 'Strict');
      assert.equal(await page.evaluate(() => document.cookie.includes('rtchat_session')), false,
        'document.cookie does not show the session');
      // A reload signs in with the cookie alone (POST /auth/refresh), no box.
      await page.reload();
      await page.waitForFunction(() => window.rtchatDebug.auth.state === 'in');
      await waitDot(page, 'ok');
    }, { server: s.server });
  });
});

describe('auth: a logout in one tab signs the other tabs out', () => {
  const s = withServer(AUTH);
  it('the live /websocket, /sse, /socketio, /polling and /http2 connections of the session end: every tab shows the sign-in box', { timeout: 60000 }, async () => {
    await scenario(browser, 'auth-logout-other-tabs', async ({ newPage, newContext }) => {
      const ctx = await newContext();
      const user = `erin-${token()}`;
      const first = await openSignedOut(newPage, `${s.server.url}/websocket`, ctx);
      await signUp(first, user);
      // The other tabs of the same browser are signed in by the cookie.
      const tabs = {};
      for (const name of ['websocket', 'sse', 'socketio', 'polling', 'http2']) {
        const tab = await newPage(ctx);
        await gotoOk(tab, `${s.server.url}${PAGES[name]}`);
        await waitSignedIn(tab, user);
        tabs[name] = tab;
      }
      const text = `before the logout ${token()}`;
      await sendOk(tabs.sse, text);
      for (const tab of Object.values(tabs)) await item(tab, text).waitFor();

      await first.click('#logout');
      await waitSignInBox(first);
      for (const [name, tab] of Object.entries(tabs)) {
        await waitSignInBox(tab).catch((e) => { throw new Error(`/${name}: ${e.message}`); });
        assert.equal(await tab.locator('#auth-error').textContent(), 'You were signed out.', `/${name}`);
        assert.equal(await tab.locator('#status-text').textContent(), 'signed out', `/${name}`);
      }
      // How each heard of it: the server's own close / event / last line where it has one
      // (polling: the 401 of its next poll, which the logout's cleared cookie no longer
      // carries, or the revoked token if it still did).
      assert.equal((await debug(tabs.websocket)).lastClose.code, 4005);
      const by = {};
      for (const [name, tab] of Object.entries(tabs)) by[name] = (await authState(tab)).endedBy;
      assert.match(by.polling, /^token_(missing|revoked)$/);
      assert.deepEqual({ ...by, polling: 'token_*' }, {
        websocket: 'revoked', sse: 'revoked', socketio: 'revoked', polling: 'token_*', http2: 'revoked',
      });
      assert.equal((await authState(first)).endedBy, 'logout');

      // Signing in again in one tab brings the chat back there.
      await logIn(tabs.sse, user);
      await item(tabs.sse, text).waitFor();
    }, { server: s.server });
  });
});

describe('auth: with --auth off nothing of it shows', () => {
  const s = withServer();
  it('no sign-in box, no "Signed in as", the name editable', { timeout: 30000 }, async () => {
    await scenario(browser, 'auth-off', async ({ newPage }) => {
      for (const name of ['websocket', 'sse', 'socketio', 'polling', 'http2']) {
        const page = await newPage();
        await gotoOk(page, `${s.server.url}${PAGES[name]}`);
        await waitDot(page, 'ok');
        assert.equal((await authState(page)).mode, 'off');
        assert.equal(await page.locator('#auth').isVisible(), false);
        assert.equal(await page.locator('#session').isVisible(), false);
        assert.equal(await page.locator('#user').isEditable(), true);
        const requests = s.server.requests({ path: '/auth/refresh' });
        assert.equal(requests.length, 0, 'no /auth request');
        await page.close();
      }
    }, { server: s.server });
  });
});

describe('auth: a 401 on reconnect signs the page out', () => {
  it('the server comes back with other keys (a fresh data dir): every page reconnects, is refused, and shows the sign-in box', { timeout: 60000 }, async () => {
    let server = await startServer(AUTH);
    try {
      await scenario(browser, 'auth-401-on-reconnect', async ({ newPage, newContext }) => {
        const ctx = await newContext();
        const user = `fay-${token()}`;
        const fast = 'base=200&cap=800&jitter=0';
        const urls = {
          websocket: `/websocket?${fast}`,
          sse: `/sse?${fast}`,
          socketio: `/socketio?${fast}`,
          polling: '/polling?interval=300&step=200&cap=800&timeout=1&jitter=0',
          http2: `/http2?${fast}`,
        };
        const first = await openSignedOut(newPage, `${server.url}${urls.websocket}`, ctx);
        await signUp(first, user);
        const tabs = { first };
        for (const name of ['sse', 'socketio', 'polling', 'http2']) {
          tabs[name] = await newPage(ctx);
          await gotoOk(tabs[name], `${server.url}${urls[name]}`);
          await waitSignedIn(tabs[name], user);
        }
        const port = server.port;
        await server.stop();
        for (const tab of Object.values(tabs)) await waitDot(tab, 'error');
        server = await startServer(AUTH, { listen: `127.0.0.1:${port}` });
        for (const [name, tab] of Object.entries(tabs)) {
          await waitSignInBox(tab).catch((e) => { throw new Error(`${name}: ${e.message}`); });
          assert.equal(await tab.locator('#auth-error').textContent(), 'You were signed out.', name);
          const by = (await authState(tab)).endedBy;
          assert.match(by, /token_unknown_key/, `${name}: ended by ${by}`);
        }
        // A new account on the new server: chatting again.
        await signUp(tabs.sse, user);
        await sendOk(tabs.sse, `on the new server ${token()}`);
      }, { server });
    } finally {
      await server.stop();
    }
  });
});

describe('auth: too many attempts', () => {
  const s = withServer([...AUTH, '--login-rate-per-user', '1']);
  it('a second login for a name within the minute: "Too many attempts, try again in N s"', { timeout: 30000 }, async () => {
    await scenario(browser, 'auth-rate-limited', async ({ newPage }) => {
      const user = `gus-${token()}`;
      const res = await fetch(`${s.server.url}/auth/signup`, {
        method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ user, password: PASSWORD }),
      });
      assert.equal(res.status, 201);
      const page = await openSignedOut(newPage, `${s.server.url}/sse`);
      await submit(page, '#auth-login', user, 'wrong password');
      await waitAuthMessage(page, 'Wrong name or password');
      await submit(page, '#auth-login', user, PASSWORD);
      await page.waitForFunction(() => /^Too many attempts, try again in \d+ s$/.test(document.getElementById('auth-error').textContent));
      assert.equal((await authState(page)).state, 'out');
    }, { server: s.server });
  });
});

describe('auth: the session expires', () => {
  const s = withServer([...AUTH, '--session-ttl', '5s', '--token-grace', '0']);
  it('live /websocket, /sse, /socketio and /http2 connections end with "expired": the sign-in box says the session expired', { timeout: 60000 }, async () => {
    await scenario(browser, 'auth-expired', async ({ newPage, newContext }) => {
      const ctx = await newContext();
      const user = `hal-${token()}`;
      const first = await openSignedOut(newPage, `${s.server.url}/websocket`, ctx);
      await signUp(first, user);
      const tabs = { websocket: first };
      for (const name of ['sse', 'socketio', 'http2']) {
        tabs[name] = await newPage(ctx);
        await gotoOk(tabs[name], `${s.server.url}${PAGES[name]}`);
        await waitSignedIn(tabs[name], user);
      }
      for (const [name, tab] of Object.entries(tabs)) {
        await tab.waitForFunction(() => window.rtchatDebug.auth.state === 'out', null, { timeout: 15000 })
          .catch((e) => { throw new Error(`/${name}: ${e.message}`); });
        assert.equal(await tab.locator('#auth-error').textContent(), 'You were signed out: your session expired.', `/${name}`);
        assert.equal((await authState(tab)).endedBy, 'expired', `/${name}`);
      }
      assert.equal((await debug(tabs.websocket)).lastClose.code, 4001);
    }, { server: s.server });
  });
});
