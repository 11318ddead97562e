// Two official socket.io-client sockets through a balancer (argv: URL, transports, count):
// one posts `count` messages, the other must receive each once, in order. Prints a JSON
// report; exits non-zero if a socket cannot connect. Used by tests/it/cluster_moderation.rs.
import { io } from 'socket.io-client';

const [url, transportList, countArg] = process.argv.slice(2);
const transports = transportList.split(',');
const count = Number(countArg);
const open = (user) => io(url, { transports, auth: { user }, reconnection: false, forceNew: true });
const connected = (s) => new Promise((resolve, reject) => {
  s.on('connect', resolve);
  s.on('connect_error', reject);
});
const ann = open('ann');
const bob = open('bob');
const got = [];
const errors = [];
const all = new Promise((resolve) => bob.on('msg:new', (m) => {
  got.push(m.text);
  if (got.length >= count) resolve();
}));
try {
  await Promise.all([connected(ann), connected(bob)]);
  for (let i = 0; i < count; i++) {
    const ack = await ann.timeout(5000).emitWithAck('msg:post', { user: 'ann', text: `m${i}` });
    if (!ack || ack.error) errors.push(ack);
  }
  await Promise.race([all, new Promise((r) => setTimeout(r, 10000))]);
  console.log(JSON.stringify({ got, errors, transport: bob.io.engine.transport.name }));
} catch (e) {
  console.log(JSON.stringify({ got, errors: [String(e)] }));
  process.exitCode = 1;
} finally {
  ann.close();
  bob.close();
}
