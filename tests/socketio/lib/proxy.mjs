// A TCP proxy in front of a server (the same as tests/browser/lib/proxy.mjs: the suites do not
// import across each other). A test can `cut()` its connections (the network drops, the server
// stays up) and `hold()` new ones until `release()`, so a page's reconnect reaches the server
// only when the test is ready — no sleeps.
import net from 'node:net';

export async function startProxy(targetPort, targetHost = '127.0.0.1') {
  const sockets = new Set();
  const held = new Set();
  let holding = false;

  function link(client) {
    const upstream = net.connect(targetPort, targetHost);
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      s.on('error', () => {});
    }
    client.pipe(upstream);
    upstream.pipe(client);
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
  }

  const server = net.createServer((client) => {
    client.on('error', () => {});
    if (holding) {
      held.add(client);
      client.on('close', () => held.delete(client));
      return;
    }
    link(client);
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const port = server.address().port;
  return {
    port,
    url: `http://127.0.0.1:${port}`,
    /** Connections currently open through the proxy (client side + upstream side). */
    get open() { return sockets.size / 2; },
    /** Connections accepted while holding, waiting for `release()`. */
    get held() { return held.size; },
    /** From now on, hold new connections (accepted, but not connected upstream). */
    hold() { holding = true; },
    /** Stop holding: connect every held connection upstream (its waiting bytes go through). */
    release() {
      holding = false;
      for (const c of held) {
        held.delete(c);
        if (!c.destroyed) link(c);
      }
    },
    /** Reset every open (and held) connection. */
    cut() {
      for (const s of sockets) s.destroy();
      for (const c of held) c.destroy();
    },
    async close() {
      this.cut();
      await new Promise((r) => server.close(r));
    },
  };
}
