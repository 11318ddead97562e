/*
 * rtchat polling client: short polling, upgraded to long polling when the server
 * supports `GET /poll?since=ID`.
 *
 * - Only one request is ever in flight: the next poll is scheduled with setTimeout
 *   after the previous one finished (never setInterval).
 * - Short polling every `interval` ms (default 3000).
 * - A response with a numeric `last` means the server understands `since`: from then
 *   on the page long-polls `GET /poll?since=<last>` (with `&epoch=<epoch>` when the server
 *   names the epoch of its history) and re-issues it right after each answer, merging new
 *   messages (dedupe by id, newest 50 kept) and honouring `more`. An answer of another
 *   epoch, or with `reset: true`, replaces the list (the server restarted with an empty
 *   store). The course's original server (only `{"msg": [...]}`) keeps getting short polls.
 * - Errors (network failure or HTTP status >= 400) back off: retry at once after the
 *   first failure, then wait interval + n * step (n = consecutive failures - 1),
 *   capped at `cap`, with +-20 % jitter; reset on success. After a failure the next
 *   request re-reads the whole list (no `since`), so a restarted server leaves no gap.
 * - Paused while the tab is hidden; polls at once when it becomes visible again.
 * - Rooms: `general` is the course's `/poll`, exactly as above. Any other room is
 *   `/rooms/{room}/poll` (the same contract) with `?user=<name>`, which makes the page present
 *   in the room for the server's presence window; the member list is re-read with the room
 *   list (polling gets no presence events), and typing is sent (`POST /rooms/{room}/typing`)
 *   but never received: only streaming clients are told who types.
 *
 * - Accounts (`rtchat serve --auth token`): fetch sends the session cookie; a 401 (the session
 *   was revoked or expired) signs the page out (RtChat's signedOut), which stops polling
 *   (stop()) until it signs in again. A 403 `not_a_member` / `room_not_allowed` in a room: the
 *   page was removed from it (a held long poll ended: it turned private) or may not join it; it
 *   says so and goes to general, without retrying. Messages can be deleted then, which a long
 *   poll (only what is new) does not show: once a hold's length (`timeout`, 25 s by default)
 *   has passed since the last full read, the next request re-reads the whole list (no
 *   `since`), which no longer has a deleted message.
 *
 * Tuning for tests via the page URL: ?interval=MS&step=MS&cap=MS&timeout=S&jitter=F
 * (timeout = the long-poll timeout passed to the server; jitter = fraction, 0.2 default).
 * Read-only debug hook: window.rtchatDebug.
 */
(function () {
  'use strict';

  var C = window.RtChat;
  var POLL_URL = '/poll';

  var numParam = C.numParam;
  var seconds = C.seconds;

  var cfg = Object.freeze({
    interval: numParam('interval', 3000),
    step: numParam('step', 5000),
    cap: numParam('cap', 30000),
    timeout: numParam('timeout', null), // seconds; null = let the server pick (25 s)
    jitter: Math.min(numParam('jitter', 0.2), 1)
  });

  /** Give up on a request after this long: a short poll, and a long poll on top of its hold. */
  var REQUEST_GRACE_MS = 15000;
  /** Client-side limit for a long poll whose hold the server picks (its default is 25 s). */
  var SERVER_HOLD_LIMIT_MS = 120000;
  /** A long poll that comes back empty faster than this was not held: don't spin on it. */
  var MIN_LONG_POLL_MS = 250;

  var state = {
    mode: 'short',       // 'short' | 'long'
    failures: 0,         // consecutive failed requests
    requests: 0,         // GET /poll requests issued so far
    inFlight: false,
    inFlightIsLong: false,
    last: null,          // highest id we have (long mode only)
    epoch: null,         // the epoch of the server's history `last` belongs to, if named
    resync: false,       // next request: full list, no `since`
    pollSoon: false,     // poll again right after the in-flight request
    timer: null,
    nextDelay: null,
    delays: [],          // the last scheduled delays (ms), oldest first, for tests
    more: 0,             // how many responses said `more: true`
    stopped: false,      // signed out (--auth token): no polling until the next enter()
    gen: 0,              // bumped on entering a room: answers of an older one are dropped
    abort: null,         // aborts the request in flight
    answered: false,     // the current room answered once (the page is in it)
    lastError: '',
    lastFull: 0,         // when the last request without `since` went out (ms)
    rereads: 0,          // full reads made only to see deletions (--auth token)
    messages: []         // newest first
  };

  /** How often (ms) a long-polling page re-reads the whole list with --auth token: one hold. */
  function fullEvery() {
    return cfg.timeout !== null ? Math.max(1000, cfg.timeout * 1000) : 25000;
  }

  function isHidden() {
    return document.visibilityState === 'hidden';
  }

  /** Delay before retry number `failures` (1 = the first failure: retry at once). */
  function backoffDelay(failures) {
    if (failures <= 1) return 0;
    var base = Math.min(cfg.cap, cfg.interval + (failures - 1) * cfg.step);
    var factor = 1 - cfg.jitter + 2 * cfg.jitter * Math.random();
    return Math.max(0, Math.round(base * factor));
  }

  /** GET a poll answer; `ctl` (an AbortController) also aborts it after `timeoutMs`. */
  function fetchJson(url, timeoutMs, ctl) {
    var timer = setTimeout(function () { ctl.abort(); }, timeoutMs);
    return fetch(url, {
      cache: 'no-store',
      headers: { Accept: 'application/json' },
      signal: ctl.signal
    }).then(function (res) {
      return res.text().then(function (raw) {
        var body = null;
        try { body = raw ? JSON.parse(raw) : null; } catch (e) { body = null; }
        if (!res.ok) {
          var err = new Error(C.responseError(res, body));
          err.status = res.status;
          err.code = body && typeof body.code === 'string' ? body.code : '';
          throw err;
        }
        if (body === null || typeof body !== 'object' || !Array.isArray(body.msg)) {
          throw new Error('unexpected response from server');
        }
        return body;
      });
    }, function (err) {
      if (err && err.name === 'AbortError') throw new Error('request timed out');
      throw new Error('network error' + (err && err.message ? ' (' + err.message + ')' : ''));
    }).finally(function () {
      clearTimeout(timer);
    });
  }

  /** The room's poll endpoint (GET and POST): general is the course's /poll. */
  function pollUrl(room) {
    return room === C.GENERAL ? POLL_URL : C.roomPath(room, 'poll');
  }

  function schedule(delay) {
    clearTimeout(state.timer);
    state.timer = null;
    state.nextDelay = null;
    if (isHidden()) return; // paused; visibilitychange restarts polling
    state.nextDelay = delay;
    state.delays.push(delay);
    if (state.delays.length > 50) state.delays.shift();
    state.timer = setTimeout(poll, delay);
  }

  function poll() {
    clearTimeout(state.timer);
    state.timer = null;
    state.nextDelay = null;
    if (state.stopped) return; // signed out
    if (state.inFlight) { state.pollSoon = true; return; }
    if (isHidden()) return;

    // --auth token: messages can be deleted, and a long poll only brings what is new; so the
    // whole list is re-read (no `since`) once a hold's length has passed since the last full
    // read: a deleted message leaves the list then.
    var reread = state.mode === 'long' && ui.authRequired() && Date.now() - state.lastFull >= fullEvery();
    var longPoll = state.mode === 'long' && !state.resync && !reread && typeof state.last === 'number';
    if (!longPoll) {
      state.lastFull = Date.now();
      if (reread && !state.resync) state.rereads += 1;
    }
    var room = ui.room;
    var general = room === C.GENERAL;
    var query = general ? [] : [['user', ui.user()]];
    var hold = 0;
    if (longPoll) {
      query.push(['since', state.last], ['epoch', state.epoch], ['timeout', cfg.timeout]);
      hold = cfg.timeout !== null ? cfg.timeout * 1000 : SERVER_HOLD_LIMIT_MS;
    }
    var url = C.withQuery(pollUrl(room), query);

    var gen = state.gen;
    var ctl = new AbortController();
    state.abort = function () { ctl.abort(); };
    state.inFlight = true;
    state.inFlightIsLong = longPoll;
    state.requests += 1;
    var started = Date.now();

    fetchJson(url, hold + REQUEST_GRACE_MS, ctl).then(function (data) {
      if (gen !== state.gen) return; // an answer about the room the page has left
      state.inFlight = false;
      onAnswer(data, longPoll, Date.now() - started);
    }, function (err) {
      if (gen !== state.gen) return;
      state.inFlight = false;
      onFailure(err);
    });
  }

  /** Follow another room (or the same one under a new name): drop the poll in flight, start over. */
  function enter(room) {
    state.stopped = false;
    state.gen += 1;
    if (state.abort) state.abort();
    state.abort = null;
    clearTimeout(state.timer);
    state.timer = null;
    state.inFlight = false;
    state.pollSoon = false;
    state.last = null;
    state.epoch = null;
    state.resync = false;
    state.answered = false;
    state.messages = [];
    if (!isHidden()) poll();
  }

  function onAnswer(data, longPoll, elapsed) {
    var supportsSince = typeof data.last === 'number' && isFinite(data.last);
    var more = supportsSince && data.more === true;
    // The server lost the history we were following (e.g. it restarted). With
    // `reset: true` it sends its whole list instead; a `last` below what we asked
    // for without that means: re-read the full list at once.
    var epoch = typeof data.epoch === 'string' && data.epoch ? data.epoch : null;
    var otherEpoch = epoch !== null && state.epoch !== null && epoch !== state.epoch;
    var reset = longPoll && supportsSince && (data.reset === true || otherEpoch);
    var wentBack = longPoll && supportsSince && !reset && data.last < state.last;

    if (!longPoll || !supportsSince || reset) {
      // A full list (first request, short polling, a resync after an error, a reset).
      state.messages = C.mergeMessages([], data.msg, C.HISTORY);
    } else if (!wentBack) {
      state.messages = C.mergeMessages(state.messages, data.msg, C.HISTORY);
    }

    state.mode = supportsSince ? 'long' : 'short';
    state.last = supportsSince ? data.last : null;
    state.epoch = supportsSince ? epoch : null;
    state.resync = wentBack;
    state.failures = 0;
    state.lastError = '';
    if (more) state.more += 1;

    ui.render(state.messages);
    if (!state.answered) {
      state.answered = true;
      ui.joined(ui.room);
    }

    if (state.mode === 'long') {
      ui.setStatus('ok', 'Connected: long polling, new messages arrive at once', 'live · long polling');
    } else {
      ui.setStatus('ok', 'Connected: polling every ' + seconds(cfg.interval), 'live · polling');
    }

    var delay;
    if (state.pollSoon || more || wentBack) {
      delay = 0;
    } else if (state.mode === 'long') {
      var empty = data.msg.length === 0;
      // Guard against a server that answers long polls at once: don't hammer it.
      delay = longPoll && empty && elapsed < MIN_LONG_POLL_MS ? cfg.interval : 0;
    } else {
      delay = cfg.interval;
    }
    state.pollSoon = false;
    schedule(delay);
  }

  /** Signed out (--auth token): drop the poll in flight and poll no more until the next enter(). */
  function stop() {
    state.stopped = true;
    state.gen += 1;
    if (state.abort) state.abort();
    state.abort = null;
    clearTimeout(state.timer);
    state.timer = null;
    state.nextDelay = null;
    state.inFlight = false;
    state.pollSoon = false;
  }

  function onFailure(err) {
    if (err && err.status === 401 && ui.authRequired()) {
      ui.signedOut(err.code); // calls stop()
      return;
    }
    var room = ui.room;
    if (err && err.status === 403 && room !== C.GENERAL &&
        (err.code === 'not_a_member' || err.code === 'room_not_allowed')) {
      // --auth token: the room refuses the page (private, or not in the token's rooms). In
      // it until now (a held long poll ended with 403: it turned private, or the user was
      // removed): removed; else the join is refused. Either way back to general, no retry.
      if (state.answered) ui.removed(room, err.message);
      else ui.refused(room, err.message);
      return;
    }
    state.failures += 1;
    state.resync = true;
    state.pollSoon = false;
    state.lastError = (err && err.message) || String(err);
    var delay = backoffDelay(state.failures);
    var label = 'Connection failing (' + state.lastError + '); ' +
      (delay === 0 ? 'retrying now' : 'retrying in ' + seconds(delay)) +
      ' — ' + state.failures + ' failed in a row';
    ui.setStatus('error', label, 'offline · retrying', delay);
    schedule(delay);
  }

  /** After sending: make sure the new message shows up soon. */
  function afterSend() {
    if (!state.inFlight) {
      poll();
    } else if (!state.inFlightIsLong) {
      state.pollSoon = true;
    }
    // A held long poll answers by itself when the message is stored.
  }

  document.addEventListener('visibilitychange', function () {
    if (isHidden()) {
      clearTimeout(state.timer);
      state.timer = null;
      state.nextDelay = null;
    } else if (!state.inFlight) {
      poll();
    }
  });

  window.addEventListener('online', function () {
    if (!state.inFlight && !isHidden()) poll();
  });

  var ui = C.mountChat({
    enter: enter,
    stop: stop,
    endpoint: pollUrl,
    send: function (room, user, text) {
      return C.postMessage(pollUrl(room), user, text).then(function (result) {
        if (result.ok && room === ui.room) afterSend();
        return result;
      });
    },
    typing: C.postTyping,
    // Skip the backoff wait (the network is back, the tab is looked at, "Reconnect now").
    reconnect: function () {
      if (!state.inFlight && !isHidden()) poll();
    },
    pollPresence: true,
    debug: {
      get mode() { return state.mode; },
      get failures() { return state.failures; },
      get requests() { return state.requests; },
      get inFlight() { return state.inFlight; },
      get last() { return state.last; },
      get epoch() { return state.epoch; },
      get more() { return state.more; },
      get nextDelay() { return state.nextDelay; },
      get delays() { return state.delays.slice(); },
      get paused() { return isHidden() && !state.inFlight && state.timer === null; },
      get lastError() { return state.lastError; },
      get rereads() { return state.rereads; },
      get count() { return state.messages.length; },
      config: cfg
    }
  });
  ui.start();
})();
