// Start and stop a real rtchat server process for a test (same pattern as tests/browser, kept
// separate so the suites do not import across each other).
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
export const REPO = path.resolve(here, '..', '..', '..');
export const BIN = process.env.RTCHAT_BIN || path.join(REPO, 'target', 'debug', 'rtchat');

const READY = /^rtchat listening on (http:\/\/[^\s/]+)\s*$/;

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Poll `fn` until it returns a truthy value or `timeout` ms pass. */
export async function waitUntil(fn, { timeout = 10000, every = 20, what = 'condition' } = {}) {
  const end = Date.now() + timeout;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out after ${timeout} ms waiting for ${what}`);
    await sleep(every);
  }
}

/**
 * Spawn `rtchat serve --listen ADDR --no-tls ...args` (ADDR defaults to 127.0.0.1:0) and wait
 * for its "rtchat listening on http://HOST:PORT" line. stderr is kept for failure messages.
 */
export async function startServer(args = [], { listen = '127.0.0.1:0', readyTimeout = 15000, dataDir } = {}) {
  const env = { ...process.env, NO_COLOR: '1', RUST_LOG: process.env.RTCHAT_TEST_RUST_LOG || 'warn' };
  // Every server gets its own data directory (its SQLite database) unless the test passes one
  // (to restart a server on the same data).
  dataDir ??= fs.mkdtempSync(path.join(os.tmpdir(), 'rtchat-sio-'));
  const child = spawn(BIN, ['serve', '--listen', listen, '--no-tls', '--data-dir', dataDir, ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env,
  });
  const log = [];
  readline.createInterface({ input: child.stderr }).on('line', (line) => log.push(line));
  const stdout = readline.createInterface({ input: child.stdout });
  const url = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => fail(new Error(`rtchat did not print its listening line within ${readyTimeout} ms`)), readyTimeout);
    function fail(err) {
      clearTimeout(timer);
      child.kill('SIGKILL');
      err.message += `\nbinary: ${BIN}\nstderr:\n${log.slice(-20).join('\n')}`;
      reject(err);
    }
    child.once('error', (err) => fail(new Error(`could not start ${BIN}: ${err.message} (set RTCHAT_BIN?)`)));
    child.once('exit', (code, sig) => fail(new Error(`rtchat exited early (code ${code}, signal ${sig})`)));
    stdout.on('line', (line) => {
      const m = line.trim().match(READY);
      if (m) {
        clearTimeout(timer);
        child.removeAllListeners('exit');
        resolve(m[1]);
      }
    });
  });
  return {
    url,
    dataDir,
    port: Number(new URL(url).port),
    child,
    log,
    text: () => log.join('\n'),
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise((r) => child.once('exit', r));
      // SIGINT: the fast stop (SIGTERM would drain for --drain-delay + --drain-seconds).
      child.kill('SIGINT');
      const t = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(t);
    },
  };
}

/** POST /poll from Node, like a polling client. Returns {status, body}. */
export async function postPoll(baseUrl, user, text) {
  const res = await fetch(`${baseUrl}/poll`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ user, text }),
  });
  return { status: res.status, body: await res.json() };
}
