/*
 * rtchat WebSocket client: the chat over the browser's own WebSocket, subprotocol rtchat.v1.
 *
 * - Connects to ws(s)://<host>/ws offering the subprotocol "rtchat.v1". A fresh connection
 *   gets {"type":"history","msg":[...newest first],"last":N}, then one
 *   {"type":"msg","msg":{id,user,text,time}} per new message. The page shows them newest
 *   first, the newest 50.
 * - Posting sends {"type":"post","user","text","ref":R}; the server answers
 *   {"type":"ack","ref":R,"id":N} (the input is cleared) or {"type":"error","ref":R,"error"}
 *   (shown under the form, the text kept).
 * - Resume: after a close it reconnects to /ws?since=<newest id it holds>&epoch=<the epoch of
 *   the history it came from> (every history, reset and resumed frame names the epoch); the
 *   server sends exactly the missed messages as `msg` frames, in order, however many (no
 *   history frame), then {"type":"resumed","after","count","last","epoch"}: "Resumed after
 *   message N — M missed." `{"type":"truncated","after":ID}`: the server no longer keeps the
 *   messages right after ID, a note says so. `{"type":"reset","last":N,"epoch":E}` (another
 *   epoch: the server restarted with an empty store, its ids start again, even if it has
 *   handed out the page's ids again) then a history frame: the messages shown stay, marked
 *   "before the server restarted", like the SSE page.
 * - Presence dot green on open, red on close; reconnects at once, then base, 2×base, …
 *   capped, ±jitter; reset once a connection opens.
 * - Rooms, on the one connection: `general` is the course's `/ws`, exactly as above (a frame
 *   without `room` is about general). Entering another room sends {"type":"leave","room":old}
 *   and {"type":"join","room":new,"user":name}; the server answers `joined`, then the room's
 *   `history`; every server frame about a room names it, and frames about a room the page has
 *   left are dropped. Posts and typing carry `room`; `presence` and `typing` frames feed the
 *   member list and "… is typing". A reconnect in a room opens
 *   /ws?rooms=<room>&user=<name>[&since=N&epoch=E], so it resumes like general does.
 * - Deletions (`rtchat serve --auth token`): {"type":"deleted","room","id"} takes the message
 *   out of the list at once (RtChat's removeMessage and the shared page's deleted).
 *
 * - Accounts (`rtchat serve --auth token`): the browser sends the session cookie with the
 *   upgrade. A close 4005 "token revoked" or 4001 "token expired" signs the page out (no
 *   reconnect); a connection refused before it opened (a 401 shows as 1006) has the shared page
 *   ask whether the session still holds (RtChat's checkSession) while it retries. An unasked
 *   {"type":"left","room","reason"} (the room turned private, or the user was removed from it)
 *   has the page say so and go to general (RtChat's removed). A connection into a room refused
 *   before it opened asks the room first (RtChat's probeRoom: GET /rooms/{room}/presence); a
 *   refused room (403 not_a_member...) is left with the server's reason, not retried.
 *
 * Tuning for tests via the page URL: ?base=MS&cap=MS&jitter=F.
 * Read-only debug hook: window.rtchatDebug.
 */
(function () {
  'use strict';

  var C = window.RtChat;
  var PATH = '/ws';
  var PROTOCOL = 'rtchat.v1';
  /** A post that got neither an ack nor an error back by then failed. */
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
    opens: 0,
    opened: false,      // the current connection opened (else its close is a refusal)
    histories: 0,       // history frames received
    frames: 0,          // msg frames received
    errors: 0,          // error frames received
    deleted: 0,         // deleted frames received
    resets: 0,
    truncated: 0,
    epoch: 0,           // bumped by every reset
    lastId: null,       // newest id held from the current server run
    serverEpoch: null,  // the server's name for that run (its history's epoch), once known
    urls: [],           // the socket URLs opened, oldest first (the newest 20)
    timer: null,
    delays: [],
    lastClose: null,    // {code, reason}
    refSeq: 0,
    pending: new Map(), // ref -> post waiting for its ack or error
    messages: [],       // newest first, at most HISTORY
    resume: null,       // the current connection's resume: {after, end, ids, truncated}
    control: new Map(), // ref -> the join or leave waiting for its answer: {type, room}
    connectsHere: 0,    // connections that were (or are) in the current room
    gone: null,         // the room the server just took the connection out of (`left` with a reason)
    probing: null       // a reconnect waiting for RtChat's probeRoom (the room may refuse the page)
  };

  var decorate = C.epochDecorator(function () { return state.epoch; });

  function render() {
    ui.render(state.messages, decorate);
  }

  /** /ws (general) or /ws?rooms=<room>&user=<name>, resuming after the newest id held. */
  function socketUrl() {
    var scheme = window.location.protocol === 'https:' ? 'wss:' : 'ws:';
    var room = ui.room;
    var query = room === C.GENERAL ? [] : [['rooms', room], ['user', ui.user()]];
    if (state.lastId !== null) query.push(['since', state.lastId], ['epoch', state.serverEpoch]);
    return scheme + '//' + window.location.host + C.withQuery(PATH, query);
  }

  /** Add messages of the current server run (newest first or not) and keep the newest 50. */
  function addMessages(list) {
    var clean = C.sanitize(list);
    for (var i = 0; i < clean.length; i++) {
      clean[i].epoch = state.epoch;
      if (typeof clean[i].id === 'number' && (state.lastId === null || clean[i].id > state.lastId)) {
        state.lastId = clean[i].id;
      }
    }
    state.messages = C.mergeMessages(state.messages, clean, C.HISTORY);
  }

  /** How many of the messages this resumed connection brought were missed while away. */
  function missedCount(r) {
    if (r.end === null) return r.ids.length;
    var n = 0;
    for (var i = 0; i < r.ids.length; i++) if (r.ids[i] <= r.end) n += 1;
    return n;
  }

  function showResume() {
    var r = state.resume;
    if (!r) return;
    var text = r.end === null && r.ids.length === 0
      ? 'Resumed after message ' + r.after + ' — catching up…'
      : C.resumedText(r.after, missedCount(r));
    if (r.truncated !== null) {
      text += ' Older messages were lost: the server no longer keeps some of the messages ' +
        'after message ' + r.truncated + '.';
    }
    ui.line(text);
  }

  /** The epoch a frame names, if it names one. */
  function epochOf(data) {
    return typeof data.epoch === 'string' && data.epoch ? data.epoch : null;
  }

  /** `resumed`: the server has sent everything missed, up to its `last`. */
  function onResumed(data) {
    if (state.serverEpoch === null) state.serverEpoch = epochOf(data);
    var r = state.resume;
    if (!r) return;
    r.end = typeof data.last === 'number' && isFinite(data.last) ? data.last : Infinity;
    showResume();
  }

  function settle(p, result) {
    clearTimeout(p.timer);
    state.pending.delete(p.ref);
    p.resolve(result);
  }

  function failAllPending(error) {
    Array.from(state.pending.values()).forEach(function (p) { settle(p, { ok: false, error: error }); });
  }

  /** Send a control frame (join, leave) and remember it until the server answers its ref. */
  function control(frame) {
    state.refSeq += 1;
    frame.ref = 'c' + state.refSeq;
    state.control.set(frame.ref, { type: frame.type, room: frame.room });
    state.ws.send(JSON.stringify(frame));
  }

  function onHistory(data) {
    state.histories += 1;
    if (epochOf(data) !== null) state.serverEpoch = epochOf(data);
    addMessages(data.msg);
    if (typeof data.last === 'number' && isFinite(data.last) &&
        (state.lastId === null || data.last > state.lastId)) {
      state.lastId = data.last;
    }
    render();
    if (state.resets === 0 && state.connectsHere > 1 && !state.resume) {
      ui.line('Reconnected — history reloaded.');
    }
  }

  function onMessage(m) {
    state.frames += 1;
    var clean = C.sanitize([m])[0];
    if (!clean) return;
    var isNew = typeof clean.id !== 'number' || state.lastId === null || clean.id > state.lastId;
    addMessages([clean]);
    render();
    var r = state.resume;
    if (r && isNew && typeof clean.id === 'number' && clean.id > r.after) {
      r.ids.push(clean.id);
      showResume();
    }
  }

  function onReset(data) {
    state.resets += 1;
    state.epoch += 1;
    state.lastId = null;
    state.serverEpoch = epochOf(data);
    state.resume = null;
    render();
    var had = state.messages.length;
    var fresh = data.last === 0 ? ' with no messages yet' : '';
    ui.line('The server restarted' + fresh + ': its message ids start again.' +
      (had ? ' The ' + had + ' message' + (had === 1 ? '' : 's') + ' shown before are marked "' +
        C.BEFORE_RESTART + '".' : ''));
  }

  function onTruncated(data) {
    state.truncated += 1;
    var after = typeof data.after === 'number' ? data.after : state.lastId;
    if (state.resume) {
      state.resume.truncated = after;
      showResume();
    } else {
      ui.line('Older messages were lost: the server no longer keeps some of the messages after ' +
        'message ' + after + '.');
    }
  }

  function onFrame(ev) {
    if (typeof ev.data !== 'string') return; // the protocol is text frames only
    var data;
    try { data = JSON.parse(ev.data); } catch (e) { return; }
    if (!data || typeof data !== 'object') return;
    var p = data.ref != null ? state.pending.get(data.ref) : undefined;
    var c = data.ref != null ? state.control.get(data.ref) : undefined;
    if (c) state.control.delete(data.ref);
    var room = typeof data.room === 'string' ? data.room : C.GENERAL;
    if (room !== ui.room && data.type !== 'ack' && data.type !== 'error') {
      // About a room the page has left (or is leaving): only news counts.
      if (data.type === 'msg' && data.msg) ui.activity(room, data.msg.id);
      return;
    }
    switch (data.type) {
      case 'joined':
        ui.joined(room);
        break;
      case 'left':
        // Unasked, with a reason: the server took the connection out of the room (it turned
        // private, or the user was removed from it). The page says so and goes to general.
        if (!c && typeof data.reason === 'string') {
          state.gone = room;
          ui.removed(room, data.reason);
        }
        break;
      case 'presence':
        ui.presence(room, data);
        break;
      case 'typing':
        ui.typing(room, data.user);
        break;
      case 'history':
        if (Array.isArray(data.msg)) onHistory(data);
        break;
      case 'msg':
        if (data.msg && typeof data.msg === 'object') onMessage(data.msg);
        break;
      case 'ack':
        if (p) settle(p, { ok: true, id: data.id });
        break;
      case 'error':
        state.errors += 1;
        var error = typeof data.error === 'string' && data.error ? data.error : 'The server refused the message';
        if (p) settle(p, { ok: false, error: error });
        else if (c && c.type === 'join') ui.refused(c.room, error);
        else if (c) break; // a leave the server had already done
        else if (room === ui.room) ui.showError(error);
        break;
      case 'reset':
        onReset(data);
        break;
      case 'truncated':
        onTruncated(data);
        break;
      case 'resumed':
        onResumed(data);
        break;
      case 'deleted':
        // --auth token: {"type":"deleted","room","id"}: the message is gone, at once.
        if (typeof data.id === 'number') {
          state.deleted += 1;
          state.messages = C.removeMessage(state.messages, data.id, state.epoch);
          ui.deleted(room, data.id);
        }
        break;
      default:
        break;
    }
  }

  function connect() {
    clearTimeout(state.timer);
    state.timer = null;
    state.probing = null;
    state.connects += 1;
    state.connectsHere += 1;
    state.resume = null;
    ui.setStatus('connecting', 'Connecting to ' + PATH + '…', 'connecting');
    var url = socketUrl();
    var resumeAfter = state.lastId;
    state.urls.push(url);
    if (state.urls.length > 20) state.urls.shift();
    var ws;
    state.opened = false;
    try {
      ws = new WebSocket(url, [PROTOCOL]);
    } catch (e) {
      state.ws = null;
      onClose({ code: 0, reason: (e && e.message) || String(e) });
      return;
    }
    state.ws = ws;
    ws.addEventListener('open', function () {
      if (state.ws !== ws) return;
      state.open = true;
      state.opened = true;
      state.opens += 1;
      state.failures = 0;
      ui.setStatus('ok', 'Connected: WebSocket ' + PATH + ' (subprotocol ' +
        (ws.protocol || 'none') + ')', 'live · WebSocket');
      ui.joined(ui.room); // the URL named the room: the server is in it already
      if (resumeAfter !== null) {
        state.resume = { after: resumeAfter, end: null, ids: [], truncated: null };
        showResume();
      } else if (state.connectsHere > 1) {
        ui.line('Reconnected — loading the history…');
      }
    });
    ws.addEventListener('message', function (ev) {
      if (state.ws === ws) onFrame(ev);
    });
    ws.addEventListener('close', function (ev) {
      if (state.ws === ws) onClose(ev);
    });
    // 'error' is always followed by 'close'.
  }

  /**
   * The server ended the connection's session: 4001 "token expired", 4005 "token revoked",
   * 4003 "banned" (an administrator). (4004 "kicked" is not one: the page reconnects.)
   */
  var AUTH_CLOSE = { 4001: 'expired', 4005: 'revoked', 4003: 'banned' };

  function onClose(ev) {
    state.ws = null;
    state.open = false;
    state.resume = null;
    state.lastClose = { code: ev.code, reason: ev.reason || '' };
    state.control.clear();
    failAllPending('The connection closed before the server answered; please send again');
    if (AUTH_CLOSE[ev.code]) {
      ui.signedOut(AUTH_CLOSE[ev.code]); // stops the page: no reconnect
      return;
    }
    state.failures += 1;
    // Refused before it opened: with accounts, maybe for the token (the upgrade's 401 is not
    // visible to the page). The shared page asks, and signs out if so.
    if (!state.opened && ui.authRequired()) ui.checkSession();
    var delay = C.backoffDelay(state.failures, cfg);
    state.delays.push(delay);
    if (state.delays.length > 50) state.delays.shift();
    var why = 'closed' + (ev.code ? ' (' + ev.code + (ev.reason ? ' ' + ev.reason : '') + ')' : '');
    var when = delay === 0 ? 'reconnecting now' : 'reconnecting in ' + C.seconds(delay);
    ui.setStatus('error', 'Disconnected: ' + why + '; ' + when + ' — ' +
      state.failures + ' failed in a row', 'offline · retrying', delay);
    ui.line('Disconnected: ' + why + '; ' + when +
      (state.lastId !== null ? ' (will resume after message ' + state.lastId + ')' : '') + '.');
    var room = ui.room;
    if (state.opened || room === C.GENERAL) {
      state.timer = setTimeout(connect, delay);
      return;
    }
    // Refused before it opened, in a room: maybe the room refuses the page (private, not in
    // the token's rooms, its name), which the browser does not show. Ask the room before
    // retrying, so a refused room is left with the server's reason instead of retried forever.
    var probe = {};
    state.probing = probe;
    state.timer = setTimeout(function () {
      ui.probeRoom(room).then(function () {
        if (state.probing !== probe) return; // stopped, or connected meanwhile
        state.probing = null;
        // Refused: the page went back to general (enter() left this reconnect to us).
        if (!state.ws) connect();
      });
    }, delay);
  }

  /**
   * Follow another room on the same connection: leave the old one, join the new one (the same
   * room again after a rename: leave it and join it under the new name). Without an open
   * connection the next one opens in the room.
   */
  function enter(room, previous) {
    state.lastId = null;
    state.serverEpoch = null;
    state.epoch = 0;
    state.resume = null;
    state.messages = [];
    var ws = state.ws;
    state.connectsHere = ws ? 1 : 0;
    var gone = state.gone;
    state.gone = null;
    if (ws && ws.readyState === WebSocket.OPEN) {
      // (Not a room the server already took the connection out of.)
      if (previous !== null && previous !== gone) control({ type: 'leave', room: previous });
      control({ type: 'join', room: room, user: ui.user() });
    } else if (ws) {
      // Still connecting, to the old room: start over in the new one.
      state.ws = null;
      ws.close();
      state.connectsHere = 0;
      connect();
    } else if (state.timer === null) {
      connect();
    } // else: waiting to reconnect; it will open in `room`
  }

  /** Signed out: close the connection and cancel the retry, until the next enter(). */
  function stop() {
    clearTimeout(state.timer);
    state.timer = null;
    state.probing = null;
    var ws = state.ws;
    state.ws = null;
    state.open = false;
    state.resume = null;
    state.control.clear();
    failAllPending('Signed out');
    if (ws) ws.close();
  }

  function send(room, user, text) {
    var ws = state.ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) {
      return { ok: false, error: 'Not connected to the server; try again in a moment' };
    }
    return new Promise(function (resolve) {
      state.refSeq += 1;
      var p = { ref: state.refSeq, resolve: resolve, timer: null };
      p.timer = setTimeout(function () {
        settle(p, { ok: false, error: 'The server did not answer; please send again' });
      }, POST_TIMEOUT_MS);
      state.pending.set(p.ref, p);
      var frame = { type: 'post', user: user, text: text, ref: p.ref };
      if (room !== C.GENERAL) frame.room = room;
      ws.send(JSON.stringify(frame));
    });
  }

  var ui = C.mountChat({
    enter: enter,
    stop: stop,
    send: send,
    // Skip the backoff wait: open the next connection now (unless one is opening already).
    reconnect: function () {
      if (!state.ws) connect();
    },
    // The new message arrives as a `msg` frame, like everybody else's.
    typing: function (room, user) {
      if (state.ws && state.ws.readyState === WebSocket.OPEN) {
        state.ws.send(JSON.stringify({ type: 'typing', room: room, user: user }));
      }
    },
    debug: {
      get open() { return state.open; },
      get readyState() { return state.ws ? state.ws.readyState : WebSocket.CLOSED; },
      get protocol() { return state.ws ? state.ws.protocol : ''; },
      get failures() { return state.failures; },
      get connects() { return state.connects; },
      get opens() { return state.opens; },
      get histories() { return state.histories; },
      get frames() { return state.frames; },
      get errors() { return state.errors; },
      get deleted() { return state.deleted; },
      get resets() { return state.resets; },
      get truncated() { return state.truncated; },
      get epoch() { return state.epoch; },
      get lastId() { return state.lastId; },
      get last() { return state.lastId; },
      get serverEpoch() { return state.serverEpoch; },
      get urls() { return state.urls.slice(); },
      get resumedAfter() { return state.resume ? state.resume.after : null; },
      get missed() { return state.resume ? missedCount(state.resume) : null; },
      get delays() { return state.delays.slice(); },
      get lastClose() { return state.lastClose; },
      get pending() { return state.pending.size; },
      get count() { return state.messages.length; },
      config: cfg
    }
  });
  ui.start();
})();
