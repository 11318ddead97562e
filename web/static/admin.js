/*
 * rtchat admin page (/admin): with `rtchat serve --auth token`, an administrator signs in
 * (POST /auth/login; the HttpOnly session cookie then carries the session on every fetch) and
 * sees GET /admin/overview, re-read every 2 s (`?refresh=MS`) while the tab is visible: clients
 * per transport, rooms, who is online where, bans, mutes and the newest audit entries. Buttons
 * call the admin API (ban, kick, mute, unban, unmute) and DELETE /rooms/{room}/msgs/{id}; the
 * server's answer is shown. A signed-in account that is not an administrator is told so.
 * Text only (textContent, createElement): nothing the server sends is parsed as HTML.
 */
(function () {
  'use strict';

  var params = new URLSearchParams(window.location.search);
  var REFRESH = (function () {
    var n = Number(params.get('refresh'));
    return isFinite(n) && n >= 100 ? Math.min(n, 600000) : 2000;
  })();

  var TRANSPORTS = {
    longpoll: 'Long polls',
    stream: 'HTTP/2 streams (/msgs)',
    sse: 'Server-Sent Events',
    ws: 'WebSocket (rtchat.v1)',
    'ws-json': 'WebSocket (json)',
    socketio: 'Socket.IO',
  };

  function $(id) { return document.getElementById(id); }

  /** An element with attributes and children (strings become text nodes). */
  function h(tag, attrs, children) {
    var el = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) {
      var v = attrs[k];
      if (v === null || v === undefined || v === false) return;
      if (k === 'text') el.textContent = String(v);
      else if (k === 'class') el.className = v;
      else if (k === 'hidden') el.hidden = true;
      else el.setAttribute(k, v === true ? '' : String(v));
    });
    (children || []).forEach(function (c) {
      if (c === null || c === undefined) return;
      el.appendChild(typeof c === 'string' ? document.createTextNode(c) : c);
    });
    return el;
  }

  var state = {
    view: 'loading',   // loading | out | not-admin | in | off
    name: null,
    overview: null,
    loads: 0,          // overviews shown
    timer: null,
    inFlight: false,
    lastAction: null,  // {status, body}
    shown: null,       // the overview shown, as JSON
    names: {},         // uid -> name, of everyone seen online (and this administrator)
  };

  /** fetch with the session cookie; resolves to {status, body} (JSON when it is JSON). */
  function call(method, path, body) {
    var init = { method: method, cache: 'no-store', credentials: 'same-origin', headers: { Accept: 'application/json' } };
    if (body !== undefined) {
      init.headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    return fetch(path, init).then(function (res) {
      return res.text().then(function (raw) {
        var parsed = raw;
        try { parsed = JSON.parse(raw); } catch (e) { /* not JSON */ }
        return { status: res.status, body: parsed };
      });
    }, function (err) {
      return { status: 0, body: null, error: (err && err.message) || String(err) };
    });
  }

  function code(r) {
    return r.body && typeof r.body === 'object' && typeof r.body.code === 'string' ? r.body.code : '';
  }

  function errorText(r) {
    if (r.status === 0) return 'Could not reach the server' + (r.error ? ': ' + r.error : '');
    var words = r.body && typeof r.body === 'object' && typeof r.body.error === 'string' ? r.body.error
      : typeof r.body === 'string' && r.body ? r.body : 'HTTP ' + r.status;
    var c = code(r);
    return words + ' (HTTP ' + r.status + (c ? ', ' + c : '') + ')';
  }

  function setStatus(text) { $('admin-status').textContent = text; }

  function show(view) {
    state.view = view;
    $('signin').hidden = view !== 'out';
    $('not-admin').hidden = view !== 'not-admin';
    $('dashboard').hidden = view !== 'in';
    document.body.setAttribute('data-view', view);
    if (view !== 'in') stopRefresh();
  }

  // ---- signing in and out ----

  function signedOut(message) {
    show('out');
    state.name = null;
    $('signin-error').textContent = message || '';
    setStatus('Not signed in.');
  }

  function notAdmin(name) {
    show('not-admin');
    $('not-admin-text').textContent = (name ? 'Signed in as ' + name + ', which is ' : 'This account is ') +
      'not an administrator. Log out and sign in with an administrator account ' +
      '(rtchat user grant-admin ID makes one).';
    setStatus('Signed in, but not as an administrator.');
  }

  function loginErrorText(r) {
    var c = code(r);
    if (r.status === 0) return 'Could not reach the server; try again';
    if (c === 'bad_credentials') return 'Wrong name or password';
    if (c === 'login_rate_limited' || r.status === 429) return 'Too many attempts; try again in a minute';
    if (c === 'login_busy' || r.status === 503) return 'The server is busy; try again in a moment';
    if (r.status === 404) return 'This server has no accounts (start it with rtchat serve --auth token)';
    return errorText(r);
  }

  $('signin-form').addEventListener('submit', function (ev) {
    ev.preventDefault();
    var user = $('signin-user').value.trim();
    var password = $('signin-password').value;
    if (!user || !password) {
      $('signin-error').textContent = 'Give your name and password';
      return;
    }
    var button = $('signin-submit');
    button.disabled = true;
    $('signin-error').textContent = '';
    call('POST', '/auth/login', { user: user, password: password }).then(function (r) {
      button.disabled = false;
      if (r.status !== 200 || !r.body || typeof r.body !== 'object') {
        $('signin-error').textContent = loginErrorText(r);
        return;
      }
      $('signin-password').value = '';
      state.name = r.body.name || user;
      if (r.body.admin !== true) {
        notAdmin(state.name);
        return;
      }
      load();
    });
  });

  function logOut() {
    call('POST', '/auth/logout').then(function () { signedOut('You logged out.'); });
  }
  $('logout').addEventListener('click', logOut);
  $('not-admin-logout').addEventListener('click', logOut);

  // ---- the overview ----

  function stopRefresh() {
    if (state.timer) clearTimeout(state.timer);
    state.timer = null;
  }

  function schedule() {
    stopRefresh();
    if (state.view !== 'in' || document.hidden) return;
    state.timer = setTimeout(load, REFRESH);
  }

  /** Read GET /admin/overview and show what it says (or why not). */
  function load() {
    if (state.inFlight) return;
    state.inFlight = true;
    stopRefresh();
    call('GET', '/admin/overview').then(function (r) {
      state.inFlight = false;
      var c = code(r);
      if (r.status === 200 && r.body && typeof r.body === 'object') {
        if (state.view !== 'in') show('in');
        render(r.body);
        setStatus('Updated ' + new Date().toLocaleTimeString() + ' · every ' + (REFRESH / 1000) + ' s');
        schedule();
      } else if (r.status === 401) {
        signedOut(state.view === 'in' ? 'You were signed out.' : '');
      } else if (r.status === 403 && c === 'admin_only') {
        notAdmin(state.name);
      } else if (r.status === 403 && c === 'banned') {
        signedOut(errorText(r));
      } else if (r.status === 404 && c === 'auth_off') {
        show('off');
        setStatus('This server has no users to administer: start it with rtchat serve --auth token.');
      } else {
        // A network error or a failing server: keep what is shown, say so, try again.
        if (state.view === 'loading') show('out');
        setStatus('Could not update: ' + errorText(r) + '; retrying.');
        if (state.view === 'in') state.timer = setTimeout(load, REFRESH);
      }
    });
  }

  document.addEventListener('visibilitychange', function () {
    if (!document.hidden && state.view === 'in' && !state.timer && !state.inFlight) load();
  });

  function fmtTime(ms) {
    var d = new Date(ms);
    return isNaN(d.getTime()) ? String(ms) : d.toLocaleString();
  }

  function fmtUntil(until) {
    return until === null || until === undefined ? 'until lifted' : 'until ' + fmtTime(until * 1000);
  }

  /** Replace `list`'s children with `items`, showing `empty` when there are none. */
  function fill(list, empty, items) {
    list.replaceChildren.apply(list, items);
    $(empty).hidden = items.length > 0;
  }

  function render(o) {
    state.loads += 1;
    // Nothing changed: leave the page alone (no focus or button lost under the pointer).
    var json = JSON.stringify(o);
    if (json === state.shown) return;
    state.shown = json;
    state.overview = o;
    var names = state.names; // uid -> name, from presence (and this administrator's own)
    if (o.you && o.you.uid) {
      names[o.you.uid] = o.you.name;
      state.name = o.you.name;
      $('session-name').textContent = 'Signed in as ' + o.you.name + ' (administrator)';
    }
    (o.rooms || []).forEach(function (room) {
      (room.users || []).forEach(function (u) { if (u.uid) names[u.uid] = u.user; });
    });
    var who = function (uid) { return names[uid] ? names[uid] + ' (' + uid + ')' : uid; };

    $('transports').replaceChildren.apply($('transports'), (o.transports || []).map(function (t) {
      return h('tr', { 'data-transport': t.transport }, [
        h('th', { scope: 'row' }, [TRANSPORTS[t.transport] || t.transport, ' ',
          h('code', { text: t.transport })]),
        h('td', { class: 'num count', text: t.clients }),
      ]);
    }));

    fill($('rooms'), 'rooms-empty', (o.rooms || []).map(function (room) {
      return h('tr', { 'data-room': room.name }, [
        h('th', { scope: 'row', dir: 'auto', text: room.name }),
        h('td', { class: 'num online', text: room.online }),
        h('td', { class: 'num last', text: room.last }),
      ]);
    }));

    var groups = (o.rooms || []).filter(function (room) { return (room.users || []).length > 0; })
      .map(function (room) {
        return h('section', { class: 'online-room', 'data-room': room.name }, [
          h('h3', {}, ['In ', h('span', { dir: 'auto', text: room.name }),
            h('span', { class: 'muted', text: ' · ' + room.online + ' online' })]),
          h('ul', { class: 'online-users' }, room.users.map(function (u) { return userItem(room.name, u); })),
        ]);
      });
    fill($('online'), 'online-empty', groups);

    fill($('bans'), 'bans-empty', (o.bans || []).map(function (b) {
      return h('li', { 'data-uid': b.uid }, [
        h('div', { class: 'sanction-text' }, [
          h('strong', { dir: 'auto', text: who(b.uid) }),
          ' — ', h('span', { class: 'reason', dir: 'auto', text: b.reason }),
          h('span', { class: 'muted', text: ' · ' + fmtUntil(b.until) + ' · by ' + (names[b.by] || b.by) }),
        ]),
        h('button', { type: 'button', class: 'secondary unban', 'aria-label': 'Unban ' + who(b.uid), text: 'Unban' }),
      ]);
    }));

    fill($('mutes'), 'mutes-empty', (o.mutes || []).map(function (m) {
      return h('li', { 'data-uid': m.uid, 'data-room': m.room }, [
        h('div', { class: 'sanction-text' }, [
          h('strong', { dir: 'auto', text: who(m.uid) }), ' in ', h('span', { dir: 'auto', text: m.room }),
          ' — ', h('span', { class: 'reason', dir: 'auto', text: m.reason }),
          h('span', { class: 'muted', text: ' · ' + fmtUntil(m.until) + ' · by ' + (names[m.by] || m.by) }),
        ]),
        h('button', { type: 'button', class: 'secondary unmute', 'aria-label': 'Unmute ' + who(m.uid) + ' in ' + m.room, text: 'Unmute' }),
      ]);
    }));

    fill($('audit'), 'audit-empty', (o.audit || []).map(function (e) {
      return h('li', { 'data-action': e.action, 'data-target': e.target, 'data-id': e.id }, [
        h('span', { class: 'muted audit-time', text: fmtTime(e.at) }), ' ',
        h('strong', { dir: 'auto', class: 'audit-actor', text: names[e.actor] || e.actor }), ' ',
        h('span', { class: 'audit-action', text: e.action }), ' ',
        h('span', { dir: 'auto', class: 'audit-target', text: who(e.target) }),
        e.room ? ' in ' : null, e.room ? h('span', { dir: 'auto', text: e.room }) : null,
        e.reason ? ' — ' : null, e.reason ? h('span', { class: 'reason', dir: 'auto', text: e.reason }) : null,
      ]);
    }));
  }

  function userItem(room, u) {
    var name = u.user;
    var li = h('li', { class: 'online-user', 'data-user': name, 'data-uid': u.uid || '' }, [
      h('span', { class: 'online-name' }, [h('strong', { dir: 'auto', text: name }),
        u.uid ? h('code', { class: 'muted', text: ' ' + u.uid }) : null]),
    ]);
    if (u.uid) {
      li.appendChild(h('span', { class: 'admin-buttons' }, [
        h('button', { type: 'button', class: 'kick secondary', 'aria-label': 'Kick ' + name, text: 'Kick' }),
        h('button', { type: 'button', class: 'ban', 'aria-label': 'Ban ' + name, text: 'Ban' }),
        h('button', { type: 'button', class: 'mute secondary', 'aria-label': 'Mute ' + name + ' in ' + room, text: 'Mute in ' + room }),
      ]));
    }
    return li;
  }

  // ---- actions ----

  /** `{reason?, for?}` from the shared fields (`lasting`: whether a duration applies). */
  function sanctionBody(lasting) {
    var body = {};
    var reason = $('reason').value.trim();
    var duration = $('duration').value.trim();
    if (reason) body.reason = reason;
    if (lasting && duration) body['for'] = duration;
    return body;
  }

  function act(what, method, path, body) {
    var out = $('action-result');
    out.textContent = what + '…';
    out.removeAttribute('data-ok');
    return call(method, path, body).then(function (r) {
      state.lastAction = r;
      var ok = r.status >= 200 && r.status < 300;
      out.setAttribute('data-ok', ok ? 'true' : 'false');
      out.textContent = ok
        ? what + ': done' + (r.body && r.body.audit !== undefined ? ' (audit entry ' + r.body.audit + ')' : '') + '.'
        : what + ': refused: ' + errorText(r);
      if (r.status === 401) signedOut('You were signed out.');
      else load();
      return r;
    });
  }

  var enc = encodeURIComponent;
  function ban(uid, label) {
    return act('Ban ' + label, 'POST', '/admin/users/' + enc(uid) + '/ban', sanctionBody(true));
  }
  function kick(uid, label) {
    return act('Kick ' + label, 'POST', '/admin/users/' + enc(uid) + '/kick', sanctionBody(false));
  }
  function mute(room, uid, label) {
    return act('Mute ' + label + ' in ' + room, 'POST', '/admin/rooms/' + enc(room) + '/mutes/' + enc(uid), sanctionBody(true));
  }

  $('online').addEventListener('click', function (ev) {
    var button = ev.target.closest('button');
    if (!button) return;
    var li = button.closest('li.online-user');
    var room = button.closest('.online-room').getAttribute('data-room');
    var uid = li.getAttribute('data-uid');
    var label = li.getAttribute('data-user');
    if (button.classList.contains('kick')) kick(uid, label);
    else if (button.classList.contains('ban')) ban(uid, label);
    else if (button.classList.contains('mute')) mute(room, uid, label);
  });

  $('bans').addEventListener('click', function (ev) {
    var button = ev.target.closest('button.unban');
    if (!button) return;
    var uid = button.closest('li').getAttribute('data-uid');
    act('Unban ' + (state.names[uid] || uid), 'DELETE', '/admin/users/' + enc(uid) + '/ban');
  });

  $('mutes').addEventListener('click', function (ev) {
    var button = ev.target.closest('button.unmute');
    if (!button) return;
    var li = button.closest('li');
    var uid = li.getAttribute('data-uid');
    var room = li.getAttribute('data-room');
    act('Unmute ' + (state.names[uid] || uid) + ' in ' + room, 'DELETE', '/admin/rooms/' + enc(room) + '/mutes/' + enc(uid));
  });

  function byId(then) {
    var uid = $('user-uid').value.trim();
    if (!uid) {
      $('action-result').setAttribute('data-ok', 'false');
      $('action-result').textContent = 'Give a user id.';
      $('user-uid').focus();
      return;
    }
    then(uid);
  }
  $('user-form').addEventListener('submit', function (ev) { ev.preventDefault(); });
  $('user-ban').addEventListener('click', function () { byId(function (uid) { ban(uid, uid); }); });
  $('user-kick').addEventListener('click', function () { byId(function (uid) { kick(uid, uid); }); });
  $('user-mute').addEventListener('click', function () {
    byId(function (uid) { mute($('user-room').value.trim() || 'general', uid, uid); });
  });

  $('delete-form').addEventListener('submit', function (ev) {
    ev.preventDefault();
    var room = $('delete-room').value.trim();
    var id = $('delete-id').value.trim();
    var out = $('delete-result');
    if (!room || !/^[0-9]+$/.test(id)) {
      out.setAttribute('data-ok', 'false');
      out.textContent = 'Give a room and a message id (a number).';
      return;
    }
    var button = $('delete-submit');
    button.disabled = true;
    out.removeAttribute('data-ok');
    out.textContent = 'Deleting message ' + id + ' in ' + room + '…';
    call('DELETE', '/rooms/' + enc(room) + '/msgs/' + enc(id)).then(function (r) {
      button.disabled = false;
      state.lastAction = r;
      var ok = r.status >= 200 && r.status < 300;
      out.setAttribute('data-ok', ok ? 'true' : 'false');
      out.textContent = ok
        ? 'Deleted message ' + id + ' in ' + room +
          (r.body && r.body.audit !== undefined ? ' (audit entry ' + r.body.audit + ')' : '') + '.'
        : 'Message ' + id + ' in ' + room + ' was not deleted: ' + errorText(r);
      if (ok) load();
    });
  });

  // A debug hook for the browser tests.
  window.rtchatAdmin = Object.freeze({
    get view() { return state.view; },
    get loads() { return state.loads; },
    get overview() { return state.overview; },
    get lastAction() { return state.lastAction; },
    get refresh() { return REFRESH; },
  });

  // Signed in already (the session cookie)? The overview says.
  show('loading');
  load();
})();
