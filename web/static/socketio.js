/*
 * rtchat Socket.IO client page, on the official socket.io-client browser bundle
 * (served by rtchat at /socket.io/socket.io.min.js once `scripts/setup` installed it).
 *
 * - Connects to the page's own server; `?transports=polling` (or `websocket`) restricts the
 *   Engine.IO transports, the default starts with polling and upgrades to WebSocket.
 * - History arrives as `msg:get`, each new message as `msg:new` (the page asks for no further
 *   snapshots: handshake `auth.snapshots = false`).
 * - Reconnection is socket.io-client's own; on every (re)connection the handshake carries
 *   `auth.last`, the newest message id the page holds, and `auth.epoch`, the epoch of the
 *   history it came from (`msg:get` and `msg:since` name it), and rtchat answers with exactly
 *   the messages after it (`msg:since` pages). A `msg:get` with `reset` (another epoch: the
 *   server restarted with an empty store, even if it has handed out the page's ids again)
 *   replaces the list.
 * - Posts are `msg:post` with an acknowledgement: {status: "ok", id} or {error}.
 * User text is rendered with textContent only (RtChat.renderMessages).
 * Read-only debug hook: window.rtchatDebug.
 */
(function () {
  'use strict';

  var C = window.RtChat;
  var els = {
    list: document.getElementById('messages'),
    empty: document.getElementById('empty'),
    dot: document.getElementById('status-dot'),
    status: document.getElementById('status-text'),
    transport: document.getElementById('transport'),
    missing: document.getElementById('missing-client'),
    form: document.getElementById('composer'),
    user: document.getElementById('user'),
    text: document.getElementById('text'),
    send: document.getElementById('send'),
    error: document.getElementById('post-error')
  };

  if (typeof window.io !== 'function') {
    els.missing.hidden = false;
    els.missing.textContent =
      'The Socket.IO browser client is not installed on this server, so this page cannot ' +
      'connect. Install it with "scripts/setup" (or "npm ci" in the vendor/web folder), then ' +
      'rebuild rtchat with "cargo build" and restart it. The other transport pages work without it.';
    els.empty.textContent = 'Not connected.';
    els.send.disabled = true;
    C.setPresence(els.dot, 'error', 'The Socket.IO client is missing', els.status, 'unavailable');
    return;
  }

  var params = new URLSearchParams(window.location.search);
  var only = params.get('transports');
  var transports = only ? only.split(',').filter(Boolean) : ['polling', 'websocket'];

  var state = { messages: [], last: null, epoch: null, loaded: false, resumed: 0 };

  function see(id) {
    if (typeof id === 'number' && (state.last === null || id > state.last)) state.last = id;
  }

  /** Learns the epoch of the history the page follows, from a msg:get or msg:since. */
  function seeEpoch(body) {
    if (state.epoch === null && typeof body.epoch === 'string' && body.epoch) state.epoch = body.epoch;
  }

  function render() {
    C.renderMessages(els.list, state.messages, els.empty);
    if (state.loaded) els.empty.textContent = 'No messages yet.';
  }

  var socket = window.io({
    transports: transports,
    auth: function (cb) {
      var auth = { snapshots: false };
      if (state.last !== null) auth.last = state.last;
      if (state.last !== null && state.epoch !== null) auth.epoch = state.epoch;
      cb(auth);
    }
  });

  function showTransport() {
    var engine = socket.io.engine;
    var name = engine && engine.transport ? engine.transport.name : 'connecting';
    els.transport.textContent = name;
    return name;
  }

  socket.on('connect', function () {
    var name = showTransport();
    C.setPresence(els.dot, 'ok', 'Connected over Socket.IO (' + name + ')', els.status, 'connected');
    socket.io.engine.once('upgrade', function () {
      var upgraded = showTransport();
      C.setPresence(els.dot, 'ok', 'Connected over Socket.IO (' + upgraded + ')', els.status, 'connected');
    });
  });
  socket.on('disconnect', function (reason) {
    els.transport.textContent = 'disconnected';
    C.setPresence(els.dot, 'connecting', 'Reconnecting… (' + reason + ')', els.status, 'reconnecting');
  });
  socket.on('connect_error', function (err) {
    C.setPresence(els.dot, 'error', 'Cannot connect: ' + (err && err.message || err), els.status, 'error');
  });

  socket.on('msg:get', function (body) {
    if (!body || !Array.isArray(body.msg)) return;
    if (body.reset) {
      state.messages = [];
      state.last = null;
      state.epoch = null;
    }
    seeEpoch(body);
    state.messages = C.mergeMessages(state.messages, body.msg);
    // On a resumed connection the msg:since pages fill the gap; the history only sets the
    // resume point on a fresh start.
    if (state.last === null) see(body.last);
    state.loaded = true;
    render();
  });
  socket.on('msg:new', function (m) {
    state.messages = C.mergeMessages(state.messages, [m]);
    see(m && m.id);
    render();
  });
  socket.on('msg:since', function (page) {
    if (!page || !Array.isArray(page.msg)) return;
    state.resumed += page.msg.length;
    seeEpoch(page);
    state.messages = C.mergeMessages(state.messages, page.msg);
    for (var i = 0; i < page.msg.length; i++) see(page.msg[i].id);
    render();
  });
  socket.on('msg:error', function (e) {
    els.error.textContent = (e && e.error) || 'error';
  });

  C.bindComposer({
    form: els.form,
    userInput: els.user,
    textInput: els.text,
    button: els.send,
    errorEl: els.error,
    send: function (user, text) {
      return socket.timeout(10000).emitWithAck('msg:post', { user: user, text: text }).then(
        function (ack) {
          if (ack && ack.status === 'ok') return { ok: true, id: ack.id };
          return { ok: false, error: (ack && ack.error) || 'The server did not accept the message' };
        },
        function () {
          return { ok: false, error: 'No answer from the server (is it reachable?)' };
        }
      );
    }
  });

  window.rtchatDebug = {
    get transport() { return showTransport(); },
    get last() { return state.last; },
    get epoch() { return state.epoch; },
    get resumed() { return state.resumed; },
    get connected() { return socket.connected; }
  };
})();
