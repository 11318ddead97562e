//! Property test over every HTTP request path that takes user input: the query strings of
//! `GET /poll?since=..&timeout=..`, `GET /msgs?since=..`, `GET /events?since=..` (and its
//! `Last-Event-ID` header), `/ws?since=..`, and the bodies of `POST /poll` and `POST /msgs`
//! (arbitrary JSON, odd numbers, unicode, arbitrary bytes, odd content types, chunked and
//! oversized bodies).
//!
//! One real server serves the whole run. Requests are written as raw HTTP/1.1 bytes on a TCP
//! socket, so no client library normalises them. For every case the server must answer (a
//! dropped connection fails), with 200 (101 for a WebSocket upgrade) or a precise 4xx (400,
//! 404, 405, 413, 415, 422; never a 5xx); an error answer is JSON `{"error": "..."}` with a
//! non-empty reason; and the server must still answer `GET /healthz` afterwards. At the end its
//! log must show no panic.

use crate::common;

use common::Server;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::Value;
use std::fmt::Write as _;
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// Cases per property.
const CASES: u32 = 256;
/// `--max-body` of the server under test.
const MAX_BODY: usize = 8 * 1024;
/// How long any answer may take before the case fails.
const ANSWER_WITHIN: Duration = Duration::from_secs(30);
/// A long poll that has not answered after this long is (most likely) parked waiting for a
/// message: one is posted to wake it, and the answer must then come.
const PARKED_AFTER: Duration = Duration::from_millis(300);

/// A status and what came with it.
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    /// Empty for answers whose body is an endless stream (not read).
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// What the test does when an answer is slow to start.
enum WhenSlow<'a> {
    Fail,
    /// Call this once (it posts a message, waking a parked long poll), then keep waiting.
    Nudge(&'a dyn Fn()),
}

/// Sends `request` (raw bytes) on a fresh connection and reads the answer: the head, then
/// the body by `Content-Length`, chunked encoding or until the connection ends — except for
/// a 101 and for a 200 with a streaming content type, whose body never ends.
fn exchange(port: u16, request: &[u8], slow: WhenSlow<'_>) -> Result<Answer, String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("connect: {e}"))?;
    s.write_all(request)
        .map_err(|e| format!("the server stopped reading the request: {e}"))?;
    let mut nudge = match slow {
        WhenSlow::Fail => None,
        WhenSlow::Nudge(f) => Some(f),
    };
    let first_wait = if nudge.is_some() {
        PARKED_AFTER
    } else {
        ANSWER_WITHIN
    };
    s.set_read_timeout(Some(first_wait)).unwrap();
    let mut buf = Vec::new();
    let head_end = loop {
        if let Some(i) = find(&buf, b"\r\n\r\n") {
            break i + 4;
        }
        match read_some(&mut s, &mut buf) {
            Ok(0) => {
                return Err(format!(
                    "the connection ended without an answer (got {:?})",
                    String::from_utf8_lossy(&buf)
                ))
            }
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                match nudge.take() {
                    Some(f) => {
                        f();
                        s.set_read_timeout(Some(ANSWER_WITHIN)).unwrap();
                    }
                    None => return Err(format!("no answer within {ANSWER_WITHIN:?}")),
                }
            }
            Err(e) => return Err(format!("reading the answer: {e}")),
        }
    };
    s.set_read_timeout(Some(ANSWER_WITHIN)).unwrap();
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let status: u16 = status_line
        .strip_prefix("HTTP/1.1 ")
        .and_then(|r| r.get(..3))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let headers: Vec<(String, String)> = lines
        .filter(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let mut answer = Answer {
        status,
        headers,
        body: Vec::new(),
    };
    let content_type = answer.header("content-type").unwrap_or("").to_owned();
    let streaming =
        content_type.starts_with("text/event-stream") || content_type.starts_with("text/plain");
    if status == 101 || (status == 200 && streaming) {
        return Ok(answer);
    }
    let mut rest = buf.split_off(head_end);
    let chunked = answer
        .header("transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
    if chunked {
        answer.body = read_chunked(&mut s, rest)?;
    } else if let Some(len) = answer.header("content-length") {
        let len: usize = len
            .parse()
            .map_err(|_| format!("bad Content-Length {len:?}"))?;
        while rest.len() < len {
            match read_some(&mut s, &mut rest) {
                Ok(0) => return Err(format!("body cut short at {} of {len} bytes", rest.len())),
                Ok(_) => {}
                Err(e) => return Err(format!("reading the body: {e}")),
            }
        }
        rest.truncate(len);
        answer.body = rest;
    } else {
        loop {
            match read_some(&mut s, &mut rest) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) => return Err(format!("reading the body: {e}")),
            }
        }
        answer.body = rest;
    }
    Ok(answer)
}

fn read_some(s: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<usize> {
    let mut chunk = [0u8; 8192];
    let n = s.read(&mut chunk)?;
    buf.extend_from_slice(&chunk[..n]);
    Ok(n)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Decodes a chunked body (`buf` holds what was read past the head).
fn read_chunked(s: &mut TcpStream, mut buf: Vec<u8>) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    loop {
        let line_end = loop {
            if let Some(i) = find(&buf, b"\r\n") {
                break i;
            }
            match read_some(s, &mut buf) {
                Ok(0) => return Err("chunked body cut short".into()),
                Ok(_) => {}
                Err(e) => return Err(format!("reading a chunk: {e}")),
            }
        };
        let size_text = String::from_utf8_lossy(&buf[..line_end]).into_owned();
        let size = usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16)
            .map_err(|_| format!("bad chunk size {size_text:?}"))?;
        buf.drain(..line_end + 2);
        while buf.len() < size + 2 {
            match read_some(s, &mut buf) {
                Ok(0) => return Err("chunk cut short".into()),
                Ok(_) => {}
                Err(e) => return Err(format!("reading a chunk: {e}")),
            }
        }
        if size == 0 {
            return Ok(body);
        }
        body.extend_from_slice(&buf[..size]);
        buf.drain(..size + 2);
    }
}

/// The checks every answer must pass; `ok` lists the success statuses of this endpoint.
fn check_answer(
    request: &[u8],
    answer: Result<Answer, String>,
    ok: &[u16],
) -> Result<Answer, TestCaseError> {
    let shown = String::from_utf8_lossy(&request[..request.len().min(2000)]).into_owned();
    let answer = answer.map_err(|e| TestCaseError::fail(format!("{e}\nrequest: {shown:?}")))?;
    let fail = |why: String| {
        TestCaseError::fail(format!(
            "{why}\nrequest: {shown:?}\nanswer: {} {:?} {:?}",
            answer.status,
            answer.headers,
            String::from_utf8_lossy(&answer.body)
        ))
    };
    const ERRORS: [u16; 6] = [400, 404, 405, 413, 415, 422];
    if ok.contains(&answer.status) {
        return Ok(answer);
    }
    if !ERRORS.contains(&answer.status) {
        return Err(fail(format!(
            "status {} is not one of {ok:?} or {ERRORS:?}",
            answer.status
        )));
    }
    let json: Value = serde_json::from_slice(&answer.body)
        .map_err(|e| fail(format!("the error answer is not JSON: {e}")))?;
    match json.get("error").and_then(Value::as_str) {
        Some(reason) if !reason.trim().is_empty() => Ok(answer),
        _ => Err(fail(
            "the error answer has no non-empty \"error\" reason".into(),
        )),
    }
}

/// The server still answers a plain request.
fn check_alive(port: u16) -> Result<(), TestCaseError> {
    let req = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    match exchange(port, req, WhenSlow::Fail) {
        Ok(a) if a.status == 200 => Ok(()),
        Ok(a) => Err(TestCaseError::fail(format!(
            "GET /healthz afterwards answered {}",
            a.status
        ))),
        Err(e) => Err(TestCaseError::fail(format!(
            "the server no longer answers GET /healthz: {e}"
        ))),
    }
}

/// A raw GET; `Connection: close` unless `extra_headers` has its own `Connection`.
fn get(target: &str, extra_headers: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut req = format!("GET {target} HTTP/1.1\r\nHost: localhost\r\n").into_bytes();
    if !extra_headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("connection"))
    {
        req.extend_from_slice(b"Connection: close\r\n");
    }
    for (k, v) in extra_headers {
        req.extend_from_slice(k.as_bytes());
        req.extend_from_slice(b": ");
        req.extend_from_slice(v);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"\r\n");
    req
}

/// Posts a valid message (used to wake a parked long poll).
fn post_message(port: u16) {
    let body = br#"{"user":"nudge","text":"wake up"}"#;
    let mut req = format!(
        "POST /poll HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(body);
    let a = exchange(port, &req, WhenSlow::Fail).expect("posting a message");
    assert_eq!(a.status, 200, "posting a valid message");
}

// ----- generators ------------------------------------------------------------------------

/// Number-like and odd literals for `since`, `timeout` and JSON numbers.
const ODD_NUMBERS: &[&str] = &[
    "0",
    "1",
    "2",
    "5",
    "-0",
    "-1",
    "1e20",
    "1e308",
    "1e309",
    "-1e20",
    "1e400",
    "1E-400",
    "4.9e-324",
    "2.2250738585072011e-308",
    "NaN",
    "nan",
    "inf",
    "-inf",
    "Infinity",
    "+5",
    "0x10",
    "1_000",
    "18446744073709551615",
    "18446744073709551616",
    "-9223372036854775809",
    "99999999999999999999999",
    "1.5",
    "0.5",
    ".5",
    "5.",
    "120",
    "121",
    "119.999",
    "1e3",
    "0.000001",
    "00000000000000000001",
    " 1",
    "1 ",
    "",
    "١",
    "１",
];

/// A value for a query parameter: numbers and odd literals, as text; percent-encoded
/// arbitrary unicode; raw characters a query may carry.
fn query_value() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(ODD_NUMBERS).prop_map(pct),
        2 => any::<u64>().prop_map(|n| n.to_string()),
        2 => (0u64..60).prop_map(|n| n.to_string()),
        1 => any::<i64>().prop_map(|n| n.to_string()),
        1 => any::<f64>().prop_map(|f| pct(&f.to_string())),
        1 => any::<f64>().prop_map(|f| pct(&format!("{f:e}"))),
        1 => any::<String>().prop_map(|s| pct(&s)),
        // Raw characters RFC 3986 allows in a query (others are refused by hyper before
        // rtchat sees the request), and a stray `%`.
        1 => "[A-Za-z0-9._~!$'()*+,;=:@/?%-]{0,12}",
    ]
}

/// A `timeout` value: any query value, or a number of any magnitude (up to past what an
/// f64 holds), written in any notation.
fn timeout_value() -> impl Strategy<Value = String> {
    prop_oneof![
        2 => query_value(),
        1 => (any::<bool>(), 0u32..400).prop_map(|(neg, e)| format!("{}1e{e}", if neg { "-" } else { "" })),
        1 => (0.0f64..1e300).prop_map(|f| f.to_string()),
        1 => (0u32..40).prop_map(|digits| "9".repeat(digits as usize + 1)),
    ]
}

/// The query of `GET /poll`: mostly `since` and `timeout` together (the long poll), else
/// `since` alone or any mix of pairs.
fn poll_query() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => (query_value(), timeout_value(), any::<bool>()).prop_map(|(since, timeout, swap)| {
            if swap {
                format!("timeout={timeout}&since={since}")
            } else {
                format!("since={since}&timeout={timeout}")
            }
        }),
        1 => query_value().prop_map(|since| format!("since={since}")),
        2 => query(&["since", "timeout"]),
    ]
}

/// Percent-encodes everything but unreserved characters.
fn pct(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            write!(out, "%{b:02X}").unwrap();
        }
    }
    out
}

/// A query string over `keys` (plus odd keys), pairs in any order, repeated or bare.
fn query(keys: &'static [&'static str]) -> impl Strategy<Value = String> {
    let key = prop_oneof![
        6 => prop::sample::select(keys).prop_map(str::to_owned),
        1 => prop::sample::select(&["Since", "since[]", "since%00", "%73ince", "timeout%20", "", "="][..])
            .prop_map(str::to_owned),
        1 => "[a-z]{1,6}",
    ];
    let pair = prop_oneof![
        8 => (key.clone(), query_value()).prop_map(|(k, v)| format!("{k}={v}")),
        1 => key,
    ];
    prop::collection::vec(pair, 0..4).prop_map(|pairs| pairs.join("&"))
}

/// Bytes a header value may carry (visible ASCII, space, tab, obs-text).
fn header_value() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => prop::sample::select(ODD_NUMBERS).prop_map(|s| s.as_bytes().to_vec()),
        2 => any::<u64>().prop_map(|n| n.to_string().into_bytes()),
        1 => any::<String>().prop_map(|s| {
            s.into_bytes().into_iter().filter(|b| *b >= 0x20 && *b != 0x7f).collect()
        }),
        1 => prop::collection::vec(
            prop_oneof![Just(b'\t'), 0x20u8..0x7f, 0x80u8..=0xff],
            0..24,
        ),
    ]
}

/// JSON text, including numbers serde cannot hold, escapes of lone surrogates, NUL and
/// bidirectional overrides, deep nesting and the chat's own keys.
fn json_text() -> impl Strategy<Value = String> {
    let string = prop_oneof![
        4 => any::<String>().prop_map(|s| serde_json::to_string(&s).unwrap()),
        1 => prop::sample::select(
            &[
                r#""\ud800""#, r#""\udc00x""#, r#""\u0000""#, r#""a\u0000b""#, r#""\u202e""#,
                r#""\u200b""#, r#""   ""#, r#""""#, r#""\t\n""#, r#""\uD83D\uDE00""#,
            ][..]
        )
        .prop_map(str::to_owned),
        1 => (1usize..3000).prop_map(|n| format!("\"{}\"", "é".repeat(n))),
    ];
    let number = prop_oneof![
        2 => prop::sample::select(ODD_NUMBERS)
            .prop_filter("JSON-shaped", |s| serde_json::from_str::<Value>(s).is_ok()
                || s.starts_with("1e") || s.starts_with("-1e") || s.starts_with('9'))
            .prop_map(str::to_owned),
        1 => any::<i64>().prop_map(|n| n.to_string()),
        1 => any::<u64>().prop_map(|n| n.to_string()),
        1 => any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| format!("{f:e}")),
    ];
    let leaf = prop_oneof![
        Just("null".to_owned()),
        Just("true".to_owned()),
        Just("false".to_owned()),
        number,
        string,
    ];
    leaf.prop_recursive(4, 32, 5, |inner| {
        let key = prop_oneof![
            3 => prop::sample::select(&["user", "text", "ref", "type", "id", "time"][..])
                .prop_map(|k| format!("\"{k}\"")),
            1 => any::<String>().prop_map(|s| serde_json::to_string(&s).unwrap()),
        ];
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(|v| format!("[{}]", v.join(","))),
            prop::collection::vec((key, inner), 0..5).prop_map(|kv| {
                let fields: Vec<String> = kv.into_iter().map(|(k, v)| format!("{k}:{v}")).collect();
                format!("{{{}}}", fields.join(","))
            }),
        ]
    })
}

/// A request body: a `{user, text}` object of odd values, any JSON, a cut-off JSON text,
/// arbitrary bytes, or more than `--max-body`.
fn body() -> impl Strategy<Value = Vec<u8>> {
    let user = prop_oneof![
        3 => "[a-zA-Z0-9 ]{0,12}".prop_map(|s| serde_json::to_string(&s).unwrap()),
        3 => json_text(),
    ];
    let text = prop_oneof![
        3 => any::<String>().prop_map(|s| serde_json::to_string(&s).unwrap()),
        3 => json_text(),
    ];
    prop_oneof![
        4 => (user, text, any::<bool>()).prop_map(|(u, t, extra)| {
            let more = if extra { r#","ref":1e400,"type":"post""# } else { "" };
            format!(r#"{{"user":{u},"text":{t}{more}}}"#).into_bytes()
        }),
        2 => json_text().prop_map(String::into_bytes),
        1 => (json_text(), any::<prop::sample::Index>()).prop_map(|(j, i)| {
            let b = j.into_bytes();
            let cut = i.index(b.len() + 1);
            b[..cut].to_vec()
        }),
        1 => prop::collection::vec(any::<u8>(), 0..300),
        1 => (MAX_BODY - 2..MAX_BODY + 200).prop_map(|n| {
            let mut b = br#"{"user":"big","text":""#.to_vec();
            b.resize(n.saturating_sub(2).max(b.len()), b'x');
            b.extend_from_slice(br#""}"#);
            b
        }),
    ]
}

fn content_type() -> impl Strategy<Value = Option<Vec<u8>>> {
    prop_oneof![
        4 => Just(Some(b"application/json".to_vec())),
        1 => prop::sample::select(
            &[
                "application/json; charset=utf-8", "APPLICATION/JSON", "application/ld+json",
                "application/vnd.api+json", "text/plain", "application/x-www-form-urlencoded",
                "multipart/form-data; boundary=x", "", "application/jsonx", "json",
                "application/json;;;", "application/json; charset=latin1", "*/*",
                "application/+json", "application/json, text/plain",
            ][..]
        )
        .prop_map(|s| Some(s.as_bytes().to_vec())),
        1 => header_value().prop_map(Some),
        1 => Just(None),
    ]
}

/// A POST with `body`, sent with `Content-Length` or chunked in pieces of `piece` bytes.
fn post(path: &str, ct: &Option<Vec<u8>>, body: &[u8], chunked: Option<usize>) -> Vec<u8> {
    let mut req =
        format!("POST {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n").into_bytes();
    if let Some(ct) = ct {
        req.extend_from_slice(b"Content-Type: ");
        req.extend_from_slice(ct);
        req.extend_from_slice(b"\r\n");
    }
    match chunked {
        None => {
            write!(req, "Content-Length: {}\r\n\r\n", body.len()).unwrap();
            req.extend_from_slice(body);
        }
        Some(piece) => {
            req.extend_from_slice(b"Transfer-Encoding: chunked\r\n\r\n");
            for c in body.chunks(piece.max(1)) {
                write!(req, "{:x}\r\n", c.len()).unwrap();
                req.extend_from_slice(c);
                req.extend_from_slice(b"\r\n");
            }
            req.extend_from_slice(b"0\r\n\r\n");
        }
    }
    req
}

/// A content type that is certainly not JSON's (none at all, or a well-known other one).
fn clearly_not_json(ct: Option<&[u8]>) -> bool {
    let Some(ct) = ct else { return true };
    let ct = String::from_utf8_lossy(ct).to_ascii_lowercase();
    let mime = ct.split(';').next().unwrap_or("").trim();
    [
        "",
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data",
        "*/*",
        "application/jsonx",
        "json",
    ]
    .contains(&mime)
}

fn runner() -> TestRunner {
    TestRunner::new(Config {
        cases: CASES,
        failure_persistence: None,
        ..Config::default()
    })
}

/// Runs one property; a failure names the property and the minimal failing input.
fn property<S: Strategy>(
    name: &str,
    strategy: S,
    test: impl Fn(S::Value) -> Result<(), TestCaseError>,
) -> Result<(), String>
where
    S::Value: std::fmt::Debug,
{
    runner()
        .run(&strategy, test)
        .map_err(|e| format!("property `{name}` failed: {e}"))
}

#[test]
fn every_input_path_answers_with_a_precise_status() {
    // Post rate limits off: the properties post hundreds of times a second from one address.
    let server = Server::start(&[
        "--no-tls",
        "--store",
        "memory",
        "--max-body",
        &MAX_BODY.to_string(),
        "--post-rate",
        "0",
    ]);
    let port = server.port;
    // Some history, so `since` values below, at and above the newest id all occur.
    for _ in 0..5 {
        post_message(port);
    }
    let nudge = || post_message(port);
    let mut failures = Vec::new();

    failures.extend(
        property("GET /poll query", poll_query(), |q| {
            let req = get(&format!("/poll?{q}"), &[]);
            let answer = exchange(port, &req, WhenSlow::Nudge(&nudge));
            let answer = check_answer(&req, answer, &[200])?;
            if answer.status == 200 {
                let json: Value = serde_json::from_slice(&answer.body).map_err(|e| {
                    TestCaseError::fail(format!("200 without JSON ({e}) for {q:?}"))
                })?;
                prop_assert!(
                    json["msg"].is_array() && json["last"].is_u64(),
                    "{q:?}: {json}"
                );
            }
            check_alive(port)
        })
        .err(),
    );

    failures.extend(
        property(
            "GET /msgs and /events query and Last-Event-ID",
            (
                prop::sample::select(&["/msgs", "/events", "/msgs+sse"][..]),
                query(&["since"]),
                prop::option::of(header_value()),
            ),
            |(path, q, last_event_id)| {
                let mut headers = Vec::new();
                let path = match path {
                    "/msgs+sse" => {
                        headers.push(("Accept".to_owned(), b"text/event-stream".to_vec()));
                        "/msgs"
                    }
                    p => p,
                };
                if let Some(v) = last_event_id {
                    headers.push(("Last-Event-ID".to_owned(), v));
                }
                let req = get(&format!("{path}?{q}"), &headers);
                check_answer(&req, exchange(port, &req, WhenSlow::Fail), &[200])?;
                check_alive(port)
            },
        )
        .err(),
    );

    failures.extend(
        property(
            "GET /ws query",
            (query(&["since"]), any::<bool>()),
            |(q, v1)| {
                let mut headers = vec![
                    ("Upgrade".to_owned(), b"websocket".to_vec()),
                    ("Connection".to_owned(), b"Upgrade".to_vec()),
                    (
                        "Sec-WebSocket-Key".to_owned(),
                        b"dGhlIHNhbXBsZSBub25jZQ==".to_vec(),
                    ),
                    ("Sec-WebSocket-Version".to_owned(), b"13".to_vec()),
                ];
                if v1 {
                    headers.push(("Sec-WebSocket-Protocol".to_owned(), b"rtchat.v1".to_vec()));
                }
                let req = get(&format!("/ws?{q}"), &headers);
                check_answer(&req, exchange(port, &req, WhenSlow::Fail), &[101])?;
                check_alive(port)
            },
        )
        .err(),
    );

    failures.extend(
        property(
            "POST /poll and /msgs bodies",
            (
                prop::sample::select(&["/poll", "/msgs"][..]),
                content_type(),
                body(),
                prop::option::weighted(0.2, 1usize..4096),
            ),
            |(path, ct, body, chunked)| {
                let req = post(path, &ct, &body, chunked);
                let answer = check_answer(&req, exchange(port, &req, WhenSlow::Fail), &[200])?;
                let json: Option<Value> = serde_json::from_slice(&answer.body).ok();
                if answer.status == 200 {
                    let json = json.unwrap_or_default();
                    prop_assert!(
                        json["status"] == "ok" && json["id"].is_u64(),
                        "a 200 to a post says what was stored: {json}"
                    );
                }
                if clearly_not_json(ct.as_deref()) {
                    prop_assert_eq!(
                        answer.status,
                        415,
                        "a body not declared as JSON is refused, whatever it holds"
                    );
                }
                check_alive(port)
            },
        )
        .err(),
    );

    let log = server.stderr();
    if let Some(at) = log.find("panicked") {
        let start = log[..at].rfind('\n').map_or(0, |i| i + 1);
        let end = log[at..].find('\n').map_or(log.len(), |i| at + i);
        failures.push(format!("the server panicked: {}", &log[start..end]));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
