//! One-time sign-in links for the dashboard: a secret that opens one approver session in a
//! browser, once. The daemon's start (`faramesh dev`, `faramesh serve` with nothing configured)
//! prints one; `faramesh dashboard` asks the daemon for a fresh one (`dashboard.login`, for
//! those who may approve). A link is used once; a fresh one expires after ten minutes.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::log::dpr::PeerCred;

/// How long a link minted on request stays usable.
const LINK_TTL: Duration = Duration::from_secs(600);
/// Most unused links kept (the oldest goes first).
const MAX_LINKS: usize = 16;

/// The unused links.
#[derive(Debug, Default)]
pub struct LoginLinks {
    links: Mutex<Vec<Link>>,
    /// Whether any link was ever made (an unknown link then says "used or expired").
    ever: std::sync::atomic::AtomicBool,
}

/// An unused link: its secret, when it expires (never, for the one printed at start), and the
/// socket caller it was made for.
#[derive(Debug)]
struct Link {
    secret: String,
    expires: Option<Instant>,
    for_peer: Option<PeerCred>,
}

/// Why a link did not sign in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkRefused {
    /// Not a link this daemon made.
    Unknown,
    /// Used already, or expired.
    Spent,
}

impl LoginLinks {
    /// Adds `secret` (no expiry: the link printed at start, made for the daemon's own user).
    pub fn add_lasting(&self, secret: String, for_peer: Option<PeerCred>) {
        self.push(Link { secret, expires: None, for_peer }, None);
    }

    /// A fresh link secret for `for_peer` (who asked), usable once within ten minutes of `now`.
    pub fn mint(&self, for_peer: Option<PeerCred>, now: Instant) -> std::io::Result<String> {
        let secret = crate::log::random_hex(24)?;
        self.push(Link { secret: secret.clone(), expires: Some(now + LINK_TTL), for_peer }, Some(now));
        Ok(secret)
    }

    /// Adds `link`, first forgetting those expired at `now` (when known).
    fn push(&self, link: Link, now: Option<Instant>) {
        let mut links = self.links.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(now) = now {
            links.retain(|l| l.expires.is_none_or(|e| e > now));
        }
        if links.len() >= MAX_LINKS {
            links.remove(0);
        }
        links.push(link);
        self.ever.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Uses `given` up: once per link (compared in constant time), with the caller it was made
    /// for. `now` is when it is used (a link minted with an expiry is refused from then on).
    pub fn take(&self, given: &str, now: Instant) -> Result<Option<PeerCred>, LinkRefused> {
        let mut links = self.links.lock().unwrap_or_else(PoisonError::into_inner);
        let found = links.iter().position(|l| {
            constant_time_eq(l.secret.as_bytes(), given.as_bytes()) && l.expires.is_none_or(|e| e > now)
        });
        match found {
            Some(i) => Ok(links.remove(i).for_peer),
            None if self.ever.load(std::sync::atomic::Ordering::Relaxed) => Err(LinkRefused::Spent),
            None => Err(LinkRefused::Unknown),
        }
    }
}

/// Equal bytes, compared in time that does not depend on where they differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    bool::from(subtle::ConstantTimeEq::ct_eq(a, b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_eq_is_equality_of_the_bytes() {
        assert!(constant_time_eq(b"", b""));
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"), "a longer value is not equal");
        assert!(!constant_time_eq(b"secret", b"secre"));
        assert!(!constant_time_eq(b"", b"x"));
    }

    #[test]
    fn a_link_signs_in_once() {
        let links = LoginLinks::default();
        let now = Instant::now();
        assert_eq!(links.take("nope", now), Err(LinkRefused::Unknown));
        links.add_lasting("first".into(), None);
        let asker = PeerCred { uid: 1000, gid: 1000, pid: 42 };
        let fresh = links.mint(Some(asker), now).unwrap();
        assert_eq!(links.take("first", now), Ok(None));
        assert_eq!(links.take("first", now), Err(LinkRefused::Spent));
        assert_eq!(links.take(&fresh, now), Ok(Some(asker)), "the session is who asked for the link");
        assert_eq!(links.take(&fresh, now), Err(LinkRefused::Spent));
    }
}
