// A TCP proxy in front of a server, whose open connections a test can cut (the network drops,
// the server stays up), to watch a page reconnect and resume.
import net from 'node:net';

export async function startProxy(targetPort, targetHost = '127.0.0.1') {
  const sockets = new Set();
  const server = net.createServer((client) => {
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
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const port = server.address().port;
  return {
    port,
    url: `http://127.0.0.1:${port}`,
    /** Connections currently open through the proxy (client side + upstream side). */
    get open() { return sockets.size / 2; },
    /** Reset every open connection. */
    cut() {
      for (const s of sockets) s.destroy();
    },
    async close() {
      this.cut();
      await new Promise((r) => server.close(r));
    },
  };
}
