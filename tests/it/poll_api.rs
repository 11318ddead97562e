//! The polling contract (`GET`/`POST /poll`) against a real rtchat process.

use crate::common;

use common::{client, get_json, ids, post, Server};
use serde_json::{json, Value};

#[tokio::test]
async fn empty_history_has_the_course_shape() {
    let server = Server::start(&[]);
    let res = client().get(server.url("/poll")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "application/json");
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["msg"], json!([]));
}

#[tokio::test]
async fn posts_come_back_newest_first_with_ids_and_times() {
    let server = Server::start(&[]);
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let mut posted = Vec::new();
    for (user, text) in [("ann", "one"), ("bob", "two"), ("ann", "three")] {
        let res = post(&server, user, text).await;
        assert_eq!(res.status(), 200);
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["status"], "ok");
        posted.push(body["id"].as_u64().unwrap());
    }
    assert!(
        posted.windows(2).all(|w| w[0] < w[1]),
        "ids increase: {posted:?}"
    );
    let body = get_json(&server, "/poll").await;
    let msgs = body["msg"].as_array().unwrap();
    assert_eq!(msgs.len(), 3);
    assert_eq!(msgs[0]["user"], "ann");
    assert_eq!(msgs[0]["text"], "three");
    assert_eq!(msgs[2]["text"], "one");
    assert_eq!(ids(&body), posted.iter().rev().copied().collect::<Vec<_>>());
    for m in msgs {
        let time = m["time"].as_i64().unwrap();
        assert!(
            time >= before - 1000 && time < before + 60_000,
            "time is Date.now()-like: {time}"
        );
        assert_eq!(
            m.as_object().unwrap().len(),
            4,
            "exactly id, user, text, time: {m}"
        );
    }
}

#[tokio::test]
async fn history_is_capped_at_the_newest_n() {
    let server = Server::start(&["--history", "5"]);
    for i in 0..8 {
        assert_eq!(post(&server, "u", &format!("m{i}")).await.status(), 200);
    }
    let body = get_json(&server, "/poll").await;
    assert_eq!(ids(&body), [8, 7, 6, 5, 4]);
    assert_eq!(body["msg"][0]["text"], "m7");
}

#[tokio::test]
async fn default_history_is_fifty() {
    let server = Server::start(&[]);
    for i in 0..55 {
        post(&server, "u", &format!("m{i}")).await;
    }
    let body = get_json(&server, "/poll").await;
    assert_eq!(ids(&body), (6..=55).rev().collect::<Vec<u64>>());
}

/// Posts `body` with `content_type` and checks the status, the JSON error naming `needle`,
/// and that nothing was stored.
async fn rejects(
    args: &[&str],
    content_type: Option<&str>,
    body: Vec<u8>,
    status: u16,
    needle: &str,
) {
    let server = Server::start(args);
    let mut req = client().post(server.url("/poll")).body(body);
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    let res = req.send().await.unwrap();
    assert_eq!(res.status(), status);
    assert_eq!(res.headers()["content-type"], "application/json");
    let err: Value = res.json().await.unwrap();
    let text = err["error"].as_str().expect("a JSON error");
    assert!(
        text.contains(needle),
        "error {text:?} should mention {needle:?}"
    );
    assert_eq!(
        get_json(&server, "/poll").await["msg"],
        json!([]),
        "nothing stored"
    );
}

const JSON: Option<&str> = Some("application/json");

fn body(v: Value) -> Vec<u8> {
    v.to_string().into_bytes()
}

#[tokio::test]
async fn missing_user_is_422() {
    rejects(
        &[],
        JSON,
        body(json!({"text": "hi"})),
        422,
        "\"user\" is missing",
    )
    .await;
}

#[tokio::test]
async fn missing_text_is_422() {
    rejects(
        &[],
        JSON,
        body(json!({"user": "ann"})),
        422,
        "\"text\" is missing",
    )
    .await;
}

#[tokio::test]
async fn empty_user_is_422() {
    rejects(
        &[],
        JSON,
        body(json!({"user": "", "text": "hi"})),
        422,
        "\"user\" must not be empty",
    )
    .await;
}

#[tokio::test]
async fn blank_text_is_422() {
    rejects(
        &[],
        JSON,
        body(json!({"user": "ann", "text": " \n\t"})),
        422,
        "\"text\" must not be empty",
    )
    .await;
}

#[tokio::test]
async fn non_string_user_is_422() {
    rejects(
        &[],
        JSON,
        body(json!({"user": 42, "text": "hi"})),
        422,
        "\"user\" must be a string",
    )
    .await;
}

#[tokio::test]
async fn non_string_text_is_422() {
    rejects(
        &[],
        JSON,
        body(json!({"user": "ann", "text": ["hi"]})),
        422,
        "\"text\" must be a string",
    )
    .await;
}

#[tokio::test]
async fn user_over_64_characters_is_422() {
    let user = "ü".repeat(65);
    rejects(
        &[],
        JSON,
        body(json!({"user": user, "text": "hi"})),
        422,
        "at most 64",
    )
    .await;
}

#[tokio::test]
async fn text_over_2000_characters_is_422() {
    let text = "x".repeat(2001);
    rejects(
        &[],
        JSON,
        body(json!({"user": "ann", "text": text})),
        422,
        "at most 2000",
    )
    .await;
}

#[tokio::test]
async fn limits_are_configurable() {
    rejects(
        &["--max-user", "3"],
        JSON,
        body(json!({"user": "anna", "text": "hi"})),
        422,
        "at most 3",
    )
    .await;
    rejects(
        &["--max-text", "5"],
        JSON,
        body(json!({"user": "ann", "text": "hello!"})),
        422,
        "at most 5",
    )
    .await;
}

#[tokio::test]
async fn body_over_64_kib_is_413() {
    let text = "x".repeat(70 * 1024);
    rejects(
        &[],
        JSON,
        body(json!({"user": "ann", "text": text})),
        413,
        "larger than 65536",
    )
    .await;
}

#[tokio::test]
async fn chunked_body_over_the_limit_is_413() {
    // No Content-Length: the limit must hold while streaming too.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..100).map(|_| Ok(vec![b' '; 1024])).collect();
    let server = Server::start(&[]);
    let res = client()
        .post(server.url("/poll"))
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 413);
}

#[tokio::test]
async fn text_plain_content_type_is_415() {
    rejects(
        &[],
        Some("text/plain"),
        body(json!({"user": "ann", "text": "hi"})),
        415,
        "application/json",
    )
    .await;
}

#[tokio::test]
async fn missing_content_type_is_415() {
    rejects(
        &[],
        None,
        body(json!({"user": "ann", "text": "hi"})),
        415,
        "got none",
    )
    .await;
}

#[tokio::test]
async fn malformed_json_is_400() {
    rejects(
        &[],
        JSON,
        b"{\"user\": \"ann\", \"text\": ".to_vec(),
        400,
        "not valid JSON",
    )
    .await;
}

#[tokio::test]
async fn json_that_is_not_an_object_is_400() {
    rejects(&[], JSON, b"[\"ann\", \"hi\"]".to_vec(), 400, "JSON object").await;
}

#[tokio::test]
async fn json_with_charset_is_accepted() {
    let server = Server::start(&[]);
    let res = client()
        .post(server.url("/poll"))
        .header("content-type", "application/json; charset=utf-8")
        .body(r#"{"user":"ann","text":"hi"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
}

#[tokio::test]
async fn bad_since_is_400_with_json() {
    let server = Server::start(&[]);
    for q in [
        "since=abc",
        "since=-1",
        "since=1&timeout=-3",
        "since=1&timeout=soon",
    ] {
        let res = client()
            .get(server.url(&format!("/poll?{q}")))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 400, "{q}");
        let err: Value = res.json().await.unwrap();
        assert!(err["error"].is_string(), "{q}: {err}");
    }
}

#[tokio::test]
async fn unknown_paths_and_methods_get_json_errors() {
    let server = Server::start(&[]);
    let res = client().get(server.url("/nope")).send().await.unwrap();
    assert_eq!(res.status(), 404);
    let err: Value = res.json().await.unwrap();
    assert!(err["error"].as_str().unwrap().contains("/nope"));

    let res = client().delete(server.url("/poll")).send().await.unwrap();
    assert_eq!(res.status(), 405);
    let err: Value = res.json().await.unwrap();
    assert!(err["error"].as_str().unwrap().contains("DELETE"));
}

#[tokio::test]
async fn cors_lets_other_origins_poll_and_post() {
    let server = Server::start(&[]);
    let preflight = client()
        .request(reqwest::Method::OPTIONS, server.url("/poll"))
        .header("origin", "http://example.test")
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "content-type")
        .send()
        .await
        .unwrap();
    assert!(preflight.status().is_success());
    assert_eq!(preflight.headers()["access-control-allow-origin"], "*");
    let allowed = preflight.headers()["access-control-allow-methods"]
        .to_str()
        .unwrap();
    assert!(allowed.contains("POST"), "{allowed}");

    let res = client()
        .get(server.url("/poll"))
        .header("origin", "http://example.test")
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["access-control-allow-origin"], "*");
}

#[tokio::test]
async fn fail_rate_one_fails_every_get_but_not_posts() {
    let server = Server::start(&["--fail-rate", "1"]);
    for _ in 0..5 {
        let res = client().get(server.url("/poll")).send().await.unwrap();
        assert_eq!(res.status(), 500);
        let err: Value = res.json().await.unwrap();
        assert!(err["error"].as_str().unwrap().contains("--fail-rate"));
    }
    assert_eq!(post(&server, "ann", "still works").await.status(), 200);
}

#[tokio::test]
async fn fail_rate_half_fails_some_and_serves_others() {
    let server = Server::start(&["--fail-rate", "0.5"]);
    let mut failed = 0;
    for _ in 0..200 {
        let res = client().get(server.url("/poll")).send().await.unwrap();
        match res.status().as_u16() {
            500 => failed += 1,
            200 => {}
            other => panic!("unexpected status {other}"),
        }
    }
    // Binomial(200, 0.5): outside 50..150 has probability below 1e-12.
    assert!((50..150).contains(&failed), "{failed} of 200 failed");
}

#[tokio::test]
async fn requests_are_logged_with_method_path_status_and_duration() {
    let server = Server::start(&[]);
    let res = client()
        .get(server.url("/poll?since=0&timeout=0"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    // The log line is written after the response; wait for it to show up.
    server.wait_for_log(
        "request{method=GET path=/poll client=127.0.0.1}: rtchat::http: answered status=200 duration_ms=",
    );
}
