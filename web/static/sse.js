/*
 * rtchat Server-Sent Events client: the chat over `EventSource('/events')`.
 *
 * - Every message is one event: `id:` its position `EPOCH:ID` (the epoch of the server's
 *   history, then the message id), `data:` the message JSON. A fresh stream brings the
 *   history first (oldest first), then the live messages. The page shows them newest first,
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
 *
 * Tuning for tests via the page URL: ?base=MS&cap=MS&jitter=F.
 * Read-only debug hook: window.rtchatDebug.
 */
(function () {
  'use strict';

  var C = window.RtChat;
  var EVENTS_URL = '/events';
  var POST_URL = '/poll';
  var BEFORE_RESTART = 'before the server restarted';

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
    errors: 0,         // `error` events
    resets: 0,
    truncated: 0,
    failures: 0,       // consecutive failed connections of our own EventSources
    recreated: 0,      // EventSources the page opened after the browser gave up
    timer: null,
    delays: [],
    lastError: ''
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

  /** Mark (or unmark) a message element as coming from an earlier server run. */
  function decorate(li, m) {
    var old = (m.epoch || 0) < state.epoch;
    li.classList.toggle('msg-before-restart', old);
    var note = li.querySelector('.msg-note');
    if (old && !note) {
      note = document.createElement('span');
      note.className = 'msg-note';
      note.textContent = BEFORE_RESTART;
      li.querySelector('.msg-meta').appendChild(note);
    } else if (!old && note) {
      note.remove();
    }
  }

  function render() {
    C.renderMessages(els.list, state.messages, els.empty, decorate);
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

  function onReset(ev) {
    var info = {};
    try { info = JSON.parse(ev.data) || {}; } catch (e) { info = {}; }
    state.resets += 1;
    state.epoch += 1;
    state.lastId = null;
    state.serverEpoch = typeof info.epoch === 'string' && info.epoch ? info.epoch : null;
    var had = state.messages.length;
    render();
    var fresh = info.last === 0 ? ' with no messages yet' : '';
    setLine('The server restarted' + fresh + ': its message ids start again. ' +
      (had ? 'The ' + had + ' message' + (had === 1 ? '' : 's') + ' shown before are marked "' +
        BEFORE_RESTART + '".' : ''));
  }

  function onTruncated(ev) {
    var info = {};
    try { info = JSON.parse(ev.data) || {}; } catch (e) { info = {}; }
    state.truncated += 1;
    var after = typeof info.after === 'number' ? info.after : state.lastId;
    state.truncatedAfter = after;
    setLine('Resumed after message ' + after + ', but the server no longer keeps some of the ' +
      'messages that followed: those are missing here.');
  }

  // `event: resumed` (`{"after":N,"count":K,"last":L,"epoch":E}`): the server has sent every
  // missed message.
  function onResumed(ev) {
    var info = {};
    try { info = JSON.parse(ev.data); } catch (e) { return; }
    if (typeof info.after !== 'number' || typeof info.count !== 'number') return;
    if (state.truncated > 0 && state.truncatedAfter === info.after) return; // keep that warning
    setLine('Resumed after message ' + info.after + ' — ' +
      (info.count === 0 ? 'nothing missed.' : info.count + ' missed.'));
  }

  function onOpen() {
    state.opens += 1;
    state.failures = 0;
    state.lastError = '';
    clearTimeout(state.timer);
    state.timer = null;
    C.setPresence(els.dot, 'ok', 'Connected: EventSource ' + EVENTS_URL + ' is open',
      els.status, 'live · SSE');
    if (els.empty) els.empty.textContent = 'No messages yet.';
    if (state.opens > 1) {
      // The server announces the end of the catch-up with `event: resumed`.
      setLine(state.lastId !== null
        ? 'Reconnected after message ' + state.lastId + ' — catching up…'
        : 'Reconnected — history reloaded.');
    }
  }

  function onError() {
    state.errors += 1;
    var es = state.es;
    if (!es) return;
    if (es.readyState === EventSource.CONNECTING) {
      // The browser reconnects by itself (after the server's `retry:` hint).
      C.setPresence(els.dot, 'error', 'Disconnected; the browser is reconnecting…',
        els.status, 'offline · reconnecting');
      setLine('Connection lost — reconnecting' +
        (state.lastId !== null ? ' (will resume after message ' + state.lastId + ')' : '') + '…');
      return;
    }
    // CLOSED: the browser gave up (an HTTP error or a wrong content type). Start over.
    es.close();
    state.es = null;
    state.failures += 1;
    state.lastError = 'the event stream failed';
    var delay = C.backoffDelay(state.failures, cfg);
    state.delays.push(delay);
    if (state.delays.length > 50) state.delays.shift();
    var when = delay === 0 ? 'retrying now' : 'retrying in ' + C.seconds(delay);
    C.setPresence(els.dot, 'error', 'Disconnected (' + state.lastError + '); ' + when + ' — ' +
      state.failures + ' failed in a row', els.status, 'offline · retrying');
    setLine('Disconnected; ' + when + '.');
    state.timer = setTimeout(function () { state.recreated += 1; open(); }, delay);
  }

  function open() {
    clearTimeout(state.timer);
    state.timer = null;
    if (typeof window.EventSource !== 'function') {
      C.setPresence(els.dot, 'error', 'This browser has no EventSource', els.status, 'unsupported');
      return;
    }
    var url = EVENTS_URL + (state.lastId !== null ? '?since=' + encodeURIComponent(String(state.lastId)) : '');
    if (state.lastId !== null && state.serverEpoch !== null) {
      url += '&epoch=' + encodeURIComponent(state.serverEpoch);
    }
    var es = new EventSource(url);
    state.es = es;
    es.addEventListener('open', onOpen);
    es.addEventListener('error', onError);
    es.addEventListener('message', onMessage);
    es.addEventListener('reset', onReset);
    es.addEventListener('truncated', onTruncated);
    es.addEventListener('resumed', onResumed);
  }

  C.bindComposer({
    form: els.form,
    userInput: els.user,
    textInput: els.text,
    button: els.send,
    errorEl: els.error,
    send: function (user, text) { return C.postMessage(POST_URL, user, text); }
    // The new message arrives as the next event.
  });

  window.rtchatDebug = Object.freeze({
    get readyState() { return state.es ? state.es.readyState : EventSource.CLOSED; },
    get epoch() { return state.epoch; },
    get lastId() { return state.lastId; },
    get serverEpoch() { return state.serverEpoch; },
    get opens() { return state.opens; },
    get errors() { return state.errors; },
    get resets() { return state.resets; },
    get truncated() { return state.truncated; },
    get failures() { return state.failures; },
    get recreated() { return state.recreated; },
    get delays() { return state.delays.slice(); },
    get count() { return state.messages.length; },
    config: cfg
  });

  C.renderMessages(els.list, [], els.empty);
  open();
})();
