// Launch Debian's chromium through playwright-core, and run a browser scenario that
// leaves screenshots + the server log in tests/browser/artifacts/ when it fails.
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { after, before } from 'node:test';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { startServer } from './server.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
export const ARTIFACTS = path.resolve(here, '..', 'artifacts');
export const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
export const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/**
 * Launch headless chromium (playwright uses a fresh temporary profile).
 * `tls: true` adds --ignore-certificate-errors, for rtchat's generated self-signed certificate.
 */
export async function launchBrowser({ tls = false } = {}) {
  try {
    await fs.access(CHROMIUM);
  } catch {
    throw new Error(`no browser at ${CHROMIUM}: apt-get install -y chromium (or set CHROMIUM_PATH)`);
  }
  const args = tls ? [...CHROMIUM_ARGS, '--ignore-certificate-errors'] : CHROMIUM_ARGS;
  return chromium.launch({ executablePath: CHROMIUM, headless: true, args });
}

/**
 * For a whole test file: a browser launched with `tls: true` and a server with HTTPS
 * (`startServer([], { tls: true })`), started before its tests and closed after them. The
 * tests read them as `shared.browser` and `shared.server`.
 */
export function sharedBrowserAndTlsServer() {
  const shared = {};
  before(async () => {
    [shared.browser, shared.server] = await Promise.all([launchBrowser({ tls: true }), startServer([], { tls: true })]);
  });
  after(async () => {
    await shared.browser?.close();
    await shared.server?.stop();
  });
  return shared;
}

function slug(s) {
  return s.toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-|-$/g, '').slice(0, 60);
}

/**
 * Run `fn({newContext, newPage, pageErrors})`. Every page is watched for uncaught
 * errors and Content-Security-Policy violations (the scenario fails on any). On failure, screenshots of all pages and the
 * server's log go to artifacts/. Contexts are always closed.
 */
export async function scenario(browser, name, fn, { server } = {}) {
  const contexts = [];
  const pageErrors = [];
  const newContext = async (opts) => {
    const c = await browser.newContext(opts);
    // Fail a stuck wait with a clear locator error well before the test's own timeout.
    c.setDefaultTimeout(10000);
    contexts.push(c);
    return c;
  };
  const newPage = async (ctx) => {
    const c = ctx ?? (await newContext());
    const p = await c.newPage();
    p.on('pageerror', (e) => pageErrors.push(`${p.url()}: ${e.message}`));
    // A Content-Security-Policy violation (rtchat's pages carry a strict one) is an error too.
    p.on('console', (m) => {
      if (m.type() === 'error' && /Content Security Policy/i.test(m.text())) {
        pageErrors.push(`${p.url()}: ${m.text()}`);
      }
    });
    return p;
  };
  try {
    await fn({ newContext, newPage, pageErrors });
    assert.deepEqual(pageErrors, [], 'uncaught errors in the page');
  } catch (err) {
    try {
      await fs.mkdir(ARTIFACTS, { recursive: true });
      let i = 0;
      for (const c of contexts) {
        for (const p of c.pages()) {
          const file = path.join(ARTIFACTS, `${slug(name)}-${i++}.png`);
          await p.screenshot({ path: file, fullPage: true, timeout: 5000 }).catch(() => {});
        }
      }
      if (server) await fs.writeFile(path.join(ARTIFACTS, `${slug(name)}-server.log`), server.text());
    } catch {
      /* artifacts are best effort */
    }
    throw err;
  } finally {
    for (const c of contexts) await c.close().catch(() => {});
  }
}

/** Save a screenshot into artifacts/ (used on success too, for a human to look at). */
export async function saveScreenshot(page, file) {
  await fs.mkdir(ARTIFACTS, { recursive: true });
  await page.screenshot({ path: path.join(ARTIFACTS, file), fullPage: true });
}
