//! permessage-deflate (RFC 7692) on the real server, with Python's `websockets` as the
//! independent client (it offers the extension by default): the handshake's answer, the course
//! snapshots arriving compressed (bytes on the socket against the payload they carry), the
//! same chat with `--ws-deflate off`, and a decompression bomb that closes with 1009 while the
//! server's peak memory stays put. The clients live in tests/pyclients/ and run in the venv
//! scripts/setup makes (RTCHAT_PY_VENV).

use crate::common;

use common::{run_py, ws_url, Server};
use serde_json::Value;

/// Fills the history with 50 course-like messages, so snapshots are about 5 KB.
async fn fill_history(server: &Server) {
    for i in 0..50 {
        let text = format!("message {i}: the quick brown fox jumps over the lazy dog");
        let r = common::post(server, &format!("user{}", i % 7), &text).await;
        assert_eq!(r.status(), 200);
    }
}

#[tokio::test]
async fn course_snapshots_travel_compressed() {
    let server = Server::start(&["--no-tls", "--store", "memory"]);
    fill_history(&server).await;
    let url = ws_url(&server, "/ws");
    let deflated = run_py("ws_chat.py", &[&url, "json", "hello deflate"]);
    assert_eq!(
        deflated["extensions"],
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
    );
    assert_eq!(deflated["first_count"], 50);
    let plain = run_py("ws_chat.py", &[&url, "json", "hello plain", "--no-deflate"]);
    assert_eq!(plain["extensions"], Value::Null);
    // The same kind of traffic (history + one snapshot) costs at least 3x fewer bytes.
    let (d, p) = (
        deflated["wire_bytes"].as_u64().unwrap(),
        plain["wire_bytes"].as_u64().unwrap(),
    );
    assert!(d * 3 < p, "compressed {d} bytes on the wire, plain {p}");
    let payload = deflated["payload_bytes"].as_u64().unwrap();
    assert!(d * 3 < payload, "{d} bytes on the wire carried {payload}");
    // rtchat.v1 deltas are under the threshold: they go plain, and the chat works.
    let v1 = run_py("ws_chat.py", &[&url, "rtchat.v1", "hello v1"]);
    assert_eq!(v1["first_type"], "history");
    assert_eq!(v1["subprotocol"], "rtchat.v1");
}

#[tokio::test]
async fn ws_deflate_off_declines_the_offer() {
    let server = Server::start(&["--no-tls", "--store", "memory", "--ws-deflate", "off"]);
    fill_history(&server).await;
    let out = run_py("ws_chat.py", &[&ws_url(&server, "/ws"), "json", "hello"]);
    assert_eq!(out["extensions"], Value::Null);
    // Every payload byte travelled as it is (plus frame headers).
    let (wire, payload) = (out["wire_bytes"].as_u64(), out["payload_bytes"].as_u64());
    assert!(wire >= payload && payload > Some(4000), "{out}");
}

fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// 64 MiB of "a" travels as about 64 KiB and would inflate to 64 MiB: the server stops at
/// --ws-max-message (1 MiB), closes with 1009 and says why, its peak memory does not grow by
/// anything like the bomb, and others chat on.
#[tokio::test]
async fn decompression_bomb_closes_1009() {
    let server = Server::start(&["--no-tls", "--store", "memory"]);
    let url = ws_url(&server, "/ws");
    run_py("ws_chat.py", &[&url, "rtchat.v1", "warm up"]);
    let before = peak_rss_kib(server.pid());
    let out = run_py("ws_bomb.py", &[&url, &(64 << 20).to_string()]);
    assert_eq!(out["code"], 1009, "{out}");
    assert_eq!(out["reason"], "decompressed message too big");
    let grew = peak_rss_kib(server.pid()).saturating_sub(before);
    assert!(grew < 16 * 1024, "peak RSS grew by {grew} KiB");
    let after = run_py("ws_chat.py", &[&url, "json", "still here"]);
    assert_eq!(after["first_count"], 1);
}
