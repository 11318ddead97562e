//! `rtchat serve --store redis://...` at start: flags that only make sense with SQLite are
//! refused, an unreachable Redis is a clear failure, `--store-wait` waits for it.

use super::*;

/// A process killed when dropped.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs `rtchat serve ARGS` expecting it to exit within 15 s: (success, stderr).
fn run_to_exit(args: &[&str]) -> (bool, String) {
    let data = common::temp_dir("cluster-start");
    let mut all = vec![
        "serve",
        "--no-tls",
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        data.to_str().unwrap(),
    ];
    all.extend(args);
    let mut child = Guard(common::rtchat(&all, &[]).spawn().unwrap());
    let log = Arc::new(Mutex::new(String::new()));
    let (tx, _rx) = mpsc::channel();
    drain(
        child.0.stderr.take().unwrap(),
        log.clone(),
        "\0",
        tx.clone(),
    );
    drain(child.0.stdout.take().unwrap(), Arc::default(), "\0", tx);
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "rtchat {args:?} did not exit within 15 s: {}",
            log.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    // The pipes' threads end with the process; give the last line a moment to be read.
    let start = Instant::now();
    while log.lock().unwrap().is_empty() && start.elapsed() < Duration::from_secs(2) {
        std::thread::sleep(Duration::from_millis(10));
    }
    let log = log.lock().unwrap().clone();
    (status.success(), log)
}

#[test]
fn sqlite_only_flags_are_refused_with_a_redis_store() {
    let redis = Redis::start_volatile();
    let url = redis.url();
    for (flags, named) in [
        (vec!["--db", "/tmp/x.db"], vec!["--db"]),
        (vec!["--db-max-mb", "10"], vec!["--db-max-mb"]),
        (vec!["--retain-age", "1h"], vec!["--retain-age"]),
        (
            vec!["--db", "/tmp/x.db", "--retain-age", "1h"],
            vec!["--db", "--retain-age"],
        ),
    ] {
        let mut args = vec!["--store", url.as_str()];
        args.extend(&flags);
        let (ok, log) = run_to_exit(&args);
        assert!(!ok, "{flags:?} with a Redis store must fail: {log}");
        for flag in named {
            assert!(log.contains(flag), "the message names {flag}: {log}");
        }
        assert!(
            log.contains("only apply to --store sqlite"),
            "{flags:?}: says why: {log}"
        );
    }
    // Nothing was written to Redis by a refused start.
    assert_eq!(redis.cmd(&["DBSIZE"]), Resp::Int(0));
}

#[test]
fn an_unreachable_redis_is_a_clear_failure_at_start() {
    let port = free_port();
    let url = format!("redis://127.0.0.1:{port}/0");
    let (ok, log) = run_to_exit(&["--store", &url]);
    assert!(!ok, "{log}");
    assert!(
        log.contains("cannot open the message store") && log.contains("--store-wait"),
        "a clear message: {log}"
    );
    assert!(
        log.contains(&format!("127.0.0.1:{port}")) || log.contains("Redis"),
        "{log}"
    );
}

#[test]
fn store_wait_waits_for_redis_then_serves() {
    let port = free_port();
    let url = format!("redis://127.0.0.1:{port}/0");
    let data = common::temp_dir("cluster-wait");
    let mut child = Guard(
        common::rtchat(
            &[
                "serve",
                "--no-tls",
                "--listen",
                "127.0.0.1:0",
                "--data-dir",
                data.to_str().unwrap(),
                "--store",
                &url,
                "--store-wait",
            ],
            &[],
        )
        .spawn()
        .unwrap(),
    );
    let log = Arc::new(Mutex::new(String::new()));
    let (waiting_tx, waiting) = mpsc::channel();
    drain(
        child.0.stderr.take().unwrap(),
        log.clone(),
        "waiting for the Redis store",
        waiting_tx,
    );
    let out = Arc::new(Mutex::new(String::new()));
    let (listening_tx, listening) = mpsc::channel();
    drain(
        child.0.stdout.take().unwrap(),
        out.clone(),
        "rtchat listening on http://",
        listening_tx,
    );
    waiting
        .recv_timeout(Duration::from_secs(10))
        .unwrap_or_else(|_| panic!("it says it waits for Redis: {}", log.lock().unwrap()));
    // Still waiting, not serving, not gone.
    assert!(
        child.0.try_wait().unwrap().is_none(),
        "{}",
        log.lock().unwrap()
    );
    assert!(listening.try_recv().is_err());
    let redis = Redis::start_on(port, false);
    listening
        .recv_timeout(Duration::from_secs(15))
        .unwrap_or_else(|_| panic!("it starts once Redis is up: {}", log.lock().unwrap()));
    let line = out.lock().unwrap().clone();
    let base = line
        .lines()
        .find_map(|l| l.strip_prefix("rtchat listening on "))
        .unwrap()
        .trim()
        .to_owned();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        assert_eq!(readyz(&base).await, 200);
        let id = post_ok(&base, "ann", "hello").await;
        assert_eq!(id, 1);
    });
    assert_eq!(
        redis.cmd(&["EXISTS", "rtchat:{general}:log"]),
        Resp::Int(1),
        "the post went to that Redis"
    );
}
