//! What time it is, for the core: approvals' expiry and reminders, grants' expiry, retention's
//! cutoff, rate-limit windows, budget periods, sign-in links, notification and export times.
//! The [`Service`](super::Service) holds one [`Clock`] handed in at construction: the system's
//! by default, a [`ManualClock`] in tests, which moves only when told to.
//!
//! Waiting (timers, sleeps in the background tasks) stays on tokio; only the reading of the
//! time comes from here. The decision log stamps its entries itself, from the system clock, so
//! that their times never go backwards along the chain.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A source of the current time.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// The wall-clock time: what expiries, periods and cutoffs are compared with.
    fn now(&self) -> SystemTime;

    /// A monotonic reading, for intervals measured in memory (token buckets, link lifetimes).
    fn monotonic(&self) -> Instant;

    /// [`Clock::now`] in milliseconds since the Unix epoch (0 before it).
    fn now_ms(&self) -> u64 {
        self.now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }
}

/// The system's clocks.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }

    fn monotonic(&self) -> Instant {
        Instant::now()
    }
}

/// A clock that stands still until [`ManualClock::advance`] moves it; both readings move
/// together. Shared between threads behind an `Arc`.
#[derive(Debug)]
pub struct ManualClock {
    wall: SystemTime,
    mono: Instant,
    advanced: Mutex<Duration>,
}

impl ManualClock {
    /// A clock standing at `wall`.
    pub fn at(wall: SystemTime) -> ManualClock {
        ManualClock { wall, mono: Instant::now(), advanced: Mutex::new(Duration::ZERO) }
    }

    /// A clock standing at the system's current time.
    pub fn starting_now() -> ManualClock {
        ManualClock::at(SystemTime::now())
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        let mut advanced = self.advanced.lock().unwrap_or_else(PoisonError::into_inner);
        *advanced = advanced.saturating_add(by);
    }

    fn advanced(&self) -> Duration {
        *self.advanced.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Clock for ManualClock {
    fn now(&self) -> SystemTime {
        self.wall + self.advanced()
    }

    fn monotonic(&self) -> Instant {
        self.mono + self.advanced()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn a_manual_clock_moves_only_when_advanced_and_both_readings_together() {
        let clock = Arc::new(ManualClock::at(UNIX_EPOCH + Duration::from_secs(1_000)));
        let (wall, mono) = (clock.now(), clock.monotonic());
        assert_eq!(clock.now(), wall, "it stands still");
        assert_eq!(clock.now_ms(), 1_000_000);
        let shared: Arc<dyn Clock> = clock.clone();
        let other = Arc::clone(&clock);
        std::thread::spawn(move || other.advance(Duration::from_secs(90))).join().unwrap();
        assert_eq!(shared.now_ms(), 1_090_000);
        assert_eq!(shared.monotonic().duration_since(mono), Duration::from_secs(90));
    }

    /// The core, on a clock the test moves: each test fails if the core read the system's.
    mod core_reads_this_clock {
        use std::collections::HashMap;
        use std::sync::Arc;
        use std::time::Duration;

        use faramesh_proto::{Effect, ReasonCode};
        use serde_json::json;

        use super::ManualClock;
        use crate::log::dpr::PeerCred;
        use crate::service::tests::service_at;
        use crate::service::{
            CallRequest, Clock, Identity, Peer, Service, approvals, grants, notify, retention,
        };

        const AGENT: PeerCred = PeerCred { uid: 1000, gid: 1000, pid: 10 };
        const ROOT: PeerCred = PeerCred { uid: 0, gid: 0, pid: 1 };

        fn who(p: PeerCred) -> Identity {
            Identity::Peer(Peer::new(p))
        }

        fn call() -> CallRequest {
            CallRequest::from_value(&json!({"agent_id": "bot", "tool": "http", "operation": "get"})).unwrap()
        }

        fn at(dir: &std::path::Path, policy: &str) -> (Service, Arc<ManualClock>) {
            let clock = Arc::new(ManualClock::starting_now());
            (service_at(dir, policy, Arc::clone(&clock) as Arc<dyn Clock>), clock)
        }

        async fn effect(s: &Service) -> (Effect, ReasonCode) {
            let d = s.govern(call(), &who(AGENT)).await.unwrap().decision;
            (d.effect, d.reason_code)
        }

        #[tokio::test]
        async fn a_pending_approval_expires_when_the_clock_passes_its_time() {
            let dir = tempfile::tempdir().unwrap();
            let (s, clock) = at(
                dir.path(),
                "version: 1\napprovals:\n  expire_after: 60s\nrules:\n  - match: { tool: http }\n    require_approval: true\n",
            );
            let id = s.govern(call(), &who(AGENT)).await.unwrap().approval_id.unwrap();
            clock.advance(Duration::from_secs(59));
            assert_eq!(s.approval_list(false, &who(ROOT)).await.unwrap().len(), 1, "not yet due");
            clock.advance(Duration::from_secs(2));
            assert!(s.approval_list(false, &who(ROOT)).await.unwrap().is_empty(), "due: expired");
            assert_eq!(s.state.approvals.get(&id).unwrap().status, approvals::Status::Expired);
        }

        #[tokio::test]
        async fn a_reminder_is_queued_once_the_clock_passes_remind_every() {
            let dir = tempfile::tempdir().unwrap();
            let (s, clock) = at(
                dir.path(),
                "version: 1\nnotifications:\n  channels:\n    ops:\n      type: webhook\n      url: http://127.0.0.1:9/hook\n      secret_env: FARAMESH_TEST_UNSET_SECRET\n  on_defer: [ops]\n  remind_every: 10m\nrules:\n  - match: { tool: http }\n    require_approval: true\n",
            );
            let reminders = |s: &Service| {
                let rows = s.state.log.state_scan("outbox/").unwrap();
                rows.iter()
                    .filter_map(|(_, v)| serde_json::from_slice::<notify::Note>(v).ok())
                    .filter(|n| n.event == "approval.reminder")
                    .count()
            };
            s.govern(call(), &who(AGENT)).await.unwrap();
            let mut seen = HashMap::new();
            assert!(s.remind(&mut seen).await);
            clock.advance(Duration::from_secs(599));
            s.remind(&mut seen).await;
            assert_eq!(reminders(&s), 0, "not yet due");
            clock.advance(Duration::from_secs(2));
            s.remind(&mut seen).await;
            assert_eq!(reminders(&s), 1, "ten minutes passed on the clock");
        }

        #[tokio::test]
        async fn a_grant_stops_covering_when_the_clock_passes_its_end() {
            let dir = tempfile::tempdir().unwrap();
            let (s, clock) =
                at(dir.path(), "version: 1\nrules:\n  - match: { tool: http }\n    require_approval: true\n");
            let req =
                json!({"agent_id": "bot", "tool": "http", "operation": "get", "uid": 1000, "minutes": 1});
            let req = grants::GrantRequest::from_json(req.as_object().unwrap()).unwrap();
            s.grant_create(req, &who(ROOT)).await.unwrap();
            assert_eq!(effect(&s).await.0, Effect::Permit);
            clock.advance(Duration::from_secs(59));
            assert_eq!(effect(&s).await.0, Effect::Permit);
            assert_eq!(s.grant_list(&who(ROOT)).unwrap().len(), 1);
            clock.advance(Duration::from_secs(2));
            assert_eq!(effect(&s).await.0, Effect::Defer, "the grant ended");
            assert!(s.grant_list(&who(ROOT)).unwrap().is_empty());
        }

        #[tokio::test]
        async fn a_rate_limit_refills_as_the_clock_moves() {
            let dir = tempfile::tempdir().unwrap();
            let (s, clock) = at(
                dir.path(),
                "version: 1\nagents:\n  bot:\n    rate_limit: { \"http/*\": \"1/minute\" }\nrules:\n  - match: { tool: http }\n    allow: true\n",
            );
            assert_eq!(effect(&s).await.0, Effect::Permit);
            assert_eq!(effect(&s).await, (Effect::Deny, ReasonCode::RateExceeded));
            clock.advance(Duration::from_secs(30));
            assert_eq!(effect(&s).await, (Effect::Deny, ReasonCode::RateExceeded), "half a token");
            clock.advance(Duration::from_secs(30));
            assert_eq!(effect(&s).await.0, Effect::Permit, "a minute passed on the clock");
        }

        #[tokio::test]
        async fn a_budget_period_ends_with_the_clock() {
            let dir = tempfile::tempdir().unwrap();
            let (s, clock) = at(
                dir.path(),
                "version: 1\nagents:\n  bot:\n    budget: { max_calls: 1, per: hour, on_exceed: deny }\nrules:\n  - match: { tool: http }\n    allow: true\n",
            );
            assert_eq!(effect(&s).await.0, Effect::Permit);
            assert_eq!(effect(&s).await.0, Effect::Deny);
            clock.advance(Duration::from_secs(3600));
            assert_eq!(effect(&s).await.0, Effect::Permit, "the next hour's budget");
        }

        #[tokio::test]
        async fn a_sign_in_link_expires_with_the_clock() {
            let dir = tempfile::tempdir().unwrap();
            let (s, clock) = at(dir.path(), "version: 1\nrules: []\n");
            let secret =
                |s: &Service| s.dashboard_login(&who(ROOT)).unwrap()["secret"].as_str().unwrap().to_owned();
            let (used, late) = (secret(&s), secret(&s));
            clock.advance(Duration::from_secs(599));
            assert!(s.sign_in_with_link(&used).is_ok());
            clock.advance(Duration::from_secs(2));
            assert_eq!(s.sign_in_with_link(&late).unwrap_err(), crate::service::logins::LinkRefused::Spent);
        }

        #[tokio::test]
        async fn retention_counts_the_age_on_the_clock() {
            let dir = tempfile::tempdir().unwrap();
            let (s, clock) = at(dir.path(), "version: 1\nrules: []\n");
            for _ in 0..3 {
                s.commit(crate::log::dpr::event_entry("test", json!({})), None).await.unwrap();
            }
            let r = retention::Retention {
                max_age: Duration::from_secs(3600),
                archive_dir: Some(dir.path().join("archive")),
            };
            let log = Arc::clone(&s.state.log);
            assert_eq!(
                retention::apply(&log, &r, clock.now_ms()).await.unwrap(),
                0,
                "nothing is an hour old"
            );
            clock.advance(Duration::from_secs(7200));
            let task = retention::spawn(Arc::clone(&s.state), Arc::clone(s.clock()), Some(r));
            let mut first = 1;
            for _ in 0..500 {
                first = log.first_seq().unwrap();
                if first > 1 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            task.abort();
            assert!(first > 1, "entries two hours old on the clock were not pruned");
        }
    }
}
