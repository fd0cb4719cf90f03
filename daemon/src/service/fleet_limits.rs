//! Rate limits and budgets counted across the fleet (`scope: fleet`,
//! `docs/fleet.md#limits-across-hosts`). Each counter lives in the fleet database, one per agent,
//! limit and window; a host takes units from it in an atomic transaction (`lease` units at a
//! time, 1 by default) before the decision, and spends them locally. No unit is spent that the
//! database did not grant, so the fleet never goes over the limit; a host's units left unused at
//! the end of a window are lost. With the database unreachable, the limit's `on_unavailable`
//! says whether the call is denied or counted on this host alone; the DPR says which applied.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use faramesh_proto::Call;
use serde_json::{Value, json};

use super::Service;
use super::limits;
use crate::log::entry;
use crate::policy::{LimitScope, Policy, Profile};

/// How long a host waits for the database before it counts the call as unavailable.
pub const TIMEOUT: Duration = Duration::from_secs(2);
/// The most counters a host keeps leases of.
const MAX_LEASES: usize = 4096;
/// After a failure, how long calls go without asking the database again.
pub const BACKOFF: Duration = Duration::from_secs(1);

/// Units of one counter this host holds.
#[derive(Debug, Clone, Default)]
struct Lease {
    /// Units granted and not yet spent.
    remaining: u64,
    /// The database granted fewer than asked: the limit is reached for this window.
    exhausted: bool,
    /// The database could not be asked (until then, calls do not ask again).
    unavailable_until: Option<Instant>,
}

/// The leases of this host, by counter key (which names the window).
#[derive(Debug, Default)]
pub struct Leases {
    map: Mutex<HashMap<String, Lease>>,
}

/// What a fleet counter says about one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A unit was there (and taken, in `govern`).
    Counted,
    /// The limit is reached across the fleet.
    Exceeded,
    /// The database could not be reached.
    Unavailable,
}

/// One fleet-scoped limit that applies to a call.
#[derive(Debug, Clone)]
pub struct Applies {
    /// The counter's key (agent, limit, window).
    pub key: String,
    /// Units per window.
    pub limit: u64,
    /// Units to take at a time.
    pub lease: u64,
    /// When the window ends (ms since the epoch).
    pub ends_ms: u64,
}

/// The fleet-scoped rate limit `key` of `profile` for a call at `now_ms`: fixed windows of the
/// limit's length.
pub fn rate_counter(profile: &Profile, limit: &crate::policy::RateLimit, now_ms: u64) -> Option<Applies> {
    let LimitScope::Fleet { lease, .. } = limit.scope else { return None };
    let len = limit.per_seconds.max(1) * 1000;
    let window = now_ms / len;
    Some(Applies {
        key: format!("rate/{}/{}/{window}", profile.name, limit.key),
        limit: u64::from(limit.count),
        lease: u64::from(lease),
        ends_ms: (window + 1) * len,
    })
}

/// The fleet-scoped budget of `profile` for `call` at `now_ms`.
pub fn budget_counter(profile: &Profile, call: &Call, now_ms: u64) -> Option<Applies> {
    let budget = profile.budget.as_ref()?;
    let LimitScope::Fleet { lease, .. } = budget.scope else { return None };
    let (period, resets_at) = limits::period_of(budget, call, now_ms);
    // A session's budget lasts a week in the database (it is removed after).
    let ends_ms = resets_at.as_deref().and_then(entry::parse_rfc3339).unwrap_or(now_ms + 7 * 86_400_000);
    Some(Applies {
        key: format!("budget/{}/{period}", profile.name),
        limit: budget.max_calls,
        lease: u64::from(lease),
        ends_ms,
    })
}

/// Every fleet-scoped counter that applies to `call` under `policy`.
pub fn counters(policy: &Policy, call: &Call, now_ms: u64) -> Vec<Applies> {
    let Some(profile) = policy.agents.get(&call.agent_id) else { return Vec::new() };
    let mut out: Vec<Applies> = profile
        .rate_limits
        .iter()
        .filter(|l| l.tool.matches(&call.tool) && l.op.matches(&call.operation))
        .filter_map(|l| rate_counter(profile, l, now_ms))
        .collect();
    out.extend(budget_counter(profile, call, now_ms));
    out
}

/// The units one call holds, by counter key: taken from this host's leases (leased from the
/// fleet database when none was left) before the call is decided.
#[derive(Debug, Default)]
pub struct Reserved(HashMap<String, Outcome>, u64);

impl Reserved {
    /// The time the counters were named at (their windows are this time's).
    pub fn at_ms(&self) -> u64 {
        self.1
    }

    /// What the counter `key` said for this call (`Unavailable` for a counter not asked).
    pub fn get(&self, key: &str) -> Outcome {
        self.0.get(key).copied().unwrap_or(Outcome::Unavailable)
    }
}

impl Service {
    /// Before a call is decided: a unit of each fleet-scoped limit that applies, from this
    /// host's lease, or leased from the fleet database (`lease` units, waiting at most
    /// [`TIMEOUT`]) when the lease is empty.
    pub(super) async fn lease_fleet_units(&self, policy: &Policy, call: &Call) -> Reserved {
        let now_ms = self.clock.now_ms();
        let mut out = Reserved(HashMap::new(), now_ms);
        for c in counters(policy, call, now_ms) {
            if let Some(o) = self.take_local(&c.key, false) {
                out.0.insert(c.key, o);
                continue;
            }
            let got = match &self.state.fleet_counter {
                Some(counter) => {
                    match tokio::time::timeout(TIMEOUT, counter.take(&c.key, c.limit, c.lease, c.ends_ms))
                        .await
                    {
                        Ok(Ok(n)) => Some(n),
                        Ok(Err(e)) => {
                            tracing::warn!(error = %e, key = %c.key, "cannot count a fleet-scoped limit");
                            None
                        }
                        Err(_) => {
                            tracing::warn!(key = %c.key, "the fleet database did not answer in time for a fleet-scoped limit");
                            None
                        }
                    }
                }
                None => None,
            };
            {
                let mut map = self.state.leases.map.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                // Leases of windows that ended stay until there are many; dropping them all then
                // loses only units that were not spent.
                if map.len() > MAX_LEASES {
                    map.clear();
                }
                let l = map.entry(c.key.clone()).or_default();
                match got {
                    Some(n) => {
                        l.remaining += n;
                        l.exhausted = n < c.lease;
                        l.unavailable_until = None;
                    }
                    None => l.unavailable_until = Some(Instant::now() + BACKOFF),
                }
            }
            let o = self.take_local(&c.key, true).unwrap_or(Outcome::Unavailable);
            out.0.insert(c.key, o);
        }
        out
    }

    /// A unit of `key` from this host's lease: `Counted` (taken), `Exceeded`, or, with
    /// `settle`, `Unavailable`; `None` when the database should be asked.
    fn take_local(&self, key: &str, settle: bool) -> Option<Outcome> {
        let mut map = self.state.leases.map.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let l = map.get_mut(key);
        match l {
            Some(l) if l.remaining > 0 => {
                l.remaining -= 1;
                Some(Outcome::Counted)
            }
            Some(l) if l.exhausted => Some(Outcome::Exceeded),
            Some(l) if l.unavailable_until.is_some_and(|t| Instant::now() < t) => Some(Outcome::Unavailable),
            _ if settle => Some(Outcome::Unavailable),
            _ => None,
        }
    }

    /// Gives back the units a call held and did not spend (it was decided before its limits).
    pub(super) fn give_back(&self, reserved: Reserved, spent: &[String]) {
        let mut map = self.state.leases.map.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        for (key, o) in reserved.0 {
            if o == Outcome::Counted
                && !spent.contains(&key)
                && let Some(l) = map.get_mut(&key)
            {
                l.remaining += 1;
            }
        }
    }

    /// What counter `key` says for a call: from its reservation (`govern`), or, without one
    /// (`decide`), from this host's lease as it stands (taking nothing).
    pub(super) fn fleet_unit(&self, reserved: Option<&Reserved>, key: &str) -> Outcome {
        if let Some(r) = reserved {
            return r.get(key);
        }
        let map = self.state.leases.map.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match map.get(key) {
            Some(l) if l.remaining > 0 => Outcome::Counted,
            Some(l) if l.exhausted => Outcome::Exceeded,
            _ => Outcome::Unavailable,
        }
    }
}

/// How a limit was counted, for the DPR's `limits`.
pub fn note(limit: &str, scope: &str, why: Option<&str>) -> Value {
    let mut v = json!({"limit": limit, "counted": scope});
    if let (Some(why), Value::Object(m)) = (why, &mut v) {
        m.insert("why".into(), json!(why));
    }
    v
}
