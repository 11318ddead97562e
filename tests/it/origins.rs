//! One origin policy for every state-changing request, and the `Host` names a server answers
//! to (DNS rebinding), against the real server with reqwest and tokio-tungstenite as the
//! clients (browsers: tests/browser/origin.test.mjs).

use crate::common;

use common::{client, get_json, ws_url, Server};
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

async fn post_from(server: &Server, path: &str, origin: Option<&str>) -> (StatusCode, Value) {
    let mut req = client()
        .post(server.url(path))
        .json(&json!({"user": "ann", "text": format!("from {origin:?}")}));
    if let Some(origin) = origin {
        req = req.header("origin", origin);
    }
    let res = req.send().await.unwrap();
    (res.status(), res.json().await.unwrap())
}

async fn stored(server: &Server) -> usize {
    get_json(server, "/poll").await["msg"]
        .as_array()
        .unwrap()
        .len()
}

#[tokio::test]
async fn posts_are_taken_only_from_the_same_origin_or_an_allowed_one() {
    let server = Server::start(&["--allow-origin", "http://pages.example"]);
    let same = server.base.clone(); // http://127.0.0.1:PORT
    let other_scheme = same.replacen("http://", "https://", 1);
    for path in ["/poll", "/msgs"] {
        for origin in ["http://evil.example", other_scheme.as_str(), "null"] {
            let before = stored(&server).await;
            let (status, body) = post_from(&server, path, Some(origin)).await;
            assert_eq!(status, 403, "{path} from {origin}: {body}");
            let error = body["error"].as_str().unwrap();
            assert!(
                error.contains(origin) && error.contains("--allow-origin"),
                "{error}"
            );
            assert_eq!(
                stored(&server).await,
                before,
                "a refused post is not stored"
            );
        }
        for origin in [Some(same.as_str()), Some("http://pages.example"), None] {
            let (status, body) = post_from(&server, path, origin).await;
            assert_eq!(status, 200, "{path} from {origin:?}: {body}");
        }
    }
    // Reads stay open to every origin.
    let res = client()
        .get(server.url("/poll"))
        .header("origin", "http://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
}

#[tokio::test]
async fn websockets_compare_the_scheme_too() {
    let server = Server::start(&[]);
    let other_scheme = server.base.replacen("http://", "https://", 1);
    let mut req = ws_url(&server, "/ws").into_client_request().unwrap();
    req.headers_mut()
        .insert("origin", other_scheme.parse().unwrap());
    let err = tokio_tungstenite::connect_async(req).await.unwrap_err();
    match err {
        tokio_tungstenite::tungstenite::Error::Http(res) => assert_eq!(res.status(), 403),
        other => panic!("expected a 403, got {other:?}"),
    }
    let mut req = ws_url(&server, "/ws").into_client_request().unwrap();
    req.headers_mut()
        .insert("origin", server.base.parse().unwrap());
    tokio_tungstenite::connect_async(req)
        .await
        .expect("the same origin opens a WebSocket");
}

async fn get_with_host(server: &Server, path: &str, host: &str) -> (StatusCode, String) {
    let res = client()
        .get(server.url(path))
        .header("host", host)
        .send()
        .await
        .unwrap();
    (res.status(), res.text().await.unwrap())
}

#[tokio::test]
async fn a_server_on_loopback_answers_only_to_loopback_names() {
    let server = Server::start(&[]);
    let port = server.port;
    for host in [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        format!("app.localhost:{port}"),
    ] {
        let (status, body) = get_with_host(&server, "/poll", &host).await;
        assert_eq!(status, 200, "{host}: {body}");
    }
    // A page of evil.example whose name now resolves to 127.0.0.1 (DNS rebinding).
    for path in ["/poll", "/", "/ws", "/socket.io/?EIO=4&transport=polling"] {
        let (status, body) = get_with_host(&server, path, &format!("evil.example:{port}")).await;
        assert_eq!(status, StatusCode::MISDIRECTED_REQUEST, "{path}: {body}");
        let body: Value = serde_json::from_str(&body).unwrap();
        assert!(
            body["error"].as_str().unwrap().contains("--allowed-hosts"),
            "{body}"
        );
    }
}

#[tokio::test]
async fn allowed_hosts_names_the_served_names() {
    let server = Server::start(&["--allowed-hosts", "chat.example,*.rooms.example"]);
    for (host, want) in [
        ("chat.example", 200),
        ("eu.rooms.example:8080", 200),
        ("localhost", 421),
        ("127.0.0.1", 200),
        ("evil.example", 421),
    ] {
        let (status, body) = get_with_host(&server, "/poll", host).await;
        assert_eq!(status.as_u16(), want, "{host}: {body}");
    }
    let any = Server::start(&["--allowed-hosts", "*"]);
    let (status, _) = get_with_host(&any, "/poll", "evil.example").await;
    assert_eq!(status, 200);
}
