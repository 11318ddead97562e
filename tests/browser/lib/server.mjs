// Start and stop a real rtchat server process for a test, and read its request log.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { after, before } from 'node:test';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
export const REPO = path.resolve(here, '..', '..', '..');
export const BIN = process.env.RTCHAT_BIN || path.join(REPO, 'target', 'debug', 'rtchat');

const READY = /^rtchat listening on (http:\/\/[^\s/]+)\s*$/;
const READY_TLS = /^rtchat listening on (https:\/\/[^\s/]+)\s*$/;
// eslint-disable-next-line no-control-regex
const ANSI = /\x1b\[[0-9;]*m/g;

/**
 * Parse one request log line
 * (`... request{method=GET path=/poll}: rtchat::http: answered status=200 duration_ms=3`).
 * Tolerates ANSI colours and quoted values. Returns {method, path, status, query} or null.
 */
export function parseRequestLine(raw) {
  const line = raw.replace(ANSI, '');
  const field = (name) => {
    const m = line.match(new RegExp(`(?:^|[\\s{])${name}="?([^\\s"}]*)"?`));
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

/** A fresh temporary --data-dir (so no certificate lands in the user's home). */
export function makeDataDir() {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'rtchat-browser-'));
}

/**
 * Spawn `rtchat serve --listen 127.0.0.1:0 --no-tls --data-dir <fresh temp dir> ...args` (or
 * another `listen` address), wait for its "rtchat listening on http://HOST:PORT" line, and
 * collect its stderr lines with the time (performance.now()) each arrived.
 *
 * Every server gets its own `--data-dir` (a fresh temporary folder unless `dataDir` is given):
 * rtchat keeps its certificate and its SQLite message database there, so nothing lands in the
 * user's home and no test sees another's messages. `store: 'memory'` passes `--store memory`.
 * With `tls: true`: `--tls-listen <tlsListen>` (default 127.0.0.1:0) instead of `--no-tls`, and
 * it also waits for the "rtchat listening on https://HOST:PORT" line: `httpsUrl`, `tlsPort`.
 * A data dir the server created itself (or one handed over with `ownDataDir: true`) is removed
 * by `stop()` unless `stop({ keepDataDir: true })` (to restart on the same certificate and
 * database: pass `{ listen, tlsListen, dataDir }` to the next `startServer`).
 */
export async function startServer(args = [], {
  readyTimeout = 15000, listen = '127.0.0.1:0', tls = false, tlsListen = '127.0.0.1:0',
  dataDir = undefined, ownDataDir = undefined, store = undefined,
} = {}) {
  const env = { ...process.env, NO_COLOR: '1', RUST_LOG: process.env.RTCHAT_TEST_RUST_LOG || 'info' };
  // RTCHAT_WEB_ROOT=<dir>: serve the front end from a folder (rtchat --web-root) instead of
  // the pages embedded at build time, to test web/ edits without rebuilding.
  const webRoot = process.env.RTCHAT_WEB_ROOT ? ['--web-root', process.env.RTCHAT_WEB_ROOT] : [];
  // Plain HTTP only by default: otherwise every server also binds an HTTPS port and makes a
  // certificate. Always a data dir of the test's own (certificate, message database).
  const owned = ownDataDir ?? dataDir === undefined;
  dataDir ??= makeDataDir();
  const tlsArgs = tls ? ['--tls-listen', tlsListen] : ['--no-tls'];
  const storeArgs = store ? ['--store', store] : [];
  const child = spawn(BIN, [
    'serve', '--listen', listen, ...tlsArgs, '--data-dir', dataDir, ...storeArgs, ...webRoot, ...args,
  ], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env,
  });
  const log = []; // {at, line, req}
  const out = [];
  readline.createInterface({ input: child.stderr }).on('line', (line) => {
    log.push({ at: performance.now(), line, req: parseRequestLine(line) });
  });
  const stdout = readline.createInterface({ input: child.stdout });

  const { url, httpsUrl } = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => fail(new Error(`rtchat did not print its listening line within ${readyTimeout} ms`)), readyTimeout);
    function fail(err) {
      clearTimeout(timer);
      child.kill('SIGKILL');
      if (owned) fs.rmSync(dataDir, { recursive: true, force: true });
      const tail = log.slice(-20).map((l) => l.line).join('\n');
      err.message += `\nbinary: ${BIN}\nstdout:\n${out.join('\n')}\nstderr:\n${tail}`;
      reject(err);
    }
    child.once('error', (err) => fail(new Error(`could not start ${BIN}: ${err.message} (set RTCHAT_BIN?)`)));
    child.once('exit', (code, sig) => fail(new Error(`rtchat exited early (code ${code}, signal ${sig})`)));
    const found = {};
    stdout.on('line', (line) => {
      out.push(line);
      const m = line.trim().match(READY);
      const t = line.trim().match(READY_TLS);
      if (m) found.url = m[1];
      if (t) found.httpsUrl = t[1];
      if (found.url && (!tls || found.httpsUrl)) {
        clearTimeout(timer);
        child.removeAllListeners('exit');
        resolve(found);
      }
    });
  });

  return {
    url,
    port: Number(new URL(url).port),
    httpsUrl,
    tlsPort: httpsUrl ? Number(new URL(httpsUrl).port) : undefined,
    dataDir,
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
    async stop({ keepDataDir = false } = {}) {
      if (child.exitCode === null && child.signalCode === null) {
        const exited = new Promise((r) => child.once('exit', r));
        // SIGINT: the fast stop (SIGTERM would drain for --drain-delay + --drain-seconds).
        child.kill('SIGINT');
        const t = setTimeout(() => child.kill('SIGKILL'), 5000);
        await exited;
        clearTimeout(t);
      }
      if (owned && !keepDataDir) fs.rmSync(dataDir, { recursive: true, force: true });
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

/**
 * Does the server at `baseUrl` (http://HOST:PORT) accept a WebSocket upgrade on `/ws` with the
 * subprotocol `json`? Sends a raw RFC 6455 handshake and checks for `101`.
 */
export async function probeWebSocket(baseUrl, { timeout = 3000 } = {}) {
  const { default: net } = await import('node:net');
  const u = new URL(baseUrl);
  return new Promise((resolve) => {
    const sock = net.connect(Number(u.port), u.hostname);
    let buf = '';
    const done = (v) => { clearTimeout(t); sock.destroy(); resolve(v); };
    const t = setTimeout(() => done(false), timeout);
    sock.on('error', () => done(false));
    sock.on('connect', () => {
      sock.write([
        'GET /ws HTTP/1.1', `Host: ${u.host}`, 'Connection: Upgrade', 'Upgrade: websocket',
        'Sec-WebSocket-Version: 13', 'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==',
        'Sec-WebSocket-Protocol: json', '', '',
      ].join('\r\n'));
    });
    sock.on('data', (d) => {
      buf += d.toString('latin1');
      if (buf.includes('\r\n')) done(/^HTTP\/1\.1 101 /.test(buf));
    });
    sock.on('end', () => done(/^HTTP\/1\.1 101 /.test(buf)));
  });
}

/** A server started before the tests of the enclosing `describe` (or file) and stopped after
 * them; `ctx.server` is it. */
export function withServer(args = [], opts = {}) {
  const ctx = {};
  before(async () => { ctx.server = await startServer(args, opts); });
  after(async () => { await ctx.server?.stop(); });
  return ctx;
}
