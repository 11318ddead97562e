// One origin policy: a page of another origin (here a second server, with a page of its own
// and no security headers) cannot post into the chat with fetch, whatever CORS lets it read;
// started with --allow-origin naming that page's origin, the chat takes its posts.
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { launchBrowser, scenario } from './lib/browser.mjs';
import { startServer } from './lib/server.mjs';

let browser;
let pages; // serves the foreign page
let dir;
before(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'rtchat-origin-'));
  await fs.writeFile(path.join(dir, 'page.html'), '<!doctype html><title>another site</title><p>another site</p>');
  [browser, pages] = await Promise.all([launchBrowser(), startServer(['--web-root', dir])]);
});
after(async () => {
  await browser?.close();
  await pages?.stop();
  await fs.rm(dir, { recursive: true, force: true });
});

/** POSTs a message to `chatUrl`/poll from the page, returning the status and JSON body. */
function postFrom(page, chatUrl, text) {
  return page.evaluate(async ([url, text]) => {
    const res = await fetch(`${url}/poll`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ user: 'elsewhere', text }),
    });
    return { status: res.status, body: await res.json() };
  }, [chatUrl, text]);
}

async function history(url) {
  const res = await fetch(`${url}/poll`);
  return (await res.json()).msg.map((m) => m.text);
}

describe('cross-origin posts', () => {
  it('are refused with 403, and taken with --allow-origin', { timeout: 40000 }, async () => {
    const chat = await startServer([]);
    const allowing = await startServer(['--allow-origin', pages.url]);
    try {
      await scenario(browser, 'origin', async ({ newPage }) => {
        const page = await newPage();
        await page.goto(`${pages.url}/page.html`);
        const refused = await postFrom(page, chat.url, 'cross-site post');
        assert.equal(refused.status, 403);
        assert.match(refused.body.error, /may not post here/);
        assert.ok(refused.body.error.includes(`--allow-origin ${pages.url}`), refused.body.error);
        assert.deepEqual(await history(chat.url), [], 'nothing stored');

        const taken = await postFrom(page, allowing.url, 'allowed post');
        assert.equal(taken.status, 200, JSON.stringify(taken.body));
        assert.deepEqual(await history(allowing.url), ['allowed post']);
      });
    } finally {
      await chat.stop();
      await allowing.stop();
    }
  });
});
