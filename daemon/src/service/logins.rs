//! One-time sign-in links for the dashboard: a secret that opens one approver session in a
//! browser, once. The daemon's start (`faramesh dev`, `faramesh serve` with nothing configured)
//! prints one; `faramesh dashboard` asks the daemon for a fresh one (`dashboard.login`, for
//! those who may approve). A link is used once; a fresh one expires after ten minutes.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// How long a link minted on request stays usable.
const LINK_TTL: Duration = Duration::from_secs(600);
/// Most unused links kept (the oldest goes first).
const MAX_LINKS: usize = 16;

/// The unused links.
#[derive(Debug, Default)]
pub struct LoginLinks {
    links: Mutex<Vec<(String, Option<Instant>)>>,
    /// Whether any link was ever made (an unknown link then says "used or expired").
    ever: std::sync::atomic::AtomicBool,
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
    /// Adds `secret` (no expiry: the link printed at start).
    pub fn add_lasting(&self, secret: String) {
        self.push(secret, None);
    }

    /// A fresh link secret, usable once within ten minutes.
    pub fn mint(&self) -> std::io::Result<String> {
        let secret = crate::log::random_hex(24)?;
        self.push(secret.clone(), Some(Instant::now() + LINK_TTL));
        Ok(secret)
    }

    fn push(&self, secret: String, expires: Option<Instant>) {
        let mut links = self.links.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        links.retain(|(_, e)| e.is_none_or(|e| e > now));
        if links.len() >= MAX_LINKS {
            links.remove(0);
        }
        links.push((secret, expires));
        self.ever.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Uses `given` up: `Ok` once per link (compared in constant time).
    pub fn take(&self, given: &str) -> Result<(), LinkRefused> {
        let mut links = self.links.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        let found = links.iter().position(|(secret, expires)| {
            constant_time_eq(secret.as_bytes(), given.as_bytes()) && expires.is_none_or(|e| e > now)
        });
        match found {
            Some(i) => {
                links.remove(i);
                Ok(())
            }
            None if self.ever.load(std::sync::atomic::Ordering::Relaxed) => Err(LinkRefused::Spent),
            None => Err(LinkRefused::Unknown),
        }
    }
}

/// Equal bytes, compared in time that does not depend on where they differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_link_signs_in_once() {
        let links = LoginLinks::default();
        assert_eq!(links.take("nope"), Err(LinkRefused::Unknown));
        links.add_lasting("first".into());
        let fresh = links.mint().unwrap();
        assert_eq!(links.take("first"), Ok(()));
        assert_eq!(links.take("first"), Err(LinkRefused::Spent));
        assert_eq!(links.take(&fresh), Ok(()));
        assert_eq!(links.take(&fresh), Err(LinkRefused::Spent));
    }
}
