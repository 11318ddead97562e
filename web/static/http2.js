/*
 * rtchat HTTP/2 streaming client (the course's HTTP/2 page).
 *
 * - Reads `GET /msgs` with fetch and a streaming body reader: the server never finishes the
 *   response and writes a full snapshot `{"msg":[...],"last":N}` (newest first) followed by
 *   "\n" at once and after every new message. The page splits the bytes on newlines (a read
 *   may hold part of a line, or several lines), merges every complete line into what it
 *   holds, by id, and shows the newest 50 (one render per read).
 * - Resume: a reconnect asks for `GET /msgs?since=<newest id held>&epoch=<its epoch>` (every
 *   line names the epoch of the server's history next to `last`). The stream then starts
 *   with pages `{"msg":[...newest first],"last":N,"epoch":E}` holding exactly the missed
 *   messages, the oldest page first, `"more":true` on all but the last (`"truncated":true`
 *   when the server no longer keeps some of them), then goes on with snapshots. The status
 *   line says "Resumed after message N — M missed." A snapshot with `"reset":true` (or a line
 *   of another epoch) means the server restarted with an empty store and its ids start
 *   again, even if it has handed out the page's ids again: the messages shown stay, marked
 *   "before the server restarted" (like the SSE page).
 * - Posts with `POST /msgs` (JSON), showing the server's `{"error"}` text on 4xx.
 * - Presence dot: green while the stream is open, red when it ends or fails.
 * - Reconnects when the stream ends: at once after the first failure, then base, 2×base, …
 *   capped, ±jitter; reset once a snapshot arrives.
 * - Over plain http the browser reads the stream over HTTP/1.1: a note points to this page on
 *   the port the server's HTTPS listener bound (GET /config's `https_port`), or says the
 *   server has none.
 * - Rooms: `general` is the course's `/msgs`, exactly as above. Any other room is
 *   `/rooms/{room}/msgs?user=<name>` (the same stream; its lines `{"presence":{room, joined,
 *   left}}` and `{"typing":{room, user}}` feed the member list and "… is typing"), posted to
 *   with `POST /rooms/{room}/msgs`; typing goes to `POST /rooms/{room}/typing`. Entering
 *   another room aborts the stream and reads the room's.
 *
 * - Accounts (`rtchat serve --auth token`): fetch sends the session cookie. A last line
 *   `{"revoked":{...}}` / `{"expired":{...}}`, or a 401 on (re)connecting, signs the page out
 *   (RtChat's signedOut), which aborts the stream (stop()) until it signs in again. A last line
 *   `{"left":{"room","reason"}}` (the room turned private, or the user was removed from it): the
 *   page says so and goes to general (RtChat's removed). A deleted message: the server sends a
 *   fresh snapshot without it, and a snapshot line replaces what the page holds of the
 *   server's current run (catch-up pages only add), so it leaves the list.
 *
 * Tuning for tests via the page URL: ?base=MS&cap=MS&jitter=F.
 * Read-only debug hook: window.rtchatDebug.
 */
(function () {
  'use strict';

  var C = window.RtChat;
  var STREAM_URL = '/msgs';

  var cfg = Object.freeze({
    base: C.numParam('base', 1000),
    cap: C.numParam('cap', 30000),
    jitter: Math.min(C.numParam('jitter', 0.2), 1)
  });

  var state = {
    open: false,        // a /msgs response is being read
    failures: 0,        // consecutive attempts that ended without a snapshot
    connects: 0,        // GET /msgs requests issued
    snapshots: 0,       // snapshots rendered (all connections)
    badLines: 0,        // lines that were not a snapshot
    last: null,         // `last` of the newest line read
    lastId: null,       // newest message id held from the current server run
    serverEpoch: null,  // the server's name for that run (its history's epoch), once known
    epoch: 0,           // bumped by every reset
    resets: 0,
    truncated: 0,
    pages: 0,           // catch-up pages read
    resume: null,       // the current connection's resume: {after, missed, truncated, done}
    connectsHere: 0,    // GET requests for the current room's stream
    gen: 0,             // bumped on entering a room: the old stream's end is not a failure
    abort: null,        // aborts the stream being read
    timer: null,
    delays: [],         // the scheduled reconnect delays (ms), oldest first
    lastError: '',
    history: C.HISTORY, // the server's --history (GET /config): how long a full snapshot is
    pruned: 0,          // messages a snapshot no longer had (deleted), taken out
    messages: []
  };

  var note = document.getElementById('h2-note');

  /** The protocol the page itself came over ("h3", "h2", "http/1.1"), when the browser says. */
  function pageProtocol() {
    try {
      var nav = performance.getEntriesByType('navigation')[0];
      return (nav && nav.nextHopProtocol) || '';
    } catch (e) {
      return '';
    }
  }

  function showNote(config) {
    if (!note) return;
    if (window.location.protocol === 'https:') {
      note.hidden = true;
      return;
    }
    // Built with text nodes only.
    note.textContent = '';
    var port = config && config.https_port;
    if (typeof port === 'number' && port > 0) {
      var url = C.httpsUrl(port, '/http2' + window.location.search);
      note.appendChild(document.createTextNode('Plain http: the stream runs over HTTP/1.1 here. Open '));
      var a = document.createElement('a');
      a.id = 'https-link';
      a.href = url;
      a.textContent = url;
      note.appendChild(a);
      note.appendChild(document.createTextNode(' for HTTP/2.'));
    } else {
      note.appendChild(document.createTextNode('Plain http: the stream runs over HTTP/1.1 here. ' +
        'This server has no HTTPS listener (TLS is off, or its HTTPS port was taken), so ' +
        'browsers cannot use HTTP/2 with it.'));
    }
    note.hidden = false;
  }

  var decorate = C.epochDecorator(function () { return state.epoch; });

  function render() {
    ui.render(state.messages, decorate);
  }

  /** The stream of `room` (GET, and POST to post): general is the course's /msgs. */
  function streamUrl(room) {
    return room === C.GENERAL ? STREAM_URL : C.roomPath(room, 'msgs');
  }

  function showResume() {
    var r = state.resume;
    if (!r) return;
    var text = r.done
      ? C.resumedText(r.after, r.missed)
      : 'Resumed after message ' + r.after + ' — catching up (' + r.missed + ' so far)…';
    if (r.truncated) {
      text += ' Older messages were lost: the server no longer keeps some of the messages ' +
        'after message ' + r.after + '.';
    }
    ui.line(text);
  }

  function onReset(data) {
    state.resets += 1;
    state.epoch += 1;
    state.lastId = null;
    state.serverEpoch = epochOf(data);
    state.resume = null;
    var had = state.messages.length;
    var fresh = data.last === 0 ? ' with no messages yet' : '';
    ui.line('The server restarted' + fresh + ': its message ids start again.' +
      (had ? ' The ' + had + ' message' + (had === 1 ? '' : 's') + ' shown before are marked "' +
        C.BEFORE_RESTART + '".' : ''));
  }

  /** The epoch a line names, if it names one. */
  function epochOf(data) {
    return typeof data.epoch === 'string' && data.epoch ? data.epoch : null;
  }

  /**
   * A snapshot line is the server's history as it is now: a message of the current run the page
   * holds but the snapshot lacks was deleted (`rtchat serve --auth token`; the server sends a
   * fresh snapshot then), so it goes. One newer than the snapshot's oldest is certainly gone; an
   * older one only when the snapshot is not full (fewer than the server's `--history`: nothing
   * older is kept). Catch-up pages only add.
   */
  function pruneToSnapshot(held, snapshot) {
    var ids = new Set();
    var oldest = null;
    for (var i = 0; i < snapshot.length; i++) {
      var id = snapshot[i].id;
      if (typeof id !== 'number') continue;
      ids.add(id);
      if (oldest === null || id < oldest) oldest = id;
    }
    var full = oldest !== null && snapshot.length >= state.history;
    var kept = held.filter(function (m) {
      if ((m.epoch || 0) !== state.epoch || typeof m.id !== 'number' || ids.has(m.id)) return true;
      return oldest !== null && m.id < oldest && full;
    });
    state.pruned += held.length - kept.length;
    return kept;
  }

  /**
   * Merge one line (a catch-up page or a snapshot) into what the page holds; rendering is
   * left to the caller.
   */
  function applyLine(data) {
    var lineEpoch = epochOf(data);
    var otherEpoch = lineEpoch !== null && state.serverEpoch !== null && lineEpoch !== state.serverEpoch;
    if (data.reset === true || otherEpoch) onReset(data);
    else if (lineEpoch !== null) state.serverEpoch = lineEpoch;
    var r = state.resume && !state.resume.done ? state.resume : null;
    var incoming = C.sanitize(data.msg);
    var newest = state.lastId;
    for (var i = 0; i < incoming.length; i++) {
      var m = incoming[i];
      m.epoch = state.epoch;
      if (typeof m.id !== 'number') continue;
      var isNew = state.lastId === null || m.id > state.lastId;
      if (r && isNew && m.id > r.after) r.missed += 1;
      if (newest === null || m.id > newest) newest = m.id;
    }
    if (typeof data.last === 'number' && isFinite(data.last)) {
      state.last = data.last;
      if (newest === null || data.last > newest) newest = data.last;
    }
    state.lastId = newest;
    if (!r) state.messages = pruneToSnapshot(state.messages, incoming);
    state.messages = C.mergeMessages(state.messages, incoming, C.HISTORY);
    if (r) {
      state.pages += 1;
      if (data.truncated === true) {
        r.truncated = true;
        state.truncated += 1;
      }
      if (data.more !== true) r.done = true; // the last page: snapshots from here on
      showResume();
    }
  }

  /**
   * Parse one line; a snapshot object or null. A room's `{"presence":{...}}` and
   * `{"typing":{...}}` lines go to the member list and the typing line, in `room`.
   */
  function parseLine(line, room) {
    var t = line.trim();
    if (!t) return null;
    try {
      var data = JSON.parse(t);
      if (data && typeof data === 'object' && Array.isArray(data.msg)) return data;
      if (data && typeof data.presence === 'object' && data.presence) {
        ui.presence(room, data.presence);
        return null;
      }
      if (data && typeof data.typing === 'object' && data.typing) {
        ui.typing(room, data.typing.user);
        return null;
      }
      if (data && typeof data.left === 'object' && data.left) {
        // --auth token: taken out of the room (it turned private, or the user was removed from
        // it); the stream ends after it. The page says why and goes to general (enter() aborts
        // this stream, so its end is no failure to reconnect from).
        ui.removed(room, typeof data.left.reason === 'string' ? data.left.reason : '');
        return null;
      }
      if (data && (data.revoked || data.expired || data.banned) && typeof (data.revoked || data.expired || data.banned) === 'object') {
        ui.signedOut(data.banned ? 'banned' : data.revoked ? 'revoked' : 'expired'); // the stream ends after it
        return null;
      }
    } catch (e) { /* fall through */ }
    state.badLines += 1;
    return null;
  }

  function connect() {
    clearTimeout(state.timer);
    state.timer = null;
    state.connects += 1;
    state.connectsHere += 1;
    var gotSnapshot = false;
    var proto = pageProtocol();
    var resumeAfter = state.lastId;
    var room = ui.room;
    var gen = state.gen;
    var query = room === C.GENERAL ? [] : [['user', ui.user()]];
    if (resumeAfter !== null) query.push(['since', resumeAfter], ['epoch', state.serverEpoch]);
    var url = C.withQuery(streamUrl(room), query);
    var ctl = new AbortController();
    state.abort = function () { ctl.abort(); };
    state.resume = null;
    ui.setStatus('connecting', 'Connecting to ' + streamUrl(room) + '…', 'connecting');

    fetch(url, { cache: 'no-store', headers: { Accept: 'text/plain' }, signal: ctl.signal }).then(function (res) {
      if (!res.ok) {
        return res.text().then(function (raw) {
          var body = null;
          try { body = JSON.parse(raw); } catch (e) { body = null; }
          var err = new Error(C.responseError(res, body));
          if (res.status === 401 && ui.authRequired()) {
            err.unauthorized = body && typeof body.code === 'string' ? body.code : 'token';
          }
          // The server refuses the room itself (its name, --max-rooms): no use retrying.
          err.refused = !err.unauthorized && room !== C.GENERAL && res.status >= 400 && res.status < 500;
          throw err;
        });
      }
      if (!res.body || typeof res.body.getReader !== 'function') {
        throw new Error('this browser cannot read a streaming response body');
      }
      state.open = true;
      var how = proto === 'h3' ? 'HTTP/3' : proto === 'h2' ? 'HTTP/2' : (proto || 'HTTP');
      ui.setStatus('ok', 'Connected: reading the ' + streamUrl(room) + ' stream (' + how + ')', 'live · ' + how);
      var reader = res.body.getReader();
      var decoder = new TextDecoder('utf-8');
      var buffer = '';

      function handle(lines) {
        var applied = 0;
        for (var i = 0; i < lines.length; i++) {
          if (gen !== state.gen) return; // the page left the room (or signed out) on a line before
          var data = parseLine(lines[i], room);
          if (!data) continue;
          if (!gotSnapshot) {
            gotSnapshot = true;
            state.failures = 0;
            state.lastError = '';
            if (resumeAfter !== null) {
              state.resume = { after: resumeAfter, missed: 0, truncated: false, done: false };
            } else {
              ui.line(state.connectsHere > 1 ? 'Reconnected: showing the server\'s current messages.' : '');
            }
            ui.joined(room);
          }
          applyLine(data);
          applied += 1;
        }
        if (applied && gen === state.gen) {
          state.snapshots += 1; // renders: several lines read at once render once
          render();
        }
      }

      function pump() {
        return reader.read().then(function (r) {
          if (r.done) {
            buffer += decoder.decode();
            handle([buffer]);
            buffer = '';
            return;
          }
          buffer += decoder.decode(r.value, { stream: true });
          var lines = buffer.split('\n');
          buffer = lines.pop(); // an incomplete last line waits for the next read
          handle(lines);
          return pump();
        });
      }
      return pump().then(function () {
        throw new Error('the server ended the stream');
      });
    }).catch(function (err) {
      if (gen !== state.gen) return; // the page left the room: aborted on purpose
      if (err && err.unauthorized) {
        state.open = false;
        ui.signedOut(err.unauthorized); // calls stop()
        return;
      }
      if (err && err.refused) {
        state.open = false;
        ui.setStatus('error', 'Refused: ' + err.message, 'refused');
        ui.refused(room, err.message);
        return;
      }
      onEnd(err);
    });
  }

  /** Follow another room (or the same one under a new name): abort the stream, read the room's. */
  function enter() {
    state.gen += 1;
    if (state.abort) state.abort();
    state.abort = null;
    clearTimeout(state.timer);
    state.timer = null;
    state.open = false;
    state.failures = 0;
    state.connectsHere = 0;
    state.lastId = null;
    state.last = null;
    state.serverEpoch = null;
    state.epoch = 0;
    state.resume = null;
    state.messages = [];
    connect();
  }

  /** Signed out (--auth token): abort the stream and cancel the retry, until the next enter(). */
  function stop() {
    state.gen += 1;
    if (state.abort) state.abort();
    state.abort = null;
    clearTimeout(state.timer);
    state.timer = null;
    state.open = false;
    state.resume = null;
  }

  function onEnd(err) {
    state.open = false;
    state.resume = null;
    state.failures += 1;
    var msg = (err && err.message) || String(err);
    if (err && err.name === 'TypeError') msg = 'network error (' + msg + ')';
    state.lastError = msg;
    var delay = C.backoffDelay(state.failures, cfg);
    state.delays.push(delay);
    if (state.delays.length > 50) state.delays.shift();
    var when = delay === 0 ? 'reconnecting now' : 'reconnecting in ' + C.seconds(delay);
    ui.setStatus('error', 'Disconnected (' + msg + '); ' + when + ' — ' +
      state.failures + ' failed in a row', 'offline · retrying', delay);
    ui.line('Disconnected (' + msg + '); ' + when +
      (state.lastId !== null ? ' (will resume after message ' + state.lastId + ')' : '') + '.');
    state.timer = setTimeout(connect, delay);
  }

  var ui = C.mountChat({
    enter: enter,
    stop: stop,
    endpoint: streamUrl,
    send: function (room, user, text) { return C.postMessage(streamUrl(room), user, text); },
    // Skip the backoff wait: reconnect now if a reconnect is waiting.
    reconnect: function () {
      if (state.timer !== null) connect();
    },
    // The new message arrives as the stream's next snapshot.
    typing: C.postTyping,
    debug: {
      get open() { return state.open; },
      get failures() { return state.failures; },
      get connects() { return state.connects; },
      get snapshots() { return state.snapshots; },
      get badLines() { return state.badLines; },
      get last() { return state.last; },
      get lastId() { return state.lastId; },
      get serverEpoch() { return state.serverEpoch; },
      get epoch() { return state.epoch; },
      get resets() { return state.resets; },
      get truncated() { return state.truncated; },
      get pages() { return state.pages; },
      get resumedAfter() { return state.resume ? state.resume.after : null; },
      get missed() { return state.resume ? state.resume.missed : null; },
      get delays() { return state.delays.slice(); },
      get lastError() { return state.lastError; },
      get count() { return state.messages.length; },
      get pruned() { return state.pruned; },
      get protocol() { return pageProtocol(); },
      config: cfg
    }
  });

  C.loadConfig().then(function (config) {
    if (config && typeof config.history === 'number' && config.history > 0) state.history = config.history;
    showNote(config);
  });
  ui.start();
})();
