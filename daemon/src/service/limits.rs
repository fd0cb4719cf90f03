//! Rate limits (token buckets per agent and tool pattern, in memory) and budgets (call counts
//! per agent and period, persisted with the log so day counters survive a restart).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use faramesh_proto::Call;

use crate::log::entry;
use crate::policy::{Budget, Period, Profile};

/// A rate limit was hit.
#[derive(Debug, Clone, PartialEq)]
pub struct RateHit {
    /// The limit's key as written (`stripe/*`).
    pub key: String,
    /// Seconds until the bucket holds a whole token again (at least 1).
    pub retry_after_seconds: u64,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

/// Token buckets, keyed by agent and limit.
#[derive(Debug, Default)]
pub struct RateLimiter {
    buckets: Mutex<HashMap<(String, String), Bucket>>,
}

impl RateLimiter {
    /// Takes one token from every limit of `profile` that matches the call (only looks when
    /// `take` is false), or reports the first limit without a token (taking nothing). Buckets
    /// refill by the time passed since their last look, `now` being this one's.
    pub fn check(
        &self,
        profile: &Profile,
        call: &Call,
        take: bool,
        now: Instant,
        include: impl Fn(&crate::policy::RateLimit) -> bool,
    ) -> Result<(), RateHit> {
        let matching: Vec<_> = profile
            .rate_limits
            .iter()
            .filter(|l| l.tool.matches(&call.tool) && l.op.matches(&call.operation) && include(l))
            .collect();
        if matching.is_empty() {
            return Ok(());
        }
        let Ok(mut buckets) = self.buckets.lock() else {
            // A poisoned lock means a panic elsewhere: fail closed.
            return Err(RateHit { key: "internal".into(), retry_after_seconds: 1 });
        };
        for limit in &matching {
            let capacity = f64::from(limit.count);
            let rate = capacity / limit.per_seconds as f64;
            let bucket = buckets
                .entry((profile.name.clone(), limit.key.clone()))
                .or_insert(Bucket { tokens: capacity, last: now });
            let elapsed = now.saturating_duration_since(bucket.last).as_secs_f64();
            bucket.tokens = (bucket.tokens + elapsed * rate).min(capacity);
            bucket.last = now;
            if bucket.tokens < 1.0 {
                let wait = ((1.0 - bucket.tokens) / rate).ceil().max(1.0);
                return Err(RateHit { key: limit.key.clone(), retry_after_seconds: wait as u64 });
            }
        }
        if take {
            for limit in &matching {
                if let Some(b) = buckets.get_mut(&(profile.name.clone(), limit.key.clone())) {
                    b.tokens -= 1.0;
                }
            }
        }
        Ok(())
    }
}

/// The budget period a call falls in: its state key suffix and when it ends (RFC 3339, or
/// `None` for a session).
pub fn period_of(budget: &Budget, call: &Call, now_ms: u64) -> (String, Option<String>) {
    match budget.per {
        Period::Session => (format!("session/{}", call.session_id.as_deref().unwrap_or("")), None),
        per => {
            let len_ms = per.seconds() * 1000;
            let start = now_ms - now_ms % len_ms;
            let label = match per {
                Period::Hour => entry::rfc3339(start)[..13].to_owned(),
                Period::Day => entry::rfc3339(start)[..10].to_owned(),
                _ => format!("week-{}", start / len_ms),
            };
            (label, Some(entry::rfc3339(start + len_ms)))
        }
    }
}

/// The state key of an agent's budget counter.
pub fn budget_key(agent: &str, period: &str) -> String {
    format!("budget/{agent}/{period}")
}
