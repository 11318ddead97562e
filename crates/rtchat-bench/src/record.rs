//! Posted texts carry their send time; subscribers find them in what they receive and record
//! the latency.
//!
//! A bench text is `bench RUN SEQ UNIX_NANOS`: `RUN` tells this run's messages from older
//! ones in the server's history, `SEQ` counts from 1.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

use hdrhistogram::Histogram;
use memchr::memmem;

use crate::sys::unix_nanos;

/// Histogram shards, so that subscribers on several threads rarely contend.
const SHARDS: usize = 8;
/// Largest latency recorded, in microseconds (longer ones are clamped): 10 minutes.
const MAX_MICROS: u64 = 600_000_000;

/// The text of message `seq` of run `run`, sent now.
pub fn bench_text(run: u32, seq: u64) -> String {
    format!("bench {run} {seq} {}", unix_nanos())
}

/// Figures every subscriber adds to.
#[derive(Debug)]
pub struct Shared {
    shards: Vec<Mutex<Histogram<u64>>>,
    /// Distinct (subscriber, message) receipts.
    pub delivered: AtomicU64,
    /// Frames, chunks or responses received that carried chat data.
    pub frames: AtomicU64,
    /// Connections that failed or broke.
    pub errors: AtomicU64,
    /// Subscribers that are connected and got their first answer.
    pub ready: AtomicUsize,
    /// Unix nanos of the latest receipt.
    pub last_receipt: AtomicU64,
    /// The first error seen, for the report.
    pub first_error: Mutex<Option<String>>,
}

impl Default for Shared {
    fn default() -> Self {
        Shared {
            shards: (0..SHARDS).map(|_| Mutex::new(new_histogram())).collect(),
            delivered: AtomicU64::new(0),
            frames: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            ready: AtomicUsize::new(0),
            last_receipt: AtomicU64::new(0),
            first_error: Mutex::new(None),
        }
    }
}

/// An empty latency histogram in microseconds (1 µs to 10 min, 3 significant digits).
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_MICROS, 3).expect("valid histogram bounds")
}

impl Shared {
    /// Counts a failed connection and keeps the first reason.
    pub fn error(&self, what: impl std::fmt::Display) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        let mut first = self.first_error.lock().unwrap();
        if first.is_none() {
            *first = Some(what.to_string());
        }
    }

    /// Marks one more subscriber ready.
    pub fn ready(&self) {
        self.ready.fetch_add(1, Ordering::Relaxed);
    }

    /// All shards merged.
    pub fn histogram(&self) -> Histogram<u64> {
        let mut all = new_histogram();
        for shard in &self.shards {
            all.add(&*shard.lock().unwrap()).expect("same bounds");
        }
        all
    }
}

/// What one subscriber has seen.
#[derive(Debug)]
pub struct Receiver {
    run: u32,
    shard: usize,
    /// The newest sequence number seen.
    newest: u64,
    /// Messages of this run seen.
    pub seen: u64,
}

impl Receiver {
    /// A subscriber of run `run`; `index` spreads subscribers over the histogram shards.
    pub fn new(run: u32, index: usize) -> Receiver {
        Receiver {
            run,
            shard: index % SHARDS,
            newest: 0,
            seen: 0,
        }
    }

    /// Records every message of this run in `data` newer than what was seen before it.
    ///
    /// With `snapshot` the data is a newest-first list that repeats older messages: the scan
    /// stops at the first message already seen (or of another run), so a 50-message snapshot
    /// costs one parse.
    pub fn receive(&mut self, shared: &Shared, data: &[u8], snapshot: bool) {
        shared.frames.fetch_add(1, Ordering::Relaxed);
        let before = self.newest;
        let seen_before = self.seen;
        let mut newest = before;
        let mut latencies = [0u64; 16];
        let mut count = 0usize;
        let shard = self.shard;
        let flush = |lat: &[u64], shared: &Shared| {
            if lat.is_empty() {
                return;
            }
            let mut h = shared.shards[shard].lock().unwrap();
            for &l in lat {
                let _ = h.record(l.clamp(1, MAX_MICROS));
            }
        };
        let now = unix_nanos();
        for pos in memmem::find_iter(data, b"\"bench ") {
            let Some((run, seq, sent)) = parse(&data[pos + 7..]) else {
                continue;
            };
            if run != self.run || seq <= before {
                if snapshot {
                    break;
                }
                continue;
            }
            newest = newest.max(seq);
            self.seen += 1;
            latencies[count] = now.saturating_sub(sent) / 1000;
            count += 1;
            if count == latencies.len() {
                flush(&latencies, shared);
                count = 0;
            }
        }
        flush(&latencies[..count], shared);
        if newest != before {
            shared
                .delivered
                .fetch_add(self.seen - seen_before, Ordering::Relaxed);
            self.newest = newest;
            shared.last_receipt.fetch_max(now, Ordering::Relaxed);
        }
    }
}

/// Parses `RUN SEQ NANOS` (the rest of a bench text).
fn parse(s: &[u8]) -> Option<(u32, u64, u64)> {
    let mut nums = [0u64; 3];
    let mut i = 0;
    for n in &mut nums {
        let start = i;
        while i < s.len() && s[i].is_ascii_digit() {
            *n = n.checked_mul(10)?.checked_add(u64::from(s[i] - b'0'))?;
            i += 1;
        }
        if i == start {
            return None;
        }
        i += 1; // the space (or closing quote)
    }
    Some((u32::try_from(nums[0]).ok()?, nums[1], nums[2]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_scan_stops_at_the_first_seen_message() {
        let shared = Shared::default();
        let mut r = Receiver::new(7, 0);
        let t = unix_nanos();
        let snap = format!(
            r#"{{"msg":[{{"id":2,"user":"b","text":"bench 7 2 {t}","time":1}},{{"id":1,"user":"b","text":"bench 7 1 {t}","time":1}},{{"text":"bench 6 9 {t}"}}],"last":2}}"#
        );
        r.receive(&shared, snap.as_bytes(), true);
        assert_eq!(r.seen, 2);
        r.receive(&shared, snap.as_bytes(), true);
        assert_eq!(r.seen, 2);
        let delta = format!(r#"{{"type":"msg","msg":{{"text":"bench 7 3 {t}"}}}}"#);
        r.receive(&shared, delta.as_bytes(), false);
        assert_eq!(r.seen, 3);
        assert_eq!(shared.delivered.load(Ordering::Relaxed), 3);
        assert_eq!(shared.histogram().len(), 3);
    }

    #[test]
    fn parses_bench_texts() {
        assert_eq!(parse(b"12 34 56\""), Some((12, 34, 56)));
        assert_eq!(parse(b"x 1 2"), None);
    }
}
