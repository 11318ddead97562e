//! WebSockets over HTTP/2 (RFC 8441) on the real server, with Python's `h2` as the
//! independent client: the server's SETTINGS advertise SETTINGS_ENABLE_CONNECT_PROTOCOL on the
//! TLS (ALPN h2) and the plain (h2c) listener, and an extended CONNECT to `/ws` chats in
//! rtchat.v1 with and without permessage-deflate. `/ws/echo` exists only with `--ws-echo`.

use crate::common;

use common::Server;
use serde_json::Value;

fn h2_ws(args: &[&str]) -> Value {
    common::run_py("h2_ws.py", args)
}

fn port_of(base: &str) -> String {
    base.rsplit(':').next().unwrap().to_owned()
}

#[test]
fn extended_connect_over_tls_and_h2c() {
    let server = Server::start(&["--store", "memory"]);
    let tls_port = port_of(server.tls_base.as_ref().unwrap());
    let plain_port = server.port.to_string();
    for (mode, port) in [("tls", &tls_port), ("h2c", &plain_port)] {
        let out = h2_ws(&[mode, "127.0.0.1", port, "/ws", "over h2"]);
        assert_eq!(out["enable_connect_protocol"], 1, "{mode}: {out}");
        assert_eq!(out["status"], "200", "{mode}: {out}");
        assert_eq!(out["protocol"], "rtchat.v1");
        assert_eq!(out["extensions"], Value::Null);
        assert_eq!(out["ack_ref"], 7, "{mode}: {out}");
        assert_eq!(out["echoed"], true, "{mode}: {out}");
        assert_eq!(out["messages"][0], "history");
    }
    // With permessage-deflate: the 2 KiB+ history comes compressed inside the stream.
    for i in 0..30 {
        let text = format!("filler {i} for a history worth compressing");
        let r = tokio::runtime::Runtime::new()
            .unwrap()
            .block_on(common::post(&server, "ann", &text));
        assert_eq!(r.status(), 200);
    }
    let out = h2_ws(&[
        "tls",
        "127.0.0.1",
        &tls_port,
        "/ws",
        "deflated",
        "--deflate",
    ]);
    assert_eq!(
        out["extensions"],
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
    );
    assert!(out["compressed_frames"].as_u64().unwrap() >= 1, "{out}");
    assert_eq!(out["echoed"], true);
    let log = server.stderr();
    assert!(log.contains("method=CONNECT path=/ws"), "{log}");
}

/// The Autobahn echo endpoint is not there unless `--ws-echo` asks for it.
#[tokio::test]
async fn echo_endpoint_only_with_the_flag() {
    let server = Server::start(&["--store", "memory", "--no-tls"]);
    let r = common::client()
        .get(server.url("/ws/echo"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert!(r.text().await.unwrap().contains("--ws-echo"));
}
