/*
 * rtchat WebSocket client: the chat over the browser's own WebSocket, the course contract.
 *
 * - Connects to ws(s)://<host>/ws with the subprotocol "json".
 * - On connect the server sends a text frame {"msg":[...],"last":N} (newest first), and
 *   after every new message every connection gets the new full {"msg":[...]}: the page
 *   renders the newest snapshot.
 * - Posting sends a text frame {"user":"...","text":"..."}. The server does not acknowledge
 *   a good post by itself: it is done when a snapshot holds the message (same user and text,
 *   an id above the newest one when it was sent). An invalid post gets {"error":"..."}: shown
 *   under the form, and the text is kept.
 * - Presence dot green on open, red on close; after a close (a server restart, say) it
 *   reconnects: at once, then base, 2×base, … capped, ±jitter; reset once a snapshot arrives.
 *
 * Tuning for tests via the page URL: ?base=MS&cap=MS&jitter=F.
 * Read-only debug hook: window.rtchatDebug.
 */
(function () {
  'use strict';

  var C = window.RtChat;
  var PATH = '/ws';
  var PROTOCOL = 'json';
  /** A post that got neither its message nor an error back by then failed. */
  var POST_TIMEOUT_MS = 10000;

  var cfg = Object.freeze({
    base: C.numParam('base', 1000),
    cap: C.numParam('cap', 30000),
    jitter: Math.min(C.numParam('jitter', 0.2), 1)
  });

  var state = {
    ws: null,
    open: false,
    failures: 0,
    connects: 0,
    snapshots: 0,
    errors: 0,          // {"error"} frames received
    last: null,
    timer: null,
    delays: [],
    lastClose: null,    // {code, reason}
    pending: [],        // posts waiting for their message or an error, oldest first
    claimed: new Set(), // keys of messages already matched to one of our posts
    messages: []
  };

  var els = {
    list: document.getElementById('messages'),
    empty: document.getElementById('empty'),
    dot: document.getElementById('status-dot'),
    status: document.getElementById('status-text'),
    line: document.getElementById('stream-status'),
    form: document.getElementById('composer'),
    user: document.getElementById('user'),
    text: document.getElementById('text'),
    send: document.getElementById('send'),
    error: document.getElementById('post-error')
  };

  function setLine(text) {
    if (els.line) els.line.textContent = text;
  }

  function socketUrl() {
    var scheme = window.location.protocol === 'https:' ? 'wss:' : 'ws:';
    return scheme + '//' + window.location.host + PATH;
  }

  function settle(p, result) {
    clearTimeout(p.timer);
    var i = state.pending.indexOf(p);
    if (i >= 0) state.pending.splice(i, 1);
    p.resolve(result);
  }

  function failAllPending(error) {
    state.pending.slice().forEach(function (p) { settle(p, { ok: false, error: error }); });
  }

  function applySnapshot(data) {
    state.snapshots += 1;
    state.failures = 0;
    state.messages = C.mergeMessages([], data.msg, C.HISTORY);
    if (typeof data.last === 'number' && isFinite(data.last)) state.last = data.last;
    if (els.empty) els.empty.textContent = 'No messages yet.';
    C.renderMessages(els.list, state.messages, els.empty);
    // Which of our posts are in it? (Oldest post first, each message claimed once.)
    var claimed = state.claimed;
    state.pending.slice().forEach(function (p) {
      for (var i = state.messages.length - 1; i >= 0; i--) {
        var m = state.messages[i];
        var newer = p.after === null || typeof m.id !== 'number' || m.id > p.after;
        var key = C.messageKey(m);
        if (newer && !claimed.has(key) && m.user === p.user && m.text === p.text) {
          claimed.add(key);
          if (claimed.size > 200) claimed.delete(claimed.values().next().value);
          settle(p, { ok: true, id: m.id });
          return;
        }
      }
    });
  }

  function onFrame(ev) {
    if (typeof ev.data !== 'string') return; // the contract is text frames only
    var data;
    try { data = JSON.parse(ev.data); } catch (e) { return; }
    if (!data || typeof data !== 'object') return;
    if (Array.isArray(data.msg)) {
      applySnapshot(data);
    } else if (typeof data.error === 'string') {
      state.errors += 1;
      // Errors answer posts in order; one with no post waiting is shown as it is.
      if (state.pending.length) settle(state.pending[0], { ok: false, error: data.error });
      else if (composer) composer.showError(data.error);
    }
  }

  function connect() {
    clearTimeout(state.timer);
    state.timer = null;
    state.connects += 1;
    C.setPresence(els.dot, 'connecting', 'Connecting to ' + PATH + '…', els.status, 'connecting');
    var ws;
    try {
      ws = new WebSocket(socketUrl(), [PROTOCOL]);
    } catch (e) {
      state.ws = null;
      onClose({ code: 0, reason: (e && e.message) || String(e) });
      return;
    }
    state.ws = ws;
    ws.addEventListener('open', function () {
      if (state.ws !== ws) return;
      state.open = true;
      C.setPresence(els.dot, 'ok', 'Connected: WebSocket ' + PATH + ' (subprotocol ' +
        (ws.protocol || 'none') + ')', els.status, 'live · WebSocket');
      setLine(state.connects > 1 ? 'Reconnected: showing the server\'s current messages.' : '');
    });
    ws.addEventListener('message', function (ev) {
      if (state.ws === ws) onFrame(ev);
    });
    ws.addEventListener('close', function (ev) {
      if (state.ws === ws) onClose(ev);
    });
    // 'error' is always followed by 'close'.
  }

  function onClose(ev) {
    state.ws = null;
    state.open = false;
    state.failures += 1;
    state.lastClose = { code: ev.code, reason: ev.reason || '' };
    failAllPending('The connection closed before the server answered; please send again');
    var delay = C.backoffDelay(state.failures, cfg);
    state.delays.push(delay);
    if (state.delays.length > 50) state.delays.shift();
    var why = 'closed' + (ev.code ? ' (' + ev.code + (ev.reason ? ' ' + ev.reason : '') + ')' : '');
    var when = delay === 0 ? 'reconnecting now' : 'reconnecting in ' + C.seconds(delay);
    C.setPresence(els.dot, 'error', 'Disconnected: ' + why + '; ' + when + ' — ' +
      state.failures + ' failed in a row', els.status, 'offline · retrying');
    setLine('Disconnected: ' + why + '; ' + when + '.');
    state.timer = setTimeout(connect, delay);
  }

  function send(user, text) {
    var ws = state.ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) {
      return { ok: false, error: 'Not connected to the server; try again in a moment' };
    }
    return new Promise(function (resolve) {
      var p = { user: user, text: text, after: state.last, resolve: resolve, timer: null };
      p.timer = setTimeout(function () {
        settle(p, { ok: false, error: 'The server did not answer; please send again' });
      }, POST_TIMEOUT_MS);
      state.pending.push(p);
      ws.send(JSON.stringify({ user: user, text: text }));
    });
  }

  var composer = C.bindComposer({
    form: els.form,
    userInput: els.user,
    textInput: els.text,
    button: els.send,
    errorEl: els.error,
    send: send
  });

  window.rtchatDebug = Object.freeze({
    get open() { return state.open; },
    get readyState() { return state.ws ? state.ws.readyState : WebSocket.CLOSED; },
    get protocol() { return state.ws ? state.ws.protocol : ''; },
    get failures() { return state.failures; },
    get connects() { return state.connects; },
    get snapshots() { return state.snapshots; },
    get errors() { return state.errors; },
    get last() { return state.last; },
    get delays() { return state.delays.slice(); },
    get lastClose() { return state.lastClose; },
    get pending() { return state.pending.length; },
    get count() { return state.messages.length; },
    config: cfg
  });

  C.renderMessages(els.list, [], els.empty);
  connect();
})();
