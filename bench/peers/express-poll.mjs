// The course's polling API on Express: GET /poll answers the snapshot {"msg":[...],"last":N},
// POST /poll {user, text} stores a message.
import express from 'express';
import { post, snapshot, ready, port } from './chat.mjs';

const app = express();
app.use(express.json());
app.get('/poll', (req, res) => res.json(snapshot()));
app.post('/poll', (req, res) => {
  const msg = post(req.body);
  if (typeof msg === 'string') res.status(422).json({ error: msg });
  else res.json({ status: 'ok', id: msg.id });
});

const server = app.listen(port, '127.0.0.1', () => ready(server, 'node-express'));
