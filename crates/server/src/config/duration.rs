//! Durations as operators write them in settings: a whole number and a unit (`500ms`, `90s`,
//! `15m`, `1h`, `7d`); a bare number is seconds. Each setting names the units it accepts.

use std::time::Duration;

/// A unit suffix and its length.
pub type Unit = (&'static str, Duration);

/// Milliseconds.
pub const MS: Unit = ("ms", Duration::from_millis(1));
/// Seconds (also a bare number).
pub const S: Unit = ("s", Duration::from_secs(1));
/// Minutes.
pub const M: Unit = ("m", Duration::from_secs(60));
/// Hours.
pub const H: Unit = ("h", Duration::from_secs(3600));
/// Days.
pub const D: Unit = ("d", Duration::from_secs(86_400));

/// Parses `text` as a whole number followed by one of `units` (none: seconds).
pub fn parse(text: &str, units: &[Unit]) -> Result<Duration, String> {
    let t = text.trim();
    let (number, suffix) = t.split_at(t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len()));
    let names = || {
        let names: Vec<String> = units.iter().map(|u| format!("5{}", u.0)).collect();
        match names.split_last() {
            Some((last, [])) => last.clone(),
            Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
            None => String::new(),
        }
    };
    let n: u32 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like {}", names()))?;
    let unit = match suffix {
        "" => S.1,
        s => units
            .iter()
            .find(|u| u.0 == s)
            .map(|u| u.1)
            .ok_or_else(|| format!("{text:?}: the unit must be one of {}", names()))?,
    };
    Ok(unit.saturating_mul(n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_number_and_one_of_the_units_allowed() {
        let all = [MS, S, M, H, D];
        assert_eq!(parse("500ms", &all), Ok(Duration::from_millis(500)));
        assert_eq!(parse("90", &all), Ok(Duration::from_secs(90)));
        assert_eq!(parse(" 7d ", &all), Ok(Duration::from_secs(7 * 86_400)));
        assert_eq!(parse("0s", &all), Ok(Duration::ZERO));
        for bad in ["", "d", "7 days", "-5m", "1.5h", "5x", "99999999999s"] {
            assert!(parse(bad, &all).is_err(), "{bad}");
        }
        let error = parse("7d", &[S, M]).expect_err("days not allowed");
        assert!(error.contains("5s or 5m"), "{error}");
    }
}
