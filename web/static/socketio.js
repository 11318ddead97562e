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
 * - Rooms: the socket starts in `general`, as above, named by `auth.user` (for presence).
 *   Entering another room is `room:leave` {room: old} then `room:join` {room} (acked with
 *   {room, last, epoch} or {error, room}), after which `room:history` {room, msg, last, epoch}
 *   fills the list; `msg:new`, `msg:since`, `presence` and `typing` name their room, and
 *   posts (`msg:post` {room, user, text}) and `typing` {room} carry it. After a reconnect
 *   (which lands in general) the page joins its room again, resuming with {last, epoch}, and
 *   leaves general. A new name reconnects in a room (auth is read at each connection).
 * - "Reconnect now" (offered while offline): drops socket.io-client's backoff wait and
 *   connects at once (socket.disconnect().connect(): a new Engine.IO connection, resuming as
 *   above); its own retries go on if that fails too. A post while not connected is refused at
 *   once instead of waiting in socket.io-client's buffer.
 * - Without the socket.io-client bundle (a build without it), the page says the transport is
 *   unavailable and turns the composer off.
 * - Accounts (`rtchat serve --auth token`): the handshake carries the session cookie (and
 *   `auth.user`, the account's name). `auth:revoked` / `auth:expired` sign the page out (the
 *   socket is disconnected, no reconnect); a `connect_error` naming a token code
 *   (`token_revoked`...) too; any other `connect_error` has the shared page ask whether the
 *   session still holds (RtChat's checkSession). The socket is made at the first enter()
 *   (after GET /config and, with accounts, signing in), and connects again at the next one.
 *   `room:left` {room, reason} (the room turned private, or the user was removed from it): the
 *   page says so and goes back to general (RtChat's removed). `msg:deleted` {room, id}: the
 *   message leaves the list at once.
 * Tuning for tests via the page URL: ?base=MS&cap=MS&jitter=F (socket.io-client's
 * reconnectionDelay, reconnectionDelayMax and randomizationFactor).
 * User text is rendered with textContent only (RtChat.renderMessages).
 * Read-only debug hook: window.rtchatDebug.
 */
(function () {
  'use strict';

  var C = window.RtChat;
  var GENERAL = C.GENERAL;
  var socket = null;
  var stopped = false; // signed out (--auth token): no (re)connecting until the next enter()
  var state = { messages: [], last: null, epoch: null, loaded: false, resumed: 0, joins: 0, reconnects: 0,
    gone: null, deleted: 0 };

  function see(id) {
    if (typeof id === 'number' && (state.last === null || id > state.last)) state.last = id;
  }

  /** Learns the epoch of the history the page follows, from a msg:get or msg:since. */
  function seeEpoch(body) {
    if (state.epoch === null && typeof body.epoch === 'string' && body.epoch) state.epoch = body.epoch;
  }

  /** The room an event is about: it names it, or it is the course's general. */
  function roomOf(body) {
    return body && typeof body.room === 'string' ? body.room : GENERAL;
  }

  function render() {
    if (state.loaded) ui.render(state.messages);
  }

  /**
   * Be in `room` on the server: leave `previous` (when there is one and it differs), then
   * join `room`, resuming after what the page holds (`last`, `epoch`) if it holds anything.
   */
  function join(room, previous) {
    var gone = state.gone;
    state.gone = null;
    // (Not a room the server already took the socket out of: room:left.)
    if (previous !== null && previous !== room && previous !== gone) socket.emit('room:leave', { room: previous });
    if (room === GENERAL && previous !== null && previous === room) return; // general: nothing to redo
    var body = { room: room };
    if (state.last !== null) body.last = state.last;
    if (state.last !== null && state.epoch !== null) body.epoch = state.epoch;
    state.joins += 1;
    socket.timeout(10000).emitWithAck('room:join', body).then(function (ack) {
      if (ui.room !== room) return;
      if (ack && ack.error) {
        ui.refused(room, ack.error);
        return;
      }
      if (ack && typeof ack.epoch === 'string' && ack.epoch && state.epoch === null) state.epoch = ack.epoch;
      ui.joined(room);
    }, function () {
      if (ui.room === room) ui.line('No answer from the server to joining #' + room + '.');
    });
  }

  /** Follow another room: leave the one the page is in, join the new one; a fresh list. */
  function enter(room, previous) {
    state.messages = [];
    state.last = null;
    state.epoch = null;
    state.loaded = false;
    if (!socket) {
      // The start: connecting lands in general; on('connect') joins the rest.
      if (typeof window.io === 'function') openSocket();
      return;
    }
    if (stopped) {
      // Signed in again: a new connection (which lands in general and joins the room).
      stopped = false;
      socket.connect();
      return;
    }
    if (socket.connected) join(room, previous === null ? GENERAL : previous);
  }

  /** Signed out: disconnect (socket.io-client does not reconnect then) until the next enter(). */
  function stop() {
    stopped = true;
    if (socket) socket.disconnect();
  }

  /** `code` names a refused token (a connect_error's "... (token_revoked)"), or ''. */
  function tokenCode(message) {
    var m = /\((token_[a-z_]+|session_expired|banned)\)/.exec(String(message || ''));
    return m ? m[1] : '';
  }

  var ui = C.mountChat({
    enter: enter,
    stop: stop,
    send: function (room, user, text) {
      if (!socket || !socket.connected) {
        return Promise.resolve({ ok: false, error: 'Not connected to the server; try again in a moment' });
      }
      var body = { user: user, text: text };
      if (room !== GENERAL) body.room = room;
      return socket.timeout(10000).emitWithAck('msg:post', body).then(
        function (ack) {
          if (ack && ack.status === 'ok') return { ok: true, id: ack.id };
          return { ok: false, error: (ack && ack.error) || 'The server did not accept the message' };
        },
        function () {
          return { ok: false, error: 'No answer from the server (is it reachable?)' };
        }
      );
    },
    typing: function (room) {
      if (socket && socket.connected) socket.emit('typing', { room: room });
    },
    // auth.user names the socket: a new name needs a new connection (which resumes).
    rename: function () {
      if (socket && !stopped) socket.disconnect().connect();
    },
    // Skip socket.io-client's backoff wait: a new connection now (it retries on its own
    // backoff again if this one fails too).
    reconnect: function () {
      if (!socket || socket.connected || stopped) return;
      state.reconnects += 1;
      ui.setStatus('connecting', 'Reconnecting now…');
      socket.disconnect().connect();
    },
    debug: {
      get transport() { return showTransport(); },
      get last() { return state.last; },
      get epoch() { return state.epoch; },
      get resumed() { return state.resumed; },
      get joins() { return state.joins; },
      get reconnects() { return state.reconnects; },
      get deleted() { return state.deleted; },
      get connected() { return !!socket && socket.connected; }
    }
  });

  var els = {
    transport: document.getElementById('transport'),
    missing: document.getElementById('missing-client')
  };

  function showTransport() {
    var engine = socket && socket.io.engine;
    var name = engine && engine.transport ? engine.transport.name : 'connecting';
    els.transport.textContent = name;
    return name;
  }

  if (typeof window.io !== 'function') {
    els.missing.hidden = false;
    els.missing.textContent =
      'The Socket.IO browser client is not installed on this server, so this page cannot ' +
      'connect. Install it with "scripts/setup" (or "npm ci" in the vendor/web folder), then ' +
      'rebuild rtchat with "cargo build" and restart it. The other transport pages work without it.';
    ui.els.empty.textContent = 'Not connected.';
    ui.disableComposer();
    els.transport.textContent = 'unavailable';
    ui.setStatus('error', 'Unavailable: the Socket.IO browser client is not in this build', 'unavailable');
  }
  ui.start();

  /** The socket (made once, at the first enter()), connecting at once, and its handlers. */
  function openSocket() {
    var params = new URLSearchParams(window.location.search);
    var only = params.get('transports');
    var transports = only ? only.split(',').filter(Boolean) : ['polling', 'websocket'];

    socket = window.io({
      transports: transports,
      reconnectionDelay: C.numParam('base', 1000),
      reconnectionDelayMax: C.numParam('cap', 5000),
      randomizationFactor: Math.min(C.numParam('jitter', 0.5), 1),
      auth: function (cb) {
        var auth = { snapshots: false, user: ui.user() };
        // The handshake resumes general; a room resumes with its room:join.
        if (ui.room === GENERAL && state.last !== null) {
          auth.last = state.last;
          if (state.epoch !== null) auth.epoch = state.epoch;
        }
        cb(auth);
      }
    });

    socket.on('connect', function () {
      var name = showTransport();
      ui.setStatus('ok', 'Connected over Socket.IO (' + name + ')', 'live · Socket.IO');
      socket.io.engine.once('upgrade', function () {
        var upgraded = showTransport();
        ui.setStatus('ok', 'Connected over Socket.IO (' + upgraded + ')', 'live · Socket.IO');
      });
      if (ui.room === GENERAL) ui.joined(GENERAL);
      else join(ui.room, GENERAL); // a (re)connection lands in general
    });
    socket.on('disconnect', function (reason) {
      els.transport.textContent = 'disconnected';
      if (stopped) return;
      if (socket.active) {
        // Lost (the server went away, the network dropped): socket.io-client reconnects by
        // itself after its backoff; "Reconnect now" skips the wait.
        ui.setStatus('error', 'Disconnected (' + reason + '); reconnecting…', 'offline · retrying', true);
      } else {
        ui.setStatus('connecting', 'Reconnecting… (' + reason + ')');
      }
    });
    socket.on('connect_error', function (err) {
      if (stopped) return;
      if (ui.authRequired()) {
        var code = tokenCode(err && err.message);
        if (code) {
          ui.signedOut(code); // stop(): no more retries
          return;
        }
        ui.checkSession(); // maybe refused for the session before the handshake (a 401)
      }
      // socket.io-client retries by itself, on its own backoff.
      ui.setStatus('error', 'Cannot connect: ' + (err && err.message || err), 'offline · retrying', true);
    });

    /** A fresh history of the room the page is in (msg:get for general, room:history for the rest). */
    function onHistory(body) {
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
    }

    socket.on('msg:get', function (body) {
      if (!body || !Array.isArray(body.msg) || ui.room !== GENERAL) return; // the course's general snapshot
      onHistory(body);
    });
    socket.on('room:history', function (body) {
      if (!body || !Array.isArray(body.msg) || roomOf(body) !== ui.room) return;
      onHistory(body);
    });
    socket.on('msg:new', function (m) {
      var room = roomOf(m);
      if (room !== ui.room) {
        ui.activity(room, m && m.id);
        return;
      }
      state.messages = C.mergeMessages(state.messages, [m]);
      see(m && m.id);
      render();
    });
    socket.on('msg:since', function (page) {
      if (!page || !Array.isArray(page.msg) || roomOf(page) !== ui.room) return;
      state.resumed += page.msg.length;
      seeEpoch(page);
      state.messages = C.mergeMessages(state.messages, page.msg);
      for (var i = 0; i < page.msg.length; i++) see(page.msg[i].id);
      state.loaded = true;
      render();
    });
    socket.on('msg:error', function (e) {
      if (e && typeof e.room === 'string' && e.room !== ui.room) return;
      ui.showError((e && e.error) || 'error');
    });
    // --auth token: `msg:deleted` {room, id}: the message is gone.
    socket.on('msg:deleted', function (e) {
      if (!e || typeof e.id !== 'number' || roomOf(e) !== ui.room) return;
      state.deleted += 1;
      state.messages = C.removeMessage(state.messages, e.id);
      if (state.loaded) ui.deleted(roomOf(e), e.id);
    });
    socket.on('presence', function (e) { ui.presence(roomOf(e), e); });
    socket.on('typing', function (e) { ui.typing(roomOf(e), e && e.user); });
    // --auth token: the server ended the session (logout, expiry); a disconnect follows.
    socket.on('auth:revoked', function () { ui.signedOut('revoked'); });
    socket.on('auth:expired', function () { ui.signedOut('expired'); });
    socket.on('auth:banned', function () { ui.signedOut('banned'); });
    // Kicked: the server disconnects the socket (socket.io-client does not come back by
    // itself from a server's disconnect), and the user may come back at once.
    socket.on('auth:kicked', function () {
      ui.line('An administrator disconnected you; reconnecting.');
      socket.once('disconnect', function () { if (!stopped) socket.connect(); });
    });
    // --auth token: the server took the socket out of a room (it turned private, or the user
    // was removed from it). In it: the page says why and goes back to general.
    socket.on('room:left', function (e) {
      var room = roomOf(e);
      if (room === GENERAL || room !== ui.room) return;
      state.gone = room;
      ui.removed(room, e && typeof e.reason === 'string' ? e.reason : '');
    });
  }
})();
