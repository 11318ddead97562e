//! Opening many subscribers at a bounded pace, with a progress bar.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::transport::{subscribe, SubscriberSetup, Transport};

/// A progress bar on stderr (hidden when `quiet` or when stderr is not a terminal).
pub fn progress(len: u64, what: &str, quiet: bool) -> ProgressBar {
    let target = if quiet {
        ProgressDrawTarget::hidden()
    } else {
        ProgressDrawTarget::stderr_with_hz(4)
    };
    let bar = ProgressBar::with_draw_target(Some(len), target);
    bar.set_style(
        ProgressStyle::with_template("{prefix:>10} [{bar:40}] {pos}/{len} {msg} ({elapsed})")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.set_prefix(what.to_owned());
    bar
}

/// Subscriber tasks; aborted when dropped.
pub struct Swarm {
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Swarm {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Opens `n` subscribers, at most `concurrency` of them connecting at once, and waits until
/// each is ready or failed (or `deadline` passes). Returns the tasks and whether it finished
/// in time.
pub async fn open(
    setup: &Arc<SubscriberSetup>,
    transport: Transport,
    n: usize,
    concurrency: usize,
    deadline: Instant,
    bar: &ProgressBar,
) -> (Swarm, bool) {
    let shared = &setup.shared;
    let settled =
        || shared.ready.load(Ordering::Relaxed) + shared.errors.load(Ordering::Relaxed) as usize;
    let mut swarm = Swarm {
        tasks: Vec::with_capacity(n),
    };
    let mut last_draw = Instant::now();
    while swarm.tasks.len() < n {
        if Instant::now() >= deadline {
            return (swarm, false);
        }
        if swarm.tasks.len() - settled().min(swarm.tasks.len()) < concurrency.max(1) {
            let index = swarm.tasks.len();
            swarm
                .tasks
                .push(tokio::spawn(subscribe(setup.clone(), transport, index)));
        } else {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        if last_draw.elapsed() > Duration::from_millis(50) {
            bar.set_position(shared.ready.load(Ordering::Relaxed) as u64);
            bar.set_message(format!("{} errors", shared.errors.load(Ordering::Relaxed)));
            last_draw = Instant::now();
        }
    }
    while settled() < n {
        if Instant::now() >= deadline {
            return (swarm, false);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        bar.set_position(shared.ready.load(Ordering::Relaxed) as u64);
        bar.set_message(format!("{} errors", shared.errors.load(Ordering::Relaxed)));
    }
    bar.set_position(shared.ready.load(Ordering::Relaxed) as u64);
    (swarm, true)
}
