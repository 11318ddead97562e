//! The `/msgs` stream over HTTP/2 (TLS and h2c) and HTTP/1.1, against a real rtchat process.

use crate::common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{client, get_json, post, stat, texts, wait_for_stat, Server};
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::Value;

/// A reqwest client that trusts the server's generated certificate.
fn tls_client(server: &Server, http2: bool) -> reqwest::Client {
    let cert = reqwest::Certificate::from_pem(&server.cert_pem()).unwrap();
    let builder = reqwest::Client::builder()
        .add_root_certificate(cert)
        .timeout(Duration::from_secs(30));
    let builder = if http2 { builder } else { builder.http1_only() };
    builder.build().unwrap()
}

/// Reads the next chunk and checks it is exactly one snapshot line.
async fn next_snapshot(res: &mut reqwest::Response) -> Value {
    let chunk = tokio::time::timeout(Duration::from_secs(10), res.chunk())
        .await
        .expect("a snapshot within 10 s")
        .unwrap()
        .expect("the stream stays open");
    assert_eq!(
        chunk.last(),
        Some(&b'\n'),
        "each snapshot ends with a newline"
    );
    let text = std::str::from_utf8(&chunk[..chunk.len() - 1]).unwrap();
    assert!(
        !text.contains('\n'),
        "exactly one snapshot per write: {text}"
    );
    serde_json::from_str(text).expect("one JSON.parse per read works")
}

async fn reads_snapshots(http2: bool) {
    let server = Server::start(&[]);
    post(&server, "ann", "before").await;
    let mut res = tls_client(&server, http2)
        .get(server.tls_url("/msgs"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let want = if http2 {
        reqwest::Version::HTTP_2
    } else {
        reqwest::Version::HTTP_11
    };
    assert_eq!(res.version(), want);
    assert_eq!(res.headers()["content-type"], "text/plain; charset=utf-8");
    assert_eq!(texts(&next_snapshot(&mut res).await), ["before"]);
    post(&server, "bob", "one").await;
    assert_eq!(texts(&next_snapshot(&mut res).await), ["one", "before"]);
    post(&server, "ann", "two").await;
    let third = next_snapshot(&mut res).await;
    assert_eq!(texts(&third), ["two", "one", "before"]);
    assert_eq!(third["last"], 3);
}

#[tokio::test]
async fn http2_over_tls_reads_several_snapshots() {
    reads_snapshots(true).await;
}

#[tokio::test]
async fn http1_over_tls_reads_several_snapshots() {
    reads_snapshots(false).await;
}

#[tokio::test]
async fn plain_http1_stream_is_chunked_and_h2c_works_by_prior_knowledge() {
    let server = Server::start(&[]);
    let mut res = client().get(server.url("/msgs")).send().await.unwrap();
    assert_eq!(res.headers()["transfer-encoding"], "chunked");
    assert_eq!(texts(&next_snapshot(&mut res).await), Vec::<String>::new());
    post(&server, "ann", "plain").await;
    assert_eq!(texts(&next_snapshot(&mut res).await), ["plain"]);

    let h2c = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let res = h2c.get(server.url("/poll")).send().await.unwrap();
    assert_eq!(res.version(), reqwest::Version::HTTP_2);
    assert_eq!(
        res.json::<Value>().await.unwrap()["msg"][0]["text"],
        "plain"
    );
}

#[tokio::test]
async fn every_route_works_on_the_tls_port() {
    let server = Server::start(&[]);
    let c = tls_client(&server, true);
    let res = c
        .post(server.tls_url("/poll"))
        .json(&serde_json::json!({"user": "ann", "text": "secure"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let body: Value = c
        .get(server.tls_url("/poll"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["msg"][0]["text"], "secure");
    let home = c.get(server.tls_url("/")).send().await.unwrap();
    assert_eq!(home.status(), 200);
    assert_eq!(home.version(), reqwest::Version::HTTP_2);
}

#[tokio::test]
async fn curl_reads_the_stream_over_http2() {
    let server = Server::start(&[]);
    let cert = server.data_dir.join("tls/cert.pem");
    let mut curl = tokio::process::Command::new("curl")
        .args(["--http2", "-sS", "-N", "--cacert", cert.to_str().unwrap()])
        // The response head on stdout before the body: its status line names the protocol.
        .args(["-D", "-"])
        .arg(server.tls_url("/msgs"))
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("curl is installed (scripts/setup installs it)");
    let stdout = curl.stdout.take().unwrap();
    let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stdout));
    let status = lines.next_line().await.unwrap().unwrap();
    assert_eq!(
        status.trim_end(),
        "HTTP/2 200",
        "curl must have spoken HTTP/2 (ALPN h2)"
    );
    // The rest of the head, up to the blank line before the body.
    while !lines
        .next_line()
        .await
        .unwrap()
        .unwrap()
        .trim_end()
        .is_empty()
    {}
    let first = lines.next_line().await.unwrap().unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(&first).unwrap()["msg"],
        serde_json::json!([])
    );
    post(&server, "ann", "via curl").await;
    let second = lines.next_line().await.unwrap().unwrap();
    assert_eq!(texts(&serde_json::from_str(&second).unwrap()), ["via curl"]);
    curl.kill().await.unwrap();
}

#[tokio::test]
async fn msgs_resume_further_back_than_max_resume_is_truncated_to_the_newest() {
    let server = Server::start(&["--max-resume", "3", "--history", "2"]);
    for i in 1..=9 {
        post(&server, "u", &format!("m{i}")).await;
    }
    let mut res = client()
        .get(server.url("/msgs?since=2"))
        .send()
        .await
        .unwrap();
    // Pages of --history messages, newest first within each, the oldest page first.
    let first = next_snapshot(&mut res).await;
    assert_eq!(first["truncated"], true, "{first}");
    assert_eq!(first["more"], true, "{first}");
    assert_eq!(texts(&first), ["m8", "m7"]);
    let second = next_snapshot(&mut res).await;
    assert_eq!(texts(&second), ["m9"]);
    assert!(
        second.get("truncated").is_none() && second.get("more").is_none(),
        "{second}"
    );
    // /poll?since pages through everything instead: it is bounded per request.
    let page = get_json(&server, "/poll?since=2&timeout=0").await;
    assert_eq!(texts(&page), ["m4", "m3"]);
    assert!(page.get("truncated").is_none(), "{page}");
}

#[tokio::test]
async fn post_msgs_validates_like_post_poll() {
    let server = Server::start(&[]);
    let c = client();
    let ok = c
        .post(server.url("/msgs"))
        .json(&serde_json::json!({"user": "ann", "text": "hi"}))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.json::<Value>().await.unwrap()["status"], "ok");
    let bad = c
        .post(server.url("/msgs"))
        .json(&serde_json::json!({"user": "ann"}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 422);
    assert!(bad.json::<Value>().await.unwrap()["error"]
        .as_str()
        .unwrap()
        .contains("\"text\" is missing"));
}

/// One HTTP/2 connection over TLS, for tests that need to control streams themselves.
async fn h2_connection(server: &Server) -> SendRequest<Empty<Bytes>> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_types::pem::PemObject::pem_slice_iter(&server.cert_pem()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let addr = server
        .tls_base
        .as_ref()
        .unwrap()
        .trim_start_matches("https://")
        .to_owned();
    let tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .unwrap();
    assert_eq!(
        tls.get_ref().1.alpn_protocol(),
        Some(&b"h2"[..]),
        "ALPN picks h2"
    );
    // The protocol's default 64 KiB stream window, so a stream that is not read stalls soon.
    let (send, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .initial_stream_window_size(65_535)
        .handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    send
}

fn msgs_request(server: &Server) -> hyper::Request<Empty<Bytes>> {
    hyper::Request::get(server.tls_url("/msgs"))
        .body(Empty::new())
        .unwrap()
}

#[tokio::test]
async fn a_thousand_streams_on_one_http2_connection_all_receive_a_post() {
    let server = Server::start(&[]);
    let before = stat(&server, "subscribers").await;
    let send = h2_connection(&server).await;
    let mut bodies = Vec::new();
    for _ in 0..1000 {
        let mut send = send.clone();
        let req = msgs_request(&server);
        bodies.push(tokio::spawn(async move {
            send.ready().await.unwrap();
            let res = send.send_request(req).await.unwrap();
            assert_eq!(res.status(), 200);
            let mut body = res.into_body();
            let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
            assert!(first.starts_with(b"{\"msg\":[]"));
            body
        }));
    }
    let mut streams = Vec::new();
    for b in bodies {
        streams.push(b.await.unwrap());
    }
    wait_for_stat(&server, "subscribers", before + 1000).await;
    let start = Instant::now();
    post(&server, "ann", "to all").await;
    let mut waits = Vec::new();
    for mut body in streams {
        waits.push(tokio::spawn(async move {
            let frame = body.frame().await.unwrap().unwrap().into_data().unwrap();
            let v: Value = serde_json::from_slice(&frame).unwrap();
            assert_eq!(v["msg"][0]["text"], "to all");
        }));
    }
    for w in waits {
        w.await.unwrap();
    }
    eprintln!(
        "a post reached 1000 streams on one connection in {:?}",
        start.elapsed()
    );
}

#[tokio::test]
async fn a_client_that_goes_away_is_unsubscribed_at_once() {
    let server = Server::start(&[]);
    let before = stat(&server, "subscribers").await;
    // HTTP/2: resetting the stream (dropping the body) while the connection stays up.
    let mut send = h2_connection(&server).await;
    send.ready().await.unwrap();
    let res = send.send_request(msgs_request(&server)).await.unwrap();
    let mut body = res.into_body();
    body.frame().await.unwrap().unwrap();
    wait_for_stat(&server, "subscribers", before + 1).await;
    drop(body);
    wait_for_stat(&server, "subscribers", before).await;

    // HTTP/1.1: closing the connection.
    let mut res = client().get(server.url("/msgs")).send().await.unwrap();
    res.chunk().await.unwrap();
    wait_for_stat(&server, "subscribers", before + 1).await;
    drop(res);
    wait_for_stat(&server, "subscribers", before).await;
}

#[tokio::test]
async fn a_stream_that_is_not_read_does_not_hold_up_others() {
    // Post rate limits off: the test posts 300 messages as fast as it can.
    let server = Server::start(&["--post-rate", "0"]);
    let before = stat(&server, "subscribers").await;
    let send = h2_connection(&server).await;
    // One stream whose body is never read (HTTP/2 flow control stops the server sending).
    let mut idle = send.clone();
    idle.ready().await.unwrap();
    let _never_read = idle.send_request(msgs_request(&server)).await.unwrap();
    // One reader that keeps up.
    let mut reader = send.clone();
    reader.ready().await.unwrap();
    let mut body = reader
        .send_request(msgs_request(&server))
        .await
        .unwrap()
        .into_body();
    body.frame().await.unwrap().unwrap();
    wait_for_stat(&server, "subscribers", before + 2).await;
    // Snapshots of up to ~15 KiB (one DATA frame each), far beyond the idle stream's 64 KiB
    // window in total.
    let text = "x".repeat(250);
    for i in 0..300 {
        post(&server, "ann", &format!("{i} {text}")).await;
        let frame = body.frame().await.unwrap().unwrap().into_data().unwrap();
        let v: Value = serde_json::from_slice(&frame).unwrap();
        assert!(v["msg"][0]["text"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{i} ")));
    }
}
