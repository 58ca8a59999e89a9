//! How long the per-event rows that make effects exactly-once are kept (`EVENT_RETENTION`), how
//! long the fairness flags are (`FLAG_RETENTION`), and how often the older ones are purged
//! (`EVENT_PURGE_EVERY`). See docs/ARCHITECTURE.md (delivery) and docs/adr/0019 (the design that
//! drops the per-event rows).

use std::time::Duration;

use clap::Args;
use liveops_core::ports::BusOptions;

use super::{bad, duration, ConfigError};

/// Retention settings as given.
#[derive(Args, Clone, Debug)]
pub struct RetentionConfig {
    /// How long processed event ids, fairness verdicts and operators' `Idempotency-Key`s are kept
    /// (`7d`, `12h`, `30m`): a redelivery, a dead-letter replay or a client's repeat later than
    /// this would be applied again. At least the bus's redelivery horizon (`BUS_VISIBILITY_SEC` ×
    /// `BUS_MAX_DELIVERIES`) and the time a signature can be sent again (2 × `SIG_TOLERANCE_SEC`
    /// + 1 s); under 24 h 5 min it also bounds how old an event's `ts` may be.
    #[arg(long, env = "EVENT_RETENTION", default_value = "7d")]
    pub event_retention: String,
    /// Time between purges of the rows older than `EVENT_RETENTION` (`1h`, `30s`).
    #[arg(long, env = "EVENT_PURGE_EVERY", default_value = "1h")]
    pub event_purge_every: String,
    /// How long fairness flags (the quarantined events `GET /fairness/flags` and
    /// `GET /fairness/players/{id}` list) are kept (`30d`, `90d`; at least `1d`).
    #[arg(long, env = "FLAG_RETENTION", default_value = "30d")]
    pub flag_retention: String,
}

/// Checked retention settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retention {
    /// Age past which per-event rows are purged.
    pub keep: Duration,
    /// Time between purges.
    pub every: Duration,
    /// Age past which fairness flags are purged.
    pub flags: Duration,
}

/// The shortest purge interval: each purge walks the per-event tables.
const MIN_PURGE_EVERY: Duration = Duration::from_secs(10);

/// The shortest flag retention: a flag is the evidence an operator reviews a block or a player
/// by, so it outlives at least the day in which it was raised.
const MIN_FLAG_RETENTION: Duration = Duration::from_secs(86_400);

impl RetentionConfig {
    /// Checks the settings against the bus's redelivery horizon and the time a signed request
    /// stays acceptable (`signature_tolerance_s` either side of the server's clock): a repeat
    /// the gateway publishes again (its stored answer lost with in-process hot state) carries
    /// the same event id, which the consumers must still remember.
    pub fn resolve(
        &self,
        bus: &BusOptions,
        signature_tolerance_s: i64,
    ) -> Result<Retention, ConfigError> {
        use duration::{D, H, M, S};
        let keep = duration::parse(&self.event_retention, &[S, M, H, D])
            .map_err(|e| bad("EVENT_RETENTION", e))?;
        let horizon = bus.visibility_timeout.saturating_mul(bus.max_deliveries);
        let tolerance = u64::try_from(signature_tolerance_s).unwrap_or(0);
        let signatures = Duration::from_secs(tolerance.saturating_mul(2).saturating_add(1));
        if keep < horizon.max(signatures) {
            return Err(bad(
                "EVENT_RETENTION",
                format!(
                    "must be at least the bus's redelivery horizon, {} s \
                     (BUS_VISIBILITY_SEC x BUS_MAX_DELIVERIES), and the time a signature can be \
                     sent again, {} s (2 x SIG_TOLERANCE_SEC + 1)",
                    horizon.as_secs(),
                    signatures.as_secs()
                ),
            ));
        }
        let every = duration::parse(&self.event_purge_every, &[S, M, H])
            .map_err(|e| bad("EVENT_PURGE_EVERY", e))?;
        if every < MIN_PURGE_EVERY {
            return Err(bad("EVENT_PURGE_EVERY", "must be at least 10s"));
        }
        let flags = duration::parse(&self.flag_retention, &[S, M, H, D])
            .map_err(|e| bad("FLAG_RETENTION", e))?;
        if flags < MIN_FLAG_RETENTION {
            return Err(bad("FLAG_RETENTION", "must be at least 1d"));
        }
        Ok(Retention { keep, every, flags })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(keep: &str, every: &str) -> Result<Retention, ConfigError> {
        with_flags(keep, every, "30d")
    }

    fn with_flags(keep: &str, every: &str, flags: &str) -> Result<Retention, ConfigError> {
        RetentionConfig {
            event_retention: keep.into(),
            event_purge_every: every.into(),
            flag_retention: flags.into(),
        }
        .resolve(&BusOptions::default(), 300)
    }

    #[test]
    fn retention_outlasts_every_redelivery_and_purges_are_spaced() {
        let week = Duration::from_secs(7 * 86_400);
        assert_eq!(
            resolve("7d", "1h").expect("defaults"),
            Retention {
                keep: week,
                every: Duration::from_secs(3600),
                flags: Duration::from_secs(30 * 86_400),
            }
        );
        // The default bus redelivers for 30 s x 10 deliveries; a signature is good for 601 s.
        assert!(resolve("601s", "30s").is_ok());
        for (keep, every) in [("600s", "1h"), ("0", "1h"), ("7d", "9s"), ("7 days", "1h")] {
            assert!(resolve(keep, every).is_err(), "{keep} {every}");
        }
    }

    #[test]
    fn flags_are_kept_at_least_a_day() {
        let flags = |text: &str| with_flags("7d", "1h", text).map(|r| r.flags);
        assert_eq!(flags("1d").ok(), Some(Duration::from_secs(86_400)));
        assert_eq!(flags("90d").ok(), Some(Duration::from_secs(90 * 86_400)));
        for short in ["23h", "0", "30 days", ""] {
            let refused = flags(short).err().map(|e| e.var);
            assert_eq!(refused, Some("FLAG_RETENTION"), "{short:?}");
        }
    }
}
