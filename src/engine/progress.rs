//! A backfill's progress in words, and how often a line-by-line driver says
//! it (gh-ost's cadence: at most once a second for the first minute, at most
//! every five seconds after).

use std::time::{Duration, Instant};

/// "45% (9000 of about 20000 rows), 12000 rows/s, ETA 1.6s".
pub fn describe(done: u64, total: u64, rate_per_s: f64, eta: Option<Duration>) -> String {
    let percent = done
        .saturating_mul(100)
        .checked_div(total)
        .map_or(100, |p| p.min(100));
    let eta = match eta {
        Some(d) => format!("ETA {}", eta_text(d)),
        None => "ETA unknown".into(),
    };
    format!("{percent}% ({done} of about {total} rows), {rate_per_s:.0} rows/s, {eta}")
}

/// Tenths of a second under ten seconds (whole seconds there would be off
/// by up to half of what is left: "1s" for 1.46 s), whole seconds above.
fn eta_text(d: Duration) -> String {
    let tenths = (d.as_millis() + 50) / 100;
    if tenths < 100 {
        return format!("{}.{}s", tenths / 10, tenths % 10);
    }
    short(round_secs(d))
}

fn short(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, s / 60 % 60),
    }
}

fn round_secs(d: Duration) -> Duration {
    Duration::from_secs(d.as_secs() + u64::from(d.subsec_millis() >= 500))
}

/// When the next progress line may be printed.
#[derive(Debug)]
pub struct Cadence {
    first: Option<Instant>,
    last: Option<Instant>,
}

impl Default for Cadence {
    fn default() -> Cadence {
        Cadence::new()
    }
}

impl Cadence {
    pub fn new() -> Cadence {
        Cadence {
            first: None,
            last: None,
        }
    }

    /// Whether a line is due now; the first always is.
    pub fn due(&mut self, now: Instant) -> bool {
        let first = *self.first.get_or_insert(now);
        let every = if now.duration_since(first) < Duration::from_secs(60) {
            Duration::from_secs(1)
        } else {
            Duration::from_secs(5)
        };
        match self.last {
            Some(last) if now.duration_since(last) < every => false,
            _ => {
                self.last = Some(now);
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn once_a_second_for_a_minute_then_every_five() {
        let t0 = Instant::now();
        let mut c = Cadence::new();
        assert!(c.due(t0));
        assert!(!c.due(t0 + Duration::from_millis(900)));
        assert!(c.due(t0 + Duration::from_millis(1000)));
        assert!(c.due(t0 + Duration::from_secs(61)));
        assert!(!c.due(t0 + Duration::from_secs(64)));
        assert!(c.due(t0 + Duration::from_secs(66)));
    }

    #[test]
    fn the_line_has_percent_and_eta() {
        let s = describe(9000, 20000, 12000.4, Some(Duration::from_millis(1600)));
        assert_eq!(s, "45% (9000 of about 20000 rows), 12000 rows/s, ETA 1.6s");
    }

    #[test]
    fn the_eta_has_tenths_under_ten_seconds_only() {
        let eta = |ms| eta_text(Duration::from_millis(ms));
        assert_eq!(eta(1_460), "1.5s");
        assert_eq!(eta(40), "0.0s");
        assert_eq!(eta(9_949), "9.9s");
        assert_eq!(eta(9_950), "10s");
        assert_eq!(eta(75_400), "1m15s");
        assert_eq!(eta(7_300_000), "2h01m");
    }
}
