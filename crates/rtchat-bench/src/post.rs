//! `rtchat bench post`: acknowledged posts per second from C concurrent posters.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use crate::cli::PostArgs;
use crate::record::{new_histogram, Shared};
use crate::report::{Latency, PostReport, Resources};
use crate::swarm::progress;
use crate::sys::{rss_kib, CpuMeter};
use crate::target::Target;
use crate::transport::http::{self, HttpConn};

/// Runs C posters (`POST /rooms/bench-<run id>/poll` over keep-alive HTTP/1.1, a room of the
/// run's own rather than the chat's `general`; `POST /poll` with `--general`) for the given
/// duration.
pub async fn run(args: &PostArgs, target: Target, label: String, url: String) -> PostReport {
    let common = &args.common;
    let limit = Duration::from_secs_f64(args.duration.min(common.timeout));
    let shared = Arc::new(Shared::default());
    let acked = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let histogram = Arc::new(Mutex::new(new_histogram()));
    let bench_cpu = CpuMeter::start(None);
    let server_cpu = target.pid.map(|p| CpuMeter::start(Some(p)));
    let (room, path) = if common.general {
        ("general".to_owned(), "/poll".to_owned())
    } else {
        let room = format!("bench-{}", crate::transport::new_run_id());
        let path = format!("/rooms/{room}/poll");
        (room, path)
    };
    let path = Arc::new(path);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..args.concurrency {
        let (target, shared, acked, stop, histogram, path) = (
            target.clone(),
            shared.clone(),
            acked.clone(),
            stop.clone(),
            histogram.clone(),
            path.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let result = async {
                let mut conn = HttpConn::new(target.connect(i).await?);
                let mut local = new_histogram();
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let body = format!(r#"{{"user":"bench","text":"post {i} {n}"}}"#);
                    let sent = Instant::now();
                    conn.send(&http::post_json(&path, &target.host, &body))
                        .await?;
                    let status = conn.read_response_with(|s, _| s).await?;
                    if status != 200 {
                        return Err(std::io::Error::other(format!(
                            "POST {path}: status {status}"
                        )));
                    }
                    let _ = local.record((sent.elapsed().as_micros() as u64).max(1));
                    acked.fetch_add(1, Ordering::Relaxed);
                    if n.is_multiple_of(256) {
                        histogram.lock().unwrap().add(&local).expect("same bounds");
                        local.reset();
                    }
                }
                histogram.lock().unwrap().add(&local).expect("same bounds");
                Ok::<(), std::io::Error>(())
            }
            .await;
            if let Err(e) = result {
                shared.error(format!("poster {i}: {e}"));
            }
        }));
    }
    let bar = progress((limit.as_secs_f64() * 10.0) as u64, "posting", common.quiet);
    let mut rss_max = 0;
    let mut timed_out = false;
    while started.elapsed() < limit {
        tokio::time::sleep(Duration::from_millis(100)).await;
        bar.set_position((started.elapsed().as_secs_f64() * 10.0) as u64);
        bar.set_message(format!("{} acknowledged", acked.load(Ordering::Relaxed)));
        if let Some(kib) = target.pid.and_then(rss_kib) {
            rss_max = rss_max.max(kib);
        }
        if tasks.iter().all(|t| t.is_finished()) {
            break;
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let acked_at_end = acked.load(Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    // Let posters finish their last round trip (briefly), then drop them.
    let grace = Instant::now() + Duration::from_secs(2);
    for t in &mut tasks {
        if tokio::time::timeout_at(grace, &mut *t).await.is_err() {
            timed_out = true;
            t.abort();
        }
    }
    bar.finish_and_clear();
    let mut resources = Resources {
        server_pid: target.pid,
        server_rss_kib: (rss_max > 0).then_some(rss_max),
        ..Resources::default()
    };
    if let Some((s, p)) = server_cpu.and_then(|m| m.used()) {
        resources.server_cpu_s = Some(s);
        resources.server_cpu_percent = Some(p);
        resources.server_system_cpu_s = server_cpu.and_then(|m| m.system());
    }
    if let Some((s, p)) = bench_cpu.used() {
        resources.bench_cpu_s = Some(s);
        resources.bench_cpu_percent = Some(p);
    }
    let latency = Latency::from_histogram(&histogram.lock().unwrap());
    let first_error = shared.first_error.lock().unwrap().clone();
    PostReport {
        kind: "post".to_owned(),
        label,
        url,
        concurrency: args.concurrency,
        elapsed_s: elapsed,
        acked: acked_at_end,
        posts_per_sec: acked_at_end as f64 / elapsed.max(1e-9),
        errors: shared.errors.load(Ordering::Relaxed),
        first_error,
        latency,
        timed_out,
        resources,
        room,
        run_info: Default::default(),
    }
}
