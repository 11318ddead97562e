//! `rtchat bench idle`: N idle connections and the server's resident memory per connection;
//! with `--fanout`, one message delivered to all of them (the scale test).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::cli::IdleArgs;
use crate::record::Shared;
use crate::report::{IdleFanout, IdleReport, Latency, Resources};
use crate::swarm::{self, progress};
use crate::sys::{
    raise_nofile_limit, rss_kib, unix_nanos, ConnectionLimits, CpuMeter, KernelMemory,
};
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
    let run = transport::new_run_id();
    let setup = Arc::new(SubscriberSetup {
        target: target.clone(),
        shared: shared.clone(),
        run,
        last,
        poll_timeout: 120,
        rooms: transport::run_rooms(run, 1, args.transport, common.general),
    });
    let rss_before = rss_kib(pid).unwrap_or(0);
    let kernel_before = KernelMemory::read();
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
    let kernel_with = KernelMemory::read();
    let connected = shared.ready.load(Ordering::Relaxed);
    let per_socket = |before: u64, with: u64| {
        (connected > 0).then(|| with.saturating_sub(before) as f64 / (2 * connected) as f64)
    };
    let fanout = if args.fanout && connected > 0 {
        Some(fan_out(&setup, args, connected, deadline).await)
    } else {
        None
    };
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
        limits: ConnectionLimits::read(raise_nofile_limit(), Some(pid)),
        kernel_tcp_kib_per_socket: per_socket(
            kernel_before.tcp_buffers_kib,
            kernel_with.tcp_buffers_kib,
        ),
        kernel_slab_kib_per_socket: per_socket(kernel_before.slab_kib, kernel_with.slab_kib),
        fanout,
        room_names: setup.rooms.clone(),
        run_info: Default::default(),
    }
}

/// Posts one bench message and waits (until the run's deadline) for every open connection
/// to have it.
async fn fan_out(
    setup: &SubscriberSetup,
    args: &IdleArgs,
    connections: usize,
    deadline: Instant,
) -> IdleFanout {
    let shared = &setup.shared;
    let posted = std::sync::atomic::AtomicU64::new(0);
    let sent = unix_nanos();
    let publisher = transport::publish(
        &setup.target,
        args.transport,
        setup.run,
        (1, &setup.rooms),
        1.0,
        &posted,
    );
    let waiting = async {
        while shared.delivered.load(Ordering::Relaxed) < connections as u64 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    let (published, _) = tokio::join!(publisher, tokio::time::timeout_at(deadline, waiting));
    if let Err(e) = published {
        shared.error(format!("posting the fan-out message: {e}"));
    }
    let last = shared.last_receipt.load(Ordering::Relaxed);
    IdleFanout {
        delivered: shared.delivered.load(Ordering::Relaxed),
        connections,
        all_ms: last.saturating_sub(sent) as f64 / 1e6,
        latency: Latency::from_histogram(&shared.histogram()),
    }
}
