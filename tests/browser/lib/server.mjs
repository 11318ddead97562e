// Start and stop a real rtchat server process for a test, and read its request log.
import { spawn } from 'node:child_process';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
export const REPO = path.resolve(here, '..', '..', '..');
export const BIN = process.env.RTCHAT_BIN || path.join(REPO, 'target', 'debug', 'rtchat');

const READY = /^rtchat listening on (http:\/\/[^\s/]+)\s*$/;
// eslint-disable-next-line no-control-regex
const ANSI = /\x1b\[[0-9;]*m/g;

/**
 * Parse one request log line (`... method=GET path=/poll status=200 duration_ms=3 ...`).
 * Tolerates ANSI colours and quoted values. Returns {method, path, status, query} or null.
 */
export function parseRequestLine(raw) {
  const line = raw.replace(ANSI, '');
  const field = (name) => {
    const m = line.match(new RegExp(`(?:^|\\s)${name}="?([^\\s"]*)"?`));
    return m ? m[1] : null;
  };
  const method = field('method');
  const p = field('path');
  const status = field('status');
  if (!method || !p || !status || !/^\d{3}$/.test(status)) return null;
  return { method, path: p, status: Number(status), query: field('query') };
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Poll `fn` (Node side) until it returns a truthy value or `timeout` ms pass. */
export async function waitUntil(fn, { timeout = 10000, every = 25, what = 'condition' } = {}) {
  const end = Date.now() + timeout;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out after ${timeout} ms waiting for ${what}`);
    await sleep(every);
  }
}

/**
 * Spawn `rtchat serve --listen 127.0.0.1:0 ...args`, wait for its
 * "rtchat listening on http://HOST:PORT" line, and collect its stderr lines with the
 * time (performance.now()) each arrived.
 */
export async function startServer(args = [], { readyTimeout = 15000 } = {}) {
  const env = { ...process.env, NO_COLOR: '1', RUST_LOG: process.env.RTCHAT_TEST_RUST_LOG || 'info' };
  const child = spawn(BIN, ['serve', '--listen', '127.0.0.1:0', ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env,
  });
  const log = []; // {at, line, req}
  const out = [];
  readline.createInterface({ input: child.stderr }).on('line', (line) => {
    log.push({ at: performance.now(), line, req: parseRequestLine(line) });
  });
  const stdout = readline.createInterface({ input: child.stdout });

  const url = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => fail(new Error(`rtchat did not print its listening line within ${readyTimeout} ms`)), readyTimeout);
    function fail(err) {
      clearTimeout(timer);
      child.kill('SIGKILL');
      const tail = log.slice(-20).map((l) => l.line).join('\n');
      err.message += `\nbinary: ${BIN}\nstdout:\n${out.join('\n')}\nstderr:\n${tail}`;
      reject(err);
    }
    child.once('error', (err) => fail(new Error(`could not start ${BIN}: ${err.message} (set RTCHAT_BIN?)`)));
    child.once('exit', (code, sig) => fail(new Error(`rtchat exited early (code ${code}, signal ${sig})`)));
    stdout.on('line', (line) => {
      out.push(line);
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
    port: Number(new URL(url).port),
    child,
    log,
    stdout: out,
    /** Request log entries matching {method, path, status} (any omitted field matches). */
    requests({ method, path: p, status, from = -Infinity, to = Infinity } = {}) {
      return log.filter(({ at, req }) => req &&
        (method === undefined || req.method === method) &&
        (p === undefined || req.path === p) &&
        (status === undefined || req.status === status) &&
        at >= from && at < to);
    },
    text() {
      return log.map((l) => l.line).join('\n');
    },
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(t);
    },
  };
}

/** POST a chat message from Node, like another client would. Returns {status, body}. */
export async function postMessage(baseUrl, user, text) {
  const res = await fetch(`${baseUrl}/poll`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ user, text }),
  });
  const raw = await res.text();
  let body = null;
  try { body = JSON.parse(raw); } catch { body = raw; }
  return { status: res.status, body };
}
