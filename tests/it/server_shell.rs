//! The server shell: CLI errors, PORT, shutdown, static files.

use crate::common;

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
        // Pages carry the strict policy (the browser suite's csp.test.mjs checks that every
        // page works under it); assets need none.
        let csp = res.headers().get("content-security-policy");
        if mime == "text/html" {
            let csp = csp.expect("pages carry a Content-Security-Policy");
            assert!(
                csp.to_str().unwrap().contains("script-src 'self'"),
                "{csp:?}"
            );
            assert_eq!(res.headers()["x-frame-options"], "DENY");
        } else {
            assert!(csp.is_none(), "{path}: {csp:?}");
        }
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
    // The user's pages are theirs (the course's front ends may use inline scripts): no policy.
    assert!(home.headers().get("content-security-policy").is_none());
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
    // (Traversal out of the web root: `raw_requests_never_leave_the_web_root`.)
    get_json(&server, "/poll").await;
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Sends `GET target HTTP/1.1` exactly as written (no client normalises `..` or
/// percent-escapes) and returns the status and the whole raw response.
async fn raw_get(server: &Server, target: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut sock = tokio::net::TcpStream::connect(("127.0.0.1", server.port))
        .await
        .unwrap();
    let req = format!("GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    sock.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), sock.read_to_end(&mut raw))
        .await
        .unwrap_or_else(|_| panic!("GET {target}: no complete answer within 10 s"))
        .unwrap();
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let status = raw
        .strip_prefix("HTTP/1.1 ")
        .and_then(|r| r.get(..3))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("GET {target}: not an HTTP/1.1 answer: {raw:?}"));
    (status, raw)
}

/// Request targets that climb out of the served folder by `levels` levels to `name`: plain
/// `..`, percent-encoded dots and slashes (either case), backslashes, double encoding,
/// overlong UTF-8, `;` path parameters, and an absolute-form target.
fn traversals(levels: usize, name: &str) -> Vec<String> {
    let ups = |up: &str, sep: &str| up.repeat(levels).replace("{sep}", sep);
    let mut out = Vec::new();
    for up in [
        "..{sep}",
        "%2e%2e{sep}",
        "%2E%2E{sep}",
        ".%2e{sep}",
        "%2e.{sep}",
        "%252e%252e{sep}",
        "%c0%ae%c0%ae{sep}",
        "..;{sep}",
    ] {
        for sep in ["/", "%2f", "%2F", "%5c", "%5C", "\\", "%252f", "%c0%af"] {
            out.push(format!("/{}{name}", ups(up, sep)));
            out.push(format!("/static/{}{name}", ups(up, sep)));
        }
    }
    out.push(format!("/static/x/{}{name}", "../".repeat(levels + 2)));
    out.push(format!("http://127.0.0.1/{}{name}", "../".repeat(levels)));
    out
}

/// Every traversal answers 400 or 404, and never with the file outside the served folder.
async fn assert_no_traversal(server: &Server, levels: usize, name: &str, secret: &str) {
    let mut targets = traversals(levels, name);
    // Far enough up to reach / from anywhere: the system's password file.
    targets.extend(traversals(16, "etc/passwd"));
    for target in targets {
        let (status, raw) = raw_get(server, &target).await;
        assert!(
            !raw.contains(secret) && !raw.contains("root:x:0:0"),
            "GET {target} served a file outside the served folder: {raw}"
        );
        assert!(
            status == 400 || status == 404,
            "GET {target}: {status}, not 400/404: {raw}"
        );
    }
}

#[tokio::test]
async fn raw_requests_never_leave_the_web_root() {
    let base = std::env::temp_dir().join(format!("rtchat-traversal-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    let root = base.join("root");
    std::fs::create_dir_all(root.join("static/x")).unwrap();
    std::fs::write(root.join("index.html"), "<h1>served</h1>").unwrap();
    std::fs::write(root.join("static/x/ok.txt"), "inside the root").unwrap();
    let secret = format!("SECRET-{}-outside-the-web-root", std::process::id());
    std::fs::write(base.join("secret.txt"), &secret).unwrap();
    // `/name` is also served from `name.html`: that path must not climb out either.
    std::fs::write(base.join("secret.html"), &secret).unwrap();
    let server = Server::start(&["--web-root", root.to_str().unwrap()]);

    // The raw client reaches files inside the root...
    let (status, raw) = raw_get(&server, "/static/x/ok.txt").await;
    assert_eq!(status, 200, "{raw}");
    assert!(raw.ends_with("inside the root"), "{raw}");
    let (status, raw) = raw_get(&server, "/static/x/../x/ok.txt").await;
    assert!(
        status == 404 || status == 400 || raw.ends_with("inside the root"),
        "{raw}"
    );
    // ...but nothing above it, however the way up is spelled.
    assert_no_traversal(&server, 1, "secret.txt", &secret).await;
    assert_no_traversal(&server, 1, "secret", &secret).await;
    // An absolute path, encoded so that it survives the leading `/`.
    let abs = base
        .join("secret.txt")
        .to_str()
        .unwrap()
        .replace('/', "%2f");
    for target in [format!("/{abs}"), format!("/%2f{abs}")] {
        let (status, raw) = raw_get(&server, &target).await;
        assert!(!raw.contains(&secret), "GET {target}: {raw}");
        assert!(status == 400 || status == 404, "GET {target}: {raw}");
    }
    drop(server);
    std::fs::remove_dir_all(&base).unwrap();
}

#[tokio::test]
async fn raw_requests_never_leave_the_embedded_assets() {
    // The embedded front end is the repository's `web/` folder; its parent holds Cargo.toml.
    let manifest =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml")).unwrap();
    assert!(manifest.contains("[workspace]"));
    let server = Server::start(&[]);
    let (status, raw) = raw_get(&server, "/static/style.css").await;
    assert_eq!(status, 200, "{raw}");
    assert_no_traversal(&server, 1, "Cargo.toml", "[workspace]").await;
    assert_no_traversal(&server, 1, "Cargo", "[workspace]").await;
    assert_no_traversal(&server, 2, "Cargo.toml", "[workspace]").await;
}
