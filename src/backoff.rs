//! Exponential backoff with jitter: one schedule for every "try again
//! later" in pgpilot (a step's lock-timeout retries, the monitor's
//! reconnects), so they cannot drift apart.

use std::time::Duration;

/// Waits that double from `first` up to `cap`, each multiplied by a random
/// factor in [0.75, 1.25) so that clients that failed together do not
/// retry together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub first: Duration,
    pub cap: Duration,
}

impl Backoff {
    /// The monitor's reconnects: 250 ms doubling to 5 s. A lost monitor
    /// connection is usually a terminated backend or a restart, so the
    /// first try comes soon; a server that stays away is asked about every
    /// 5 s, a load nobody notices.
    pub const MONITOR_RECONNECT: Backoff = Backoff {
        first: Duration::from_millis(250),
        cap: Duration::from_secs(5),
    };

    /// The wait before retry number `retry` (1 for the first retry).
    pub fn delay(&self, retry: u32) -> Duration {
        self.delay_with(retry, fastrand::f64())
    }

    /// [`delay`](Self::delay) with the random draw given: `unit` in [0, 1)
    /// maps to the factor 0.75 + 0.5 × `unit`.
    pub fn delay_with(&self, retry: u32, unit: f64) -> Duration {
        let doublings = retry.saturating_sub(1).min(20);
        let exp = self.first.saturating_mul(1u32 << doublings);
        exp.min(self.cap).mul_f64(0.75 + unit.clamp(0.0, 1.0) * 0.5)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(d: Duration) -> u128 {
        d.as_millis()
    }

    #[test]
    fn the_monitor_reconnects_after_250ms_doubling_to_5s() {
        let b = Backoff::MONITOR_RECONNECT;
        let middle: Vec<u128> = (1..=8).map(|n| ms(b.delay_with(n, 0.5))).collect();
        assert_eq!(middle, [250, 500, 1000, 2000, 4000, 5000, 5000, 5000]);
        // The jitter: ±25 % around each step.
        assert_eq!(ms(b.delay_with(1, 0.0)), 187);
        assert_eq!(ms(b.delay_with(1, 0.999_999)), 312);
        assert_eq!(ms(b.delay_with(9, 0.0)), 3750);
        assert_eq!(ms(b.delay_with(9, 0.999_999)), 6249);
        // No overflow however long the server stays away.
        assert_eq!(ms(b.delay_with(u32::MAX, 0.5)), 5000);
        for n in 1..=12 {
            let step = b.delay_with(n, 0.5);
            for _ in 0..200 {
                let d = b.delay(n);
                assert!(
                    d >= step.mul_f64(0.75) && d < step.mul_f64(1.25),
                    "retry {n}: {d:?}"
                );
            }
        }
    }

    #[test]
    fn lock_retries_double_from_retry_backoff_to_30s() {
        let b = Backoff {
            first: Duration::from_secs(1),
            cap: Duration::from_secs(30),
        };
        let middle: Vec<u128> = (1..=7).map(|n| ms(b.delay_with(n, 0.5))).collect();
        assert_eq!(middle, [1000, 2000, 4000, 8000, 16000, 30000, 30000]);
    }
}
