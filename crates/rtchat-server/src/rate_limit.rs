//! Post rate limits (`--post-rate`, `--post-burst`, `--post-rate-per-ip`,
//! `--post-burst-per-ip`).
//!
//! Why: every post is stored (one SQLite transaction per batch, `synchronous=FULL`) and then
//! fanned out to every subscriber of every transport, so one client posting as fast as its
//! link allows costs the disk, the writer and every other client's bandwidth, and buries the
//! chat. The connection caps ([`crate::admission`]) bound how many connections a client holds,
//! not what it does with them; these buckets bound how fast it posts.
//!
//! Two token buckets ([`governor`]'s GCRA) guard each post:
//! * one per connection (a WebSocket, a Socket.IO socket), made on its first post, so one
//!   flooding connection is refused by its own bucket before it drains its address's;
//! * one per client address (the forwarded address behind a `--trusted-proxy`; IPv6 by its
//!   /64, which one subscriber usually holds whole), shared by all of that address's
//!   connections and HTTP posts. HTTP posts count against this one only.
//!
//! The per-address buckets live in one keyed limiter whose memory is bounded: a key whose bucket
//! has refilled is indistinguishable from a fresh one and is dropped by a sweep (at most once a
//! second, on the posting path: no task, and nothing grows while nobody posts); if more than
//! [`MAX_ADDRESSES`] addresses are still tracked after a sweep (a flood from that many
//! addresses within a few seconds), the map is cleared rather than let grow: limits then
//! restart full for everyone, which fails open for a moment instead of refusing newcomers.
//!
//! Every post counts, valid or not (a flood of malformed posts costs too). A refusal says which
//! limit refused it, the flags that govern it, and when a post would be taken again.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::config::PostLimits;

/// Client addresses tracked at most; past this after a sweep the map is cleared.
pub const MAX_ADDRESSES: usize = 65_536;
/// How often, at most, refilled per-address buckets are swept out.
const SWEEP_EVERY: Duration = Duration::from_secs(1);
/// A WebSocket whose posts are refused by a rate limit this many times in a row (no post
/// taken in between) ignores its `error` frames: it is closed with 1008.
pub const WS_REFUSALS_BEFORE_CLOSE: u32 = 10;
/// The close reason of that (at most 123 bytes).
pub const WS_CLOSE_REASON: &str =
    "posting too fast: 10 posts in a row refused by the rate limit (--post-rate)";

/// The server's post limiter: the quotas, and the per-address buckets.
pub struct PostLimiter {
    limits: PostLimits,
    per_connection: Option<Quota>,
    /// Swapped for a fresh one when it tracks too many addresses (governor has no `clear`).
    per_address: Option<RwLock<Arc<DefaultKeyedRateLimiter<IpAddr>>>>,
    address_quota: Option<Quota>,
    /// When the last sweep ran, in milliseconds since `started`.
    last_sweep: AtomicU64,
    started: Instant,
    clock: DefaultClock,
}

/// One connection's bucket (boxed by its holder, made on the first post).
pub struct ConnectionBucket(DefaultDirectRateLimiter);

/// Which bucket refused a post.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Connection,
    Address,
}

/// A post refused by a rate limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub scope: Scope,
    /// Until a post would be taken again.
    pub retry_after: Duration,
    rate: String,
    burst: u32,
}

impl Refused {
    /// Milliseconds until a post would be taken again, rounded up (at least 1).
    pub fn retry_after_ms(&self) -> u64 {
        (self.retry_after.as_nanos().div_ceil(1_000_000) as u64).max(1)
    }

    /// Whole seconds for HTTP's `Retry-After`, rounded up (at least 1).
    pub fn retry_after_secs(&self) -> u64 {
        self.retry_after_ms().div_ceil(1000)
    }
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (whose, flags) = match self.scope {
            Scope::Connection => ("on one connection", "--post-burst, --post-rate"),
            Scope::Address => (
                "from one address",
                "--post-burst-per-ip, --post-rate-per-ip",
            ),
        };
        write!(
            f,
            "posting too fast: at most {} posts at once {whose}, then {} a second ({flags}); \
             the post was not stored, try again in {:.3} s",
            self.burst,
            self.rate,
            self.retry_after_ms() as f64 / 1000.0
        )
    }
}

impl PostLimiter {
    pub fn new(limits: PostLimits) -> PostLimiter {
        let enabled = limits.rate > 0.0 && limits.rate.is_finite();
        let per_connection = enabled.then(|| quota(limits.rate, limits.burst)).flatten();
        let address_quota = (enabled && limits.rate_per_ip > 0.0 && limits.rate_per_ip.is_finite())
            .then(|| quota(limits.rate_per_ip, limits.burst_per_ip))
            .flatten();
        let per_address = address_quota.map(|q| RwLock::new(Arc::new(RateLimiter::keyed(q))));
        PostLimiter {
            limits,
            per_connection,
            per_address,
            address_quota,
            last_sweep: AtomicU64::new(0),
            started: Instant::now(),
            clock: DefaultClock::default(),
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> &PostLimits {
        &self.limits
    }

    /// A bucket for a new connection, or `None` when connections are not limited.
    pub fn connection_bucket(&self) -> Option<Box<ConnectionBucket>> {
        let quota = self.per_connection?;
        Some(Box::new(ConnectionBucket(RateLimiter::direct(quota))))
    }

    /// Takes one post from `bucket` (the connection's, if it has one), then from the bucket of
    /// `client` (if known), or says which refused it and for how long.
    pub fn check(
        &self,
        bucket: Option<&ConnectionBucket>,
        client: Option<IpAddr>,
    ) -> Result<(), Refused> {
        if let Some(ConnectionBucket(limiter)) = bucket {
            limiter.check().map_err(|not_until| Refused {
                scope: Scope::Connection,
                retry_after: not_until.wait_time_from(self.clock.now()),
                rate: rate_text(self.limits.rate),
                burst: self.limits.burst,
            })?;
        }
        let (Some(per_address), Some(ip)) = (&self.per_address, client) else {
            return Ok(());
        };
        self.sweep(per_address);
        let limiter = per_address.read().unwrap_or_else(|e| e.into_inner());
        limiter
            .check_key(&address_key(ip))
            .map_err(|not_until| Refused {
                scope: Scope::Address,
                retry_after: not_until.wait_time_from(self.clock.now()),
                rate: rate_text(self.limits.rate_per_ip),
                burst: self.limits.burst_per_ip,
            })
    }

    /// Drops refilled per-address buckets, at most once per [`SWEEP_EVERY`], and starts over
    /// if that did not bring the map under [`MAX_ADDRESSES`]. Between two sweeps the map grows
    /// by at most the posts taken meanwhile (an address's first post makes its bucket).
    fn sweep(&self, per_address: &RwLock<Arc<DefaultKeyedRateLimiter<IpAddr>>>) {
        let now = self.started.elapsed().as_millis() as u64;
        let last = self.last_sweep.load(Ordering::Relaxed);
        if now.saturating_sub(last) < SWEEP_EVERY.as_millis() as u64 {
            return;
        }
        // One sweeper at a time; the others go on.
        if self
            .last_sweep
            .compare_exchange(
                last,
                now.max(last + 1),
                Ordering::Relaxed,
                Ordering::Relaxed,
            )
            .is_err()
        {
            return;
        }
        let limiter = per_address
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        limiter.retain_recent();
        if limiter.len() > MAX_ADDRESSES {
            tracing::warn!(
                addresses = limiter.len(),
                "post rate limit: too many client addresses tracked; starting over"
            );
            self.start_over();
        }
        limiter.shrink_to_fit();
    }

    /// A fresh per-address limiter in place of one that tracks too many addresses.
    fn start_over(&self) {
        if let (Some(per_address), Some(quota)) = (&self.per_address, self.address_quota) {
            *per_address.write().unwrap_or_else(|e| e.into_inner()) =
                Arc::new(RateLimiter::keyed(quota));
        }
    }

    /// Client addresses currently tracked (for tests and `/stats`).
    pub fn tracked_addresses(&self) -> usize {
        self.per_address
            .as_ref()
            .map_or(0, |l| l.read().unwrap_or_else(|e| e.into_inner()).len())
    }
}

/// The quota of `rate` posts a second with bursts of `burst`, or `None` for a rate too small
/// to express (below one post in ~584 years).
fn quota(rate: f64, burst: u32) -> Option<Quota> {
    let period = Duration::try_from_secs_f64(1.0 / rate).ok()?;
    Some(Quota::with_period(period)?.allow_burst(NonZeroU32::new(burst.max(1))?))
}

/// `5`, `0.5`: a rate as a person writes it.
fn rate_text(rate: f64) -> String {
    let text = format!("{rate:.3}");
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// The key of a client address: IPv4 as is, IPv6 by its /64 (one subscriber's prefix).
fn address_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(bits.into())
        }
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(rate: f64, burst: u32, rate_per_ip: f64, burst_per_ip: u32) -> PostLimits {
        PostLimits {
            rate,
            burst,
            rate_per_ip,
            burst_per_ip,
        }
    }

    #[test]
    fn a_connection_gets_its_burst_then_waits() {
        let limiter = PostLimiter::new(limits(1.0, 3, 0.0, 1));
        let bucket = limiter.connection_bucket().unwrap();
        for _ in 0..3 {
            limiter.check(Some(&bucket), None).unwrap();
        }
        let refused = limiter.check(Some(&bucket), None).unwrap_err();
        assert_eq!(refused.scope, Scope::Connection);
        assert!(refused.retry_after <= Duration::from_secs(1));
        assert!(
            refused.retry_after > Duration::from_millis(900),
            "{refused:?}"
        );
        assert_eq!(refused.retry_after_secs(), 1);
        let text = refused.to_string();
        assert!(text.contains("at most 3 posts at once on one connection, then 1 a second (--post-burst, --post-rate)"), "{text}");
        // Another connection has its own bucket.
        let other = limiter.connection_bucket().unwrap();
        limiter.check(Some(&other), None).unwrap();
    }

    #[test]
    fn addresses_have_their_own_buckets_and_ipv6_counts_by_64() {
        let limiter = PostLimiter::new(limits(100.0, 100, 0.5, 2));
        let a: IpAddr = "2001:db8::1".parse().unwrap();
        let same_64: IpAddr = "2001:db8::ffff:1".parse().unwrap();
        let other: IpAddr = "192.0.2.1".parse().unwrap();
        limiter.check(None, Some(a)).unwrap();
        limiter.check(None, Some(same_64)).unwrap();
        let refused = limiter.check(None, Some(a)).unwrap_err();
        assert_eq!(refused.scope, Scope::Address);
        assert!(
            refused.to_string().contains("then 0.5 a second"),
            "{refused}"
        );
        limiter.check(None, Some(other)).unwrap();
        assert_eq!(limiter.tracked_addresses(), 2);
    }

    #[test]
    fn rate_zero_turns_everything_off() {
        let limiter = PostLimiter::new(limits(0.0, 1, 1.0, 1));
        assert!(limiter.connection_bucket().is_none());
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..1000 {
            limiter.check(None, Some(ip)).unwrap();
        }
        assert_eq!(limiter.tracked_addresses(), 0);
    }

    #[test]
    fn refilled_buckets_are_swept_and_the_map_is_capped() {
        let ip = |i: u32| IpAddr::from(std::net::Ipv4Addr::from(i));
        // Buckets that refill within a millisecond...
        let limiter = PostLimiter::new(limits(1000.0, 1, 1000.0, 1));
        for i in 0..100 {
            limiter.check(None, Some(ip(i))).unwrap();
        }
        assert_eq!(limiter.tracked_addresses(), 100);
        // ...and more addresses than the cap, whose buckets refill in 1000 s.
        let full = PostLimiter::new(limits(1.0, 1, 0.001, 1));
        let per_address = full.per_address.as_ref().unwrap().read().unwrap().clone();
        for i in 0..=MAX_ADDRESSES as u32 {
            per_address.check_key(&ip(i)).unwrap();
        }
        // The first check after SWEEP_EVERY sweeps.
        std::thread::sleep(SWEEP_EVERY);
        limiter.check(None, Some(ip(1_000))).unwrap();
        assert_eq!(
            limiter.tracked_addresses(),
            1,
            "refilled buckets are dropped"
        );
        full.check(None, Some(ip(u32::MAX))).unwrap();
        assert!(
            full.tracked_addresses() <= 1,
            "{}",
            full.tracked_addresses()
        );
    }

    #[test]
    fn rates_read_as_written() {
        assert_eq!(rate_text(5.0), "5");
        assert_eq!(rate_text(0.5), "0.5");
        assert_eq!(rate_text(2.25), "2.25");
    }
}
