//! Leaderboard windows and their periods, on server time in UTC.

use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Utc, Weekday};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A ranking window: each has consecutive periods.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Window {
    /// A UTC day; period id `2026-11-21`.
    Daily,
    /// An ISO week; period id `2026-W47`.
    Weekly,
    /// A season of `SEASON_DAYS` from `SEASON_START`; period id `season-3`.
    Seasonal,
}

impl Window {
    /// The period ids of this window, as a regular expression (ECMA 262, for the OpenAPI
    /// document): real dates and ISO weeks of the years [`PERIOD_YEARS`], seasons in [`SEASONS`].
    /// A weekly id may still name a week 53 its year does not have.
    pub fn period_pattern(self) -> &'static str {
        match self {
            Self::Daily => concat!(
                "^(?:[1-9][0-9]{3}-(?:(?:0[1-9]|1[0-2])-(?:0[1-9]|1[0-9]|2[0-8])",
                "|(?:0[13-9]|1[0-2])-(?:29|30)|(?:0[13578]|1[02])-31)",
                "|(?:[1-9][0-9](?:0[48]|[2468][048]|[13579][26])",
                "|(?:[2468][048]|[13579][26])00)-02-29)$"
            ),
            Self::Weekly => "^[1-9][0-9]{3}-W(?:0[1-9]|[1-4][0-9]|5[0-3])$",
            Self::Seasonal => "^season-(?:0|-?[1-9][0-9]{0,4}|-?100000)$",
        }
    }

    /// Every window.
    pub const ALL: [Window; 3] = [Self::Daily, Self::Weekly, Self::Seasonal];

    /// The name used in URLs and configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Daily => "daily",
            Self::Weekly => "weekly",
            Self::Seasonal => "seasonal",
        }
    }

    /// Parses a window name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|w| w.as_str() == s)
    }
}

impl std::fmt::Display for Window {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One period of a window: `[from, to)`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Period {
    /// The window it belongs to.
    pub window: Window,
    /// Its id (`2026-W47`).
    pub id: String,
    /// Start, inclusive.
    pub from: DateTime<Utc>,
    /// End, exclusive.
    pub to: DateTime<Utc>,
}

/// Why a period id could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("period {id:?} is not valid for this window")]
pub struct BadPeriod {
    /// The id as given.
    pub id: String,
    /// It has the window's form ([`Window::period_pattern`]) but names no period (week 53 of a
    /// year that has 52): a board that cannot exist rather than a malformed request.
    pub well_formed: bool,
}

/// Years a daily or weekly period id may name: four digits, as the ids are written.
pub const PERIOD_YEARS: std::ops::RangeInclusive<i32> = 1000..=9999;

/// Seasons a seasonal period id may name.
pub const SEASONS: std::ops::RangeInclusive<i64> = -100_000..=100_000;

/// The calendar that maps server time to periods; seasons start at `start` and last `days`.
#[derive(Clone, Debug)]
pub struct Calendar {
    /// First day of season 1, UTC midnight.
    pub season_start: DateTime<Utc>,
    /// Length of a season in days (≥ 1).
    pub season_days: u32,
}

impl Default for Calendar {
    fn default() -> Self {
        Self {
            season_start: Utc
                .with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
                .single()
                .unwrap_or_default(),
            season_days: 90,
        }
    }
}

/// Unix milliseconds as a UTC time; the epoch if out of range.
pub fn utc_ms(at_ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(at_ms).single().unwrap_or_default()
}

/// A day's id, `YYYY-MM-DD` (as chrono's `%Y-%m-%d`, without parsing that format each time: a
/// live board's period is computed per request and per event).
fn day_id(d: NaiveDate) -> String {
    if (0..=9999).contains(&d.year()) {
        format!("{:04}-{:02}-{:02}", d.year(), d.month(), d.day())
    } else {
        d.format("%Y-%m-%d").to_string()
    }
}

fn midnight(d: NaiveDate) -> DateTime<Utc> {
    Utc.from_utc_datetime(&d.and_hms_opt(0, 0, 0).unwrap_or_default())
}

impl Calendar {
    /// The season number at `at` (1 for the first season; ≤ 0 before `season_start`).
    pub fn season_at(&self, at: DateTime<Utc>) -> i64 {
        let len = i64::from(self.season_days.max(1)) * 86_400_000;
        // Milliseconds since the epoch round down; a difference's seconds (`num_seconds`) round
        // toward zero, which put the last second before a season ≤ 0 into the next one.
        (at.timestamp_millis() - self.season_start.timestamp_millis()).div_euclid(len) + 1
    }

    /// The season number at unix milliseconds `at_ms` (the epoch's season if out of range).
    pub fn season_at_ms(&self, at_ms: i64) -> i64 {
        self.season_at(utc_ms(at_ms))
    }

    /// Season `n`; a bound past the range of dates (a far season of long seasons) is the
    /// range's end, so every well-formed id has a period instead of overflowing.
    fn season_period(&self, n: i64) -> Period {
        let days = i64::from(self.season_days.max(1));
        let edge = if n > 0 {
            DateTime::<Utc>::MAX_UTC
        } else {
            DateTime::<Utc>::MIN_UTC
        };
        let start_of = |k: i64| {
            k.checked_mul(days)
                .and_then(Duration::try_days)
                .and_then(|d| self.season_start.checked_add_signed(d))
                .unwrap_or(edge)
        };
        Period {
            window: Window::Seasonal,
            id: format!("season-{n}"),
            from: start_of(n.saturating_sub(1)),
            to: start_of(n),
        }
    }

    /// The period of `window` that contains `at`.
    pub fn period_at(&self, window: Window, at: DateTime<Utc>) -> Period {
        match window {
            Window::Daily => {
                let d = at.date_naive();
                Period {
                    window,
                    id: day_id(d),
                    from: midnight(d),
                    to: midnight(d) + Duration::days(1),
                }
            }
            Window::Weekly => {
                let iso = at.iso_week();
                let monday = NaiveDate::from_isoywd_opt(iso.year(), iso.week(), Weekday::Mon)
                    .unwrap_or_else(|| at.date_naive());
                Period {
                    window,
                    id: format!("{}-W{:02}", iso.year(), iso.week()),
                    from: midnight(monday),
                    to: midnight(monday) + Duration::days(7),
                }
            }
            Window::Seasonal => self.season_period(self.season_at(at)),
        }
    }

    /// The period of `window` at unix milliseconds `at_ms`.
    pub fn period_at_ms(&self, window: Window, at_ms: i64) -> Period {
        self.period_at(window, utc_ms(at_ms))
    }

    /// The period just before `p`.
    pub fn previous(&self, p: &Period) -> Period {
        let before = p.from.checked_sub_signed(Duration::seconds(1));
        self.period_at(p.window, before.unwrap_or(p.from))
    }

    /// Reads a period id of `window`: exactly the ids [`Window::period_pattern`] describes.
    pub fn parse_period(&self, window: Window, id: &str) -> Result<Period, BadPeriod> {
        let bad = || BadPeriod {
            id: id.to_owned(),
            well_formed: false,
        };
        let period = match window {
            Window::Daily => NaiveDate::parse_from_str(id, "%Y-%m-%d")
                .ok()
                .filter(|d| PERIOD_YEARS.contains(&d.year()))
                .map(|d| self.period_at(window, midnight(d))),
            Window::Weekly => {
                let (y, w) = id.split_once("-W").ok_or_else(bad)?;
                let y: i32 = y.parse().map_err(|_| bad())?;
                let w: u32 = w.parse().map_err(|_| bad())?;
                if !PERIOD_YEARS.contains(&y) || !(1..=53).contains(&w) {
                    return Err(bad());
                }
                match NaiveDate::from_isoywd_opt(y, w, Weekday::Mon) {
                    Some(monday) => Some(self.period_at(window, midnight(monday))),
                    None => {
                        return Err(BadPeriod {
                            id: id.to_owned(),
                            well_formed: format!("{y}-W{w:02}") == id,
                        })
                    }
                }
            }
            Window::Seasonal => id
                .strip_prefix("season-")
                .and_then(|n| n.parse::<i64>().ok())
                .filter(|n| SEASONS.contains(n))
                .map(|n| self.season_period(n)),
        };
        period.filter(|p| p.id == id).ok_or_else(bad)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn day_ids_read_as_chrono_writes_them() {
        for (y, m, d) in [
            (2026, 1, 1),
            (1, 2, 3),
            (0, 12, 31),
            (9999, 12, 31),
            (10_000, 1, 1),
        ] {
            let day = NaiveDate::from_ymd_opt(y, m, d).unwrap();
            assert_eq!(day_id(day), day.format("%Y-%m-%d").to_string());
        }
        let before = NaiveDate::from_ymd_opt(-1, 6, 1).unwrap();
        assert_eq!(day_id(before), before.format("%Y-%m-%d").to_string());
    }

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn far_seasons_of_long_seasons_are_periods_not_overflows() {
        let cal = Calendar {
            season_days: 3660,
            ..Calendar::default()
        };
        for id in ["season-100000", "season--100000", "season-0"] {
            let p = cal.parse_period(Window::Seasonal, id).unwrap();
            assert_eq!(p.id, id);
            assert!(p.from <= p.to, "{p:?}");
        }
        let far = cal.parse_period(Window::Seasonal, "season-100000").unwrap();
        assert_eq!(far.to, DateTime::<Utc>::MAX_UTC);
        assert_eq!(cal.previous(&far).window, Window::Seasonal);
        let first = cal
            .parse_period(Window::Seasonal, "season--100000")
            .unwrap();
        assert_eq!(first.from, DateTime::<Utc>::MIN_UTC);
        assert_eq!(cal.previous(&first).window, Window::Seasonal);
    }

    #[test]
    fn periods_follow_utc_day_iso_week_and_season() {
        let cal = Calendar::default();
        let t = at("2026-11-21T23:59:59Z");
        assert_eq!(cal.period_at(Window::Daily, t).id, "2026-11-21");
        assert_eq!(cal.period_at(Window::Weekly, t).id, "2026-W47");
        // 2026-01-01 + 4*90 days = 2026-12-27, so Nov 21 is in season 4.
        assert_eq!(cal.period_at(Window::Seasonal, t).id, "season-4");
        // ISO week year differs from calendar year at the edges.
        assert_eq!(
            cal.period_at(Window::Weekly, at("2027-01-01T00:00:00Z")).id,
            "2026-W53"
        );
        let w = cal.period_at(Window::Weekly, t);
        assert_eq!(w.from, at("2026-11-16T00:00:00Z"));
        assert_eq!(w.to, at("2026-11-23T00:00:00Z"));
        assert_eq!(cal.previous(&w).id, "2026-W46");
    }

    #[test]
    fn seasons_at_unix_milliseconds() {
        let cal = Calendar::default();
        let ms = |s: &str| at(s).timestamp_millis();
        assert_eq!(cal.season_at_ms(ms("2026-01-01T00:00:00Z")), 1);
        assert_eq!(cal.season_at_ms(ms("2026-03-31T23:59:59.999Z")), 1);
        assert_eq!(cal.season_at_ms(ms("2026-04-01T00:00:00Z")), 2);
        assert_eq!(cal.season_at_ms(ms("2026-11-21T23:59:59Z")), 4);
        assert_eq!(cal.season_at_ms(ms("2025-12-31T23:59:59Z")), 0);
        // The last fraction of a second before a season ≤ 0 belongs to the season before, and
        // its period holds it.
        assert_eq!(cal.season_at_ms(ms("2025-12-31T23:59:59.500Z")), 0);
        assert_eq!(cal.season_at_ms(ms("2025-10-02T23:59:59.999Z")), -1);
        let late = at("2025-12-31T23:59:59.999Z");
        let p = cal.period_at(Window::Seasonal, late);
        assert!(p.from <= late && late < p.to, "{p:?}");
        // Out of range reads as the epoch, as `period_at_ms` does.
        let epoch = cal.season_at(DateTime::<Utc>::default());
        assert_eq!(cal.season_at_ms(i64::MAX), epoch);
        assert_eq!(
            cal.period_at_ms(Window::Seasonal, i64::MAX).id,
            format!("season-{epoch}")
        );
    }

    #[test]
    fn period_ids_parse_back() {
        let cal = Calendar::default();
        for w in Window::ALL {
            let p = cal.period_at(w, at("2026-03-05T10:00:00Z"));
            assert_eq!(cal.parse_period(w, &p.id).unwrap(), p);
        }
        assert!(cal.parse_period(Window::Daily, "2026-13-01").is_err());
        assert!(cal.parse_period(Window::Weekly, "2026-W60").is_err());
        assert!(cal.parse_period(Window::Seasonal, "s3").is_err());
    }

    /// Every id the pattern accepts parses (or is a missing week 53, told apart), and every id
    /// it refuses does not: the OpenAPI document says exactly what the server takes.
    #[test]
    fn period_patterns_match_exactly_what_parses() {
        let cal = Calendar::default();
        let mut ids: Vec<(Window, String)> = Vec::new();
        for year in [
            999, 1000, 1900, 2000, 2024, 2025, 2026, 2100, 2400, 9999, 10000,
        ] {
            for month in 0..=13 {
                for day in [0, 1, 9, 10, 28, 29, 30, 31, 32] {
                    ids.push((Window::Daily, format!("{year:04}-{month:02}-{day:02}")));
                }
            }
            for week in [0, 1, 9, 52, 53, 54] {
                ids.push((Window::Weekly, format!("{year}-W{week:02}")));
            }
            ids.push((Window::Weekly, format!("{year}-W1")));
        }
        for n in [
            "0", "1", "-1", "007", "+5", "99999", "100000", "100001", "-100000", "x",
        ] {
            ids.push((Window::Seasonal, format!("season-{n}")));
        }
        for (w, id) in ids {
            let re = regex::Regex::new(w.period_pattern()).unwrap();
            match cal.parse_period(w, &id) {
                Ok(_) => assert!(
                    re.is_match(&id),
                    "{w}: {id} parses but the pattern refuses it"
                ),
                Err(e) if e.well_formed => {
                    assert!(re.is_match(&id), "{w}: {id} is called well formed");
                    assert!(
                        id.ends_with("-W53"),
                        "{w}: only a missing week 53 may exist: {id}"
                    );
                }
                Err(_) => assert!(
                    !re.is_match(&id),
                    "{w}: the pattern takes {id}, which does not parse"
                ),
            }
        }
    }
}
