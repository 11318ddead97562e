//! `--auth token`: every transport refuses a request without a good token (401 with a precise
//! code), posts carry the token's user id and name (another name is 403), `rtchat token`
//! mints tokens the server takes, `rtchat secret rotate` keeps old tokens only through the
//! grace period, and issuers' public keys are chosen by `kid`.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use futures::SinkExt;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use crate::common::{client, rtchat, temp_dir, ws_json, ws_url, Server};

pub(crate) const SECRET: &[u8] = b"an rtchat test secret of at least thirty-two bytes";

pub(crate) fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A `--jwt-secret-file` holding [`SECRET`].
pub(crate) fn secret_file() -> PathBuf {
    let dir = temp_dir("auth-secret");
    let file = dir.join("secret");
    std::fs::write(&file, SECRET).unwrap();
    file
}

/// A server with `--auth token` and the secret file (and `extra` flags).
pub(crate) fn server(extra: &[&str]) -> Server {
    let file = secret_file();
    let mut args = vec![
        "--auth",
        "token",
        "--jwt-secret-file",
        file.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    Server::start(&args)
}

/// An HS256 token signed with `secret` whose claims are `claims`.
pub(crate) fn hs256(secret: &[u8], claims: Value) -> String {
    let header = Header {
        kid: Some("secret-file".into()),
        ..Header::new(Algorithm::HS256)
    };
    jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(secret).unwrap()).unwrap()
}

/// A good token for `sub`, named `name`, for an hour.
pub(crate) fn token(sub: &str, name: &str) -> String {
    hs256(
        SECRET,
        json!({"sub": sub, "name": name, "exp": now() + 3600, "jti": format!("j-{sub}")}),
    )
}

/// An administrator's token (`admin: true`).
pub(crate) fn admin() -> String {
    hs256(
        SECRET,
        json!({"sub": "u-root", "name": "Root", "exp": now() + 3600, "admin": true, "jti": "j-root"}),
    )
}

/// `METHOD path` as `token`'s user (with a JSON body unless it is `Null`): the status and the
/// JSON answer (or its text as a JSON string).
pub(crate) async fn call(
    server: &Server,
    method: &str,
    path: &str,
    token: &str,
    body: Value,
) -> (u16, Value) {
    let http = client();
    let url = server.url(path);
    let mut req = match method {
        "GET" => http.get(url),
        "POST" => http.post(url),
        "PUT" => http.put(url),
        "DELETE" => http.delete(url),
        _ => unreachable!("{method}"),
    };
    if !body.is_null() {
        req = req.json(&body);
    }
    let res = req.bearer_auth(token).send().await.unwrap();
    let status = res.status().as_u16();
    let text = res.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// The ways a token can be bad, and the code each is refused with.
fn bad_tokens() -> Vec<(&'static str, Option<String>, &'static str)> {
    let t = now();
    vec![
        ("no token", None, "token_missing"),
        ("not a JWT", Some("not-a-jwt".into()), "token_malformed"),
        (
            "signed with another secret",
            Some(hs256(
                b"another secret, also of thirty-two bytes or more",
                json!({"sub": "u1", "exp": t + 3600}),
            )),
            "token_bad_signature",
        ),
        (
            "expired",
            Some(hs256(SECRET, json!({"sub": "u1", "exp": t - 60}))),
            "token_expired",
        ),
        (
            "not yet valid",
            Some(hs256(
                SECRET,
                json!({"sub": "u1", "exp": t + 3600, "nbf": t + 600}),
            )),
            "token_not_yet_valid",
        ),
        (
            "without sub",
            Some(hs256(SECRET, json!({"exp": t + 3600}))),
            "token_bad_claims",
        ),
    ]
}

async fn refused(req: reqwest::RequestBuilder, what: &str, code: &str) {
    let res = req.send().await.unwrap();
    assert_eq!(res.status(), 401, "{what}");
    assert!(
        res.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer"),
        "{what}: WWW-Authenticate"
    );
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["code"], code, "{what}: {body}");
    assert!(body["error"].as_str().is_some_and(|e| !e.is_empty()));
}

/// `GET /poll` with `token`: the snapshot of `general`.
async fn poll_as(server: &Server, token: &str) -> Value {
    let res = client()
        .get(server.url("/poll"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    res.json().await.unwrap()
}

/// The WebSocket upgrade's answer status for `path` (with `token` in the query).
pub(crate) async fn ws_status(server: &Server, path: &str) -> u16 {
    let req = ws_url(server, path).into_client_request().unwrap();
    match tokio_tungstenite::connect_async(req).await {
        Ok(_) => 101,
        Err(WsError::Http(res)) => res.status().as_u16(),
        Err(e) => panic!("upgrade {path}: {e}"),
    }
}

#[tokio::test]
async fn every_http_transport_and_the_upgrade_refuse_a_bad_token() {
    let server = server(&[]);
    let http = client();
    for (what, token, code) in bad_tokens() {
        let with = |req: reqwest::RequestBuilder| match &token {
            Some(t) => req.bearer_auth(t),
            None => req,
        };
        let post = json!({"user": "Ann", "text": "hi"});
        for path in ["/poll", "/msgs", "/rooms/a/msgs"] {
            refused(
                with(http.post(server.url(path)).json(&post)),
                &format!("{what}: POST {path}"),
                code,
            )
            .await;
        }
        for path in [
            "/poll",
            "/poll?since=0&timeout=1",
            "/msgs",
            "/events",
            "/rooms",
            "/rooms/a/poll",
            "/rooms/a/events",
        ] {
            refused(
                with(http.get(server.url(path))),
                &format!("{what}: GET {path}"),
                code,
            )
            .await;
        }
        let query = token
            .as_ref()
            .map_or_else(String::new, |t| format!("?token={t}"));
        for path in ["/ws", "/"] {
            assert_eq!(
                ws_status(&server, &format!("{path}{query}")).await,
                401,
                "{what}: WebSocket upgrade at {path}"
            );
        }
    }
    // Nothing got in.
    let good = token("u1", "Ann");
    let body = poll_as(&server, &good).await;
    assert_eq!(body["msg"], json!([]), "no refused post was stored: {body}");
    // The pages and the health checks need no token.
    for path in ["/", "/polling", "/config", "/healthz"] {
        let res = http.get(server.url(path)).send().await.unwrap();
        assert_eq!(res.status(), 200, "GET {path} without a token");
    }
    assert!(
        !server.stderr().contains(&good) && !server.stderr().contains("token=ey"),
        "no token in the log"
    );
}

#[tokio::test]
async fn posts_carry_the_tokens_user_and_another_name_is_forbidden() {
    let server = server(&[]);
    let http = client();
    let ann = token("u-ann", "Ann");
    // The name from the token, given or not.
    for body in [
        json!({"user": "Ann", "text": "one"}),
        json!({"text": "two"}),
    ] {
        let res = http
            .post(server.url("/poll"))
            .bearer_auth(&ann)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "{body}");
    }
    let res = http
        .post(server.url("/rooms/r/msgs"))
        .bearer_auth(&ann)
        .json(&json!({"user": "Bob", "text": "as Bob"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["code"], "not_your_name", "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("\"Ann\""),
        "{body}"
    );
    // The cookie carries a token just as well.
    let res = http
        .post(server.url("/poll"))
        .header("cookie", format!("rtchat_session={ann}"))
        .json(&json!({"text": "three"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let msgs = poll_as(&server, &ann).await;
    let msgs = msgs["msg"].as_array().unwrap();
    assert_eq!(msgs.len(), 3, "{msgs:?}");
    for m in msgs {
        assert_eq!(m["user"], "Ann", "{m}");
        assert_eq!(m["uid"], "u-ann", "{m}");
    }
    // Presence under another name than the token's is refused too.
    let res = http
        .get(server.url("/rooms/r/poll?user=Bob"))
        .bearer_auth(&ann)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
}

#[tokio::test]
async fn websockets_post_as_their_tokens_user() {
    let server = server(&[]);
    let ann = token("u-ann", "Ann");
    // rtchat.v1 with the token in the query.
    let mut v1 = v1_connect(&server, &format!("/ws?token={ann}")).await;
    let hello = ws_json(&mut v1).await;
    assert_eq!(hello["type"], "history", "{hello}");
    // The course's json protocol with the session cookie, at `/`.
    let mut req = ws_url(&server, "/").into_client_request().unwrap();
    req.headers_mut().insert(
        "cookie",
        format!("rtchat_session={}", token("u-bob", "Bob"))
            .parse()
            .unwrap(),
    );
    let (mut course, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    assert_eq!(
        ws_json(&mut course).await["msg"],
        json!([]),
        "the first snapshot"
    );

    send(
        &mut v1,
        json!({"type": "post", "user": "Bob", "text": "not me", "ref": 1}),
    )
    .await;
    let error = skip_presence(&mut v1).await;
    assert_eq!(error["type"], "error", "{error}");
    assert_eq!(error["ref"], 1);
    assert!(
        error["error"].as_str().unwrap().contains("\"Ann\""),
        "{error}"
    );

    send(
        &mut v1,
        json!({"type": "post", "text": "from Ann", "ref": 2}),
    )
    .await;
    let (mut acked, mut seen) = (false, None);
    while !(acked && seen.is_some()) {
        let frame = skip_presence(&mut v1).await;
        match frame["type"].as_str() {
            Some("ack") => acked = true,
            Some("msg") => seen = Some(frame["msg"].clone()),
            _ => {}
        }
    }
    let seen = seen.unwrap();
    assert_eq!(
        (&seen["user"], &seen["uid"]),
        (&json!("Ann"), &json!("u-ann"))
    );

    // Bob's course client sees it, then posts under his own name (the json protocol's
    // snapshot after it has both).
    let snapshot = ws_json(&mut course).await;
    assert_eq!(snapshot["msg"][0]["user"], "Ann", "{snapshot}");
    send(&mut course, json!({"user": "Bob", "text": "hi Ann"})).await;
    let snapshot = ws_json(&mut course).await;
    assert_eq!(snapshot["msg"][0]["uid"], "u-bob", "{snapshot}");
    send(&mut course, json!({"user": "Ann", "text": "as Ann"})).await;
    let error = ws_json(&mut course).await;
    assert!(
        error["error"].as_str().unwrap().contains("\"Bob\""),
        "{error}"
    );
}

/// The next rtchat.v1 frame that is not about presence (Bob's course client comes and goes).
pub(crate) async fn skip_presence(ws: &mut crate::common::Ws) -> Value {
    loop {
        let frame = ws_json(ws).await;
        if frame["type"] != "presence" {
            return frame;
        }
    }
}

/// Sends `frame` as a text message.
pub(crate) async fn send(ws: &mut crate::common::Ws, frame: Value) {
    ws.send(Message::text(frame.to_string())).await.unwrap();
}

/// `rtchat ARGS` to completion: (success, stdout, stderr).
fn run(args: &[&str]) -> (bool, String, String) {
    let out = rtchat(args, &[]).output().unwrap();
    (
        out.status.success(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

fn mint(data_dir: &Path, user: &str, name: &str) -> String {
    let dir = data_dir.to_str().unwrap();
    let (ok, out, err) = run(&["token", "--user", user, "--name", name, "--data-dir", dir]);
    assert!(ok, "rtchat token: {err}");
    out.trim().to_owned()
}

async fn post_status(server: &Server, token: &str) -> (u16, Value) {
    let res = client()
        .post(server.url("/poll"))
        .bearer_auth(token)
        .json(&json!({"text": "hello"}))
        .send()
        .await
        .unwrap();
    (res.status().as_u16(), res.json().await.unwrap())
}

#[tokio::test]
async fn cli_tokens_verify_and_rotation_keeps_old_ones_through_the_grace_period_only() {
    let server = Server::start(&["--auth", "token"]);
    let dir = server.data_dir.clone();
    let first = mint(&dir, "u1", "Ann");
    assert_eq!(post_status(&server, &first).await.0, 200);

    // A rotation with a grace period: the old token still verifies, and one signed with the
    // new key is taken by the running server.
    let d = dir.to_str().unwrap();
    let (ok, out, err) = run(&["secret", "rotate", "--grace", "1h", "--data-dir", d]);
    assert!(ok, "{err}");
    assert!(out.contains("new signing key rtchat-"), "{out}");
    let second = mint(&dir, "u2", "Bob");
    assert_ne!(kid(&first), kid(&second), "a new kid");
    assert_eq!(post_status(&server, &second).await.0, 200, "the new key");
    assert_eq!(
        post_status(&server, &first).await.0,
        200,
        "within the grace"
    );

    // A rotation without grace retires both older keys at once.
    let (ok, _, err) = run(&["secret", "rotate", "--grace", "0s", "--data-dir", d]);
    assert!(ok, "{err}");
    let third = mint(&dir, "u3", "Cy");
    assert_eq!(post_status(&server, &third).await.0, 200, "the newest key");
    for old in [&first, &second] {
        let (status, body) = post_status(&server, old).await;
        assert_eq!(status, 401, "a retired key: {body}");
        assert_eq!(body["code"], "token_unknown_key", "{body}");
    }
    let (_, out, _) = run(&["secret", "list", "--data-dir", d]);
    assert_eq!(out.lines().count(), 3, "{out}");
    assert_eq!(out.matches("(signs new tokens)").count(), 1, "{out}");
    assert!(out.contains(&kid(&third)), "{out}");
}

fn kid(token: &str) -> String {
    jsonwebtoken::decode_header(token).unwrap().kid.unwrap()
}

/// A new key pair: (private PEM, public PEM).
fn key_pair(alg: &'static rcgen::SignatureAlgorithm) -> (String, String) {
    let pair = rcgen::KeyPair::generate_for(alg).unwrap();
    (pair.serialize_pem(), pair.public_key_pem())
}

#[tokio::test]
async fn issuers_public_keys_are_chosen_by_kid() {
    let dir = temp_dir("auth-keys");
    let (ec_private, ec_public) = key_pair(&rcgen::PKCS_ECDSA_P256_SHA256);
    let (ed_private, ed_public) = key_pair(&rcgen::PKCS_ED25519);
    std::fs::write(dir.join("ec.pem"), ec_public).unwrap();
    std::fs::write(dir.join("ed.pem"), ed_public).unwrap();
    let ec_spec = format!("issuer-ec={}", dir.join("ec.pem").display());
    let ed_spec = dir.join("ed.pem").display().to_string();
    let claims = json!({"sub": "ext-1", "name": "Ext", "exp": now() + 600});
    let ec_token = jsonwebtoken::encode(
        &Header {
            kid: Some("issuer-ec".into()),
            ..Header::new(Algorithm::ES256)
        },
        &claims,
        &EncodingKey::from_ec_pem(ec_private.as_bytes()).unwrap(),
    )
    .unwrap();
    let ed_token = jsonwebtoken::encode(
        &Header {
            kid: Some("ed".into()),
            ..Header::new(Algorithm::EdDSA)
        },
        &claims,
        &EncodingKey::from_ed_pem(ed_private.as_bytes()).unwrap(),
    )
    .unwrap();

    let both = Server::start(&[
        "--auth",
        "token",
        "--jwt-public-key",
        &ec_spec,
        "--jwt-public-key",
        &ed_spec,
    ]);
    assert_eq!(post_status(&both, &ec_token).await.0, 200, "ES256 by kid");
    assert_eq!(post_status(&both, &ed_token).await.0, 200, "EdDSA by kid");
    // A token that claims the EC key's kid but is signed by the Ed25519 key.
    let forged = jsonwebtoken::encode(
        &Header {
            kid: Some("issuer-ec".into()),
            ..Header::new(Algorithm::EdDSA)
        },
        &claims,
        &EncodingKey::from_ed_pem(ed_private.as_bytes()).unwrap(),
    )
    .unwrap();
    assert_eq!(
        post_status(&both, &forged).await.1["code"],
        "token_bad_signature"
    );
    drop(both);

    // The EC key removed: its tokens are refused, the other key's still verify.
    let one = Server::start(&["--auth", "token", "--jwt-public-key", &ed_spec]);
    let (status, body) = post_status(&one, &ec_token).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (401, Some("token_unknown_key"))
    );
    assert_eq!(post_status(&one, &ed_token).await.0, 200);
}

#[tokio::test]
async fn auth_flags_are_checked_at_start() {
    let file = secret_file();
    let short = temp_dir("auth-short").join("short");
    std::fs::write(&short, b"too short").unwrap();
    for (args, says) in [
        (
            vec!["--jwt-secret-file", file.to_str().unwrap()],
            "need --auth token",
        ),
        (
            vec![
                "--auth",
                "token",
                "--jwt-secret-file",
                short.to_str().unwrap(),
            ],
            "at least 32",
        ),
        (
            vec![
                "--auth",
                "token",
                "--jwt-public-key",
                "/nonexistent/key.pem",
            ],
            "cannot read --jwt-public-key",
        ),
    ] {
        let mut all = vec!["serve", "--listen", "127.0.0.1:0", "--no-tls"];
        all.extend(args.iter().copied());
        let child = rtchat(&all, &[]).spawn().unwrap();
        let out = tokio::task::spawn_blocking(move || child.wait_with_output())
            .await
            .unwrap()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} must not start");
        assert!(err.contains(says), "{args:?}: {err}");
    }
}

/// A token for `sub` that expires `secs` from now.
fn short_token(sub: &str, name: &str, secs: u64) -> String {
    hs256(
        SECRET,
        json!({"sub": sub, "name": name, "exp": now() + secs, "jti": format!("short-{sub}")}),
    )
}

/// An rtchat.v1 WebSocket at `path` (its query carries the token).
pub(crate) async fn v1_connect(server: &Server, path: &str) -> crate::common::Ws {
    let mut req = ws_url(server, path).into_client_request().unwrap();
    req.headers_mut()
        .insert("sec-websocket-protocol", "rtchat.v1".parse().unwrap());
    tokio_tungstenite::connect_async(req).await.unwrap().0
}

/// An rtchat.v1 WebSocket in `general` with `token`, its history read.
async fn v1_socket(server: &Server, token: &str) -> crate::common::Ws {
    let mut ws = v1_connect(server, &format!("/ws?token={token}")).await;
    assert_eq!(skip_presence(&mut ws).await["type"], "history");
    ws
}

/// Reads `ws` until the server closes it; returns the close code and reason, and the ids of
/// the messages seen on the way.
pub(crate) async fn until_closed(ws: &mut crate::common::Ws) -> (u16, String, Vec<u64>) {
    use futures::StreamExt;
    let mut ids = Vec::new();
    loop {
        let frame = tokio::time::timeout(std::time::Duration::from_secs(20), ws.next())
            .await
            .expect("closed within 20 s");
        match frame {
            Some(Ok(Message::Text(t))) => {
                let v: Value = serde_json::from_str(t.as_str()).unwrap();
                if v["type"] == "msg" {
                    ids.push(v["msg"]["id"].as_u64().unwrap());
                }
            }
            Some(Ok(Message::Close(Some(close)))) => {
                return (close.code.into(), close.reason.to_string(), ids)
            }
            Some(Ok(_)) => {}
            other => panic!("expected a close frame, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn an_expiring_token_closes_each_stream_unless_refreshed() {
    let server = server(&["--token-grace", "0"]);
    let http = client();
    // Expires in 2 s (whole seconds: between 1 and 2 s from now).
    let short = short_token("u-ann", "Ann", 2);
    let mut lapsing = v1_socket(&server, &short).await;
    let mut refreshed = v1_socket(&server, &short).await;
    let mut sse = crate::common::Sse::open(
        http.get(server.url("/events"))
            .bearer_auth(&short)
            .header("accept", "text/event-stream"),
    )
    .await;
    let mut msgs = http
        .get(server.url("/msgs"))
        .bearer_auth(&short)
        .send()
        .await
        .unwrap();
    assert_eq!(msgs.status(), 200);

    send(
        &mut refreshed,
        json!({"type": "refresh", "token": token("u-ann", "Ann"), "ref": "r1"}),
    )
    .await;
    let answer = skip_presence(&mut refreshed).await;
    assert_eq!(answer["type"], "refreshed", "{answer}");
    assert_eq!(answer["ref"], "r1");
    // Another user's token is no refresh.
    send(
        &mut refreshed,
        json!({"type": "refresh", "token": token("u-bob", "Bob"), "ref": "r2"}),
    )
    .await;
    let answer = skip_presence(&mut refreshed).await;
    assert_eq!(answer["type"], "error", "{answer}");

    let (code, reason, _) = until_closed(&mut lapsing).await;
    assert_eq!((code, reason.as_str()), (4001, "token expired"));
    let last = sse.named("expired").await;
    assert_eq!(last["reason"], "token expired");
    sse.end().await;
    let mut body = String::new();
    while let Some(chunk) = tokio::time::timeout(std::time::Duration::from_secs(20), msgs.chunk())
        .await
        .expect("/msgs ends")
        .unwrap()
    {
        body.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    assert!(
        body.ends_with("{\"expired\":{\"reason\":\"token expired\"}}\n"),
        "{body}"
    );

    // The refreshed connection outlived the old token: it posts, and gets every message once.
    let good = token("u-ann", "Ann");
    for n in 0..3 {
        let res = http
            .post(server.url("/poll"))
            .bearer_auth(&good)
            .json(&json!({"text": format!("after {n}")}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
    }
    let mut ids = Vec::new();
    while ids.len() < 3 {
        let frame = skip_presence(&mut refreshed).await;
        if frame["type"] == "msg" {
            ids.push(frame["msg"]["id"].as_u64().unwrap());
        }
    }
    assert_eq!(ids, vec![1, 2, 3]);
}

#[tokio::test]
async fn logout_revokes_the_token_and_closes_its_live_connections() {
    let server = server(&[]);
    let http = client();
    let ann = token("u-ann", "Ann");
    let bob = token("u-bob", "Bob");
    let mut ws = v1_socket(&server, &ann).await;
    let mut other = v1_socket(&server, &bob).await;
    let mut sse = crate::common::Sse::open(
        http.get(server.url("/rooms/a/events"))
            .bearer_auth(&ann)
            .header("accept", "text/event-stream"),
    )
    .await;
    // A long poll of Ann's, held (general has no message after 0).
    let parked = {
        let req = http
            .get(server.url("/poll?since=0&timeout=30"))
            .bearer_auth(&ann);
        tokio::spawn(async move {
            let res = req.send().await.unwrap();
            let status = res.status().as_u16();
            (status, res.json::<Value>().await.unwrap())
        })
    };
    crate::common::wait_for_metric(&server, "rtchat_clients", &[("transport", "longpoll")], 1.0)
        .await;
    let res = http
        .post(server.url("/auth/logout"))
        .bearer_auth(&ann)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());

    // The held poll is answered at once, not at the end of its wait.
    let (status, body) = tokio::time::timeout(std::time::Duration::from_secs(10), parked)
        .await
        .expect("the held poll is answered within 10 s of the logout, not after its 30 s")
        .unwrap();
    assert_eq!(
        (status, body["code"].as_str()),
        (401, Some("token_revoked")),
        "{body}"
    );
    let (code, reason, _) = until_closed(&mut ws).await;
    assert_eq!((code, reason.as_str()), (4005, "token revoked"));
    assert_eq!(sse.named("revoked").await["reason"], "token revoked");
    sse.end().await;
    let (status, body) = post_status(&server, &ann).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (401, Some("token_revoked"))
    );
    // Bob's connection, with a token of its own, stays.
    assert_eq!(post_status(&server, &bob).await.0, 200);
    let mut got = skip_presence(&mut other).await;
    while got["type"] != "msg" {
        got = skip_presence(&mut other).await;
    }
    assert_eq!(got["msg"]["user"], "Bob");
}

#[tokio::test]
async fn a_tokens_rooms_claim_keeps_it_to_those_rooms() {
    let server = server(&[]);
    let http = client();
    let only_a = hs256(
        SECRET,
        json!({"sub": "u-ann", "name": "Ann", "exp": now() + 3600, "rooms": ["a"]}),
    );
    let open = token("u-bob", "Bob");
    // Room b exists (Bob posted in it).
    let res = http
        .post(server.url("/rooms/b/msgs"))
        .bearer_auth(&open)
        .json(&json!({"text": "in b"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);

    let post = json!({"text": "hi"});
    let allowed = http
        .post(server.url("/rooms/a/msgs"))
        .bearer_auth(&only_a)
        .json(&post)
        .send()
        .await
        .unwrap();
    assert_eq!(allowed.status(), 200, "room a is in the claim");
    for (method, path) in [
        ("POST", "/rooms/b/msgs"),
        ("POST", "/poll"),
        ("GET", "/poll"),
        ("GET", "/rooms/b/poll"),
        ("GET", "/rooms/b/presence"),
        ("GET", "/msgs"),
        ("GET", "/rooms/b/events"),
    ] {
        let req = match method {
            "POST" => http.post(server.url(path)).json(&post),
            _ => http.get(server.url(path)),
        };
        let res = req.bearer_auth(&only_a).send().await.unwrap();
        assert_eq!(res.status(), 403, "{method} {path}");
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["code"], "room_not_allowed", "{method} {path}: {body}");
    }
    // The room list shows only the claim's rooms.
    let list: Value = http
        .get(server.url("/rooms"))
        .bearer_auth(&only_a)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let names: Vec<&str> = list["rooms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["a"], "{list}");

    // WebSockets: the upgrade into general or b is refused; in a, a join of b and a post to
    // b are refused with error frames.
    for path in ["/ws", "/ws?rooms=a,b", "/"] {
        assert_eq!(
            ws_status(
                &server,
                &format!(
                    "{path}{}token={only_a}",
                    if path.contains('?') { "&" } else { "?" }
                )
            )
            .await,
            403,
            "{path}"
        );
    }
    let mut ws = v1_connect(&server, &format!("/ws?rooms=a&token={only_a}")).await;
    assert_eq!(skip_presence(&mut ws).await["type"], "joined");
    assert_eq!(skip_presence(&mut ws).await["type"], "history");
    send(&mut ws, json!({"type": "join", "room": "b", "ref": 1})).await;
    let refused = skip_presence(&mut ws).await;
    assert_eq!(
        (refused["type"].as_str(), &refused["ref"]),
        (Some("error"), &json!(1)),
        "{refused}"
    );
    assert!(
        refused["error"].as_str().unwrap().contains("rooms claim"),
        "{refused}"
    );
    send(
        &mut ws,
        json!({"type": "post", "room": "b", "text": "x", "ref": 2}),
    )
    .await;
    let refused = skip_presence(&mut ws).await;
    assert_eq!(
        (refused["type"].as_str(), &refused["ref"]),
        (Some("error"), &json!(2)),
        "{refused}"
    );
    send(
        &mut ws,
        json!({"type": "post", "room": "a", "text": "ok", "ref": 3}),
    )
    .await;
    let mut got_ack = false;
    while !got_ack {
        let frame = skip_presence(&mut ws).await;
        assert_ne!(frame["type"], "error", "{frame}");
        got_ack = frame["type"] == "ack" && frame["ref"] == 3;
    }
    // Nothing of Ann's reached b.
    let b: Value = http
        .get(server.url("/rooms/b/poll"))
        .bearer_auth(&open)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(b["msg"].as_array().unwrap().len(), 1, "{b}");
}
