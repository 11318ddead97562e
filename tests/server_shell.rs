//! The server shell: CLI errors, PORT, shutdown, static files.

mod common;

use std::time::Duration;

use common::{client, get_json, rtchat, wait_for_stat, Server};
use serde_json::Value;

#[tokio::test]
async fn sigterm_answers_parked_polls_and_exits_zero() {
    let mut server = Server::start(&[]);
    let mut parked = Vec::new();
    for _ in 0..3 {
        let req = client().get(server.url("/poll?since=0&timeout=60"));
        parked.push(tokio::spawn(async move { req.send().await }));
    }
    wait_for_stat(&server, "parked_polls", 3).await;
    let status = tokio::task::spawn_blocking(move || {
        let status = server.terminate(Duration::from_secs(5));
        (status, server)
    });
    for p in parked {
        let res = p
            .await
            .unwrap()
            .expect("a parked poll is answered, not dropped");
        assert_eq!(res.status(), 200);
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["msg"], serde_json::json!([]));
    }
    let (status, server) = status.await.unwrap();
    let status = status.expect("rtchat exits within a few seconds of SIGTERM");
    assert!(
        status.success(),
        "exit status {status:?}; log: {}",
        server.stderr()
    );
}

#[tokio::test]
async fn address_in_use_is_a_clear_error() {
    let first = Server::start(&[]);
    let addr = format!("127.0.0.1:{}", first.port);
    let out = rtchat(
        &["serve", "--no-tls", "--store", "memory", "--listen", &addr],
        &[],
    )
    .output()
    .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("already in use") && stderr.contains(&addr),
        "{stderr}"
    );
}

#[tokio::test]
async fn bad_flags_are_refused_with_a_message() {
    for (args, needle) in [
        (vec!["serve", "--history", "0"], "--history"),
        (vec!["serve", "--fail-rate", "1.5"], "from 0 to 1"),
        (vec!["serve", "--listen", "localhost"], "--listen"),
        (
            vec!["serve", "--web-root", "/no/such/dir"],
            "not a directory",
        ),
        (vec!["serve", "--frobnicate"], "--frobnicate"),
    ] {
        let out = rtchat(&args, &[]).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
    }
}

#[tokio::test]
async fn port_environment_variable_is_honoured() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let server = Server::start_with_env(&[], &[("PORT", &port.to_string())]);
    assert_eq!(server.port, port);
    get_json(&server, "/poll").await;

    let out = rtchat(&["serve"], &[("PORT", "eighty")]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("PORT must be a port number"));
}

#[tokio::test]
async fn serve_is_the_default_command() {
    let out = rtchat(&["--listen", "127.0.0.1:1", "--history", "0"], &[])
        .output()
        .unwrap();
    // Flags of `serve` are accepted without the word `serve` (and validated as such).
    assert!(String::from_utf8_lossy(&out.stderr).contains("--history"));
}

#[tokio::test]
async fn embedded_pages_and_assets_are_served() {
    let server = Server::start(&[]);
    for (path, mime) in [
        ("/", "text/html"),
        ("/polling", "text/html"),
        ("/static/style.css", "text/css"),
        ("/static/polling.js", "javascript"),
    ] {
        let res = client().get(server.url(path)).send().await.unwrap();
        assert_eq!(res.status(), 200, "{path}");
        let ct = res.headers()["content-type"].to_str().unwrap().to_owned();
        assert!(ct.contains(mime), "{path}: {ct}");
        assert_eq!(res.headers()["x-content-type-options"], "nosniff");
        let etag = res.headers()["etag"].clone();
        let again = client()
            .get(server.url(path))
            .header("if-none-match", etag)
            .send()
            .await
            .unwrap();
        assert_eq!(again.status(), 304, "{path} revalidates");
    }
    let home = client()
        .get(server.url("/"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        home.contains("/polling"),
        "the home page links to the polling chat"
    );
}

#[tokio::test]
async fn web_root_replaces_the_embedded_front_end() {
    let dir = std::env::temp_dir().join(format!("rtchat-webroot-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    std::fs::write(dir.join("index.html"), "<h1>my own chat</h1>").unwrap();
    std::fs::write(dir.join("sub/app.js"), "console.log('mine')").unwrap();
    let server = Server::start(&["--web-root", dir.to_str().unwrap()]);

    let home = client().get(server.url("/")).send().await.unwrap();
    assert_eq!(home.status(), 200);
    assert_eq!(home.text().await.unwrap(), "<h1>my own chat</h1>");
    let js = client()
        .get(server.url("/sub/app.js"))
        .send()
        .await
        .unwrap();
    assert!(js.headers()["content-type"]
        .to_str()
        .unwrap()
        .contains("javascript"));
    assert_eq!(js.text().await.unwrap(), "console.log('mine')");
    // `/name` falls back to `name.html`, as for the embedded pages.
    std::fs::write(dir.join("chat.html"), "<p>chat page</p>").unwrap();
    let page = client().get(server.url("/chat")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert_eq!(page.text().await.unwrap(), "<p>chat page</p>");
    // The embedded pages are gone; the API stays.
    assert_eq!(
        client()
            .get(server.url("/polling"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    assert_eq!(
        client()
            .get(server.url("/../Cargo.toml"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    get_json(&server, "/poll").await;
    std::fs::remove_dir_all(&dir).unwrap();
}
