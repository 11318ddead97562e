// 3. With `--fail-rate 1` every GET /poll fails: the page must back off (fewer requests
// in a later window than in an earlier one), counted server-side from the request log.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { launchBrowser, scenario } from './lib/browser.mjs';
import { startServer, waitUntil } from './lib/server.mjs';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

let browser;
before(async () => { browser = await launchBrowser(); });
after(async () => { await browser?.close(); });

describe('3. backoff while the server fails', () => {
  let server;
  before(async () => { server = await startServer(['--fail-rate', '1']); });
  after(async () => { await server?.stop(); });

  it('GET /poll rate drops over time and the dot is red', { timeout: 40000 }, async () => {
    await scenario(browser, 'backoff', async ({ newPage }) => {
      const page = await newPage();
      // interval 200 ms, step 400 ms: retry at once, then ~600, 1000, 1400, 1800, 2200 ms...
      const res = await page.goto(`${server.url}/polling?interval=200&step=400`);
      assert.equal(res?.status(), 200, 'GET /polling');

      const failed = () => server.requests({ method: 'GET', path: '/poll', status: 500 });
      const first = await waitUntil(() => failed()[0], { what: 'the first GET /poll status=500 log line' });
      const t0 = first.at;
      const W = 4000;
      await sleep(Math.max(0, t0 + 2 * W + 150 - performance.now()));

      const early = failed().filter((l) => l.at < t0 + W).length;
      const late = failed().filter((l) => l.at >= t0 + W && l.at < t0 + 2 * W).length;
      assert.ok(early >= 4, `expected a burst of retries at first, got ${early}`);
      assert.ok(late >= 1, 'still retrying later');
      assert.ok(late < early, `later window must have fewer requests: early=${early} late=${late}`);

      // Retry at once after the first failure, then wait.
      const at = failed().map((l) => l.at);
      assert.ok(at[1] - at[0] < at[2] - at[1], `first retry is immediate: gaps ${at[1] - at[0]} / ${at[2] - at[1]} ms`);

      const dot = page.locator('#status-dot');
      assert.equal(await dot.getAttribute('data-state'), 'error');
      assert.match(await dot.getAttribute('aria-label'), /fail/i);
      assert.match(await dot.getAttribute('aria-label'), /injected failure/, 'the server error is in the label');
      const d = await page.evaluate(() => ({ ...window.rtchatDebug }));
      assert.equal(d.mode, 'short');
      assert.ok(d.failures >= early + late - 1, `failures counted: ${d.failures}`);
      // Every request the page made reached the server's log (give or take the one in flight).
      assert.ok(Math.abs(d.requests - failed().length) <= 1, `page ${d.requests} vs server ${failed().length}`);
    }, { server });
  });
});
