//! `rtchat bench fanout`: N subscribers, one publisher, latency from post to receipt.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::cli::FanoutArgs;
use crate::record::Shared;
use crate::report::{FanoutReport, Latency, Resources};
use crate::swarm::{self, progress};
use crate::sys::{rss_kib, unix_nanos, CpuMeter};
use crate::target::Target;
use crate::transport::{self, SubscriberSetup};

/// Deliveries due for `posted` messages to `connected` subscribers: each message reaches the
/// subscribers of its room (message `seq` goes to room `(seq - 1) % rooms`, subscriber `i` is
/// in room `i % rooms`), scaled by how many of them connected.
fn expected(args: &FanoutArgs, connected: u64, posted: u64) -> u64 {
    let (rooms, subscribers) = (args.rooms.max(1) as u64, args.subscribers as u64);
    if rooms == 1 || subscribers == 0 {
        return connected * posted;
    }
    let in_room = |r: u64| subscribers / rooms + u64::from(r < subscribers % rooms);
    let all: u64 = (0..posted).map(|seq| in_room(seq % rooms)).sum();
    all * connected / subscribers
}

/// Runs the fan-out measurement against `target`.
pub async fn run(args: &FanoutArgs, target: Target, label: String, url: String) -> FanoutReport {
    let common = &args.common;
    let deadline = Instant::now() + Duration::from_secs_f64(common.timeout);
    // CPU is measured while messages flow (restarted when the first post goes out).
    let mut bench_cpu = CpuMeter::start(None);
    let mut server_cpu = target.pid.map(|p| CpuMeter::start(Some(p)));
    transport::ws::offer_deflate(args.deflate);
    if let Some(token) = &args.token {
        transport::use_token(token.clone());
    }
    let mut wire_start = transport::ws::wire_bytes();
    let shared = Arc::new(Shared::default());
    let run_id = transport::new_run_id();
    let rooms = transport::run_rooms(run_id, args.rooms, args.transport, common.general);
    let mut report = FanoutReport {
        kind: "fanout".to_owned(),
        label,
        transport: args.transport.name().to_owned(),
        url,
        subscribers: args.subscribers,
        rooms: args.rooms,
        room_names: rooms.clone(),
        connected: 0,
        messages: args.messages,
        posted: 0,
        rate: args.rate,
        expected: 0,
        delivered: 0,
        delivered_fraction: 0.0,
        deliveries_per_sec: 0.0,
        frames: 0,
        errors: 0,
        first_error: None,
        latency: Latency::default(),
        elapsed_s: 0.0,
        timed_out: false,
        resources: Resources {
            server_pid: target.pid,
            ..Resources::default()
        },

        run_info: Default::default(),
    };
    let last = if transport::needs_last(args.transport) {
        match transport::fetch_last(&target).await {
            Ok(last) => last,
            Err(e) => {
                shared.error(format!("GET /poll: {e}"));
                transport::Since::default()
            }
        }
    } else {
        transport::Since::default()
    };
    let setup = Arc::new(SubscriberSetup {
        target: target.clone(),
        shared: shared.clone(),
        run: run_id,
        last,
        poll_timeout: 120,
        rooms: rooms.clone(),
    });
    let mut rss_max = 0u64;
    let sample_rss = |max: &mut u64| {
        if let Some(kib) = target.pid.and_then(rss_kib) {
            *max = (*max).max(kib);
        }
    };

    let bar = progress(args.subscribers as u64, "connecting", common.quiet);
    let (swarm, connected_in_time) = swarm::open(
        &setup,
        args.transport,
        args.subscribers,
        common.connect_concurrency,
        deadline,
        &bar,
    )
    .await;
    bar.finish_and_clear();
    sample_rss(&mut rss_max);
    let mut timed_out = !connected_in_time;
    let mut started = Instant::now();
    let mut first_post = unix_nanos();
    let posted = Arc::new(AtomicU64::new(0));
    if !timed_out {
        // Let the last handshakes' snapshots settle before the clock starts.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let connected = shared.ready.load(Ordering::Relaxed) as u64;
        let bar = progress(connected * args.messages, "delivering", common.quiet);
        started = Instant::now();
        first_post = unix_nanos();
        bench_cpu = CpuMeter::start(None);
        server_cpu = target.pid.map(|p| CpuMeter::start(Some(p)));
        wire_start = transport::ws::wire_bytes();
        let publisher = {
            let (target, posted, shared) = (target.clone(), posted.clone(), shared.clone());
            let (transport, messages, rate) = (args.transport, args.messages, args.rate);
            let rooms = rooms.clone();
            tokio::spawn(async move {
                if let Err(e) = transport::publish(
                    &target,
                    transport,
                    run_id,
                    (messages, &rooms),
                    rate,
                    &posted,
                )
                .await
                {
                    shared.error(format!("publisher: {e}"));
                }
            })
        };
        let mut publisher_done_at: Option<Instant> = None;
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            sample_rss(&mut rss_max);
            let delivered = shared.delivered.load(Ordering::Relaxed);
            let posted_now = posted.load(Ordering::Relaxed);
            bar.set_position(delivered);
            bar.set_message(format!(
                "posted {posted_now}, {} errors",
                shared.errors.load(Ordering::Relaxed)
            ));
            if publisher_done_at.is_none() && publisher.is_finished() {
                publisher_done_at = Some(Instant::now());
            }
            let live = shared.ready.load(Ordering::Relaxed) as u64;
            if let Some(done) = publisher_done_at {
                if delivered >= expected(args, live, posted_now)
                    || done.elapsed() >= Duration::from_secs_f64(args.drain)
                {
                    break;
                }
            }
            if Instant::now() >= deadline {
                timed_out = true;
                publisher.abort();
                break;
            }
        }
        bar.finish_and_clear();
    }
    let elapsed = started.elapsed().as_secs_f64();
    drop(swarm);

    let connected = shared.ready.load(Ordering::Relaxed);
    let posted = posted.load(Ordering::Relaxed);
    let delivered = shared.delivered.load(Ordering::Relaxed);
    let expected = expected(args, connected as u64, posted);
    let last_receipt = shared.last_receipt.load(Ordering::Relaxed);
    let span = last_receipt.saturating_sub(first_post) as f64 / 1e9;
    report.rooms = args.rooms;
    report.connected = connected;
    report.posted = posted;
    report.expected = expected;
    report.delivered = delivered;
    report.delivered_fraction = if expected > 0 {
        delivered as f64 / expected as f64
    } else {
        0.0
    };
    report.deliveries_per_sec = if span > 0.0 {
        delivered as f64 / span
    } else {
        0.0
    };
    report.frames = shared.frames.load(Ordering::Relaxed);
    report.errors = shared.errors.load(Ordering::Relaxed);
    report.first_error = shared.first_error.lock().unwrap().clone();
    report.latency = Latency::from_histogram(&shared.histogram());
    report.elapsed_s = elapsed;
    report.timed_out = timed_out;
    if let Some((s, p)) = bench_cpu.used() {
        report.resources.bench_cpu_s = Some(s);
        report.resources.bench_cpu_percent = Some(p);
    }
    if let Some((s, p)) = server_cpu.and_then(|m| m.used()) {
        report.resources.server_cpu_s = Some(s);
        report.resources.server_cpu_percent = Some(p);
        report.resources.server_system_cpu_s = server_cpu.and_then(|m| m.system());
    }
    report.resources.server_rss_kib = (rss_max > 0).then_some(rss_max);
    let wire = transport::ws::wire_bytes() - wire_start;
    report.resources.ws_wire_bytes = (wire > 0).then_some(wire);
    report
}
