//! `rtchat bench`: rtchat's load tool.
//!
//! * `fanout`: N subscribers over one transport and a publisher posting M messages at R per
//!   second; post-to-receipt latency (HdrHistogram), delivered fraction, deliveries per
//!   second, errors.
//! * `idle`: N idle connections and the server's resident memory per connection.
//! * `post`: acknowledged posts per second from C concurrent posters.
//! * `plot`: the latency distributions of saved `fanout --json` results in one SVG.
//!
//! The clients are deliberately small (a hand-written HTTP/1.1 reader, WebSocket frame
//! reader and Engine.IO handshake on tokio) so that one process drives 10,000 connections
//! with little CPU; each report says how much CPU the bench itself used.
//!
//! Every result (`--json` and the table) records how it was measured ([`runinfo`]): rtchat's
//! version and git commit, the server's command line (or what is known of a `--url` server),
//! and the machine with its load average at the start and the end of the run.

pub mod cli;
pub mod fanout;
pub mod hol;
pub mod idle;
pub mod post;
pub mod record;
pub mod report;
pub mod runinfo;
pub mod swarm;
pub mod sys;
pub mod target;
pub mod transport;

use std::process::ExitCode;

pub use cli::BenchArgs;
use cli::{BenchCommand, Common};
use report::{FanoutReport, Latency};
use target::{SpawnedServer, Target};

/// Runs `rtchat bench ...` and returns the process exit code.
pub fn run(args: BenchArgs) -> ExitCode {
    match run_inner(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run_inner(args: BenchArgs) -> Result<ExitCode, String> {
    let common = match &args.command {
        BenchCommand::Fanout(a) => a.common.clone(),
        BenchCommand::Idle(a) => a.common.clone(),
        BenchCommand::Post(a) => a.common.clone(),
        BenchCommand::Plot(a) => return plot_files(a).map(|()| ExitCode::SUCCESS),
        BenchCommand::Hol(a) => return Ok(hol::run(a)),
    };
    sys::raise_nofile_limit();
    let mut machine = runinfo::Machine::read();
    let (target, spawned) = resolve_target(&common)?;
    let server_info = match &spawned {
        Some(server) => {
            runinfo::ServerInfo::spawned(server.argv.clone(), target.addr, &target.host)
        }
        None => runinfo::ServerInfo::external(target.pid, target.addr, &target.host),
    };
    // The build, the server and the machine, with the load average at the end of the run.
    let mut run_info = move || {
        machine.loadavg_end = runinfo::loadavg();
        runinfo::RunInfo::new(server_info.clone(), machine.clone())
    };
    let url = format!("http://{}", target.host);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(common.threads.into())
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    let default_label = |transport: &str| match &common.url {
        None => format!("rtchat {transport}"),
        Some(u) => format!("{u} {transport}"),
    };
    let result = match args.command {
        BenchCommand::Fanout(a) => {
            if a.rooms > 1 && !transport::has_rooms(a.transport) {
                return Err(format!(
                    "--rooms needs a transport with rooms; {} is the course's room general only",
                    a.transport.name()
                ));
            }
            if a.rooms > 1 && common.general {
                return Err("--rooms and --general: pick one".to_owned());
            }
            if let Some(warning) = common
                .url
                .as_ref()
                .and_then(|_| transport::general_warning(a.transport, common.general))
            {
                eprintln!("{warning}");
            }
            let label = common
                .label
                .clone()
                .unwrap_or_else(|| default_label(a.transport.name()));
            let mut report = runtime.block_on(fanout::run(&a, target, label, url));
            report.run_info = run_info();
            if let Some(path) = &a.plot {
                report::plot(
                    path,
                    "Fan-out latency (post to receipt)",
                    &[(report.legend(), report.latency.clone())],
                )
                .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
                // Not on stdout, which may be the JSON result.
                eprintln!("wrote {}", path.display());
            }
            output(&report, common.json, FanoutReport::print_table)?;
            report.timed_out
        }
        BenchCommand::Idle(a) => {
            if target.pid.is_none() {
                return Err("idle needs the server's pid: pass --server-pid, or no --url so that the bench starts the server".to_owned());
            }
            let label = common
                .label
                .clone()
                .unwrap_or_else(|| default_label(a.transport.name()));
            if a.fanout {
                if let Some(warning) = common
                    .url
                    .as_ref()
                    .and_then(|_| transport::general_warning(a.transport, common.general))
                {
                    eprintln!("{warning}");
                }
            }
            let mut report = runtime.block_on(idle::run(&a, target, label, url));
            report.run_info = run_info();
            output(&report, common.json, report::IdleReport::print_table)?;
            report.timed_out
        }
        BenchCommand::Post(a) => {
            if common.general && common.url.is_some() {
                eprintln!("warning: --general: this benchmark posts into the chat's general room");
            }
            let label = common
                .label
                .clone()
                .unwrap_or_else(|| default_label("post"));
            let mut report = runtime.block_on(post::run(&a, target, label, url));
            report.run_info = run_info();
            output(&report, common.json, report::PostReport::print_table)?;
            report.timed_out
        }
        BenchCommand::Plot(_) | BenchCommand::Hol(_) => unreachable!("handled above"),
    };
    // Never wait for connections still being torn down.
    runtime.shutdown_background();
    Ok(if result {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}

/// The server: `--url` (with `--server-pid`), or a freshly started `rtchat serve`.
fn resolve_target(common: &Common) -> Result<(Target, Option<SpawnedServer>), String> {
    match &common.url {
        Some(url) => Target::from_url(url, common.server_pid)
            .map(|t| (t, None))
            .map_err(|e| format!("bad --url {url}: {e}")),
        None => {
            let server = SpawnedServer::start(&common.server_arg, common.post_limits == "on")
                .map_err(|e| format!("cannot start rtchat serve: {e}"))?;
            let target = Target::from_url(&server.url, Some(server.pid()))
                .map_err(|e| format!("bad server address {}: {e}", server.url))?;
            Ok((target, Some(server)))
        }
    }
}

fn output<T: serde::Serialize>(report: &T, json: bool, table: fn(&T)) -> Result<(), String> {
    if json {
        let text = serde_json::to_string_pretty(report).map_err(|e| e.to_string())?;
        // Not println!: a closed pipe (`| head`) is an error to report, not a panic.
        use std::io::Write;
        writeln!(std::io::stdout().lock(), "{text}")
            .map_err(|e| format!("cannot write the result: {e}"))?;
    } else {
        table(report);
    }
    Ok(())
}

fn plot_files(args: &cli::PlotArgs) -> Result<(), String> {
    let mut runs: Vec<(String, Latency)> = Vec::new();
    for path in &args.results {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let report: FanoutReport = serde_json::from_str(&text)
            .map_err(|e| format!("{} is not a fanout --json result: {e}", path.display()))?;
        runs.push((report.legend(), report.latency));
    }
    report::plot(&args.out, &args.title, &runs)
        .map_err(|e| format!("cannot write {}: {e}", args.out.display()))?;
    println!("wrote {}", args.out.display());
    Ok(())
}
