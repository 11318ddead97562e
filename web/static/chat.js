/*
 * rtchat shared chat helpers, used by every transport page.
 *
 * Plain browser JavaScript, no build step, no dependencies. Exposes one global:
 * `window.RtChat`. All user-provided data is put into the page with
 * textContent / createElement / setAttribute only — never innerHTML.
 */
(function () {
  'use strict';

  /** How many messages a page keeps and shows (the server's history size). */
  var HISTORY = 50;
  var USER_KEY = 'rtchat.user';

  function pad2(n) {
    return n < 10 ? '0' + n : String(n);
  }

  /**
   * Format a message time (ms since the epoch) for display: "HH:MM" for today,
   * "YYYY-MM-DD HH:MM" otherwise, local time. Returns '' for a missing/invalid time.
   */
  function formatTime(ms, now) {
    var t = Number(ms);
    if (!isFinite(t) || t <= 0) return '';
    var d = new Date(t);
    if (isNaN(d.getTime())) return '';
    var today = now ? new Date(now) : new Date();
    var hm = pad2(d.getHours()) + ':' + pad2(d.getMinutes());
    if (d.getFullYear() === today.getFullYear() &&
        d.getMonth() === today.getMonth() &&
        d.getDate() === today.getDate()) {
      return hm;
    }
    return d.getFullYear() + '-' + pad2(d.getMonth() + 1) + '-' + pad2(d.getDate()) + ' ' + hm;
  }

  function hasId(m) {
    return m != null && typeof m.id === 'number' && isFinite(m.id);
  }

  /**
   * A stable key for a message: its id (plus its time, since a restarted server
   * hands out the same ids again) when the server gives one, else its content
   * (the course's original server sends {user, text, time} without ids).
   */
  function messageKey(m) {
    if (hasId(m)) return 'id:' + m.id + '@' + String(m.time);
    return 'c:' + String(m && m.time) + '|' + String(m && m.user) + '|' + String(m && m.text);
  }

  /** Keep only well-formed message objects, with user/text coerced to strings. */
  function sanitize(list) {
    var out = [];
    if (!Array.isArray(list)) return out;
    for (var i = 0; i < list.length; i++) {
      var m = list[i];
      if (m == null || typeof m !== 'object') continue;
      var clean = {
        user: m.user == null ? '' : String(m.user),
        text: m.text == null ? '' : String(m.text),
        time: Number(m.time)
      };
      if (hasId(m)) clean.id = m.id;
      // Optional, set by pages that keep messages across server restarts (sse.js): which
      // run of the server a message came from, 0 = the first one this page saw.
      if (typeof m.epoch === 'number' && isFinite(m.epoch)) clean.epoch = m.epoch;
      out.push(clean);
    }
    return out;
  }

  /**
   * Newest first: a later server run (epoch) first, then by id when both have one, else
   * by time. Messages without an epoch count as epoch 0.
   */
  function newestFirst(a, b) {
    var ea = a.epoch || 0;
    var eb = b.epoch || 0;
    if (ea !== eb) return eb - ea;
    if (hasId(a) && hasId(b)) return b.id - a.id;
    return (Number(b.time) || 0) - (Number(a.time) || 0);
  }

  /**
   * Merge `incoming` into `current` (both newest first): dedupe by key, sort newest
   * first, keep at most `limit` (default HISTORY). Returns a new array.
   */
  function mergeMessages(current, incoming, limit) {
    var max = limit || HISTORY;
    var byKey = new Map();
    var all = sanitize(current).concat(sanitize(incoming));
    for (var i = 0; i < all.length; i++) {
      var k = messageKey(all[i]);
      if (!byKey.has(k)) byKey.set(k, all[i]);
    }
    var merged = Array.from(byKey.values());
    merged.sort(newestFirst);
    return merged.slice(0, max);
  }

  /** Build the <li> for one message. Text only: nothing is parsed as HTML. */
  function createMessageElement(m, key) {
    var li = document.createElement('li');
    li.className = 'msg';
    li.setAttribute('data-key', key);
    if (hasId(m)) li.setAttribute('data-id', String(m.id));

    var meta = document.createElement('div');
    meta.className = 'msg-meta';

    var user = document.createElement('span');
    user.className = 'msg-user';
    user.textContent = m.user;
    meta.appendChild(user);

    var when = formatTime(m.time);
    if (when) {
      var time = document.createElement('time');
      time.className = 'msg-time';
      var d = new Date(Number(m.time));
      time.setAttribute('datetime', d.toISOString());
      time.title = d.toLocaleString();
      time.textContent = when;
      meta.appendChild(time);
    }

    var text = document.createElement('p');
    text.className = 'msg-text';
    text.textContent = m.text;

    li.appendChild(meta);
    li.appendChild(text);
    return li;
  }

  /**
   * Render `msgs` (newest first) into the list element `container`. Existing
   * message elements are reused and only changes touch the DOM, so an aria-live
   * list announces just the new messages. `emptyEl` (optional) is shown when
   * there are no messages. `decorate(li, message)` (optional) is called for every
   * message element shown, new or reused, so a page can mark some of them.
   */
  function renderMessages(container, msgs, emptyEl, decorate) {
    var list = sanitize(msgs);
    var existing = new Map();
    var children = container.children;
    for (var i = 0; i < children.length; i++) {
      existing.set(children[i].getAttribute('data-key'), children[i]);
    }
    var seen = new Set();
    var wanted = [];
    for (var j = 0; j < list.length; j++) {
      var key = messageKey(list[j]);
      if (seen.has(key)) continue;
      seen.add(key);
      var el = existing.get(key) || createMessageElement(list[j], key);
      if (decorate) decorate(el, list[j]);
      wanted.push(el);
    }
    var ref = container.firstChild;
    for (var w = 0; w < wanted.length; w++) {
      if (wanted[w] === ref) {
        ref = ref.nextSibling;
      } else {
        container.insertBefore(wanted[w], ref);
      }
    }
    while (ref) {
      var next = ref.nextSibling;
      container.removeChild(ref);
      ref = next;
    }
    if (emptyEl) emptyEl.hidden = wanted.length > 0;
  }

  /**
   * Set the connection dot. state: 'ok' (green), 'error' (red), 'connecting' or
   * 'paused'. `label` is the full text for title/aria-label; `short` (optional)
   * goes into `textEl`.
   */
  function setPresence(dot, state, label, textEl, short) {
    if (!dot) return;
    dot.setAttribute('data-state', state);
    dot.setAttribute('aria-label', label);
    dot.title = label;
    if (textEl) textEl.textContent = short == null ? state : short;
  }

  /**
   * Delay (ms) before reconnect attempt number `failures` (1 = right after the first
   * failure: at once), then base, 2×base, 4×base, … capped at `cap`, ±`jitter` (a
   * fraction). opts: {base, cap, jitter}.
   */
  function backoffDelay(failures, opts) {
    if (failures <= 1) return 0;
    var base = opts.base;
    var cap = opts.cap;
    var jitter = opts.jitter == null ? 0.2 : opts.jitter;
    var d = Math.min(cap, base * Math.pow(2, Math.min(failures - 2, 30)));
    var factor = 1 - jitter + 2 * jitter * Math.random();
    return Math.max(0, Math.round(Math.min(cap * (1 + jitter), d * factor)));
  }

  /** A non-negative number from the page's query string, or `def`. */
  function numParam(name, def) {
    var raw = new URLSearchParams(window.location.search).get(name);
    if (raw === null || raw === '') return def;
    var n = Number(raw);
    return isFinite(n) && n >= 0 ? n : def;
  }

  /** "0.4 s", "12 s": a delay for people. */
  function seconds(ms) {
    var s = ms / 1000;
    return (s < 10 ? Math.round(s * 10) / 10 : Math.round(s)) + ' s';
  }

  function loadUserName() {
    try {
      return window.localStorage.getItem(USER_KEY) || '';
    } catch (e) {
      return '';
    }
  }

  function saveUserName(name) {
    try {
      window.localStorage.setItem(USER_KEY, name);
    } catch (e) {
      /* storage may be disabled; the name just isn't remembered */
    }
  }

  /** A friendly default name for a first visit. */
  function defaultUserName() {
    return 'guest-' + Math.floor(1000 + Math.random() * 9000);
  }

  /**
   * Read an error message out of a failed response: the server's {"error": "..."}
   * when present, else the HTTP status.
   */
  function responseError(res, body) {
    if (body && typeof body === 'object' && typeof body.error === 'string' && body.error) {
      return body.error;
    }
    return 'HTTP ' + res.status + (res.statusText ? ' ' + res.statusText : '');
  }

  /**
   * POST {user, text} as JSON to `url`. Resolves to {ok: true, id} or
   * {ok: false, error} (never rejects).
   */
  function postMessage(url, user, text) {
    return fetch(url, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ user: user, text: text }),
      cache: 'no-store'
    }).then(function (res) {
      return res.text().then(function (raw) {
        var body = null;
        try { body = raw ? JSON.parse(raw) : null; } catch (e) { body = null; }
        if (!res.ok) return { ok: false, error: responseError(res, body) };
        return { ok: true, id: body && body.id };
      });
    }, function (err) {
      return { ok: false, error: 'Could not reach the server (' + (err && err.message || err) + ')' };
    });
  }

  /**
   * Wire a composer form: remembers the user name in localStorage, sends on submit
   * (Enter in an input submits the form), shows errors in `errorEl`.
   * opts: {form, userInput, textInput, button, errorEl, send(user, text) -> Promise<{ok, error}>, onSent}
   */
  function bindComposer(opts) {
    var userInput = opts.userInput;
    var textInput = opts.textInput;
    var errorEl = opts.errorEl;
    var sending = false;

    var stored = loadUserName();
    userInput.value = stored || defaultUserName();
    if (!stored) saveUserName(userInput.value);
    userInput.addEventListener('change', function () { saveUserName(userInput.value); });

    function showError(msg) {
      if (errorEl) errorEl.textContent = msg || '';
    }

    opts.form.addEventListener('submit', function (ev) {
      ev.preventDefault();
      if (sending) return;
      sending = true;
      if (opts.button) opts.button.disabled = true;
      var user = userInput.value;
      var text = textInput.value;
      saveUserName(user);
      Promise.resolve(opts.send(user, text)).then(function (result) {
        if (result && result.ok) {
          showError('');
          textInput.value = '';
          if (opts.onSent) opts.onSent(result);
        } else {
          showError((result && result.error) || 'Sending failed');
        }
      }, function (err) {
        showError('Sending failed: ' + (err && err.message || err));
      }).then(function () {
        sending = false;
        if (opts.button) opts.button.disabled = false;
        textInput.focus();
      });
    });

    return { showError: showError };
  }

  /** The note on messages kept from an earlier run of a server that restarted empty. */
  var BEFORE_RESTART = 'before the server restarted';

  /**
   * A `decorate(li, m)` for renderMessages that marks messages from an earlier server run
   * (`m.epoch` below `currentEpoch()`) with the class msg-before-restart and a note.
   */
  function epochDecorator(currentEpoch) {
    return function (li, m) {
      var old = (m.epoch || 0) < currentEpoch();
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
    };
  }

  /** "Resumed after message 7 — 3 missed." (or "— nothing missed."). */
  function resumedText(after, missed) {
    return 'Resumed after message ' + after + ' — ' +
      (missed > 0 ? missed + ' missed.' : 'nothing missed.');
  }

  window.RtChat = Object.freeze({
    BEFORE_RESTART: BEFORE_RESTART,
    epochDecorator: epochDecorator,
    resumedText: resumedText,
    HISTORY: HISTORY,
    formatTime: formatTime,
    messageKey: messageKey,
    sanitize: sanitize,
    mergeMessages: mergeMessages,
    renderMessages: renderMessages,
    setPresence: setPresence,
    backoffDelay: backoffDelay,
    numParam: numParam,
    seconds: seconds,
    loadUserName: loadUserName,
    saveUserName: saveUserName,
    responseError: responseError,
    postMessage: postMessage,
    bindComposer: bindComposer
  });
})();
