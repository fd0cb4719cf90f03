//! Retry delays for the outbound senders (notifications, export): the first, then twice as long
//! after each failure in a row, up to a ceiling.

use std::time::Duration;

/// A doubling retry delay with a ceiling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    first: Duration,
    max: Duration,
}

impl Backoff {
    /// Waits `first` before the first retry, twice as long before each later one, never more
    /// than `max`.
    pub const fn new(first: Duration, max: Duration) -> Backoff {
        Backoff { first, max }
    }

    /// The wait after `failures` failures in a row (1: the first failure).
    pub fn delay(self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(31);
        self.first.saturating_mul(1u32 << doublings).min(self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::Backoff;
    use std::time::Duration;

    #[test]
    fn delays_double_from_the_first_up_to_the_ceiling() {
        let b = Backoff::new(Duration::from_secs(1), Duration::from_secs(30));
        let secs: Vec<u64> = (1..=7).map(|n| b.delay(n).as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 30, 30]);
        assert_eq!(b.delay(0), Duration::from_secs(1), "no failure yet: the first delay");
        assert_eq!(b.delay(u32::MAX), Duration::from_secs(30), "never overflows");
    }
}
