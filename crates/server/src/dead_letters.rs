//! `liveops dead-letters`: lists a consumer group's dead letters as JSON lines, or puts them back
//! for delivery. A replay is refused, unless forced, while any dead letter of the group may be
//! older than `EVENT_RETENTION`: the consumers may have purged its id, and would apply it again.

use std::process::ExitCode;
use std::time::Duration;

use liveops_core::ports::Delivery;
use liveops_core::{Bus, BusExt};
use serde_json::json;

use crate::config::{BusChoice, Settings};
use crate::wiring;

/// How many dead letters a replay reads first to tell their ages; past that many, the rest count
/// as of unknown age.
const AGE_CHECK_LIMIT: usize = 10_000;

/// What the command does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Lists up to this many dead letters.
    List(usize),
    /// Replays them all; `force`: even those that may be older than `EVENT_RETENTION`.
    Replay {
        /// Replay even dead letters older than `EVENT_RETENTION`, or of unknown age.
        force: bool,
    },
}

/// Prints the dead letters of `group` on `topic`, or replays them all.
pub async fn run(
    settings: &Settings,
    topic: &str,
    group: &str,
    action: Action,
) -> anyhow::Result<ExitCode> {
    if !settings
        .table
        .groups()
        .iter()
        .any(|g| g.topic == topic && g.group == group)
    {
        let groups = settings.table.groups();
        let elsewhere: Vec<&str> = groups
            .iter()
            .filter(|g| g.group == group)
            .map(|g| g.topic)
            .collect();
        if elsewhere.is_empty() {
            anyhow::bail!("no consumer group {group:?} on topic {topic:?}");
        }
        anyhow::bail!(
            "no consumer group {group:?} on topic {topic:?}; it reads {} (--topic)",
            elsewhere.join(", ")
        );
    }
    // The local bus is a file: one that is not there holds no dead letters to read, and
    // opening it would create an empty bus (the command run from the wrong place or DATA_DIR).
    if let BusChoice::Sqlite(path) = &settings.bus {
        anyhow::ensure!(
            path.is_file(),
            "no bus file at {} (is DATA_DIR or BUS_CONN right?)",
            path.display()
        );
    }
    let bus = wiring::ports(settings).get::<dyn Bus>().await?;
    match action {
        Action::Replay { force } => {
            if !force {
                refuse_if_at_risk(settings, bus.as_ref(), topic, group).await?;
            }
            let n = bus.replay_dead_letters(topic, group).await?;
            if n > 0 {
                tracing::info!(topic, group, messages = n, "replayed dead letters");
            }
            println!("{}", json!({"topic": topic, "group": group, "replayed": n}));
        }
        Action::List(limit) => {
            for d in bus.dead_letters(topic, group, limit).await? {
                let payload: serde_json::Value = serde_json::from_slice(&d.payload)
                    .unwrap_or_else(|_| json!(String::from_utf8_lossy(&d.payload)));
                println!(
                    "{}",
                    json!({"id": d.id, "key": d.key, "deliveries": d.deliveries, "payload": payload})
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Fails, saying why, when replaying the group's dead letters may apply an event twice.
async fn refuse_if_at_risk(
    settings: &Settings,
    bus: &dyn Bus,
    topic: &str,
    group: &str,
) -> anyhow::Result<()> {
    let letters = bus.dead_letters(topic, group, AGE_CHECK_LIMIT).await?;
    let more = letters.len() >= AGE_CHECK_LIMIT;
    let now = liveops_core::now_ms();
    if let Some(risk) = replay_risk(&letters, more, now, settings.retention.keep) {
        anyhow::bail!(
            "refusing to replay the dead letters of {group} on {topic}: {risk}. Past \
             EVENT_RETENTION ({}) the consumers may have purged an event's id, and would apply \
             it a second time. Check that those events were not applied (the player's progress \
             shows it), then replay with --force",
            settings.raw.retention.event_retention
        );
    }
    Ok(())
}

/// When the event a dead letter carries was received (`receivedAt`, unix ms): an upper bound of
/// its age in the consumers' processed ids, whose rows are written when it is applied. `None`
/// for a payload that is not an event; every bus alike, as none keeps a dead letter's age in
/// what it hands back.
fn received_at(d: &Delivery) -> Option<i64> {
    let v: serde_json::Value = serde_json::from_slice(&d.payload).ok()?;
    v.get("receivedAt")?.as_i64()
}

/// Why replaying `letters` (`more`: the group holds more than those) may apply an event twice:
/// those received more than `keep` before `now_ms`, those of unknown age; `None` when none is.
fn replay_risk(letters: &[Delivery], more: bool, now_ms: i64, keep: Duration) -> Option<String> {
    let keep_ms = i64::try_from(keep.as_millis()).unwrap_or(i64::MAX);
    let mut old = 0;
    let mut oldest = 0_i64;
    let mut unknown = 0;
    for d in letters {
        match received_at(d) {
            Some(at) if now_ms.saturating_sub(at) > keep_ms => {
                old += 1;
                oldest = oldest.max(now_ms.saturating_sub(at));
            }
            Some(_) => {}
            None => unknown += 1,
        }
    }
    let mut why = Vec::new();
    if old > 0 {
        why.push(format!(
            "{old} of {} received more than EVENT_RETENTION ago (the oldest {} ago)",
            letters.len(),
            age(oldest)
        ));
    }
    if unknown > 0 {
        why.push(format!(
            "{unknown} of {} whose age cannot be told (no receivedAt in their payload)",
            letters.len()
        ));
    }
    if more {
        why.push(format!(
            "{AGE_CHECK_LIMIT} or more in all, and the age of any past the first \
             {AGE_CHECK_LIMIT} was not read"
        ));
    }
    (!why.is_empty()).then(|| why.join("; "))
}

/// `ms` as days and hours (`9d 2h`), or hours and minutes, or minutes and seconds.
pub(crate) fn age(ms: i64) -> String {
    let s = ms / 1000;
    match s {
        86_400.. => format!("{}d {}h", s / 86_400, s % 86_400 / 3600),
        3600.. => format!("{}h {}m", s / 3600, s % 3600 / 60),
        _ => format!("{}m {}s", s / 60, s % 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn letter(payload: &str) -> Delivery {
        Delivery {
            id: "d".into(),
            key: "player_1".into(),
            payload: bytes::Bytes::from(payload.to_owned()),
            deliveries: 1,
        }
    }

    #[test]
    fn a_replay_is_at_risk_past_retention_or_when_an_age_is_unknown() {
        const DAY: i64 = 86_400_000;
        let now = 100 * DAY;
        let keep = Duration::from_secs(7 * 86_400);
        let at = |ms: i64| letter(&format!(r#"{{"receivedAt":{ms}}}"#));
        let young = [at(now - 7 * DAY), at(now - DAY)];
        assert_eq!(replay_risk(&young, false, now, keep), None);
        let risk = replay_risk(
            &[at(now - 9 * DAY - 2 * 3_600_000), at(now)],
            false,
            now,
            keep,
        );
        assert_eq!(
            risk.as_deref(),
            Some("1 of 2 received more than EVENT_RETENTION ago (the oldest 9d 2h ago)")
        );
        let risk = replay_risk(&[letter("not json"), at(now)], false, now, keep);
        assert!(risk.unwrap().starts_with("1 of 2 whose age cannot be told"));
        assert!(replay_risk(&young, true, now, keep)
            .unwrap()
            .starts_with("10000 or more in all"));
        assert_eq!(age(90_000), "1m 30s");
        assert_eq!(age(3 * 3_600_000 + 60_000), "3h 1m");
    }
}
