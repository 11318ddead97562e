/*
 * rtchat home page: the transport badges and the HTTPS link say what this server really
 * offers, from GET /config (https_port: the port its HTTPS listener bound, or null;
 * socketio_client: whether the Socket.IO browser client is in this build).
 * Text only (textContent, createElement): nothing is parsed as HTML.
 */
(function () {
  'use strict';

  function badge(el, cls, text, title) {
    if (!el) return;
    el.className = 'badge ' + cls;
    el.textContent = text;
    if (title) el.title = title;
  }

  /** `https://<this page's host>:<port>/http2` (an IPv6 host in brackets). */
  function httpsPage(port) {
    var host = window.location.hostname;
    if (host.indexOf(':') >= 0 && host.charAt(0) !== '[') host = '[' + host + ']';
    return 'https://' + host + ':' + port + '/http2';
  }

  function apply(c) {
    var where = document.getElementById('https-where');
    if (typeof c.https_port === 'number' && c.https_port > 0) {
      var url = httpsPage(c.https_port);
      var a = document.createElement('a');
      a.id = 'https-link';
      a.href = url;
      a.textContent = url;
      where.textContent = 'Browsers speak HTTP/2 only over HTTPS: open it at ';
      where.appendChild(a);
      where.appendChild(document.createTextNode('.'));
    } else {
      badge(document.getElementById('badge-http2'), 'off', 'TLS off',
        'This server has no HTTPS listener, so browsers cannot use HTTP/2 here');
      where.textContent = 'Browsers speak HTTP/2 only over HTTPS, and this server has no HTTPS ' +
        'listener (it was started with --no-tls, or its HTTPS port was taken): here the stream ' +
        'runs over HTTP/1.1.';
    }
    if (c.socketio_client === false) {
      badge(document.getElementById('badge-socketio'), 'unavailable', 'unavailable',
        'The Socket.IO browser client is not in this build');
      var note = document.getElementById('socketio-note');
      note.textContent = 'Unavailable here: the Socket.IO browser client is not in this build of ' +
        'rtchat. "scripts/setup" (or a build with npm present) installs it; then rebuild rtchat ' +
        'with "cargo build" and restart it.';
      note.hidden = false;
    }
    document.body.setAttribute('data-config', 'applied');
  }

  fetch('/config', { cache: 'no-store', headers: { Accept: 'application/json' } })
    .then(function (res) { return res.ok ? res.json() : null; })
    .then(function (c) {
      if (c && typeof c === 'object') apply(c);
      else document.body.setAttribute('data-config', 'missing');
    }, function () { document.body.setAttribute('data-config', 'missing'); });
})();
