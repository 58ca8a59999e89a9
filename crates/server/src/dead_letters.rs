//! `liveops dead-letters`: lists a consumer group's dead letters as JSON lines, or puts them back
//! for delivery.

use std::process::ExitCode;

use liveops_core::{Bus, BusExt};
use serde_json::json;

use crate::config::{BusChoice, Settings};
use crate::wiring;

/// Prints the dead letters of `group` on `topic` (at most `limit`), or replays them all.
pub async fn run(
    settings: &Settings,
    topic: &str,
    group: &str,
    replay: bool,
    limit: usize,
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
    if replay {
        let n = bus.replay_dead_letters(topic, group).await?;
        if n > 0 {
            tracing::info!(topic, group, messages = n, "replayed dead letters");
        }
        println!("{}", json!({"topic": topic, "group": group, "replayed": n}));
    } else {
        for d in bus.dead_letters(topic, group, limit).await? {
            let payload: serde_json::Value = serde_json::from_slice(&d.payload)
                .unwrap_or_else(|_| json!(String::from_utf8_lossy(&d.payload)));
            println!(
                "{}",
                json!({"id": d.id, "key": d.key, "deliveries": d.deliveries, "payload": payload})
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
