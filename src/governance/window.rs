//! Change windows: `"Sat 02:00-04:00"` in the runbook's IANA timezone,
//! checked against the database server's clock. Pure functions.
//!
//! A window whose end is not after its start crosses midnight
//! (`"Sat 23:00-01:00"` ends on Sunday). On a daylight-saving day, a local
//! time that does not exist (the hour skipped in spring) is skipped: the
//! window starts or ends at the instant the clock jumps to; a local time
//! that occurs twice (the hour repeated in autumn) counts once, at its
//! first occurrence.

use chrono::{
    DateTime, Datelike, Duration, LocalResult, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc,
    Weekday,
};
use chrono_tz::Tz;

/// One weekly window as the runbook writes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    pub day: Weekday,
    pub start: NaiveTime,
    pub end: NaiveTime,
}

impl std::fmt::Display for Window {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}-{}",
            day_name(self.day),
            self.start.format("%H:%M"),
            self.end.format("%H:%M")
        )
    }
}

fn day_name(d: Weekday) -> &'static str {
    match d {
        Weekday::Mon => "Mon",
        Weekday::Tue => "Tue",
        Weekday::Wed => "Wed",
        Weekday::Thu => "Thu",
        Weekday::Fri => "Fri",
        Weekday::Sat => "Sat",
        Weekday::Sun => "Sun",
    }
}

/// Parses `"Sat 02:00-04:00"`; the error says what a window looks like.
pub fn parse_window(text: &str) -> Result<Window, String> {
    let bad = || {
        format!(
            "window {text:?} is not DAY HH:MM-HH:MM, e.g. \"Sat 02:00-04:00\" (a window may cross midnight: \"Sat 23:00-01:00\")"
        )
    };
    let (day, times) = text.trim().split_once(' ').ok_or_else(bad)?;
    let day = match day.to_ascii_lowercase().as_str() {
        "mon" => Weekday::Mon,
        "tue" => Weekday::Tue,
        "wed" => Weekday::Wed,
        "thu" => Weekday::Thu,
        "fri" => Weekday::Fri,
        "sat" => Weekday::Sat,
        "sun" => Weekday::Sun,
        _ => return Err(bad()),
    };
    let (start, end) = times.trim().split_once('-').ok_or_else(bad)?;
    let time = |s: &str| NaiveTime::parse_from_str(s.trim(), "%H:%M").map_err(|_| bad());
    let (start, end) = (time(start)?, time(end)?);
    if start == end {
        return Err(format!(
            "window {text:?} is empty: its start and end are the same"
        ));
    }
    Ok(Window { day, start, end })
}

/// The instant a local time means: the first of two, or, when the clock
/// skips it, the instant the clock jumps to.
fn instant(tz: Tz, local: NaiveDateTime) -> Option<DateTime<Utc>> {
    let mut t = local;
    // A gap is at most a few hours (usually one).
    for _ in 0..=(4 * 60) {
        match tz.from_local_datetime(&t) {
            LocalResult::Single(at) => return Some(at.with_timezone(&Utc)),
            LocalResult::Ambiguous(first, _) => return Some(first.with_timezone(&Utc)),
            LocalResult::None => t += Duration::minutes(1),
        }
    }
    None
}

/// One opening of a window: [start, end) in UTC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opening {
    pub window: Window,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

/// The opening of `w` on local date `date` (which must be its weekday).
fn opening(w: &Window, tz: Tz, date: NaiveDate) -> Option<Opening> {
    let end_date = if w.end > w.start {
        date
    } else {
        date.succ_opt()?
    };
    let start = instant(tz, date.and_time(w.start))?;
    let end = instant(tz, end_date.and_time(w.end))?;
    (end > start).then(|| Opening {
        window: w.clone(),
        start,
        end,
    })
}

/// Where `now` stands among the windows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WindowStatus {
    Inside(Opening),
    /// Outside every window; the next opening (none only without windows).
    Outside(Option<Opening>),
}

pub fn status(windows: &[Window], tz: Tz, now: DateTime<Utc>) -> WindowStatus {
    let today = now.with_timezone(&tz).date_naive();
    let mut openings: Vec<Opening> = (-2..=8)
        .filter_map(|d| today.checked_add_signed(Duration::days(d)))
        .flat_map(|date| {
            windows
                .iter()
                .filter(move |w| w.day == date.weekday())
                .filter_map(move |w| opening(w, tz, date))
        })
        .collect();
    openings.sort_by_key(|o| o.start);
    if let Some(o) = openings
        .iter()
        .filter(|o| o.start <= now && now < o.end)
        .max_by_key(|o| o.end)
    {
        return WindowStatus::Inside(o.clone());
    }
    WindowStatus::Outside(openings.into_iter().find(|o| o.start > now))
}

/// "Sat 02:00-04:00 Europe/Berlin, next opens 2026-12-05 02:00 CET (in 3 d 4 h)".
pub fn describe_next(o: &Opening, tz: Tz, now: DateTime<Utc>) -> String {
    format!(
        "{} {}, next opens {} (in {})",
        o.window,
        tz.name(),
        o.start.with_timezone(&tz).format("%Y-%m-%d %H:%M %Z"),
        span(o.start - now)
    )
}

/// "inside Sat 02:00-04:00 Europe/Berlin until 04:00 CET (1 h 20 min left)".
pub fn describe_inside(o: &Opening, tz: Tz, now: DateTime<Utc>) -> String {
    format!(
        "inside {} {} until {} ({} left)",
        o.window,
        tz.name(),
        o.end.with_timezone(&tz).format("%H:%M %Z"),
        span(o.end - now)
    )
}

/// "3 d 4 h", "1 h 20 min", "5 min".
pub fn span(d: Duration) -> String {
    let m = d.num_minutes().max(0);
    let (days, hours, mins) = (m / 1440, (m % 1440) / 60, m % 60);
    match (days, hours) {
        (0, 0) => format!("{mins} min"),
        (0, h) => format!("{h} h {mins} min"),
        (d, h) => format!("{d} d {h} h"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn berlin() -> Tz {
        "Europe/Berlin".parse().unwrap()
    }

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn parses_and_refuses_with_the_form() {
        let w = parse_window("Sat 02:00-04:00").unwrap();
        assert_eq!(w.to_string(), "Sat 02:00-04:00");
        for bad in [
            "Saturday 02:00-04:00",
            "Sat 2-4",
            "Sat 02:00",
            "Sat 25:00-26:00",
        ] {
            assert!(
                parse_window(bad).unwrap_err().contains("DAY HH:MM-HH:MM"),
                "{bad}"
            );
        }
        assert!(
            parse_window("Sat 02:00-02:00")
                .unwrap_err()
                .contains("empty")
        );
    }

    #[test]
    fn a_window_crossing_midnight_ends_the_next_day() {
        let w = [parse_window("Sat 23:00-01:00").unwrap()];
        // 2026-12-06 is a Sunday; 00:30 CET is 23:30 UTC on Saturday.
        match status(&w, berlin(), utc("2026-12-05T23:30:00Z")) {
            WindowStatus::Inside(o) => assert_eq!(o.end, utc("2026-12-06T00:00:00Z")),
            other => panic!("{other:?}"),
        }
        match status(&w, berlin(), utc("2026-12-06T00:30:00Z")) {
            WindowStatus::Outside(Some(o)) => {
                assert_eq!(o.start, utc("2026-12-12T22:00:00Z"));
                assert_eq!(
                    describe_next(&o, berlin(), utc("2026-12-06T00:30:00Z")),
                    "Sat 23:00-01:00 Europe/Berlin, next opens 2026-12-12 23:00 CET (in 6 d 21 h)"
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn spring_forward_skips_the_missing_hour() {
        // 2026-03-29 (Sunday): 02:00 CET jumps to 03:00 CEST (01:00 UTC).
        let w = [parse_window("Sun 02:00-04:00").unwrap()];
        match status(&w, berlin(), utc("2026-03-29T01:30:00Z")) {
            WindowStatus::Inside(o) => {
                assert_eq!(o.start, utc("2026-03-29T01:00:00Z"));
                assert_eq!(o.end, utc("2026-03-29T02:00:00Z"), "one hour is left");
            }
            other => panic!("{other:?}"),
        }
        match status(&w, berlin(), utc("2026-03-29T00:30:00Z")) {
            WindowStatus::Outside(Some(o)) => assert_eq!(o.start, utc("2026-03-29T01:00:00Z")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn fall_back_counts_the_repeated_hour_once() {
        // 2026-10-25 (Sunday): 03:00 CEST falls back to 02:00 CET; 02:30
        // happens at 00:30 and 01:30 UTC.
        let w = [parse_window("Sun 02:30-03:30").unwrap()];
        match status(&w, berlin(), utc("2026-10-25T00:45:00Z")) {
            WindowStatus::Inside(o) => {
                assert_eq!(o.start, utc("2026-10-25T00:30:00Z"), "the first 02:30");
                assert_eq!(o.end, utc("2026-10-25T02:30:00Z"));
            }
            other => panic!("{other:?}"),
        }
        // One opening that day, not two.
        match status(&w, berlin(), utc("2026-10-25T02:45:00Z")) {
            WindowStatus::Outside(Some(o)) => assert_eq!(o.start, utc("2026-11-01T01:30:00Z")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_next_of_several_windows_is_named() {
        let w = [
            parse_window("Sun 02:00-04:00").unwrap(),
            parse_window("Sat 02:00-04:00").unwrap(),
        ];
        // Friday 2026-12-04 12:00 UTC: Saturday's comes first.
        match status(&w, berlin(), utc("2026-12-04T12:00:00Z")) {
            WindowStatus::Outside(Some(o)) => assert_eq!(o.window.day, Weekday::Sat),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            status(&[], berlin(), utc("2026-12-04T12:00:00Z")),
            WindowStatus::Outside(None)
        );
    }
}
