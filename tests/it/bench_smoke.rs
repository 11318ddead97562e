//! `rtchat bench` smoke test: a tiny fan-out, idle and post run against a real server, checking
//! the JSON output's shape (figures are measured, never asserted).

use crate::common;

use common::{rtchat, Server};

fn bench_json(args: &[&str]) -> serde_json::Value {
    let out = rtchat(args, &[]).output().expect("run rtchat bench");
    assert!(
        out.status.success(),
        "rtchat {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "rtchat {args:?} printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// A GET of `path` on `server`, as JSON.
fn get_json(server: &Server, path: &str) -> serde_json::Value {
    let out = std::process::Command::new("curl")
        .args(["-sS", "--fail", &server.url(path)])
        .output()
        .expect("run curl");
    assert!(out.status.success(), "GET {path}: {out:?}");
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A report's `room_names`.
fn room_names(report: &serde_json::Value) -> Vec<String> {
    report["room_names"]
        .as_array()
        .unwrap_or_else(|| panic!("no room_names: {report}"))
        .iter()
        .map(|r| r.as_str().unwrap().to_owned())
        .collect()
}

/// `bench fanout --rooms`: subscribers and posts spread over rooms of the run's own, each
/// message counted only for its own room's subscribers, on every transport that has rooms; by
/// default (and in `idle --fanout`, `post`) one room of the run's own, never `general`.
#[test]
fn fanout_spreads_over_rooms() {
    let server = Server::start(&["--no-tls", "--post-rate", "0"]);
    let pid = server.pid().to_string();
    let url = server.base.as_str();
    let general_last = || get_json(&server, "/poll")["last"].clone();
    let last_before = general_last();
    let mut used: Vec<String> = Vec::new();
    for transport in ["ws", "socketio", "sse", "stream", "longpoll"] {
        let report = bench_json(&[
            "bench",
            "fanout",
            "--url",
            url,
            "--server-pid",
            &pid,
            "--transport",
            transport,
            "--rooms",
            "4",
            "--subscribers",
            "20",
            "--messages",
            "20",
            "--rate",
            "50",
            "--timeout",
            "60",
            "--json",
            "--quiet",
        ]);
        assert_eq!(report["rooms"], 4, "{transport}: {report}");
        assert_eq!(report["connected"], 20, "{transport}: {report}");
        // 20 messages, 5 to each room, each room with 5 subscribers.
        assert_eq!(report["expected"], 100, "{transport}: {report}");
        assert_eq!(report["delivered_fraction"], 1.0, "{transport}: {report}");
        // The rooms are the run's own: bench-<run id>-0 .. bench-<run id>-3.
        let names = room_names(&report);
        assert_eq!(names.len(), 4, "{transport}: {report}");
        let run = names[0]
            .strip_prefix("bench-")
            .and_then(|r| r.strip_suffix("-0"))
            .unwrap_or_else(|| panic!("{transport}: room {:?}", names[0]));
        assert!(run.bytes().all(|b| b.is_ascii_digit()), "{names:?}");
        for (k, name) in names.iter().enumerate() {
            assert_eq!(*name, format!("bench-{run}-{k}"), "{transport}: {report}");
        }
        used.extend(names);
    }
    // By default a run (and `idle --fanout`, `post`) keeps to one room of its own,
    // `bench-<run id>`, over every transport that has rooms.
    for transport in ["ws", "socketio", "sse", "stream", "longpoll"] {
        let report = bench_json(&[
            "bench",
            "fanout",
            "--url",
            url,
            "--transport",
            transport,
            "--subscribers",
            "3",
            "--messages",
            "3",
            "--rate",
            "50",
            "--timeout",
            "60",
            "--json",
            "--quiet",
        ]);
        assert_eq!(report["rooms"], 1, "{transport}: {report}");
        assert_eq!(report["delivered_fraction"], 1.0, "{transport}: {report}");
        let names = room_names(&report);
        assert_eq!(names.len(), 1, "{transport}: {report}");
        assert!(
            names[0].starts_with("bench-") && !names[0]["bench-".len()..].contains('-'),
            "{transport}: {report}"
        );
        used.extend(names);
    }
    let idle = bench_json(&[
        "bench",
        "idle",
        "--url",
        url,
        "--server-pid",
        &pid,
        "-t",
        "ws",
        "--connections",
        "5",
        "--settle",
        "0.1",
        "--fanout",
        "--json",
        "--quiet",
    ]);
    assert_eq!(idle["fanout"]["delivered"], 5, "{idle}");
    let idle_rooms = room_names(&idle);
    assert_eq!(idle_rooms.len(), 1, "{idle}");
    used.extend(idle_rooms);
    let post = bench_json(&[
        "bench",
        "post",
        "--url",
        url,
        "--concurrency",
        "2",
        "--duration",
        "0.2",
        "--json",
        "--quiet",
    ]);
    assert!(post["acked"].as_u64().unwrap() > 0, "{post}");
    assert!(
        post["room"].as_str().unwrap().starts_with("bench-"),
        "{post}"
    );
    used.push(post["room"].as_str().unwrap().to_owned());
    assert_eq!(
        general_last(),
        last_before,
        "the benchmarks left general's history alone"
    );

    let rooms = get_json(&server, "/rooms");
    let mut names: Vec<String> = rooms["rooms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap().to_owned())
        .collect();
    names.sort();
    used.push("general".to_owned());
    used.sort();
    assert_eq!(names, used);

    // The course's snapshot transports are general only: the bench says it posts there.
    let out = rtchat(
        &[
            "bench",
            "fanout",
            "--url",
            url,
            "-t",
            "ws-json",
            "--subscribers",
            "1",
            "--messages",
            "1",
            "--json",
            "--quiet",
        ],
        &[],
    )
    .output()
    .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("posts into the chat's general room"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(room_names(&report).is_empty(), "{report}");

    // --general: the course's paths, room general, over a transport that has rooms too.
    let before = general_last().as_u64().unwrap();
    let report = bench_json(&[
        "bench",
        "fanout",
        "--url",
        url,
        "-t",
        "sse",
        "--general",
        "--subscribers",
        "2",
        "--messages",
        "3",
        "--json",
        "--quiet",
    ]);
    assert!(room_names(&report).is_empty(), "{report}");
    assert_eq!(report["delivered_fraction"], 1.0, "{report}");
    assert_eq!(general_last().as_u64().unwrap(), before + 3);
    let out = rtchat(
        &[
            "bench", "fanout", "--url", url, "-t", "ws-json", "--rooms", "2",
        ],
        &[],
    )
    .output()
    .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--rooms needs a transport with rooms"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn fanout_idle_and_post_report_json() {
    // A bench posts far faster than a person: this server runs without post rate limits
    // (the servers the bench starts itself lift them by default, see `--post-limits`).
    let server = Server::start(&["--no-tls", "--post-rate", "0"]);
    let pid = server.pid().to_string();
    let url = server.base.as_str();
    for transport in [
        "ws",
        "ws-json",
        "socketio",
        "socketio-snapshots",
        "stream",
        "sse",
        "longpoll",
    ] {
        let report = bench_json(&[
            "bench",
            "fanout",
            "--url",
            url,
            "--server-pid",
            &pid,
            "--transport",
            transport,
            "--subscribers",
            "20",
            "--messages",
            "20",
            "--rate",
            "50",
            "--timeout",
            "60",
            "--json",
            "--quiet",
        ]);
        assert_eq!(report["kind"], "fanout");
        assert_eq!(
            report["transport"], transport,
            "the report names the transport as asked"
        );
        assert_eq!(report["connected"], 20, "{transport}: {report}");
        assert_eq!(report["posted"], 20, "{transport}: {report}");
        assert_eq!(report["delivered_fraction"], 1.0, "{transport}: {report}");
        for field in ["p50_ms", "p99_ms", "max_ms", "distribution"] {
            assert!(
                report["latency"].get(field).is_some(),
                "{transport}: no latency.{field}"
            );
        }
        assert!(report["deliveries_per_sec"].as_f64().unwrap() > 0.0);
        assert!(report["resources"]["bench_cpu_percent"].is_number());
        assert!(report["resources"]["server_rss_kib"].is_number());
        check_run_info(&report);
        // --url with --server-pid: the server's command line, read from /proc.
        let server = &report["run_info"]["server"];
        assert_eq!(server["started_by_bench"], false, "{report}");
        let argv: Vec<&str> = server["argv"]
            .as_array()
            .unwrap_or_else(|| panic!("no argv: {report}"))
            .iter()
            .map(|a| a.as_str().unwrap())
            .collect();
        assert!(
            argv.contains(&"serve") && argv.contains(&"--post-rate"),
            "{argv:?}"
        );
    }
    // --url without a pid: the bench says what it does not know.
    let report = bench_json(&[
        "bench", "fanout", "--url", url, "-t", "ws", "-n", "2", "-m", "2", "--json", "--quiet",
    ]);
    check_run_info(&report);
    let server = &report["run_info"]["server"];
    assert!(server["argv"].is_null(), "{report}");
    assert!(
        server["options"]
            .as_str()
            .unwrap()
            .starts_with("external server"),
        "{report}"
    );

    let idle = bench_json(&[
        "bench",
        "idle",
        "--url",
        url,
        "--server-pid",
        &pid,
        "--connections",
        "100",
        "--settle",
        "0.2",
        "--fanout",
        "--json",
        "--quiet",
    ]);
    assert_eq!(idle["connected"], 100, "{idle}");
    assert!(idle["per_connection_kib"].is_number());
    // --fanout: one message reaches every idle connection; the limits met are reported.
    assert_eq!(idle["fanout"]["delivered"], 100, "{idle}");
    assert!(idle["fanout"]["all_ms"].is_number(), "{idle}");
    assert!(
        idle["limits"]["bench_nofile"].as_u64().unwrap() > 0,
        "{idle}"
    );
    assert!(
        idle["limits"]["server_nofile"].as_u64().unwrap() > 0,
        "{idle}"
    );

    let post = bench_json(&[
        "bench",
        "post",
        "--url",
        url,
        "--concurrency",
        "4",
        "--duration",
        "0.5",
        "--json",
        "--quiet",
    ]);
    assert!(post["acked"].as_u64().unwrap() > 0, "{post}");
    assert_eq!(post["errors"], 0, "{post}");
    check_run_info(&idle);
    check_run_info(&post);
}

/// A result's `run_info`: the build (version, commit), the server and the machine with its
/// load average at the start and the end.
fn check_run_info(report: &serde_json::Value) {
    let info = &report["run_info"];
    assert_eq!(
        info["rtchat_version"],
        env!("CARGO_PKG_VERSION"),
        "{report}"
    );
    let commit = info["git_commit"].as_str().unwrap_or_default();
    assert!(
        commit == "unknown" || commit.bytes().take(7).all(|b| b.is_ascii_hexdigit()),
        "{report}"
    );
    assert!(info["server"]["options"].is_string(), "{report}");
    let machine = &info["machine"];
    assert!(machine["cores"].as_u64().unwrap() > 0, "{report}");
    for field in ["loadavg_start", "loadavg_end"] {
        assert_eq!(
            machine[field].as_array().map(Vec::len),
            Some(3),
            "{field}: {report}"
        );
    }
}

#[test]
fn spawns_its_own_server_and_plots() {
    let dir = common::temp_dir("bench");
    let svg = dir.join("fanout.svg");
    let json = dir.join("fanout.json");
    let report = bench_json(&[
        "bench",
        "fanout",
        "--subscribers",
        "5",
        "--messages",
        "5",
        "--rate",
        "100",
        "--json",
        "--quiet",
        "--plot",
        svg.to_str().unwrap(),
    ]);
    assert_eq!(report["delivered_fraction"], 1.0, "{report}");
    assert!(std::fs::read_to_string(&svg).unwrap().contains("<svg"));
    // The server it started: this build, its command line.
    check_run_info(&report);
    let server = &report["run_info"]["server"];
    assert_eq!(server["started_by_bench"], true, "{report}");
    assert_eq!(server["argv"][1], "serve", "{report}");
    std::fs::write(&json, report.to_string()).unwrap();
    std::fs::remove_file(&svg).unwrap();
    let out = rtchat(
        &[
            "bench",
            "plot",
            "--out",
            svg.to_str().unwrap(),
            json.to_str().unwrap(),
        ],
        &[],
    )
    .output()
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("wrote {}", svg.display())
    );
    // The legend: the run's label, its settings and its p99; Okabe–Ito colours.
    let plot = std::fs::read_to_string(&svg).unwrap();
    let p99 = report["latency"]["p99_ms"].as_f64().unwrap();
    let legend = format!(
        "{} (ws-json, 5 subscribers, 100 msg/s): p99 {p99:.1} ms",
        report["label"].as_str().unwrap()
    );
    assert!(plot.contains(&legend), "no {legend:?} in {plot}");
    assert!(plot.contains("#0072B2"), "{plot}");
}

/// `rtchat client` and `rtchat bench` take one set of transport names: a name that was the
/// bench's own before (`msgs`) is refused by both with the list, and the one transport the
/// bench does not measure (`poll`) is refused by it with a pointer to `longpoll`.
#[test]
fn client_and_bench_share_the_transport_names() {
    for tool in [
        &["client", "--transport", "msgs"][..],
        &["bench", "fanout", "--transport", "msgs"][..],
    ] {
        let out = rtchat(tool, &[]).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{tool:?} accepted an unknown name");
        assert!(
            stderr.contains("stream") && stderr.contains("socketio-snapshots"),
            "{tool:?}: {stderr}"
        );
    }
    let out = rtchat(&["bench", "idle", "--transport", "poll"], &[])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("longpoll"), "{stderr}");
}

/// `bench fanout --token` against `--auth token`: every transport's subscribers and posts carry
/// the token, and every message reaches every subscriber; without it nothing gets in.
#[test]
fn fanout_carries_a_token_to_a_server_with_auth() {
    let dir = common::temp_dir("bench-auth");
    let secret = dir.join("secret");
    std::fs::write(&secret, "a bench test secret of at least thirty-two bytes").unwrap();
    let secret = secret.to_str().unwrap();
    let server = Server::start(&[
        "--no-tls",
        "--post-rate",
        "0",
        "--auth",
        "token",
        "--jwt-secret-file",
        secret,
    ]);
    let out = rtchat(
        &[
            "token",
            "--jwt-secret-file",
            secret,
            "--user",
            "bench",
            "--name",
            "bench",
        ],
        &[],
    )
    .output()
    .unwrap();
    assert!(out.status.success());
    let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let url = server.base.as_str();
    let run = |transport: &str, token: Option<&str>| {
        let mut args = vec![
            "bench",
            "fanout",
            "--url",
            url,
            "--transport",
            transport,
            "--subscribers",
            "10",
            "--messages",
            "10",
            "--rate",
            "50",
            "--timeout",
            "60",
            "--json",
            "--quiet",
        ];
        if let Some(token) = token {
            args.extend(["--token", token]);
        }
        rtchat(&args, &[]).output().expect("run rtchat bench")
    };
    for transport in [
        "ws",
        "ws-json",
        "socketio",
        "socketio-snapshots",
        "sse",
        "stream",
        "longpoll",
    ] {
        let out = run(transport, Some(&token));
        assert!(
            out.status.success(),
            "{transport}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(report["delivered"], 100, "{transport}: {report}");
        assert_eq!(report["errors"], 0, "{transport}: {report}");
    }
    let out = run("ws", None);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("401"), "without a token: {text}");
}
