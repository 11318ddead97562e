//! `GET /config`: the settings rtchat's pages read (limits, the HTTPS port really bound,
//! HTTP/3, the Socket.IO browser bundle) follow the server's flags.

use crate::common::{client, Server};

async fn config(server: &Server) -> (reqwest::header::HeaderMap, serde_json::Value) {
    let res = client().get(server.url("/config")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let headers = res.headers().clone();
    (headers, res.json().await.unwrap())
}

#[tokio::test]
async fn config_follows_the_limits_and_the_bound_tls_port() {
    // The harness adds `--tls-listen 127.0.0.1:0`: the port is the one really bound.
    let server = Server::start_without_metrics(&[
        "--max-text",
        "10",
        "--max-user",
        "5",
        "--history",
        "7",
        "--no-h3",
    ]);
    let (headers, body) = config(&server).await;
    assert_eq!(headers[reqwest::header::CACHE_CONTROL], "no-store");
    assert!(headers[reqwest::header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
    let tls_port: u64 = server
        .tls_base
        .as_deref()
        .unwrap()
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert_ne!(tls_port, 0);
    assert_eq!(body["max_text"], 10);
    assert_eq!(body["max_user"], 5);
    assert_eq!(body["history"], 7);
    assert_eq!(body["https_port"], tls_port);
    assert_eq!(body["h3"], false, "--no-h3");
    // The bundle is announced exactly when it is served.
    let bundle = client()
        .get(server.url("/socket.io/socket.io.min.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        body["socketio_client"],
        bundle.status() == 200,
        "socketio_client says whether /socket.io/socket.io.min.js is served ({})",
        bundle.status()
    );
}

#[tokio::test]
async fn config_without_tls_has_no_https_port() {
    let server = Server::start_without_metrics(&["--no-tls"]);
    let (_, body) = config(&server).await;
    assert_eq!(body["https_port"], serde_json::Value::Null);
    assert_eq!(body["h3"], false);
    // The defaults.
    assert_eq!(body["max_text"], 2000);
    assert_eq!(body["max_user"], 64);
    assert_eq!(body["history"], 50);
    assert_eq!(body["auth"], "off");
}

#[tokio::test]
async fn config_says_when_the_pages_must_log_in() {
    let server = Server::start_without_metrics(&["--auth", "token", "--no-tls"]);
    let (_, body) = config(&server).await;
    assert_eq!(body["auth"], "token");
}

#[tokio::test]
async fn config_with_http3_says_so() {
    let server = Server::start_without_metrics(&[]);
    let (_, body) = config(&server).await;
    assert!(body["https_port"].as_u64().is_some_and(|p| p > 0));
    assert_eq!(body["h3"], true);
}
