//! The built-in accounts (`POST /auth/signup`, `/auth/login`, `/auth/refresh`,
//! `/auth/logout`) and `rtchat user grant-admin`, against a real rtchat process.

use crate::common;

use std::time::{Duration, Instant};

use common::{client, Server};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const PASSWORD: &str = "correct horse battery";

/// `POST {base}{path}` with a JSON body.
async fn post_json(
    http: &reqwest::Client,
    base: &str,
    path: &str,
    body: Value,
) -> reqwest::Response {
    http.post(format!("{base}{path}"))
        .json(&body)
        .send()
        .await
        .unwrap()
}

async fn signup(server: &Server, user: &str, password: &str) -> reqwest::Response {
    post_json(
        &client(),
        &server.base,
        "/auth/signup",
        json!({ "user": user, "password": password }),
    )
    .await
}

async fn login(server: &Server, user: &str, password: &str) -> reqwest::Response {
    post_json(
        &client(),
        &server.base,
        "/auth/login",
        json!({ "user": user, "password": password }),
    )
    .await
}

/// The one `Set-Cookie` of an answer.
fn set_cookie(res: &reqwest::Response) -> String {
    let all: Vec<_> = res.headers().get_all("set-cookie").iter().collect();
    assert_eq!(all.len(), 1, "one Set-Cookie: {all:?}");
    all[0].to_str().unwrap().to_owned()
}

/// The attributes of a `Set-Cookie` value, after its `name=value`.
fn attributes(cookie: &str) -> Vec<String> {
    cookie
        .split(';')
        .skip(1)
        .map(|a| a.trim().to_owned())
        .collect()
}

/// `rtchat_session=VALUE` of a `Set-Cookie`, as a `Cookie` header sends it back.
fn cookie_pair(cookie: &str) -> String {
    let pair = cookie.split(';').next().unwrap().trim().to_owned();
    assert!(pair.starts_with("rtchat_session="), "{cookie}");
    pair
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Checks a login's answer and returns it.
async fn logged_in(res: reqwest::Response, status: u16, name: &str) -> Value {
    assert_eq!(res.status(), status);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["name"], name, "{body}");
    assert!(body["uid"].as_str().unwrap().starts_with("u-"), "{body}");
    assert!(
        body["token"].as_str().unwrap().split('.').count() == 3,
        "{body}"
    );
    assert!(body["admin"].is_boolean(), "{body}");
    body
}

async fn refresh(server: &Server, auth: (&str, &str)) -> reqwest::Response {
    client()
        .post(server.url("/auth/refresh"))
        .header(auth.0, auth.1)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn signup_login_refresh_then_logout_revokes_the_session() {
    let server = Server::start(&["--auth", "token", "--token-ttl", "10min"]);
    let made = logged_in(signup(&server, "ann", PASSWORD).await, 201, "ann").await;
    assert_eq!(made["admin"], false);

    let res = login(&server, "ann", PASSWORD).await;
    assert_eq!(
        res.headers()["cache-control"],
        "no-store",
        "tokens are not cached"
    );
    let cookie = set_cookie(&res);
    let body = logged_in(res, 200, "ann").await;
    assert_eq!(body["uid"], made["uid"]);
    assert_ne!(body["token"], made["token"], "each login is a new session");
    let expires = body["expires"].as_u64().unwrap();
    assert!(
        (now() + 590..=now() + 601).contains(&expires),
        "--token-ttl 10min: {expires} vs now {}",
        now()
    );
    let access = format!("Bearer {}", body["token"].as_str().unwrap());
    let session = cookie_pair(&cookie);

    // Refresh with the access token, and with the session cookie.
    let res = refresh(&server, ("authorization", &access)).await;
    assert_eq!(res.status(), 200);
    let fresh: Value = res.json().await.unwrap();
    assert_eq!(fresh["uid"], made["uid"]);
    assert_eq!(fresh["name"], "ann");
    assert!(fresh["expires"].as_u64().unwrap() >= expires);
    let res = refresh(&server, ("cookie", &session)).await;
    assert_eq!(res.status(), 200);
    let fresh2: Value = res.json().await.unwrap();
    // The refreshed token refreshes too.
    let res = refresh(
        &server,
        (
            "authorization",
            &format!("Bearer {}", fresh2["token"].as_str().unwrap()),
        ),
    )
    .await;
    assert_eq!(res.status(), 200);

    // Without a token: 401.
    let res = client()
        .post(server.url("/auth/refresh"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    let err: Value = res.json().await.unwrap();
    assert_eq!(err["code"], "token_missing");

    // Logout clears the cookie and revokes the session: the access token, the refreshed
    // one and the cookie all stop working.
    let res = client()
        .post(server.url("/auth/logout"))
        .header("authorization", &access)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let cleared = set_cookie(&res);
    assert!(cleared.starts_with("rtchat_session=;"), "{cleared}");
    assert!(
        attributes(&cleared).contains(&"Max-Age=0".to_owned()),
        "{cleared}"
    );
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["status"], "ok");
    for auth in [
        ("authorization", access.clone()),
        (
            "authorization",
            format!("Bearer {}", fresh2["token"].as_str().unwrap()),
        ),
        ("cookie", session.clone()),
    ] {
        let res = refresh(&server, (auth.0, &auth.1)).await;
        assert_eq!(res.status(), 401, "{auth:?}");
        let err: Value = res.json().await.unwrap();
        assert_eq!(err["code"], "token_revoked", "{auth:?}: {err}");
    }
    // Another session of the same account is not affected.
    let other = logged_in(login(&server, "ann", PASSWORD).await, 200, "ann").await;
    let res = refresh(
        &server,
        (
            "authorization",
            &format!("Bearer {}", other["token"].as_str().unwrap()),
        ),
    )
    .await;
    assert_eq!(res.status(), 200);
}

#[tokio::test]
async fn a_wrong_password_and_an_unknown_user_get_the_same_answer() {
    let server = Server::start(&["--auth", "token"]);
    assert_eq!(signup(&server, "bob", PASSWORD).await.status(), 201);
    let mut answers = Vec::new();
    for (user, password) in [("bob", "wrong password"), ("nobody", PASSWORD)] {
        let res = login(&server, user, password).await;
        assert_eq!(res.status(), 401, "{user}");
        assert!(res.headers().get("set-cookie").is_none(), "{user}");
        let body: Value = res.json().await.unwrap();
        answers.push(body);
    }
    assert_eq!(answers[0], answers[1], "no user enumeration");
    assert_eq!(answers[0]["code"], "bad_credentials");
    // The right one still works.
    logged_in(login(&server, "bob", PASSWORD).await, 200, "bob").await;
}

#[tokio::test]
async fn signup_refuses_a_taken_name_a_bad_password_and_a_bad_name() {
    let server = Server::start(&["--auth", "token"]);
    assert_eq!(signup(&server, "cat", PASSWORD).await.status(), 201);
    let res = signup(&server, "cat", "another password").await;
    assert_eq!(res.status(), 409);
    let err: Value = res.json().await.unwrap();
    assert_eq!(err["code"], "name_taken", "{err}");

    for (password, len) in [("short", 5), (&*"x".repeat(1025), 1025)] {
        let res = signup(&server, "dan", password).await;
        assert_eq!(res.status(), 422, "{len}");
        let err: Value = res.json().await.unwrap();
        assert_eq!(err["code"], "bad_password");
        assert_eq!(
            err["error"],
            format!("the password must be 8 to 1024 bytes long; it is {len} bytes")
        );
    }
    // The bounds themselves are accepted.
    assert_eq!(signup(&server, "eve", "12345678").await.status(), 201);
    assert_eq!(
        signup(&server, "fay", &"y".repeat(1024)).await.status(),
        201
    );
    // A name is checked as a post's user is.
    let res = signup(&server, "a\u{7}b", PASSWORD).await;
    assert_eq!(res.status(), 422);
    let res = signup(&server, &"n".repeat(65), PASSWORD).await;
    assert_eq!(res.status(), 422);
    // Not the expected shape.
    let res = post_json(
        &client(),
        &server.base,
        "/auth/signup",
        json!({ "user": "gus" }),
    )
    .await;
    assert_eq!(res.status(), 422);
    // A foreign page may not log anyone in (the CSRF check of every post).
    let res = client()
        .post(server.url("/auth/login"))
        .header("origin", "http://evil.example")
        .json(&json!({ "user": "cat", "password": PASSWORD }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
}

#[tokio::test]
async fn the_session_cookie_is_http_only_strict_and_secure_over_https_only() {
    let server = Server::start(&["--auth", "token", "--session-ttl", "2h"]);
    let res = signup(&server, "hal", PASSWORD).await;
    assert_eq!(res.status(), 201);
    let plain = set_cookie(&res);
    let attrs = attributes(&plain);
    for want in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=7200"] {
        assert!(attrs.contains(&want.to_owned()), "{want} in {plain}");
    }
    assert!(
        !attrs.iter().any(|a| a == "Secure"),
        "no Secure over http: {plain}"
    );

    let https = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&server.cert_pem()).unwrap())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let tls_base = server.tls_base.clone().unwrap();
    let res = post_json(
        &https,
        &tls_base,
        "/auth/login",
        json!({ "user": "hal", "password": PASSWORD }),
    )
    .await;
    assert_eq!(res.status(), 200);
    let secure = set_cookie(&res);
    let attrs = attributes(&secure);
    for want in [
        "HttpOnly",
        "SameSite=Strict",
        "Path=/",
        "Max-Age=7200",
        "Secure",
    ] {
        assert!(attrs.contains(&want.to_owned()), "{want} in {secure}");
    }
    // Logging out over HTTPS clears it with the same attributes.
    let res = https
        .post(format!("{tls_base}/auth/logout"))
        .header("cookie", cookie_pair(&secure))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let cleared = set_cookie(&res);
    let attrs = attributes(&cleared);
    assert!(attrs.contains(&"Max-Age=0".to_owned()), "{cleared}");
    assert!(attrs.contains(&"Secure".to_owned()), "{cleared}");
}

#[tokio::test]
async fn logins_are_rate_limited_per_user_name_and_per_address() {
    let server = Server::start(&["--auth", "token", "--login-rate-per-user", "3"]);
    assert_eq!(signup(&server, "ida", PASSWORD).await.status(), 201);
    for _ in 0..3 {
        assert_eq!(login(&server, "ida", "wrong password").await.status(), 401);
    }
    // The fourth, even with the right password, waits.
    let res = login(&server, "ida", PASSWORD).await;
    assert_eq!(res.status(), 429);
    let retry: u64 = res.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (1..=20).contains(&retry),
        "3 a minute: one back within 20 s, got {retry}"
    );
    let err: Value = res.json().await.unwrap();
    assert_eq!(err["code"], "login_rate_limited", "{err}");
    assert!(
        err["error"]
            .as_str()
            .unwrap()
            .contains("--login-rate-per-user"),
        "{err}"
    );
    // Another name is not held back by ida's bucket.
    assert_eq!(
        login(&server, "someone", "wrong password").await.status(),
        401
    );

    let server = Server::start(&[
        "--auth",
        "token",
        "--login-rate-per-ip",
        "2",
        "--login-rate-per-user",
        "0",
    ]);
    assert_eq!(login(&server, "a", "wrong password").await.status(), 401);
    assert_eq!(login(&server, "b", "wrong password").await.status(), 401);
    let res = login(&server, "c", "wrong password").await;
    assert_eq!(res.status(), 429);
    assert!(res.headers().contains_key("retry-after"));
    let err: Value = res.json().await.unwrap();
    assert!(
        err["error"]
            .as_str()
            .unwrap()
            .contains("--login-rate-per-ip"),
        "{err}"
    );
}

/// One raw HTTP/1.1 login on its own connection, sent by the caller when it says so: the
/// status and `Retry-After`.
async fn raw_login(
    addr: String,
    body: String,
    go: tokio::sync::watch::Receiver<bool>,
) -> (u16, Option<String>, String) {
    let mut go = go;
    let mut conn = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let request = format!(
        "POST /auth/login HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    go.wait_for(|go| *go).await.unwrap();
    conn.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    conn.read_to_end(&mut answer).await.unwrap();
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {answer:?}"));
    let retry_after = answer.lines().find_map(|l| {
        l.to_ascii_lowercase()
            .strip_prefix("retry-after:")
            .map(|v| v.trim().to_owned())
    });
    (status, retry_after, answer)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_login_storm_beyond_the_queue_gets_503s_and_every_request_an_answer() {
    let server = Server::start(&[
        "--auth",
        "token",
        "--login-queue",
        "2",
        "--login-rate-per-ip",
        "0",
        "--login-rate-per-user",
        "0",
    ]);
    assert_eq!(signup(&server, "jo", PASSWORD).await.status(), 201);
    let addr = server.base.trim_start_matches("http://").to_owned();
    let body = json!({ "user": "jo", "password": PASSWORD }).to_string();
    // 40 connections, opened first, then all send their login at once.
    let (go, ready) = tokio::sync::watch::channel(false);
    let logins: Vec<_> = (0..40)
        .map(|_| tokio::spawn(raw_login(addr.clone(), body.clone(), ready.clone())))
        .collect();
    tokio::task::yield_now().await;
    let started = Instant::now();
    go.send(true).unwrap();
    // The rest of the server answers meanwhile.
    let health = client().get(server.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let mut ok = 0;
    let mut busy = 0;
    for login in logins {
        let (status, retry_after, answer) = tokio::time::timeout(Duration::from_secs(30), login)
            .await
            .expect("every login is answered")
            .unwrap();
        match status {
            200 => ok += 1,
            503 => {
                busy += 1;
                assert_eq!(retry_after.as_deref(), Some("1"), "{answer}");
                assert!(answer.contains("\"code\":\"login_busy\""), "{answer}");
                assert!(answer.contains("--login-queue"), "{answer}");
            }
            other => panic!("unexpected {other}: {answer}"),
        }
    }
    assert_eq!(ok + busy, 40);
    assert!(
        busy > 0,
        "40 logins at once with --login-queue 2: some are refused"
    );
    assert!(ok >= 3, "the hasher and its queue of 2 are served: {ok}");
    assert!(started.elapsed() < Duration::from_secs(30));
    // Once the storm is over, logins go through again.
    logged_in(login(&server, "jo", PASSWORD).await, 200, "jo").await;
}

#[tokio::test]
async fn with_auth_off_every_auth_path_is_404() {
    let server = Server::start(&[]);
    for path in [
        "/auth/signup",
        "/auth/login",
        "/auth/refresh",
        "/auth/logout",
        "/auth/other",
    ] {
        let res = post_json(
            &client(),
            &server.base,
            path,
            json!({ "user": "x", "password": PASSWORD }),
        )
        .await;
        assert_eq!(res.status(), 404, "{path}");
        let body: Value = res.json().await.unwrap();
        assert_eq!(
            body["error"], "accounts need rtchat serve --auth token",
            "{path}"
        );
    }
    let res = client()
        .get(server.url("/auth/login"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
}

/// Runs `rtchat user ARGS... --data-dir DIR`: exit code, stdout, stderr.
fn rtchat_user(server: &Server, args: &[&str]) -> (i32, String, String) {
    let mut all = vec!["user"];
    all.extend(args);
    let dir = server.data_dir.to_str().unwrap().to_owned();
    all.extend(["--data-dir", &dir]);
    let out = common::rtchat(&all, &[]).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn grant_admin_shows_at_the_next_login_while_the_server_runs() {
    let server = Server::start(&["--auth", "token"]);
    let made = logged_in(signup(&server, "kim", PASSWORD).await, 201, "kim").await;
    assert_eq!(made["admin"], false);
    let uid = made["uid"].as_str().unwrap();

    let (code, out, err) = rtchat_user(&server, &["grant-admin", uid]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains(uid) && out.contains("is now an administrator"),
        "{out}"
    );
    let body = logged_in(login(&server, "kim", PASSWORD).await, 200, "kim").await;
    assert_eq!(body["admin"], true, "{body}");
    // A refresh of the older session says so too (accounts are read at each refresh).
    let res = refresh(
        &server,
        (
            "authorization",
            &format!("Bearer {}", made["token"].as_str().unwrap()),
        ),
    )
    .await;
    let fresh: Value = res.json().await.unwrap();
    assert_eq!(fresh["admin"], true, "{fresh}");

    let (code, out, _) = rtchat_user(&server, &["revoke-admin", uid]);
    assert_eq!(code, 0);
    assert!(out.contains("no longer an administrator"), "{out}");
    let body = logged_in(login(&server, "kim", PASSWORD).await, 200, "kim").await;
    assert_eq!(body["admin"], false);

    // An unknown id: exit 1 and why; a name given for an id: which id it has.
    let (code, out, err) = rtchat_user(&server, &["grant-admin", "u-0000000000000000"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains("no account has the user id \"u-0000000000000000\""),
        "{err}"
    );
    let (code, _, err) = rtchat_user(&server, &["grant-admin", "kim"]);
    assert_eq!(code, 1);
    assert!(err.contains(&format!("has the user id {uid}")), "{err}");
}
