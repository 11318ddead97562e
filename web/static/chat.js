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
      // With --auth token: the account that posted it (own messages are recognised by it).
      if (typeof m.uid === 'string' && m.uid) clean.uid = m.uid;
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

  /**
   * `list` without the message `id` (a deletion: rtchat.v1 `deleted`, SSE `event: deleted`,
   * Socket.IO `msg:deleted`). With `epoch` (the page's current server run, as sse.js and
   * websocket.js number them), only a message of that run: an older run's id is another
   * message. Returns a new array.
   */
  function removeMessage(list, id, epoch) {
    if (!Array.isArray(list) || typeof id !== 'number') return Array.isArray(list) ? list.slice() : [];
    return list.filter(function (m) {
      if (!m || m.id !== id) return true;
      return typeof epoch === 'number' && (m.epoch || 0) !== epoch;
    });
  }

  /** Build the <li> for one message. Text only: nothing is parsed as HTML. */
  function createMessageElement(m, key) {
    var li = document.createElement('li');
    li.className = 'msg';
    li.setAttribute('data-key', key);
    if (hasId(m)) li.setAttribute('data-id', String(m.id));
    if (typeof m.uid === 'string' && m.uid) li.setAttribute('data-uid', m.uid);

    var meta = document.createElement('div');
    meta.className = 'msg-meta';

    var user = document.createElement('span');
    user.className = 'msg-user';
    user.setAttribute('dir', 'auto');
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
    text.setAttribute('dir', 'auto');
    text.textContent = m.text;

    li.appendChild(meta);
    li.appendChild(text);
    return li;
  }

  /**
   * Render `msgs` (newest first, as mergeMessages keeps them) into the list element
   * `container`, oldest at the top and newest at the bottom, as a chat reads. Existing
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
    list.reverse(); // shown oldest first
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

  /**
   * The server's settings for its pages (`GET /config`): {max_text, max_user, history,
   * https_port, h3, socketio_client}. One request per page; resolves to the defaults of a
   * server without /config (an older one, or another server) when it cannot be read.
   */
  var DEFAULT_CONFIG = Object.freeze({
    max_text: 2000, max_user: 64, history: 50, https_port: null, h3: false, socketio_client: true,
    auth: 'off'
  });
  var configPromise = null;
  function loadConfig() {
    if (!configPromise) {
      configPromise = fetch('/config', { cache: 'no-store', headers: { Accept: 'application/json' } })
        .then(function (res) { return res.ok ? res.json() : null; })
        .catch(function () { return null; })
        .then(function (body) {
          var out = {};
          Object.keys(DEFAULT_CONFIG).forEach(function (k) {
            var v = body && typeof body === 'object' ? body[k] : undefined;
            out[k] = v === undefined || (v === null && k !== 'https_port') ? DEFAULT_CONFIG[k] : v;
          });
          return Object.freeze(out);
        });
    }
    return configPromise;
  }

  /** Characters as the server counts them: Unicode scalar values (not UTF-16 units). */
  function charCount(s) {
    return Array.from(String(s == null ? '' : s)).length;
  }

  /** 2013 -> "2,013". */
  function groupDigits(n) {
    return String(n).replace(/\B(?=(\d{3})+(?!\d))/g, ',');
  }

  /** "Your message is 2,013 characters; the limit is 2,000" (what: 'message' or 'name'). */
  function overLimitText(what, count, max) {
    return 'Your ' + what + ' is ' + groupDigits(count) + ' characters; the limit is ' + groupDigits(max);
  }
  var OVER_LIMIT = /^Your (message|name) is [\d,]+ characters; the limit is [\d,]+$/;

  /**
   * `https://<this page's host>:<port><path>`: where the server's HTTPS listener serves
   * `path` (an IPv6 host in brackets).
   */
  function httpsUrl(port, path) {
    var host = window.location.hostname;
    if (host.indexOf(':') >= 0 && host.charAt(0) !== '[') host = '[' + host + ']';
    return 'https://' + host + ':' + port + (path || '/');
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
   * The server's refusals in plain words: '"text" must not be empty' -> 'Your message is
   * empty', and so on. Anything not known here is shown as the server worded it.
   */
  function friendlyError(msg) {
    var s = String(msg == null ? '' : msg);
    var m = /^"(user|text)" must not be (?:empty|blank)$/.exec(s);
    if (m) return m[1] === 'text' ? 'Your message is empty' : 'Your name is empty';
    m = /^"(user|text)" is too long: (\d+) characters, at most (\d+) allowed$/.exec(s);
    if (m) {
      return (m[1] === 'text' ? 'Your message' : 'Your name') + ' is too long (' + m[2] +
        ' characters; at most ' + m[3] + ')';
    }
    return s;
  }

  /** Errors that only say the server could not be reached: they go once it can be again. */
  var CONNECTION_ERROR = /^(Could not reach the server|Not connected to the server|The connection closed before the server answered|The server did not answer|No answer from the server)/;

  function isConnectionError(msg) {
    return CONNECTION_ERROR.test(String(msg || ''));
  }

  /**
   * POST {user, text} as JSON to `url`. Resolves to {ok: true, id} or
   * {ok: false, error, status, code} (never rejects; status 0 and no code when the server could
   * not be reached).
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
        if (!res.ok) {
          return { ok: false, error: responseError(res, body), status: res.status,
            code: body && typeof body.code === 'string' ? body.code : '' };
        }
        return { ok: true, id: body && body.id };
      });
    }, function (err) {
      return { ok: false, error: 'Could not reach the server (' + (err && err.message || err) + ')' };
    });
  }

  /**
   * Wire a composer form: remembers the user name in localStorage, sends on submit
   * (Enter in an input submits the form), shows errors in `errorEl`.
   * opts: {form, userInput, textInput, button, errorEl, counter, send(user, text) ->
   * Promise<{ok, error}>, onSent}. The limits (characters, as the server counts them) are set
   * with setLimits({text, user}) once known: a text or name over its limit disables Send and
   * says so in `errorEl`; `counter` (optional) shows "N / MAX" once the text nears the limit.
   * setDisabled(true) turns the composer off for good (the page cannot send at all).
   */
  function bindComposer(opts) {
    var userInput = opts.userInput;
    var textInput = opts.textInput;
    var errorEl = opts.errorEl;
    var counter = opts.counter;
    var sending = false;
    var disabled = false;
    var limits = { text: DEFAULT_CONFIG.max_text, user: DEFAULT_CONFIG.max_user };
    var fixedUser = false; // signed in: the name is the account's, not editable, not remembered

    /** What is wrong with the composer's text or name before sending, or ''. */
    function overLimit() {
      var t = charCount(textInput.value);
      if (t > limits.text) return overLimitText('message', t, limits.text);
      var u = charCount(userInput.value);
      if (u > limits.user) return overLimitText('name', u, limits.user);
      return '';
    }

    function updateCounter() {
      if (!counter) return;
      var n = charCount(textInput.value);
      // Shown from 80 % of the limit on (always when over it).
      var show = n > 0 && n >= limits.text * 0.8;
      counter.hidden = !show;
      counter.textContent = show ? groupDigits(n) + ' / ' + groupDigits(limits.text) : '';
      counter.classList.toggle('over', n > limits.text);
    }

    /** Send only something to send: not while sending, not an empty, blank or too long text. */
    function updateSend() {
      var over = overLimit();
      if (errorEl) {
        if (over) errorEl.textContent = over;
        else if (OVER_LIMIT.test(errorEl.textContent)) errorEl.textContent = '';
      }
      updateCounter();
      if (opts.button) {
        opts.button.disabled = disabled || sending || textInput.value.trim() === '' || over !== '';
      }
    }
    textInput.addEventListener('input', updateSend);
    userInput.addEventListener('input', updateSend);

    var stored = loadUserName();
    userInput.value = stored || defaultUserName();
    if (!stored) saveUserName(userInput.value);
    userInput.addEventListener('change', function () { saveUserName(userInput.value); });
    updateSend();

    function showError(msg) {
      if (errorEl) errorEl.textContent = friendlyError(msg || '');
    }

    /** The server is reachable again: an error that only said it was not goes. */
    function clearConnectionError() {
      if (errorEl && isConnectionError(errorEl.textContent)) errorEl.textContent = '';
    }

    opts.form.addEventListener('submit', function (ev) {
      ev.preventDefault();
      if (disabled || sending || textInput.value.trim() === '') return;
      if (overLimit()) {
        updateSend();
        return;
      }
      sending = true;
      updateSend();
      var user = userInput.value;
      var text = textInput.value;
      if (!fixedUser) saveUserName(user);
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
        updateSend();
        textInput.focus();
      });
    });

    return {
      showError: showError,
      clearConnectionError: clearConnectionError,
      updateSend: updateSend,
      setLimits: function (l) {
        if (l && l.text > 0) limits.text = l.text;
        if (l && l.user > 0) limits.user = l.user;
        updateSend();
      },
      limits: function () { return { text: limits.text, user: limits.user }; },
      /** Signed in as `name`: the name field shows it and cannot be edited; null: editable again. */
      setFixedUser: function (name) {
        fixedUser = typeof name === 'string';
        userInput.readOnly = fixedUser;
        if (fixedUser) userInput.value = name;
        else userInput.value = loadUserName() || userInput.value;
        updateSend();
      },
      setDisabled: function (off) {
        disabled = !!off;
        textInput.disabled = disabled;
        updateSend();
      }
    };
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

  /* ---------------------------------------------------------------------------------------
   * Rooms, and the page every transport shares (mountChat)
   * ------------------------------------------------------------------------------------- */

  /** The room of the course contract: served by the old endpoints (/poll, /msgs, /events, /ws). */
  var GENERAL = 'general';
  /** How long "ann is typing…" stays up without a repeat (the wire spec's 5 s). */
  var TYPING_SHOW_MS = 5000;
  /** A page sends `typing` at most this often while the user types. */
  var TYPING_EVERY_MS = 1000;
  /** The longest user name the server takes by default (--max-user): longer ones are not sent as typing. */
  var MAX_USER = 64;
  var ROOM_NAME = /^(?:[a-z0-9_-]{1,64}|dm:[0-9a-f]{16})$/;
  /** A direct message's room (`rtchat serve --auth token`): `dm:` and 16 lowercase hex digits. */
  var DM_ROOM = /^dm:[0-9a-f]{16}$/;

  /**
   * Is `name` a room name the server takes (1–64 characters of a-z, 0-9, - and _, or a direct
   * message's dm:<16 hex digits>)?
   */
  function isRoomName(name) {
    return typeof name === 'string' && ROOM_NAME.test(name);
  }

  /** Is `name` a direct message's room (`dm:<16 hex digits>`)? */
  function isDmRoom(name) {
    return typeof name === 'string' && DM_ROOM.test(name);
  }

  /** The server's own words for a bad room name, so the page says what the server would. */
  function roomNameError(name) {
    return 'room names are 1 to 64 characters of a-z, 0-9, - and _ (or a direct message\'s ' +
      'dm:<16 hex digits>); got ' + JSON.stringify(String(name));
  }

  /**
   * `/rooms/{room}/{tail}`: the room endpoints (general has its old ones too, see GENERAL). A
   * direct message's colon stays as it is (`/rooms/dm:…/poll`: valid in a path, and readable).
   */
  function roomPath(room, tail) {
    return '/rooms/' + encodeURIComponent(room).replace(/%3A/gi, ':') + '/' + tail;
  }

  /** `path` with the query parameters of `params` whose value is not null, in that order. */
  function withQuery(path, params) {
    var parts = [];
    for (var i = 0; i < params.length; i++) {
      if (params[i][1] === null || params[i][1] === undefined) continue;
      parts.push(encodeURIComponent(params[i][0]) + '=' + encodeURIComponent(String(params[i][1])));
    }
    return parts.length ? path + '?' + parts.join('&') : path;
  }

  /** A user name worth announcing (typing): not blank, not longer than the server takes. */
  function isSendableName(name, max) {
    var n = String(name || '');
    return n.trim() !== '' && charCount(n) <= (max || MAX_USER) && !/[\u0000-\u001f\u007f]/.test(n);
  }

  /** Tell a room over HTTP that `user` is typing (polling, SSE and /msgs pages); best effort. */
  function postTyping(room, user) {
    return fetch(roomPath(room, 'typing'), {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ user: user }),
      cache: 'no-store'
    }).then(function () {}, function () {});
  }

  /** An element with attributes and children (strings become text nodes): markup without innerHTML. */
  function h(tag, attrs, children) {
    var el = document.createElement(tag);
    if (attrs) {
      Object.keys(attrs).forEach(function (k) {
        var v = attrs[k];
        if (v === false || v === null || v === undefined) return;
        el.setAttribute(k, v === true ? '' : String(v));
      });
    }
    [].concat(children || []).forEach(function (c) {
      if (c === null || c === undefined) return;
      el.appendChild(typeof c === 'string' ? document.createTextNode(c) : c);
    });
    return el;
  }

  /** GET `url` as JSON; resolves to the body, or null on any failure (for best-effort extras). */
  function getJson(url) {
    return fetch(url, { cache: 'no-store', headers: { Accept: 'application/json' } }).then(function (res) {
      return res.ok ? res.json() : null;
    }).catch(function () { return null; });
  }

  /** "ann is typing…", "ann and bob are typing…", "ann, bob and 2 others are typing…". */
  function typingText(users) {
    if (users.length === 0) return '';
    if (users.length === 1) return users[0] + ' is typing…';
    if (users.length === 2) return users[0] + ' and ' + users[1] + ' are typing…';
    var others = users.length - 2;
    return users[0] + ', ' + users[1] + ' and ' + others + ' other' + (others === 1 ? '' : 's') +
      ' are typing…';
  }

  /**
   * Reorder and fill the keyed children of `container` (attribute `attr`) to match `keys`,
   * reusing existing elements (so focus and screen-reader state survive a refresh);
   * `make(key)` builds a missing one, `update(el, key)` refreshes every one.
   */
  function syncKeyed(container, attr, keys, make, update) {
    var existing = new Map();
    Array.from(container.children).forEach(function (el) { existing.set(el.getAttribute(attr), el); });
    var ref = container.firstChild;
    keys.forEach(function (key) {
      var el = existing.get(key) || make(key);
      existing.delete(key);
      update(el, key);
      if (el === ref) ref = ref.nextSibling;
      else container.insertBefore(el, ref);
    });
    existing.forEach(function (el) { el.remove(); });
  }

  /* ---------------------------------------------------------------------------------------
   * Accounts (`rtchat serve --auth token`): the sign-in box of every chat page
   * ------------------------------------------------------------------------------------- */

  /**
   * POST `path` (an `/auth/*` endpoint) with `payload` as JSON (or no body). The session is
   * the HttpOnly cookie the server sets: the page never sees or keeps a token. Resolves to
   * {ok, status, body, retryAfter} (status 0: the server could not be reached); never rejects.
   */
  function authPost(path, payload) {
    var init = { method: 'POST', cache: 'no-store', credentials: 'same-origin', headers: { Accept: 'application/json' } };
    if (payload !== undefined) {
      init.headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(payload);
    }
    return fetch(path, init).then(function (res) {
      return res.text().then(function (raw) {
        var body = null;
        try { body = raw ? JSON.parse(raw) : null; } catch (e) { body = null; }
        return { ok: res.ok, status: res.status, body: body, retryAfter: res.headers.get('Retry-After') };
      });
    }, function (err) {
      return { ok: false, status: 0, body: null, error: (err && err.message) || String(err) };
    });
  }

  /** The code of an `{"error", "code"}` answer, or ''. */
  function errorCode(body) {
    return body && typeof body === 'object' && typeof body.code === 'string' ? body.code : '';
  }

  /** Bytes of `s` in UTF-8 (the server counts a password in bytes). */
  function utf8Length(s) {
    return new TextEncoder().encode(String(s)).length;
  }

  /** A refused login or signup (`authPost`'s answer) in plain words. */
  function authErrorText(r, password) {
    var code = errorCode(r.body);
    if (r.status === 0) return 'Could not reach the server; try again';
    if (code === 'bad_credentials') return 'Wrong name or password';
    if (code === 'name_taken') return 'That name is taken';
    if (code === 'bad_password') {
      return utf8Length(password || '') > 1024 ? 'Passwords can be at most 1,024 bytes long'
        : 'Passwords need at least 8 characters';
    }
    if (code === 'login_rate_limited' || r.status === 429) {
      var ms = r.body && typeof r.body.retry_after_ms === 'number' ? r.body.retry_after_ms
        : Number(r.retryAfter) * 1000;
      var n = isFinite(ms) && ms > 0 ? Math.max(1, Math.ceil(ms / 1000)) : 60;
      return 'Too many attempts, try again in ' + n + ' s';
    }
    if (code === 'login_busy' || r.status === 503) return 'The server is busy; try again in a moment';
    if (r.status === 404) return 'This server has no accounts';
    if (r.body && typeof r.body.error === 'string' && r.body.error) return friendlyError(r.body.error);
    return 'The server refused (HTTP ' + r.status + ')';
  }

  /** What a page says when the server ended its session (`code`: revoked, expired, token_*...). */
  function signedOutText(code) {
    if (/banned/.test(String(code || ''))) return 'You were signed out: an administrator banned you.';
    return /expired/.test(String(code || '')) ? 'You were signed out: your session expired.'
      : 'You were signed out.';
  }

  /**
   * Build the chat every transport page shows, inside `<main id="chat">`, and wire what they
   * all do alike: the connection dot and status line, the composer (name remembered), the
   * room list (GET /rooms, join or create by name, a dot on rooms with news), the member list
   * (GET /rooms/{room}/presence and `presence` events), "ann is typing…", and the
   * `window.rtchatDebug` hook. Whatever the page already holds in `<main>` (its own notes)
   * goes above the composer. The transport page keeps only its connection and gives:
   *   enter(room, previous)  follow `room` instead of `previous` (null at the start; the same
   *                          room again after the user renamed themself in a room)
   *   send(room, user, text) post; resolves to {ok, id} or {ok: false, error}
   *   typing(room, user)     tell the room the user is typing (called at most once a second)
   *   rename(user)           optional: instead of entering the room again on a rename
   *   reconnect()            optional: skip the backoff wait and reconnect now; called on the
   *                          "Reconnect now" button, on `online` and when the tab is visible or
   *                          focused again, while the page said it is retrying (setStatus
   *                          'error' with a `retry`)
   *   endpoint(room)         optional: the URL the page reads `room` from, shown in #endpoint
   *   pollPresence           true for a transport without presence events (polling): the
   *                          member list is then re-read every `refresh` ms (in general it
   *                          always is)
   *   debug                  an object of getters, added to window.rtchatDebug
   *   stop()                 close the connection and cancel every retry, until the next
   *                          enter() (the page signed out: `rtchat serve --auth token`)
   * With accounts the room list also reads GET /me/rooms: direct messages (`dm:<16 hex>`) are
   * shown as "@Name" (their real name stays in data-room, the address and the endpoints), and a
   * "Direct message" form opens one by the other user's id (POST /me/dm/{uid}). The transport
   * calls removed(room, reason) when the server takes it out of a room (it turned private, or
   * the user was removed from it): the page says so in #room-notice and goes back to general;
   * probeRoom(room) asks a room why a connection into it failed (refused() if it refuses).
   * Deletions (--auth token): each of the account's own messages gets a "Delete" button
   * (`DELETE /rooms/{room}/msgs/{id}`; a refusal shows the server's words under the composer);
   * the transport calls deleted(room, id) when the server says a message was deleted (after
   * dropping it from its own list, RtChat.removeMessage): it leaves the list at once and is
   * never shown again on this page (the snapshot transports need not call it: their next
   * snapshot lacks it).
   * and calls start() once it is ready. start() reads GET /config first: with `"auth":
   * "token"` the page signs in (the sign-in box, or the session cookie it already has) before
   * the transport's first enter(); the transport tells the page when the server ended the
   * session (signedOut(code): a close 4005/4001, an `auth:revoked` event, a 401...) or when a
   * failure may be one (checkSession(): asks POST /auth/refresh). Tuning via the page URL: ?refresh=MS (how often the
   * room list is re-read; default 10000) and ?room=NAME (the room to open).
   */
  function mountChat(opts) {
    var main = document.getElementById('chat');
    var own = Array.prototype.slice.call(main.children); // the page's own notes
    var params = new URLSearchParams(window.location.search);
    var cfg = { refresh: numParam('refresh', 10000) };

    // ---- the page ----
    var els = {
      dot: h('span', { id: 'status-dot', class: 'dot', 'data-state': 'connecting', role: 'img',
        'aria-label': 'Connecting…', title: 'Connecting…' }),
      status: h('span', { id: 'status-text', 'aria-hidden': 'true' }, 'connecting…'),
      reconnect: h('button', { id: 'reconnect', type: 'button', class: 'reconnect', hidden: true }, 'Reconnect now'),
      roomForm: h('form', { id: 'room-form', class: 'room-form', autocomplete: 'off' }),
      roomName: h('input', { id: 'room-name', name: 'room', type: 'text', placeholder: 'Join or create…',
        autocapitalize: 'none', spellcheck: 'false', enterkeyhint: 'go', maxlength: '64' }),
      roomError: h('p', { id: 'room-error', class: 'error-line', role: 'alert' }),
      // Direct messages (--auth token, signed in): open one by the other user's id.
      dm: h('div', { id: 'dm', class: 'dm', hidden: true }),
      dmForm: h('form', { id: 'dm-form', class: 'room-form dm-form', autocomplete: 'off' }),
      dmUid: h('input', { id: 'dm-uid', name: 'uid', type: 'text', placeholder: 'u-…',
        autocapitalize: 'none', spellcheck: 'false', enterkeyhint: 'go', maxlength: '256',
        'aria-describedby': 'dm-you' }),
      dmOpen: h('button', { id: 'dm-open', type: 'submit' }, 'Message'),
      dmError: h('p', { id: 'dm-error', class: 'error-line', role: 'alert' }),
      myUid: h('code', { id: 'my-uid' }),
      // Why the page left a room by itself (removed from it): above the conversation.
      notice: h('p', { id: 'room-notice', class: 'room-notice', role: 'alert' }),
      rooms: h('ul', { id: 'rooms', class: 'room-list', 'aria-labelledby': 'rooms-heading' }),
      membersRoom: h('span', { id: 'members-room' }),
      members: h('ul', { id: 'members', class: 'member-list', 'aria-labelledby': 'members-heading' }),
      membersNote: h('p', { id: 'members-note', class: 'members-note' }),
      title: h('h2', { id: 'room-title', class: 'room-title' }),
      line: h('p', { id: 'stream-status', class: 'status-line', role: 'status', 'aria-live': 'polite' }),
      form: h('form', { id: 'composer', class: 'composer', autocomplete: 'off' }),
      user: h('input', { id: 'user', name: 'user', type: 'text', autocomplete: 'nickname', spellcheck: 'false' }),
      text: h('input', { id: 'text', name: 'text', type: 'text', placeholder: 'Say something and press Enter',
        enterkeyhint: 'send' }),
      send: h('button', { id: 'send', type: 'submit' }, 'Send'),
      error: h('p', { id: 'post-error', class: 'error-line', role: 'alert' }),
      counter: h('span', { id: 'text-count', class: 'text-count', 'aria-live': 'polite', hidden: true }),
      newMessages: h('button', { id: 'new-messages', type: 'button', class: 'new-messages', hidden: true },
        'New messages ↓'),
      typing: h('p', { id: 'typing', class: 'typing', 'aria-live': 'polite' }),
      empty: h('p', { id: 'empty', class: 'empty' }, 'Loading messages…'),
      list: h('ol', { id: 'messages', class: 'messages', 'aria-labelledby': 'messages-heading',
        'aria-live': 'polite', 'aria-relevant': 'additions' }),
      // Accounts (--auth token): the sign-in box, and who is signed in.
      authBox: h('section', { id: 'auth', class: 'auth-box panel', 'aria-labelledby': 'auth-heading', hidden: true }),
      authForm: h('form', { id: 'auth-form', class: 'auth-form', autocomplete: 'on' }),
      authUser: h('input', { id: 'auth-user', name: 'username', type: 'text', autocomplete: 'username',
        autocapitalize: 'none', spellcheck: 'false', required: true }),
      authPassword: h('input', { id: 'auth-password', name: 'password', type: 'password',
        autocomplete: 'current-password', required: true }),
      login: h('button', { id: 'auth-login', type: 'submit' }, 'Log in'),
      signup: h('button', { id: 'auth-signup', type: 'button', class: 'secondary' }, 'Sign up'),
      authError: h('p', { id: 'auth-error', class: 'error-line', role: 'alert' }),
      session: h('p', { id: 'session', class: 'session', hidden: true }),
      sessionName: h('strong', { id: 'session-name', dir: 'auto' }),
      logout: h('button', { id: 'logout', type: 'button', class: 'secondary' }, 'Log out')
    };
    els.authForm.appendChild(h('div', { class: 'field' }, [h('label', { for: 'auth-user' }, 'Name'), els.authUser]));
    els.authForm.appendChild(h('div', { class: 'field' }, [h('label', { for: 'auth-password' }, 'Password'), els.authPassword]));
    els.authForm.appendChild(h('div', { class: 'auth-buttons' }, [els.login, els.signup]));
    els.authBox.appendChild(h('h2', { id: 'auth-heading' }, 'Sign in to chat'));
    els.authBox.appendChild(h('p', { class: 'auth-note' },
      'This server asks everyone to sign in. New here? Pick a name and a password (8 characters or more) and press Sign up.'));
    els.authBox.appendChild(els.authForm);
    els.authBox.appendChild(els.authError);
    els.session.appendChild(h('span', null, ['Signed in as ', els.sessionName]));
    els.session.appendChild(els.logout);
    els.roomForm.appendChild(h('label', { for: 'room-name', class: 'visually-hidden' }, 'Room to join or create'));
    els.roomForm.appendChild(els.roomName);
    els.roomForm.appendChild(h('button', { id: 'room-join', type: 'submit' }, 'Join'));
    els.dmForm.appendChild(h('label', { for: 'dm-uid' }, 'Direct message (their user id)'));
    els.dmForm.appendChild(els.dmUid);
    els.dmForm.appendChild(els.dmOpen);
    els.dm.appendChild(els.dmForm);
    els.dm.appendChild(els.dmError);
    els.dm.appendChild(h('p', { id: 'dm-you', class: 'dm-you' }, ['Your user id: ', els.myUid]));
    els.form.appendChild(h('div', { class: 'field user' }, [h('label', { for: 'user' }, 'Your name'), els.user]));
    els.form.appendChild(h('div', { class: 'field' }, [
      h('label', { for: 'text' }, ['Message ', els.counter]), els.text
    ]));
    els.form.appendChild(els.send);

    main.appendChild(h('div', { class: 'chat-head' }, [
      h('h1', null, 'Chat With Me'),
      h('span', { class: 'presence' }, [els.dot, els.status, els.reconnect])
    ]));
    var conversation = h('section', { class: 'conversation', 'aria-labelledby': 'room-title' }, [els.title]);
    own.forEach(function (el) { conversation.appendChild(el); });
    // A chat: the messages (oldest at the top, newest at the bottom, in a box of their own
    // that keeps to the bottom), then who is typing, then the composer.
    [els.notice, els.line,
      h('h2', { class: 'visually-hidden', id: 'messages-heading' }, 'Messages, oldest first'),
      els.empty,
      h('div', { class: 'messages-box' }, [els.list, els.newMessages]),
      els.typing, els.form, els.error].forEach(function (el) { conversation.appendChild(el); });
    main.appendChild(els.session);
    main.appendChild(els.authBox);
    els.layout = h('div', { class: 'chat-layout' });
    main.appendChild(els.layout);
    [
      h('aside', { class: 'sidebar', 'aria-label': 'Rooms and members' }, [
        h('section', { class: 'panel rooms' }, [
          h('h2', { id: 'rooms-heading' }, 'Rooms'), els.roomForm, els.roomError, els.rooms, els.dm
        ]),
        h('section', { class: 'panel members' }, [
          h('h2', { id: 'members-heading' }, ['In ', els.membersRoom]), els.members, els.membersNote
        ])
      ]),
      conversation
    ].forEach(function (el) { els.layout.appendChild(el); });

    // ---- state ----
    var st = {
      room: GENERAL,
      previous: null,
      joinedAs: null,       // the name the current room was entered with
      listed: new Map(),    // GET /rooms: name -> {last, online}
      mine: new Map(),      // GET /me/rooms (--auth token): name -> {private, owner, with: {uid, name}}
      seen: new Map(),      // name -> the newest id this page knows of there (its news baseline)
      unread: new Set(),
      roomsLoaded: false,
      members: new Map(),   // name -> true (online) | false (left while this page looked)
      unnamed: 0,
      typing: new Map(),    // user -> timer hiding it
      lastTyping: 0,
      shownKeys: null,      // message keys rendered in this room (new ones end their author's typing)
      roomsTimer: null,
      presenceSoon: null,
      presenceGen: 0,
      removals: 0,          // rooms the server took the page out of
      retrying: false,      // offline, waiting to retry (the "Reconnect now" button is up)
      stick: true,          // keep the message list scrolled to the bottom (the reader has not scrolled up)
      config: null,         // GET /config, once read
      started: false,
      // Deleted messages (--auth token): room -> the keys (RtChat.messageKey) of messages this
      // page was told are gone. render() never shows them again, whatever a transport merges
      // back in (a resume, a room entered again).
      tombstones: new Map(),
      lastMsgs: [],         // what the transport rendered last in this room, and its decorate
      lastDecorate: null,
      deletions: 0          // messages this page deleted (its Delete buttons)
    };
    // Accounts: mode 'off' | 'token' (GET /config's `auth`, once read); state 'unknown' (not
    // read yet), 'in' (signed in: uid, name) or 'out' (the sign-in box is up).
    var auth = { mode: null, state: 'unknown', uid: null, name: null, admin: false, busy: false,
      checking: null, gen: 0, signIns: 0, signOuts: 0, endedBy: null };

    var baseTitle = document.title;
    var wanted = params.get('room');
    if (wanted !== null && wanted !== '') {
      if (isRoomName(wanted)) st.room = wanted;
      else els.roomError.textContent = roomNameError(wanted);
    }

    function isHidden() {
      return document.visibilityState === 'hidden';
    }

    // ---- the room list ----
    function roomNames() {
      var names = new Set(st.listed.keys());
      st.mine.forEach(function (_, name) { names.add(name); });
      names.add(GENERAL);
      names.add(st.room);
      return Array.from(names).sort(function (a, b) {
        if (a === GENERAL) return -1;
        if (b === GENERAL) return 1;
        return a < b ? -1 : a > b ? 1 : 0;
      });
    }

    /**
     * How a room is shown: "#club", and a direct message as "@Name" (or "@uid" when the server
     * knows no name) once GET /me/rooms said whom it is with. Only for people: everything else
     * (data-room, URLs, endpoints) keeps the room's real name.
     */
    function roomLabel(name) {
      var info = st.mine.get(name);
      if (isDmRoom(name) && info && info.with) return '@' + (info.with.name || info.with.uid);
      return '#' + name;
    }

    /** "Direct message with Bob" for a DM whose party is known, else ''. */
    function roomDescription(name) {
      var info = st.mine.get(name);
      if (isDmRoom(name) && info && info.with) return 'Direct message with ' + (info.with.name || info.with.uid);
      if (info && info.private) return 'Private room';
      return '';
    }

    function renderRooms() {
      syncKeyed(els.rooms, 'data-room', roomNames(), function (name) {
        var button = h('button', { type: 'button', class: 'room' }, [
          h('span', { class: 'room-name', dir: 'auto' }, '#' + name),
          h('span', { class: 'unread-dot', role: 'img', 'aria-label': 'new messages', title: 'new messages' }),
          h('span', { class: 'room-online' })
        ]);
        button.addEventListener('click', function () { enter(name); });
        return h('li', { 'data-room': name }, [button]);
      }, function (li, name) {
        var button = li.firstChild;
        var info = st.listed.get(name);
        var label = roomLabel(name);
        var nameEl = button.querySelector('.room-name');
        if (nameEl.textContent !== label) nameEl.textContent = label;
        var about = roomDescription(name);
        if (about) button.title = about + ' (' + name + ')';
        else button.removeAttribute('title');
        li.toggleAttribute('data-dm', isDmRoom(name));
        li.toggleAttribute('data-private', !!(st.mine.get(name) && st.mine.get(name).private));
        var current = name === st.room;
        if (current) button.setAttribute('aria-current', 'true');
        else button.removeAttribute('aria-current');
        li.toggleAttribute('data-unread', st.unread.has(name));
        button.querySelector('.unread-dot').hidden = !st.unread.has(name);
        var online = button.querySelector('.room-online');
        var n = info && typeof info.online === 'number' ? info.online : 0;
        online.textContent = n > 0 ? String(n) : '';
        online.title = n > 0 ? n + ' online' : '';
      });
    }

    /** A message arrived in `room` while the page is elsewhere: the room gets its dot. */
    function activity(room, id) {
      if (room === st.room) return; // shown, and noted as seen when rendered
      var before = st.seen.get(room);
      if (typeof id === 'number' && typeof before === 'number' && id <= before) return;
      if (typeof id === 'number') st.seen.set(room, id);
      st.unread.add(room);
      renderRooms();
    }

    function applyRooms(body) {
      if (!body || !Array.isArray(body.rooms)) return;
      var first = !st.roomsLoaded;
      st.roomsLoaded = true;
      var listed = new Map();
      body.rooms.forEach(function (r) {
        if (!r || typeof r.name !== 'string') return;
        var last = typeof r.last === 'number' && isFinite(r.last) ? r.last : 0;
        listed.set(r.name, { last: last, online: r.online });
        var before = st.seen.get(r.name);
        if (r.name === st.room) {
          if (before === undefined || last > before) st.seen.set(r.name, last);
        } else if (before === undefined) {
          // What a room held when this page first looked is old news; a room that came into
          // being later, with messages, has news.
          st.seen.set(r.name, first ? last : 0);
          if (!first && last > 0) st.unread.add(r.name);
        } else if (last > before) {
          st.unread.add(r.name);
        } else if (last < before) {
          st.seen.set(r.name, last); // a server that restarted empty
        }
      });
      st.listed = listed;
      renderRooms();
    }

    /** GET /me/rooms: {rooms: [{room, private, owner?, with?: {uid, name}}]}. */
    function applyMine(body) {
      if (!body || !Array.isArray(body.rooms)) return;
      var mine = new Map();
      body.rooms.forEach(function (r) {
        if (!r || typeof r.room !== 'string' || !isRoomName(r.room)) return;
        var w = r.with && typeof r.with === 'object' && typeof r.with.uid === 'string'
          ? { uid: r.with.uid, name: typeof r.with.name === 'string' && r.with.name ? r.with.name : null } : null;
        mine.set(r.room, { private: r.private === true, owner: r.owner === true, with: w });
      });
      st.mine = mine;
      renderRooms();
      showRoom();
    }

    function refreshRooms() {
      clearTimeout(st.roomsTimer);
      st.roomsTimer = null;
      if (auth.state === 'out') return; // nothing to read until the page signs in again
      if (!isHidden()) {
        // --auth token: the rooms and direct messages of this user (who each DM is with) first,
        // so a DM is never listed under its bare name when its party can be known.
        var mine = auth.mode === 'token' && auth.state === 'in' ? getJson('/me/rooms') : Promise.resolve(null);
        var gen = auth.gen;
        Promise.all([mine, getJson('/rooms')]).then(function (got) {
          if (gen !== auth.gen) return; // signed out (or in as someone else) meanwhile
          applyMine(got[0]);
          applyRooms(got[1]);
        });
      }
      // Presence comes as events in a room, except to polling pages and on general's old
      // endpoints (the course's streams carry only messages): those re-read it.
      if ((opts.pollPresence || st.room === GENERAL) && !isHidden()) refreshPresence();
      if (cfg.refresh > 0) st.roomsTimer = setTimeout(refreshRooms, cfg.refresh);
    }

    // ---- members ----
    function renderMembers() {
      var me = els.user.value;
      // In a room the page is named in, its user is there, even before the server can say so
      // (a polling page in a room nobody has posted in yet: reads never create a room).
      if (st.room !== GENERAL && me !== '' && st.joinedAs === me) st.members.set(me, true);
      var names = Array.from(st.members.keys()).sort(function (a, b) {
        var oa = st.members.get(a) ? 0 : 1;
        var ob = st.members.get(b) ? 0 : 1;
        if (oa !== ob) return oa - ob;
        return a < b ? -1 : a > b ? 1 : 0;
      });
      syncKeyed(els.members, 'data-user', names, function (name) {
        return h('li', { class: 'member', 'data-user': name }, [
          h('span', { class: 'dot', role: 'img' }),
          h('span', { class: 'member-name' }, name),
          h('span', { class: 'member-you' })
        ]);
      }, function (li, name) {
        var online = st.members.get(name);
        li.setAttribute('data-online', online ? 'true' : 'false');
        var dot = li.querySelector('.dot');
        dot.setAttribute('data-state', online ? 'ok' : 'paused');
        dot.setAttribute('aria-label', online ? 'online' : 'left');
        dot.title = online ? 'online' : 'left';
        li.querySelector('.member-you').textContent = name === me ? '(you)' : '';
      });
      var notes = [];
      if (st.unnamed > 0) notes.push(st.unnamed + ' more without a name');
      if (names.length === 0 && st.unnamed === 0) notes.push('Nobody else is here yet.');
      els.membersNote.textContent = notes.join(' ');
    }

    function applyPresenceList(room, body, gen) {
      if (!body || gen !== st.presenceGen || room !== st.room || !Array.isArray(body.users)) return;
      var present = new Set();
      body.users.forEach(function (u) { if (u && typeof u.user === 'string') present.add(u.user); });
      // Who was listed and is gone now stays, marked as left; everyone listed is online.
      st.members.forEach(function (online, name) { if (!present.has(name)) st.members.set(name, false); });
      present.forEach(function (name) { st.members.set(name, true); });
      var online = typeof body.online === 'number' ? body.online : present.size;
      st.unnamed = Math.max(0, online - present.size);
      renderMembers();
      var info = st.listed.get(room);
      if (info) {
        info.online = online;
        renderRooms();
      }
    }

    /** Re-read who is in the current room (GET /rooms/{room}/presence). */
    function refreshPresence() {
      clearTimeout(st.presenceSoon);
      st.presenceSoon = null;
      var room = st.room;
      var gen = st.presenceGen;
      getJson(roomPath(room, 'presence')).then(function (body) { applyPresenceList(room, body, gen); });
    }

    /** A `presence` event: {room, joined: [names], left: [names]}. */
    function presence(room, event) {
      if (room !== st.room || !event) return;
      (Array.isArray(event.joined) ? event.joined : []).forEach(function (n) {
        if (typeof n === 'string') st.members.set(n, true);
      });
      (Array.isArray(event.left) ? event.left : []).forEach(function (n) {
        if (typeof n === 'string' && st.members.has(n)) st.members.set(n, false);
      });
      renderMembers();
      // The event says who; the list also knows how many are unnamed. Read it once the burst is over.
      clearTimeout(st.presenceSoon);
      st.presenceSoon = setTimeout(refreshPresence, 300);
    }

    // ---- typing ----
    function renderTyping() {
      var users = Array.from(st.typing.keys()).sort();
      els.typing.textContent = typingText(users);
    }

    function stopTyping(user) {
      var timer = st.typing.get(user);
      if (timer === undefined) return;
      clearTimeout(timer);
      st.typing.delete(user);
      renderTyping();
    }

    /** A `typing` event: show "user is typing…" for 5 s, unless it repeats (or they post). */
    function typing(room, user) {
      if (room !== st.room || typeof user !== 'string' || user === '' || user === els.user.value) return;
      clearTimeout(st.typing.get(user));
      st.typing.set(user, setTimeout(function () { stopTyping(user); }, TYPING_SHOW_MS));
      renderTyping();
    }

    function clearTyping() {
      st.typing.forEach(function (timer) { clearTimeout(timer); });
      st.typing.clear();
      renderTyping();
    }

    els.text.addEventListener('input', function () {
      if (els.text.value === '') return;
      var now = Date.now();
      if (now - st.lastTyping < TYPING_EVERY_MS) return;
      if (!isSendableName(els.user.value, composer.limits().user)) return;
      st.lastTyping = now;
      try { opts.typing(st.room, els.user.value); } catch (e) { /* typing is best effort */ }
    });

    // ---- messages, the dot, the status line ----
    /**
     * The dot and the status word, in one vocabulary for every page: "live · <transport>"
     * (`short` of an 'ok' state), "connecting…", "offline · retrying in N s". `retry`: for an
     * 'error' the page will retry by itself, the wait in ms (or true when it does not know it);
     * the "Reconnect now" button is offered then.
     */
    function setStatus(state, label, short, retry) {
      if (auth.state === 'out') return; // signed out: the dot says so until the page signs in
      var text = short;
      if (state === 'connecting') text = 'connecting…';
      else if (state === 'error' && typeof retry === 'number') {
        text = retry > 0 ? 'offline · retrying in ' + seconds(retry) : 'offline · retrying now';
      } else if (state === 'error' && retry === true) text = 'offline · retrying';
      else if (state === 'error' && !text) text = 'offline';
      st.retrying = state === 'error' && retry !== undefined && retry !== false && !!opts.reconnect;
      els.reconnect.hidden = !st.retrying;
      setPresence(els.dot, state, label, els.status, text);
      if (state === 'ok' && composer) composer.clearConnectionError();
    }

    /** Skip the backoff wait: the network is back, the tab is looked at again, or the user asked. */
    function reconnectNow() {
      if (!st.retrying || !opts.reconnect || isHidden()) return;
      opts.reconnect();
    }
    els.reconnect.addEventListener('click', function () {
      if (st.retrying && opts.reconnect) opts.reconnect();
    });
    window.addEventListener('online', reconnectNow);
    window.addEventListener('focus', reconnectNow);

    /**
     * Messages by the name in the composer get the class `mine`; signed in (--auth token),
     * messages that carry a `uid` are the page's own when it is the account's.
     */
    function isMine(user, uid) {
      if (auth.state === 'in' && auth.uid && uid) return uid === auth.uid;
      return user !== '' && user === els.user.value;
    }

    function markMine(li, m) {
      li.classList.toggle('mine', isMine(m.user, m.uid));
    }

    function remarkMine() {
      Array.prototype.forEach.call(els.list.children, function (li) {
        var u = li.querySelector('.msg-user');
        li.classList.toggle('mine', !!u && isMine(u.textContent, li.getAttribute('data-uid')));
        markDeletable(li);
      });
    }

    // ---- deleting one's own messages (--auth token) ----
    /**
     * May this page offer to delete the message `li`? Signed in, the account's own message
     * (its uid), with an id of the server's current run (not one kept from before a restart:
     * that id may name another message now).
     */
    function canDelete(li) {
      return auth.mode === 'token' && auth.state === 'in' && !!auth.uid &&
        li.getAttribute('data-uid') === auth.uid && li.hasAttribute('data-id') &&
        !li.classList.contains('msg-before-restart');
    }

    /** Give `li` its "Delete" button, or take it away, as canDelete says. */
    function markDeletable(li) {
      var button = li.querySelector('.msg-delete');
      var want = canDelete(li);
      if (want && !button) {
        var id = li.getAttribute('data-id');
        button = h('button', { type: 'button', class: 'msg-delete', 'aria-label': 'Delete message ' + id,
          title: 'Delete this message' }, 'Delete');
        button.addEventListener('click', function () { deleteMessage(li, button); });
        li.querySelector('.msg-meta').appendChild(button);
      } else if (!want && button) {
        button.remove();
      }
    }

    /** A refused `DELETE /rooms/{room}/msgs/{id}` in words: the server's own when it gives some. */
    function deleteErrorText(r) {
      if (r.status === 0) return 'Could not reach the server to delete the message; try again';
      if (r.body && typeof r.body.error === 'string' && r.body.error) return r.body.error;
      return 'The server refused to delete the message (HTTP ' + r.status + ')';
    }

    /**
     * The Delete button of `li`: `DELETE /rooms/{room}/msgs/{id}` with the session cookie. Done
     * (or already gone: 404 no_such_message), the message leaves the list at once (the server
     * tells the other pages); refused (after the edit window...), the server's words go under
     * the composer.
     */
    function deleteMessage(li, button) {
      var id = Number(li.getAttribute('data-id'));
      var key = li.getAttribute('data-key');
      var room = st.room;
      if (!isFinite(id) || button.disabled || auth.state !== 'in') return;
      button.disabled = true;
      composer.showError('');
      var gen = auth.gen;
      fetch(roomPath(room, 'msgs/' + id), {
        method: 'DELETE', cache: 'no-store', credentials: 'same-origin', headers: { Accept: 'application/json' }
      }).then(function (res) {
        return res.text().then(function (raw) {
          var body = null;
          try { body = raw ? JSON.parse(raw) : null; } catch (e) { body = null; }
          return { ok: res.ok, status: res.status, body: body };
        });
      }, function () {
        return { ok: false, status: 0, body: null };
      }).then(function (r) {
        button.disabled = false;
        if (gen !== auth.gen || auth.state !== 'in') return;
        if (r.ok || (r.status === 404 && errorCode(r.body) === 'no_such_message')) {
          if (r.ok) st.deletions += 1;
          deleted(room, id, key);
          return;
        }
        if (r.status === 401) {
          signedOut(errorCode(r.body));
          return;
        }
        if (room === st.room) composer.showError(deleteErrorText(r));
      });
    }

    /**
     * From the transport (or a Delete button): the message `id` of `room` was deleted. The
     * shown one (of the server's current run; `key` when known) leaves the list at once and
     * never comes back on this page, not even after leaving the room and entering it again.
     */
    function deleted(room, id, key) {
      if (typeof room !== 'string' || typeof id !== 'number' || !isFinite(id)) return;
      if (!key && room === st.room) {
        var shown = Array.prototype.filter.call(els.list.children, function (li) {
          return li.getAttribute('data-id') === String(id) && !li.classList.contains('msg-before-restart');
        });
        if (shown.length) key = shown[shown.length - 1].getAttribute('data-key');
      }
      if (!key) return; // not shown here: the transport's own list no longer has it either
      var set = st.tombstones.get(room);
      if (!set) st.tombstones.set(room, set = new Set());
      set.add(key);
      if (room === st.room && els.list.querySelector('li[data-key="' + cssEscape(key) + '"]')) {
        render(st.lastMsgs, st.lastDecorate);
      }
    }

    function cssEscape(s) {
      return window.CSS && CSS.escape ? CSS.escape(s) : String(s).replace(/["\\]/g, '\\$&');
    }
    els.user.addEventListener('input', remarkMine);

    function line(text) {
      els.line.textContent = text;
    }

    /** The room's history is in (possibly empty): say so instead of "Loading messages…". */
    function loaded() {
      els.empty.textContent = 'No messages yet.';
    }

    /**
     * Show the current room's messages (given newest first; shown oldest at the top, newest at
     * the bottom, kept in view unless the reader scrolled up); a new message ends its author's
     * "typing".
     */
    function render(msgs, decorate) {
      loaded();
      st.lastMsgs = msgs;
      st.lastDecorate = decorate || null;
      var keys = new Set();
      var clean = sanitize(msgs);
      var gone = st.tombstones.get(st.room);
      if (gone && gone.size) clean = clean.filter(function (m) { return !gone.has(messageKey(m)); });
      var arrived = false;
      for (var i = 0; i < clean.length; i++) {
        var key = messageKey(clean[i]);
        keys.add(key);
        if (st.shownKeys && !st.shownKeys.has(key)) {
          stopTyping(clean[i].user);
          arrived = true;
        }
        var known = st.seen.get(st.room);
        if (typeof clean[i].id === 'number' && (known === undefined || clean[i].id > known)) {
          st.seen.set(st.room, clean[i].id);
        }
      }
      var firstRender = st.shownKeys === null;
      st.shownKeys = keys;
      if (arrived && composer) composer.clearConnectionError(); // a message came: the server is there
      var anchors = st.stick ? [] : scrollAnchors();
      renderMessages(els.list, clean, els.empty, function (li, m) {
        markMine(li, m);
        if (decorate) decorate(li, m);
        markDeletable(li);
      });
      if (st.stick || firstRender) {
        scrollToBottom();
      } else {
        // Messages that fell off the top (the page keeps the newest HISTORY) do not move what
        // is read: the first message in view that is still there stays where it was.
        for (var a = 0; a < anchors.length; a++) {
          if (anchors[a].el.parentNode !== els.list) continue;
          els.list.scrollTop = anchors[a].el.offsetTop - anchors[a].offset;
          break;
        }
        if (arrived) els.newMessages.hidden = false;
      }
    }

    // ---- the message list keeps to the bottom, unless the reader scrolled up ----
    function atBottom() {
      return els.list.scrollHeight - els.list.scrollTop - els.list.clientHeight <= 24;
    }

    function scrollToBottom() {
      st.stick = true;
      els.list.scrollTop = els.list.scrollHeight;
      els.newMessages.hidden = true;
    }

    /** The messages in view, each with how far below the list's top it starts. */
    function scrollAnchors() {
      var top = els.list.scrollTop;
      var bottom = top + els.list.clientHeight;
      var items = els.list.children;
      var out = [];
      for (var i = 0; i < items.length; i++) {
        var y = items[i].offsetTop;
        if (y >= bottom) break;
        if (y + items[i].offsetHeight > top) out.push({ el: items[i], offset: y - top });
      }
      return out;
    }

    els.list.addEventListener('scroll', function () {
      st.stick = atBottom();
      if (st.stick) els.newMessages.hidden = true;
    });
    els.newMessages.addEventListener('click', scrollToBottom);
    // A narrower window (a phone turned) keeps the newest in view.
    window.addEventListener('resize', function () { if (st.stick) els.list.scrollTop = els.list.scrollHeight; });

    // ---- rooms: entering, refusals ----
    function showRoom() {
      main.setAttribute('data-room', st.room);
      var endpoint = document.getElementById('endpoint');
      if (endpoint && opts.endpoint) endpoint.textContent = opts.endpoint(st.room);
      var label = roomLabel(st.room);
      els.title.textContent = label;
      els.title.setAttribute('data-room', st.room);
      var about = roomDescription(st.room);
      if (about) els.title.title = about + ' (' + st.room + ')';
      else els.title.removeAttribute('title');
      els.membersRoom.textContent = label;
      document.title = st.room === GENERAL ? baseTitle : label + ' · ' + baseTitle;
      var url = new URL(window.location.href);
      if (st.room === GENERAL) url.searchParams.delete('room');
      else url.searchParams.set('room', st.room);
      if (url.href !== window.location.href) window.history.replaceState(null, '', url.href);
    }

    /** Follow `room` (the same room again: enter it anew, e.g. under a new name). */
    function enter(room, again) {
      if (!isRoomName(room)) {
        els.roomError.textContent = roomNameError(room);
        return false;
      }
      els.roomError.textContent = '';
      if (room !== st.room) els.notice.textContent = '';
      if (!st.started) {
        // Not connected yet (GET /config, signing in): the first connection opens in `room`.
        st.room = room;
        showRoom();
        renderRooms();
        return true;
      }
      if (room === st.room && !again) return true;
      var previous = st.started ? st.room : null;
      if (room !== st.room) st.previous = st.room;
      st.room = room;
      st.joinedAs = els.user.value;
      st.unread.delete(room);
      st.members = new Map();
      st.unnamed = 0;
      st.presenceGen += 1;
      st.shownKeys = null;
      st.lastMsgs = [];
      st.lastDecorate = null;
      st.stick = true;
      els.newMessages.hidden = true;
      clearTyping();
      if (room !== previous) {
        els.empty.textContent = 'Loading messages…';
        renderMessages(els.list, [], els.empty);
        line('');
        if (composer) composer.showError('');
      }
      showRoom();
      renderRooms();
      renderMembers();
      opts.enter(room, previous);
      return true;
    }

    /** The server refused `room` itself (its name, --max-rooms, ...): say why and go back. */
    function refused(room, error) {
      var back = st.previous && st.previous !== room ? st.previous : GENERAL;
      if (room === st.room && back !== room) {
        st.listed.delete(room);
        enter(back);
      }
      els.roomError.textContent = error || ('The server refused the room ' + room);
    }

    /**
     * From the transport: the server took the page out of `room` (it turned private, or the user
     * was removed from its members: rtchat.v1 `left` with a reason, SSE `event: left`, a `/msgs`
     * line `{"left":...}`, Socket.IO `room:left`, a long poll's 403). The page says so and goes
     * back to general, for good: it does not come back into the room by itself.
     */
    function removed(room, reason) {
      if (typeof room !== 'string' || room === GENERAL) return;
      var label = isDmRoom(room) ? roomLabel(room) : room;
      st.listed.delete(room);
      st.mine.delete(room);
      st.unread.delete(room);
      st.removals += 1;
      if (room === st.room) {
        enter(GENERAL);
        st.previous = null; // nothing goes back to it (a later refusal returns to general)
      }
      els.notice.textContent = 'You were removed from ' + label + ': ' +
        (reason ? String(reason) : 'you may no longer be in it');
      renderRooms();
      clearTimeout(st.roomsTimer);
      st.roomsTimer = setTimeout(refreshRooms, 0);
    }

    /**
     * From the transport, when a room's connection failed without saying why (a WebSocket
     * upgrade the browser hides the status of): ask the room itself (GET
     * /rooms/{room}/presence). A refusal of the room (403: private, not in the token's rooms;
     * 400: its name) goes back to general saying why (refused()); a 401 with accounts signs the
     * page out. Resolves to whether it did either (then the transport must not retry into it).
     */
    function probeRoom(room) {
      if (room === GENERAL) return Promise.resolve(false);
      return fetch(roomPath(room, 'presence'), { cache: 'no-store', headers: { Accept: 'application/json' } })
        .then(function (res) {
          if (res.ok || res.status >= 500 || (res.status !== 401 && res.status !== 403 && res.status !== 400)) {
            return false;
          }
          return res.json().catch(function () { return null; }).then(function (body) {
            if (res.status === 401) {
              if (auth.mode !== 'token') return false;
              signedOut(errorCode(body) || 'token');
              return true;
            }
            refused(room, responseError(res, body));
            return true;
          });
        }, function () { return false; });
    }

    /** The transport is in `room` now (joined, or rejoined after a reconnect): re-read its members and the room list. */
    function joined(room) {
      if (room !== st.room) return;
      refreshPresence();
      if (!st.listed.has(room)) { // a room this join may have created: list it with its count
        clearTimeout(st.roomsTimer);
        st.roomsTimer = setTimeout(refreshRooms, 0);
      }
    }

    els.roomForm.addEventListener('submit', function (ev) {
      ev.preventDefault();
      var name = els.roomName.value.trim();
      if (enter(name)) els.roomName.value = '';
    });

    /** A refused `POST /me/dm/{uid}` in plain words (else the server's own). */
    function dmErrorText(r) {
      if (r.status === 0) return 'Could not reach the server; try again';
      if (r.status === 401) return signedOutText(errorCode(r.body));
      if (r.body && typeof r.body.error === 'string' && r.body.error) return r.body.error;
      return 'The server refused (HTTP ' + r.status + ')';
    }

    // --auth token: POST /me/dm/{uid} opens (or finds) the direct message with that user; the
    // page then enters its room.
    var dmBusy = false;
    els.dmForm.addEventListener('submit', function (ev) {
      ev.preventDefault();
      if (dmBusy || auth.state !== 'in') return;
      var uid = els.dmUid.value.trim();
      if (uid === '') {
        els.dmError.textContent = 'Enter the user id of whom to message (their "Your user id")';
        els.dmUid.focus();
        return;
      }
      if (uid === auth.uid) {
        els.dmError.textContent = 'That is your own user id: enter someone else\'s';
        return;
      }
      dmBusy = true;
      els.dmOpen.disabled = true;
      els.dmError.textContent = '';
      var gen = auth.gen;
      authPost('/me/dm/' + encodeURIComponent(uid)).then(function (r) {
        dmBusy = false;
        els.dmOpen.disabled = false;
        if (gen !== auth.gen || auth.state !== 'in') return;
        if (r.status === 401) {
          signedOut(errorCode(r.body));
          return;
        }
        if (!r.ok || !r.body || typeof r.body.room !== 'string' || !isRoomName(r.body.room)) {
          els.dmError.textContent = r.ok ? 'The server answered something unexpected' : dmErrorText(r);
          return;
        }
        var w = r.body.with && typeof r.body.with === 'object' ? r.body.with : { uid: uid, name: null };
        st.mine.set(r.body.room, { private: true, owner: false,
          with: { uid: String(w.uid || uid), name: typeof w.name === 'string' && w.name ? w.name : null } });
        els.dmUid.value = '';
        enter(r.body.room);
        renderRooms();
        showRoom();
      });
    });

    var composer = bindComposer({
      form: els.form,
      userInput: els.user,
      textInput: els.text,
      button: els.send,
      errorEl: els.error,
      counter: els.counter,
      send: function (user, text) {
        return Promise.resolve(opts.send(st.room, user, text)).then(function (result) {
          // --auth token: a post refused for its token (401) means the session is over.
          if (result && !result.ok && result.status === 401 && auth.mode === 'token' && auth.state === 'in') {
            signedOut(result.code);
            return { ok: false, error: signedOutText(result.code) };
          }
          return result;
        });
      },
      onSent: scrollToBottom // one's own message: back to the newest
    });

    loadConfig().then(function (c) {
      st.config = c;
      composer.setLimits({ text: c.max_text, user: c.max_user });
    });

    // In a room (not general, whose old endpoints carry no name) the page is present under
    // its name: a new name enters the room anew.
    els.user.addEventListener('change', function () {
      remarkMine();
      if (!st.started || st.room === GENERAL || els.user.value === st.joinedAs) {
        renderMembers(); // "(you)" moves
        return;
      }
      st.members.delete(st.joinedAs);
      st.joinedAs = els.user.value;
      if (opts.rename) {
        renderMembers();
        opts.rename(els.user.value);
      } else {
        enter(st.room, true);
      }
    });

    document.addEventListener('visibilitychange', function () {
      if (!isHidden() && st.started) refreshRooms();
      if (!isHidden()) reconnectNow();
    });

    /** Connect (the first time), or connect again in the same room after signing in again. */
    function begin() {
      if (st.started) {
        enter(st.room, true);
        refreshRooms();
        return;
      }
      st.joinedAs = els.user.value;
      showRoom();
      renderRooms();
      renderMembers();
      renderMessages(els.list, [], els.empty);
      opts.enter(st.room, null);
      st.started = true;
      refreshRooms();
    }

    /**
     * Draw the page, read GET /config, then connect; with `"auth": "token"`, sign in first:
     * the session cookie may hold a session already (POST /auth/refresh says whose), else the
     * sign-in box comes up.
     */
    function start() {
      showRoom();
      renderRooms();
      renderMembers();
      renderMessages(els.list, [], els.empty);
      loadConfig().then(function (c) {
        auth.mode = c.auth === 'token' ? 'token' : 'off';
        if (auth.mode !== 'token') {
          begin();
          return;
        }
        main.setAttribute('data-auth', 'token');
        els.layout.hidden = true; // until signed in
        var gen = auth.gen;
        authPost('/auth/refresh').then(function (r) {
          if (gen !== auth.gen || auth.state !== 'unknown') return;
          if (r.ok && r.body && typeof r.body.name === 'string') signedIn(r.body);
          else showSignIn(r.status === 0 ? 'Could not reach the server; try again' : '');
        });
      });
    }

    // ---- accounts (--auth token) ----
    function signedIn(body) {
      auth.gen += 1;
      auth.state = 'in';
      auth.signIns += 1;
      auth.uid = typeof body.uid === 'string' ? body.uid : null;
      auth.name = body.name;
      auth.admin = body.admin === true;
      els.sessionName.textContent = body.name;
      els.myUid.textContent = auth.uid || '';
      els.dm.hidden = !auth.uid;
      els.dmError.textContent = '';
      els.session.hidden = false;
      els.authBox.hidden = true;
      els.layout.hidden = false;
      els.authError.textContent = '';
      els.authPassword.value = '';
      composer.setFixedUser(body.name);
      composer.showError('');
      setStatus('connecting', 'Connecting…', 'connecting');
      begin();
      remarkMine();
    }

    /** The sign-in box instead of the chat, with `message` (why, or nothing). */
    function showSignIn(message) {
      auth.state = 'out';
      els.session.hidden = true;
      els.layout.hidden = true;
      els.authBox.hidden = false;
      els.authError.textContent = message || '';
      els.authPassword.value = '';
      if (!els.authUser.value && auth.name) els.authUser.value = auth.name;
      st.retrying = false;
      els.reconnect.hidden = true;
      setPresence(els.dot, 'paused', 'Signed out: sign in to chat', els.status, 'signed out');
      setBusy(false);
    }

    /**
     * The session is over (the server ended it, or the user logged out): stop the transport,
     * forget what the page showed, and bring up the sign-in box saying `message`.
     */
    function endSession(message) {
      if (auth.mode !== 'token' || auth.state === 'out') return;
      auth.gen += 1;
      auth.state = 'out';
      auth.signOuts += 1;
      try { if (opts.stop) opts.stop(); } catch (e) { /* the page is signing out anyway */ }
      clearTimeout(st.roomsTimer);
      st.roomsTimer = null;
      clearTimeout(st.presenceSoon);
      st.presenceSoon = null;
      st.presenceGen += 1;
      clearTyping();
      st.members = new Map();
      st.unnamed = 0;
      renderMembers();
      st.mine = new Map(); // another account may sign in next
      els.dm.hidden = true;
      els.notice.textContent = '';
      st.shownKeys = null;
      st.lastMsgs = [];
      st.lastDecorate = null;
      renderMessages(els.list, [], els.empty);
      els.empty.textContent = 'Loading messages…';
      line('');
      if (composer) composer.showError('');
      auth.uid = null;
      showSignIn(message);
    }

    /** From the transport: the server ended the session (`code`: revoked, expired, token_revoked...). */
    function signedOut(code) {
      if (auth.mode !== 'token' || auth.state !== 'in') return;
      auth.endedBy = String(code || 'unknown');
      endSession(signedOutText(code));
    }

    /**
     * From the transport, after a failure that may be a refused token (a WebSocket that never
     * opened, an EventSource the browser gave up on...): POST /auth/refresh says whether the
     * session still holds; if not, the page signs out. Resolves to whether it is signed in.
     */
    function checkSession() {
      if (auth.mode !== 'token') return Promise.resolve(true);
      if (auth.state !== 'in') return Promise.resolve(false);
      if (!auth.checking) {
        var gen = auth.gen;
        auth.checking = authPost('/auth/refresh').then(function (r) {
          auth.checking = null;
          if (gen !== auth.gen || auth.state !== 'in') return false;
          if (r.status === 401) {
            auth.endedBy = 'refresh:' + (errorCode(r.body) || '401');
            endSession(signedOutText(errorCode(r.body)));
            return false;
          }
          if (r.ok && r.body && typeof r.body.uid === 'string' && auth.uid && r.body.uid !== auth.uid) {
            // Another account signed in in another tab: the cookie is theirs now.
            endSession('');
            signedIn(r.body);
            return true;
          }
          return true;
        });
      }
      return auth.checking;
    }

    function setBusy(busy) {
      auth.busy = busy;
      els.login.disabled = busy;
      els.signup.disabled = busy;
    }

    /** Log in or sign up with what the box holds. */
    function submitAuth(path) {
      if (auth.busy || auth.state !== 'out') return;
      var user = els.authUser.value.trim();
      var password = els.authPassword.value;
      if (user === '' || password === '') {
        els.authError.textContent = user === '' ? 'Enter your name' : 'Enter your password';
        (user === '' ? els.authUser : els.authPassword).focus();
        return;
      }
      setBusy(true);
      els.authError.textContent = '';
      var gen = auth.gen;
      authPost(path, { user: user, password: password }).then(function (r) {
        if (gen !== auth.gen || auth.state !== 'out') return;
        setBusy(false);
        if (r.ok && r.body && typeof r.body.name === 'string') {
          signedIn(r.body);
          return;
        }
        els.authError.textContent = authErrorText(r, password);
        var code = errorCode(r.body);
        if (code === 'bad_credentials' || code === 'bad_password') {
          els.authPassword.value = '';
          els.authPassword.focus();
        } else if (code === 'name_taken' || code === 'bad_user') {
          els.authUser.focus();
        }
      });
    }

    els.authForm.addEventListener('submit', function (ev) {
      ev.preventDefault();
      submitAuth('/auth/login');
    });
    els.signup.addEventListener('click', function () { submitAuth('/auth/signup'); });
    els.logout.addEventListener('click', function () {
      if (auth.state !== 'in') return;
      var name = auth.name;
      auth.endedBy = 'logout';
      endSession('Logging out…');
      setBusy(true);
      authPost('/auth/logout').then(function (r) {
        setBusy(false);
        if (auth.state !== 'out') return;
        els.authUser.value = name || els.authUser.value;
        els.authError.textContent = r.ok || r.status === 401 ? 'You logged out.'
          : 'Could not reach the server to log out; you may still be signed in.';
      });
    });

    // window.rtchatDebug: the transport's getters, and what the shared page knows.
    var hook = {};
    var shared = {
      room: function () { return st.room; },
      rooms: function () { return roomNames(); },
      roomLabels: function () {
        var out = {};
        roomNames().forEach(function (n) { out[n] = roomLabel(n); });
        return out;
      },
      removals: function () { return st.removals; },
      deletions: function () { return st.deletions; },
      tombstones: function () {
        var out = {};
        st.tombstones.forEach(function (keys, room) { out[room] = Array.from(keys); });
        return out;
      },
      unread: function () { return Array.from(st.unread).sort(); },
      members: function () { return Array.from(st.members.keys()).filter(function (n) { return st.members.get(n); }).sort(); },
      typingUsers: function () { return Array.from(st.typing.keys()).sort(); },
      pageConfig: function () { return st.config; },
      auth: function () {
        return { mode: auth.mode, state: auth.state, uid: auth.uid, name: auth.name,
          signIns: auth.signIns, signOuts: auth.signOuts, endedBy: auth.endedBy };
      },
      stick: function () { return st.stick; }
    };
    Object.keys(shared).forEach(function (k) {
      Object.defineProperty(hook, k, { enumerable: true, get: shared[k] });
    });
    var extra = opts.debug || {};
    Object.getOwnPropertyNames(extra).forEach(function (k) {
      Object.defineProperty(hook, k, Object.getOwnPropertyDescriptor(extra, k));
    });
    window.rtchatDebug = Object.freeze(hook);

    return {
      els: els,
      get room() { return st.room; },
      user: function () { return els.user.value; },
      setStatus: setStatus,
      line: line,
      showError: function (msg) { composer.showError(msg); },
      /** The page cannot send at all (no client library): the composer is off. */
      disableComposer: function () { composer.setDisabled(true); },
      config: loadConfig,
      render: render,
      loaded: loaded,
      activity: activity,
      presence: presence,
      typing: typing,
      joined: joined,
      refused: refused,
      removed: removed,
      /** The server deleted message `id` of `room` (rtchat.v1 `deleted`, SSE `deleted`, `msg:deleted`). */
      deleted: function (room, id) { deleted(room, id); },
      probeRoom: probeRoom,
      start: start,
      /** With `--auth token` (known once start() read GET /config). */
      authRequired: function () { return auth.mode === 'token'; },
      signedOut: signedOut,
      checkSession: checkSession
    };
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
    removeMessage: removeMessage,
    renderMessages: renderMessages,
    setPresence: setPresence,
    backoffDelay: backoffDelay,
    numParam: numParam,
    seconds: seconds,
    loadUserName: loadUserName,
    saveUserName: saveUserName,
    responseError: responseError,
    friendlyError: friendlyError,
    postMessage: postMessage,
    bindComposer: bindComposer,
    GENERAL: GENERAL,
    isRoomName: isRoomName,
    isDmRoom: isDmRoom,
    roomPath: roomPath,
    withQuery: withQuery,
    postTyping: postTyping,
    loadConfig: loadConfig,
    charCount: charCount,
    httpsUrl: httpsUrl,
    mountChat: mountChat
  });
})();
