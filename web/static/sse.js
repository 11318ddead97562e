/*
 * rtchat Server-Sent Events client: the chat over `EventSource('/events')`.
 *
 * - Every message is one event: `id:` its position `EPOCH:ID` (the epoch of the server's
 *   history, then the message id), `data:` the message JSON. A fresh stream brings the
 *   history first (oldest first), then the live messages. The page shows them newest at the bottom,
 *   the newest 50.
 * - EventSource reconnects by itself and sends `Last-Event-ID` (`EPOCH:ID`); the server
 *   answers with exactly the messages after it. After a reconnect a status line says where
 *   it resumed. If the browser gives up (readyState CLOSED), the page opens a new
 *   EventSource with `?since=<newest id>&epoch=<its epoch>` after a backoff (at once, then
 *   base, 2×base, … capped, ±jitter).
 * - `event: reset` (`{"last":N,"epoch":E}`): the position named another epoch (the server
 *   restarted with an empty store) and its ids start again. The messages already shown
 *   stay, marked "before the server restarted"; messages are keyed by id + time
 *   (RtChat.messageKey), and each restart starts a new page "epoch" that sorts above the
 *   previous ones.
 * - `event: truncated` (`{"after":N}`): the messages right after N are no longer kept.
 * - Posts with `POST /poll`.
 * - Rooms: `general` is the course's `/events` (and `POST /poll`), exactly as above. Any
 *   other room is `/rooms/{room}/events?user=<name>` (the same stream, plus `event: presence`
 *   `{room, joined, left}` and `event: typing` `{room, user}`), posts go to
 *   `POST /rooms/{room}/poll`, typing to `POST /rooms/{room}/typing`. Entering another room
 *   closes the EventSource and opens the room's.
 * - Deletions (`rtchat serve --auth token`): `event: deleted` (`{room, id}`, no `id:`) takes the
 *   message out of the list at once.
 *
 * - "Reconnect now" (offered while offline): closes the EventSource and opens a new one at
 *   once, resuming after the newest id held (`?since=&epoch=`), instead of waiting out the
 *   browser's `retry:` delay or the page's backoff.
 *
 * - Accounts (`rtchat serve --auth token`): EventSource sends the session cookie. A final
 *   `event: revoked` / `event: expired` signs the page out (the EventSource is closed, no
 *   reconnect); when the browser gives up on a stream (a 401 is not visible to the page), the
 *   shared page asks whether the session still holds (RtChat's checkSession). A final
 *   `event: left` (`{room, reason}`: the room turned private, or the user was removed from it)
 *   closes the EventSource (no reconnect into the room) and the page says so and goes to general.
 *
 * Tuning for tests via the page URL: ?base=MS&cap=MS&jitter=F.
 * Read-only debug hook: window.rtchatDebug.
 */
(function () {
  'use strict';

  var C = window.RtChat;
  var EVENTS_URL = '/events';
  var POST_URL = '/poll';

  var cfg = Object.freeze({
    base: C.numParam('base', 1000),
    cap: C.numParam('cap', 30000),
    jitter: Math.min(C.numParam('jitter', 0.2), 1)
  });

  var state = {
    es: null,
    epoch: 0,          // bumped by every `reset`
    lastId: null,      // newest id seen from the current server run
    serverEpoch: null, // the server's name for that run (from the event ids `EPOCH:ID`)
    byKey: new Map(),  // messageKey -> message (with its epoch)
    messages: [],      // newest first, at most HISTORY
    opens: 0,          // `open` events (1 = the first connection)
    opensHere: 0,      // `open` events in the current room
    errors: 0,         // `error` events
    resets: 0,
    truncated: 0,
    truncatedAfter: null,
    deleted: 0,        // `deleted` events
    failures: 0,       // consecutive failed connections of our own EventSources
    recreated: 0,      // EventSources the page opened after the browser gave up
    reconnects: 0,     // "Reconnect now": EventSources opened at once instead of waiting
    timer: null,
    delays: [],
    lastError: ''
  };

  var decorate = C.epochDecorator(function () { return state.epoch; });

  function render() {
    ui.render(state.messages, decorate);
  }

  /** The event stream of `room`: general is the course's /events. */
  function eventsUrl(room) {
    return room === C.GENERAL ? EVENTS_URL : C.roomPath(room, 'events');
  }

  function onMessage(ev) {
    var raw;
    try { raw = JSON.parse(ev.data); } catch (e) { return; }
    var m = C.sanitize([raw])[0];
    if (!m) return;
    m.epoch = state.epoch; // still on the server: belongs to the current run
    var key = C.messageKey(m);
    state.byKey.set(key, m);
    // `EPOCH:ID` (a bare `ID` from servers before epochs).
    var position = String(ev.lastEventId || '');
    var colon = position.lastIndexOf(':');
    if (colon > 0) state.serverEpoch = position.slice(0, colon);
    var id = Number(position.slice(colon + 1));
    if (position !== '' && isFinite(id)) state.lastId = id;
    else if (typeof m.id === 'number') state.lastId = m.id;
    state.messages = C.mergeMessages([], Array.from(state.byKey.values()), C.HISTORY);
    if (state.byKey.size > C.HISTORY) {
      // Forget what fell off the list.
      var keep = new Set(state.messages.map(C.messageKey));
      state.byKey.forEach(function (_, k) { if (!keep.has(k)) state.byKey.delete(k); });
    }
    render();
  }

  /** The JSON data of a named event, or {} when it is not an object. */
  function dataOf(ev) {
    try {
      var info = JSON.parse(ev.data);
      return info && typeof info === 'object' ? info : {};
    } catch (e) {
      return {};
    }
  }

  function onReset(ev) {
    var info = dataOf(ev);
    state.resets += 1;
    state.epoch += 1;
    state.lastId = null;
    state.serverEpoch = typeof info.epoch === 'string' && info.epoch ? info.epoch : null;
    var had = state.messages.length;
    render();
    var fresh = info.last === 0 ? ' with no messages yet' : '';
    ui.line('The server restarted' + fresh + ': its message ids start again. ' +
      (had ? 'The ' + had + ' message' + (had === 1 ? '' : 's') + ' shown before are marked "' +
        C.BEFORE_RESTART + '".' : ''));
  }

  function onTruncated(ev) {
    var info = dataOf(ev);
    state.truncated += 1;
    var after = typeof info.after === 'number' ? info.after : state.lastId;
    state.truncatedAfter = after;
    ui.line('Resumed after message ' + after + ', but the server no longer keeps some of the ' +
      'messages that followed: those are missing here.');
  }

  // `event: resumed` (`{"after":N,"count":K,"last":L,"epoch":E}`): the server has sent every
  // missed message.
  function onResumed(ev) {
    var info = dataOf(ev);
    if (typeof info.after !== 'number' || typeof info.count !== 'number') return;
    if (state.truncated > 0 && state.truncatedAfter === info.after) return; // keep that warning
    ui.line(C.resumedText(info.after, info.count));
  }

  function onOpen() {
    state.opens += 1;
    state.opensHere += 1;
    state.failures = 0;
    state.lastError = '';
    clearTimeout(state.timer);
    state.timer = null;
    ui.setStatus('ok', 'Connected: EventSource ' + eventsUrl(ui.room) + ' is open', 'live · SSE');
    ui.loaded();
    ui.joined(ui.room);
    if (state.opensHere > 1) {
      // The server announces the end of the catch-up with `event: resumed`.
      ui.line(state.lastId !== null
        ? 'Reconnected after message ' + state.lastId + ' — catching up…'
        : 'Reconnected — history reloaded.');
    }
  }

  /**
   * The browser gave up on a room's stream, which EventSource does not explain: ask once
   * with fetch, and if the server refuses the room itself (4xx: its name, --max-rooms) say so
   * and leave it instead of retrying forever.
   */
  function probeRefusal(url, room) {
    var ctl = new AbortController();
    return fetch(url, { cache: 'no-store', signal: ctl.signal }).then(function (res) {
      if (res.status === 401 && ui.authRequired()) {
        // Not the room: the session (--auth token).
        return res.json().catch(function () { return null; }).then(function (body) {
          ui.signedOut(body && body.code);
          return true;
        });
      }
      if (res.status < 400 || res.status >= 500) {
        ctl.abort();
        return false;
      }
      return res.json().catch(function () { return null; }).then(function (body) {
        ui.refused(room, C.responseError(res, body));
        return true;
      });
    }, function () { return false; });
  }

  function onError() {
    state.errors += 1;
    var es = state.es;
    if (!es) return;
    if (es.readyState === EventSource.CONNECTING) {
      // The browser reconnects by itself (after the server's `retry:` hint).
      ui.setStatus('error', 'Disconnected; the browser is reconnecting…', 'offline · retrying', true);
      ui.line('Connection lost — reconnecting' +
        (state.lastId !== null ? ' (will resume after message ' + state.lastId + ')' : '') + '…');
      return;
    }
    // CLOSED: the browser gave up (an HTTP error or a wrong content type). Start over.
    es.close();
    state.es = null;
    // With accounts, maybe a 401: the shared page asks, and signs out (stop()) if so.
    if (ui.authRequired()) ui.checkSession();
    state.failures += 1;
    state.lastError = 'the event stream failed';
    var delay = C.backoffDelay(state.failures, cfg);
    state.delays.push(delay);
    if (state.delays.length > 50) state.delays.shift();
    var when = delay === 0 ? 'retrying now' : 'retrying in ' + C.seconds(delay);
    ui.setStatus('error', 'Disconnected (' + state.lastError + '); ' + when + ' — ' +
      state.failures + ' failed in a row', 'offline · retrying', delay);
    ui.line('Disconnected; ' + when + '.');
    var room = ui.room;
    var retry = function () { state.recreated += 1; open(); };
    if (room === C.GENERAL) {
      state.timer = setTimeout(retry, delay);
      return;
    }
    var url = es.url;
    state.timer = setTimeout(function () {
      probeRefusal(url, room).then(function (refused) {
        if (!refused && ui.room === room && !state.es) retry();
      });
    }, delay);
  }

  function open() {
    clearTimeout(state.timer);
    state.timer = null;
    if (typeof window.EventSource !== 'function') {
      ui.setStatus('error', 'This browser has no EventSource', 'unsupported');
      return;
    }
    var room = ui.room;
    var query = room === C.GENERAL ? [] : [['user', ui.user()]];
    if (state.lastId !== null) query.push(['since', state.lastId], ['epoch', state.serverEpoch]);
    var es = new EventSource(C.withQuery(eventsUrl(room), query));
    state.es = es;
    es.addEventListener('open', onOpen);
    es.addEventListener('error', onError);
    es.addEventListener('message', onMessage);
    es.addEventListener('reset', onReset);
    es.addEventListener('truncated', onTruncated);
    es.addEventListener('resumed', onResumed);
    es.addEventListener('presence', function (ev) { ui.presence(room, dataOf(ev)); });
    es.addEventListener('typing', function (ev) { ui.typing(room, dataOf(ev).user); });
    // --auth token: `event: deleted` {room, id}: the message is gone (from this server run).
    es.addEventListener('deleted', function (ev) {
      if (state.es !== es) return;
      var info = dataOf(ev);
      if (typeof info.id !== 'number' || (typeof info.room === 'string' && info.room !== room)) return;
      state.deleted += 1;
      state.byKey.forEach(function (m, k) {
        if (m.id === info.id && (m.epoch || 0) === state.epoch) state.byKey.delete(k);
      });
      state.messages = C.removeMessage(state.messages, info.id, state.epoch);
      ui.deleted(room, info.id);
    });
    // --auth token: the server ended the session (logout, expiry); the stream ends after it.
    es.addEventListener('revoked', function () { if (state.es === es) ui.signedOut('revoked'); });
    es.addEventListener('expired', function () { if (state.es === es) ui.signedOut('expired'); });
    es.addEventListener('banned', function () { if (state.es === es) ui.signedOut('banned'); });
    // --auth token: the server took the page out of the room (it turned private, or the user
    // was removed from it); the stream ends after it. Closed here, so the browser does not
    // reconnect into the room; the page says why and goes to general.
    es.addEventListener('left', function (ev) {
      if (state.es !== es) return;
      var info = dataOf(ev);
      es.close();
      state.es = null;
      clearTimeout(state.timer);
      state.timer = null;
      ui.removed(room, typeof info.reason === 'string' ? info.reason : ''); // this stream's room
    });
  }

  /** Signed out: close the stream and cancel the retry, until the next enter(). */
  function stop() {
    clearTimeout(state.timer);
    state.timer = null;
    if (state.es) state.es.close();
    state.es = null;
  }

  /** Follow another room (or the same one under a new name): a new EventSource, a fresh history. */
  function enter() {
    if (state.es) state.es.close();
    state.es = null;
    clearTimeout(state.timer);
    state.timer = null;
    state.epoch = 0;
    state.lastId = null;
    state.serverEpoch = null;
    state.byKey = new Map();
    state.messages = [];
    state.opensHere = 0;
    state.failures = 0;
    state.truncatedAfter = null;
    ui.setStatus('connecting', 'Connecting to ' + eventsUrl(ui.room) + '…', 'connecting');
    open();
  }

  var ui = C.mountChat({
    enter: enter,
    stop: stop,
    endpoint: eventsUrl,
    send: function (room, user, text) {
      return C.postMessage(room === C.GENERAL ? POST_URL : C.roomPath(room, 'poll'), user, text);
      // The new message arrives as the next event.
    },
    typing: C.postTyping,
    // Skip the wait (the browser's own retry, or the page's backoff): a new EventSource now.
    reconnect: function () {
      if (state.es && state.es.readyState === EventSource.OPEN) return;
      if (state.es) state.es.close();
      state.es = null;
      state.reconnects += 1;
      ui.setStatus('connecting', 'Reconnecting to ' + eventsUrl(ui.room) + '…', 'connecting');
      open();
    },
    debug: {
      get readyState() { return state.es ? state.es.readyState : EventSource.CLOSED; },
      get epoch() { return state.epoch; },
      get lastId() { return state.lastId; },
      get serverEpoch() { return state.serverEpoch; },
      get opens() { return state.opens; },
      get errors() { return state.errors; },
      get resets() { return state.resets; },
      get truncated() { return state.truncated; },
      get deleted() { return state.deleted; },
      get failures() { return state.failures; },
      get recreated() { return state.recreated; },
      get reconnects() { return state.reconnects; },
      get delays() { return state.delays.slice(); },
      get count() { return state.messages.length; },
      config: cfg
    }
  });
  ui.start();
})();
