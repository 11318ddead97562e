//! `rtchat bench idle`: N idle connections and the server's resident memory per connection.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::cli::IdleArgs;
use crate::record::Shared;
use crate::report::{IdleReport, Resources};
use crate::swarm::{self, progress};
use crate::sys::{rss_kib, CpuMeter};
use crate::target::Target;
use crate::transport::{self, SubscriberSetup};

/// Runs the idle-memory measurement; `target.pid` must be known.
pub async fn run(args: &IdleArgs, target: Target, label: String, url: String) -> IdleReport {
    let common = &args.common;
    let deadline = Instant::now() + Duration::from_secs_f64(common.timeout);
    let bench_cpu = CpuMeter::start(None);
    let shared = Arc::new(Shared::default());
    let pid = target.pid.expect("idle needs the server's pid");
    let last = if transport::needs_last(args.transport) {
        transport::fetch_last(&target).await.unwrap_or_else(|e| {
            shared.error(format!("GET /poll: {e}"));
            transport::Since::default()
        })
    } else {
        transport::Since::default()
    };
    let setup = Arc::new(SubscriberSetup {
        target: target.clone(),
        shared: shared.clone(),
        run: 0,
        last,
        poll_timeout: 120,
    });
    let rss_before = rss_kib(pid).unwrap_or(0);
    let bar = progress(args.connections as u64, "connecting", common.quiet);
    let (swarm, in_time) = swarm::open(
        &setup,
        args.transport,
        args.connections,
        common.connect_concurrency,
        deadline,
        &bar,
    )
    .await;
    bar.finish_and_clear();
    let settle = Duration::from_secs_f64(args.settle);
    let timed_out = !in_time || Instant::now() + settle > deadline;
    tokio::time::sleep_until((Instant::now() + settle).min(deadline)).await;
    let rss_with = rss_kib(pid).unwrap_or(0);
    let connected = shared.ready.load(Ordering::Relaxed);
    let mut resources = Resources {
        server_pid: Some(pid),
        server_rss_kib: Some(rss_with),
        ..Resources::default()
    };
    if let Some((s, p)) = bench_cpu.used() {
        resources.bench_cpu_s = Some(s);
        resources.bench_cpu_percent = Some(p);
    }
    drop(swarm);
    let first_error = shared.first_error.lock().unwrap().clone();
    IdleReport {
        kind: "idle".to_owned(),
        label,
        transport: args.transport.name().to_owned(),
        url,
        connections: args.connections,
        connected,
        errors: shared.errors.load(Ordering::Relaxed),
        first_error,
        rss_before_kib: rss_before,
        rss_with_kib: rss_with,
        per_connection_kib: if connected > 0 {
            rss_with.saturating_sub(rss_before) as f64 / connected as f64
        } else {
            0.0
        },
        timed_out,
        resources,
    }
}
