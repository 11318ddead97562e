//! The client library and `rtchat client` against `rtchat serve --auth token`: tokens on
//! every transport, posts under the token's name carrying its uid, a short-lived token kept
//! fresh in band (the connection outlives it; every message once, in order), revocation and
//! refused tokens as precise errors, and the terminal chat's `--token`, `RTCHAT_TOKEN` and
//! `--login`.

use crate::common;

use std::process::Stdio;
use std::time::Duration;

use common::{client, rtchat, ws_url, Server};
use futures::StreamExt;
use rtchat_client::{Backoff, Client, Credentials, Error, Event, Message, Options, Transport};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message as Frame;

const PASSWORD: &str = "correct horse battery";

/// Fast reconnection and polling, with `credentials`.
fn options(credentials: Credentials) -> Options {
    Options {
        backoff: Backoff {
            min: Duration::from_millis(50),
            max: Duration::from_millis(400),
            ..Backoff::default()
        },
        poll_interval: Duration::from_millis(50),
        long_poll_timeout: Duration::from_secs(5),
        request_timeout: Duration::from_secs(10),
        credentials: Some(credentials),
        ..Options::default()
    }
}

/// `rtchat token --user UID --name NAME` with the server's own secret.
fn mint(server: &Server, uid: &str, name: &str, ttl: &str) -> String {
    let dir = server.data_dir.to_str().unwrap();
    let out = rtchat(
        &[
            "token",
            "--user",
            uid,
            "--name",
            name,
            "--ttl",
            ttl,
            "--data-dir",
            dir,
        ],
        &[],
    )
    .output()
    .unwrap();
    assert!(
        out.status.success(),
        "rtchat token: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// `POST /auth/signup`: the account's first token.
async fn signup(server: &Server, user: &str) -> Value {
    let res = client()
        .post(server.url("/auth/signup"))
        .json(&json!({ "user": user, "password": PASSWORD }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    res.json().await.unwrap()
}

/// `POST /auth/refresh` with `token`: a fresh token of the same session.
async fn refreshed(server: &Server, token: &str) -> String {
    let res = client()
        .post(server.url("/auth/refresh"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    body["token"].as_str().unwrap().to_owned()
}

/// Posts `text` over HTTP with `token` (under its name).
async fn post(server: &Server, token: &str, text: &str) -> u64 {
    let res = client()
        .post(server.url("/poll"))
        .bearer_auth(token)
        .json(&json!({ "text": text }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "{:?}", res.text().await);
    let body: Value = res.json().await.unwrap();
    body["id"].as_u64().unwrap()
}

/// `GET /poll` with `token`: the history as the server stores it (with `uid`s).
async fn history(server: &Server, token: &str) -> Vec<Value> {
    let res = client()
        .get(server.url("/poll"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    body["msg"].as_array().unwrap().clone()
}

/// The next event, failing the test after `within`.
async fn next(client: &mut Client, within: Duration) -> Result<Event, Error> {
    match tokio::time::timeout(within, client.next()).await {
        Ok(event) => event,
        Err(_) => panic!("{}: no event within {within:?}", client.transport()),
    }
}

/// Events until the message `id`; the messages among them.
async fn messages_until(client: &mut Client, id: u64, states: &mut Vec<String>) -> Vec<Message> {
    let mut msgs = Vec::new();
    loop {
        match next(client, Duration::from_secs(20)).await {
            Ok(Event::Message(m)) => {
                let done = m.id == id;
                msgs.push(m);
                if done {
                    return msgs;
                }
            }
            Ok(Event::State(s)) => states.push(s.to_string()),
            Ok(Event::Deleted { id }) => states.push(format!("deleted #{id}")),
            Err(e) => panic!("{}: the client failed: {e}", client.transport()),
        }
    }
}

#[tokio::test]
async fn the_library_connects_with_a_token_and_posts_under_its_name_and_uid() {
    let server = Server::start(&["--auth", "token", "--no-tls"]);
    let token = mint(&server, "u-ann", "Ann", "1h");
    for transport in Transport::ALL {
        let mut client = Client::connect(
            transport,
            &server.base,
            options(Credentials::Token(token.clone())),
        )
        .await
        .unwrap_or_else(|e| panic!("{transport}: {e}"));
        let me = client.identity().unwrap();
        assert_eq!((me.uid.as_str(), me.name.as_str()), ("u-ann", "Ann"));
        assert!(me.expires.is_some());

        // A post without a name goes out under the token's; one under its name too.
        let text = format!("hello over {transport}");
        let id = client
            .post("", &text)
            .await
            .unwrap_or_else(|e| panic!("{transport}: {e}"));
        let named = client
            .post("Ann", &format!("{text}, named"))
            .await
            .unwrap_or_else(|e| panic!("{transport}: {e}"));
        let mut states = Vec::new();
        let got = messages_until(&mut client, named, &mut states).await;
        let mine: Vec<_> = got.iter().filter(|m| m.id >= id).collect();
        assert_eq!(mine.len(), 2, "{transport}: {got:?}");
        assert!(
            mine.iter().all(|m| m.user == "Ann"),
            "{transport}: {mine:?}"
        );

        // Another name is refused, precisely.
        let refused = client.post("Mallory", "not me").await.unwrap_err();
        match &refused {
            Error::Forbidden { code, .. } => assert_eq!(code, "not_your_name"),
            Error::Rejected(text) => assert!(text.contains("name"), "{transport}: {text}"),
            other => panic!("{transport}: {other:?}"),
        }

        // The server stored the token's uid with both.
        let stored = history(&server, &token).await;
        for id in [id, named] {
            let m = stored.iter().find(|m| m["id"] == id).unwrap();
            assert_eq!(
                (&m["user"], &m["uid"]),
                (&json!("Ann"), &json!("u-ann")),
                "{m}"
            );
        }
    }
}

#[tokio::test]
async fn a_refused_token_is_a_precise_error_on_every_transport() {
    let server = Server::start(&["--auth", "token", "--no-tls"]);
    for transport in Transport::ALL {
        let e = Client::connect(
            transport,
            &server.base,
            options(Credentials::Token("not-a-jwt".into())),
        )
        .await
        .err()
        .unwrap_or_else(|| panic!("{transport}: connected with a bad token"));
        assert!(
            matches!(&e, Error::Unauthorized { code: Some(c), .. } if c == "token_malformed"),
            "{transport}: {e:?}"
        );
        // Without credentials: the server asks for a token.
        let e = Client::connect(transport, &server.base, Options::default())
            .await
            .err()
            .unwrap_or_else(|| panic!("{transport}: connected without a token"));
        assert!(
            matches!(&e, Error::Unauthorized { code: Some(c), .. } if c == "token_missing"),
            "{transport}: {e:?}"
        );
    }
    // A wrong password.
    let e = Client::connect(
        Transport::Ws,
        &server.base,
        options(Credentials::Login {
            user: "nobody".into(),
            password: "wrong password".into(),
        }),
    )
    .await
    .err()
    .unwrap();
    assert!(
        matches!(&e, Error::Unauthorized { code: Some(c), .. } if c == "bad_credentials"),
        "{e:?}"
    );
}

/// Opens an rtchat.v1 WebSocket with `token` that never refreshes, and resolves with its
/// close code once the server closes it.
async fn peer_closed(server: &Server, token: &str) -> u16 {
    let mut request = ws_url(server, "/ws").into_client_request().unwrap();
    request
        .headers_mut()
        .insert("sec-websocket-protocol", "rtchat.v1".parse().unwrap());
    request
        .headers_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    let code = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(frame) = ws.next().await {
            match frame {
                Ok(Frame::Close(Some(close))) => return u16::from(close.code),
                Ok(Frame::Close(None)) | Err(_) => return 0,
                Ok(_) => {}
            }
        }
        0
    })
    .await
    .expect("the server closes the peer when its token expires");
    code
}

#[tokio::test]
async fn a_short_token_is_refreshed_and_the_connection_outlives_it() {
    // Access tokens of 3 s, and no grace: a connection that does not refresh in time is
    // closed at its token's expiry.
    let server = Server::start(&[
        "--auth",
        "token",
        "--no-tls",
        "--token-ttl",
        "3s",
        "--token-grace",
        "0",
        "--login-rate-per-user",
        "0",
        "--login-rate-per-ip",
        "0",
    ]);
    let account = signup(&server, "ann").await;
    let session = account["token"].as_str().unwrap().to_owned();
    let uid = account["uid"].as_str().unwrap().to_owned();
    let poster = mint(&server, "u-poster", "Poster", "1h");
    post(&server, &poster, "before").await;

    // ws (rtchat.v1) logs in itself; the others are given a token of the session, which
    // `/auth/refresh` extends.
    let mut clients = Vec::new();
    for transport in Transport::ALL {
        let credentials = if transport == Transport::Ws {
            Credentials::Login {
                user: "ann".into(),
                password: PASSWORD.into(),
            }
        } else {
            Credentials::Token(refreshed(&server, &session).await)
        };
        let client = Client::connect(transport, &server.base, options(credentials))
            .await
            .unwrap_or_else(|e| panic!("{transport}: {e}"));
        let me = client.identity().unwrap();
        assert_eq!(me.uid, uid);
        clients.push((client, me.expires.unwrap()));
    }
    let first = post(&server, &poster, "m1").await;

    // Twice: a peer connection holding a token newer than every client's first one is
    // closed (4001) when it expires, so by then each client's first token has expired too.
    let mut ids = vec![first];
    for round in 0..2 {
        let peer = refreshed(&server, &session).await;
        assert_eq!(peer_closed(&server, &peer).await, 4001, "round {round}");
        ids.push(post(&server, &poster, &format!("after expiry {round}")).await);
    }
    let last = *ids.last().unwrap();

    let mut checks = Vec::new();
    for (mut client, expires) in clients {
        checks.push(tokio::spawn(async move {
            let transport = client.transport();
            let mut states = Vec::new();
            let got = messages_until(&mut client, last, &mut states).await;
            let got_ids: Vec<u64> = got.iter().map(|m| m.id).collect();
            (transport, got_ids, states, client, expires)
        }));
    }
    for check in checks {
        let (transport, got_ids, states, client, expires) = check.await.unwrap();
        // It holds a fresh token by now.
        let now = client.identity().unwrap().expires.unwrap();
        assert!(now > expires + 2, "{transport}: {expires} then {now}");
        // Every message exactly once, in order.
        assert_eq!(got_ids, ids, "{transport}: {states:?}");
        // rtchat.v1 and Socket.IO refresh in band: the connection never dropped.
        if matches!(
            transport,
            Transport::Ws | Transport::SocketIo | Transport::SocketIoSnapshots
        ) {
            assert!(
                !states.iter().any(|s| s.starts_with("disconnected")),
                "{transport}: {states:?}"
            );
        }
        // The others cannot: the server ends them at the expiry, and they go on at once
        // with the fresh token (the json WebSocket, /msgs and SSE; polls just send it).
        if matches!(
            transport,
            Transport::WsJson | Transport::Stream | Transport::Sse
        ) {
            assert!(
                states
                    .iter()
                    .any(|s| s.starts_with("disconnected") && s.contains("token expired")),
                "{transport}: {states:?}"
            );
        }
        // And it still posts, with its current (fresh) token.
        let id = client.post("", &format!("still here on {transport}")).await;
        assert!(id.is_ok(), "{transport}: {id:?}");
    }
}

#[tokio::test]
async fn a_revoked_token_ends_the_client_with_a_precise_error() {
    let server = Server::start(&["--auth", "token", "--no-tls"]);
    for (n, transport) in [Transport::Ws, Transport::SocketIo, Transport::Sse]
        .into_iter()
        .enumerate()
    {
        let account = signup(&server, &format!("rev{n}")).await;
        let token = account["token"].as_str().unwrap().to_owned();
        let mut chat = Client::connect(
            transport,
            &server.base,
            options(Credentials::Token(token.clone())),
        )
        .await
        .unwrap_or_else(|e| panic!("{transport}: {e}"));
        let res = client()
            .post(server.url("/auth/logout"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        let error = loop {
            match next(&mut chat, Duration::from_secs(20)).await {
                Ok(_) => continue,
                Err(e) => break e,
            }
        };
        assert!(
            matches!(&error, Error::TokenRevoked(_)),
            "{transport}: {error:?}"
        );
    }
}

#[tokio::test]
async fn a_token_that_cannot_be_refreshed_ends_the_client_when_it_expires() {
    // `rtchat token`'s tokens are not extended by /auth/refresh: the connection ends at
    // the expiry (no grace), and the client says why instead of retrying.
    let server = Server::start(&["--auth", "token", "--no-tls", "--token-grace", "0"]);
    let mut checks = Vec::new();
    for transport in [Transport::Ws, Transport::SocketIo, Transport::Sse] {
        let token = mint(&server, "u-eve", "Eve", "3s");
        let mut chat = Client::connect(transport, &server.base, options(Credentials::Token(token)))
            .await
            .unwrap_or_else(|e| panic!("{transport}: {e}"));
        checks.push(tokio::spawn(async move {
            loop {
                match next(&mut chat, Duration::from_secs(20)).await {
                    Ok(_) => continue,
                    Err(e) => return (transport, e),
                }
            }
        }));
    }
    for check in checks {
        let (transport, error) = check.await.unwrap();
        assert!(
            matches!(&error, Error::TokenExpired(_)),
            "{transport}: {error:?}"
        );
    }
}

/// `rtchat client ARGS` with `env` and `input` on stdin; (success, stdout).
async fn run_client(args: &[&str], env: &[(&str, &str)], input: &str) -> (bool, String) {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_rtchat"));
    cmd.arg("client")
        .args(args)
        .env("RUST_LOG", "warn")
        .env_remove("RTCHAT_TOKEN")
        .env_remove("RTCHAT_PASSWORD")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input.as_bytes()).await.unwrap();
    drop(stdin);
    let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seen = String::new();
    let read = async {
        while let Ok(Some(line)) = out.next_line().await {
            seen.push_str(&line);
            seen.push('\n');
        }
    };
    tokio::time::timeout(Duration::from_secs(30), read)
        .await
        .unwrap_or_else(|_| panic!("rtchat client did not finish: {seen}"));
    let status = tokio::time::timeout(Duration::from_secs(15), child.wait())
        .await
        .unwrap()
        .unwrap();
    (status.success(), seen)
}

#[tokio::test]
async fn the_terminal_chat_posts_under_the_tokens_name() {
    let server = Server::start(&["--auth", "token", "--no-tls"]);
    let token = mint(&server, "u-cleo", "Cleo", "1h");

    // --token; a --user that is not the token's name is not sent.
    let (ok, out) = run_client(
        &[
            "--token",
            &token,
            "--user",
            "someone",
            "--transport",
            "ws",
            &server.base,
        ],
        &[],
        "hello with --token\n",
    )
    .await;
    assert!(ok, "{out}");
    assert!(out.contains("* posting as Cleo (user id u-cleo)"), "{out}");
    // RTCHAT_TOKEN, over SSE (posts over HTTP).
    let (ok, out) = run_client(
        &["--transport", "sse", &server.base],
        &[("RTCHAT_TOKEN", &token)],
        "hello with RTCHAT_TOKEN\n",
    )
    .await;
    assert!(ok, "{out}");

    let stored = history(&server, &token).await;
    for text in ["hello with --token", "hello with RTCHAT_TOKEN"] {
        let m = stored.iter().find(|m| m["text"] == text).unwrap();
        assert_eq!(
            (&m["user"], &m["uid"]),
            (&json!("Cleo"), &json!("u-cleo")),
            "{m}"
        );
    }

    // --login, the password from RTCHAT_PASSWORD, then as the first line of stdin.
    let account = signup(&server, "dora").await;
    let (ok, out) = run_client(
        &["--login", "dora", "--transport", "socketio", &server.base],
        &[("RTCHAT_PASSWORD", PASSWORD)],
        "hello with --login\n",
    )
    .await;
    assert!(ok, "{out}");
    let (ok, out) = run_client(
        &["--login", "dora", "--transport", "poll", &server.base],
        &[],
        &format!("{PASSWORD}\nhello with a password on stdin\n"),
    )
    .await;
    assert!(ok, "{out}");
    let stored = history(&server, &token).await;
    for text in ["hello with --login", "hello with a password on stdin"] {
        let m = stored.iter().find(|m| m["text"] == text).unwrap();
        assert_eq!(
            (&m["user"], &m["uid"]),
            (&json!("dora"), &account["uid"]),
            "{m}"
        );
    }
    assert!(
        !stored.iter().any(|m| m["text"] == PASSWORD),
        "the password was posted: {stored:?}"
    );
}

#[tokio::test]
async fn the_terminal_chat_explains_a_refused_token_and_fails() {
    let server = Server::start(&["--auth", "token", "--no-tls"]);
    for transport in ["ws", "socketio", "sse", "poll"] {
        let (ok, out) = run_client(
            &[
                "--token",
                "not-a-jwt",
                "--transport",
                transport,
                &server.base,
            ],
            &[],
            "never posted\n",
        )
        .await;
        assert!(!ok, "{transport}: {out}");
        assert!(out.contains("! error: "), "{transport}: {out}");
        assert!(out.contains("(token_malformed)"), "{transport}: {out}");
        assert!(out.contains("copy the whole token"), "{transport}: {out}");
    }
    // No token at all: the hint names the flags.
    let (ok, out) = run_client(&["--transport", "ws", &server.base], &[], "").await;
    assert!(!ok, "{out}");
    assert!(out.contains("(token_missing)"), "{out}");
    assert!(out.contains("--token TOKEN"), "{out}");
    // A wrong password.
    let (ok, out) = run_client(
        &["--login", "nobody", &server.base],
        &[("RTCHAT_PASSWORD", "wrong password")],
        "",
    )
    .await;
    assert!(!ok, "{out}");
    assert!(out.contains("(bad_credentials)"), "{out}");
    assert!(out.contains("wrong user name or password"), "{out}");
}
