//! What a batch of accepted events does to players' progression: pure arithmetic, no I/O.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use liveops_core::stores::{ItemGrant, PendingReward, ProgressCommit, XpGain};
use liveops_core::{Calendar, Envelope, EventType, LevelCurve, Payload};

/// The `source` of a level-up reward.
pub(crate) const LEVEL_UP_SOURCE: &str = "level_up";

/// The reward id for reaching `level` in `season`.
pub(crate) fn level_reward_id(season: i64, level: u32) -> String {
    format!("level:{season}:{level}")
}

/// The item a level reward grants.
pub(crate) fn level_reward_item(level: u32) -> String {
    format!("level_{level}_chest")
}

/// The item of a level reward id (`level:4:7` → `level_7_chest`), if it is one.
pub(crate) fn item_of_level_reward(reward_id: &str) -> Option<String> {
    let rest = reward_id.strip_prefix("level:")?;
    let (season, level) = rest.split_once(':')?;
    season.parse::<i64>().ok()?;
    let level: u32 = level.parse().ok()?;
    // Only the canonical spelling names a reward (`level:4:07` does not).
    (level_reward_id(season.parse().ok()?, level) == reward_id).then(|| level_reward_item(level))
}

/// The `(player, season)` pairs whose XP a batch changes, in first-seen order, without repeats.
pub(crate) fn xp_keys(events: &[Envelope], calendar: &Calendar) -> Vec<(String, i64)> {
    let mut seen = BTreeSet::new();
    let mut keys = Vec::new();
    for env in events {
        if let Payload::Progression(_) = env.event.payload {
            let key = (
                env.event.player_id.as_str().to_owned(),
                calendar.season_at_ms(env.received_at),
            );
            if seen.insert(key.clone()) {
                keys.push(key);
            }
        }
    }
    keys
}

/// Everything a batch changes, ready to commit, plus what to report about it.
#[derive(Debug, Default)]
pub(crate) struct Plan {
    /// The atomic write.
    pub commit: ProgressCommit,
    /// Events applied per type.
    pub applied: BTreeMap<EventType, u64>,
    /// Levels gained in the batch, all players together.
    pub level_ups: u64,
    /// `(player, season)` pairs whose cached progress is now stale.
    pub touched: BTreeSet<(String, i64)>,
}

/// Plans a batch of fresh (never applied) events, in order.
///
/// `xp_before` holds the XP each `(player, season)` of [`xp_keys`] had before the batch.
pub(crate) fn plan(
    events: &[Envelope],
    calendar: &Calendar,
    curve: &LevelCurve,
    xp_before: &HashMap<(String, i64), u64>,
) -> Plan {
    let mut plan = Plan::default();
    let mut xp_now: HashMap<(String, i64), u64> = HashMap::new();
    // One XP row per (player, season): the sum of the batch and the latest time.
    let mut gains: BTreeMap<(String, i64), (u64, i64)> = BTreeMap::new();
    let mut gain_order: Vec<(String, i64)> = Vec::new();

    for env in events {
        plan.commit.event_ids.push(env.event_id);
        *plan.applied.entry(env.event.kind()).or_default() += 1;
        let player = env.event.player_id.as_str();
        // An event counts in its season by server receive time, never the client's clock.
        let season = calendar.season_at_ms(env.received_at);
        plan.touched.insert((player.to_owned(), season));
        match &env.event.payload {
            Payload::Progression(p) => {
                let key = (player.to_owned(), season);
                let before = *xp_now
                    .entry(key.clone())
                    .or_insert_with(|| xp_before.get(&key).copied().unwrap_or(0));
                let after = before.saturating_add(u64::from(p.delta_xp));
                xp_now.insert(key.clone(), after);
                let gain = gains.entry(key.clone()).or_insert_with(|| {
                    gain_order.push(key.clone());
                    (0, env.received_at)
                });
                gain.0 = gain.0.saturating_add(u64::from(p.delta_xp));
                gain.1 = gain.1.max(env.received_at);

                let (old_level, new_level) = (curve.level(before), curve.level(after));
                for level in old_level.saturating_add(1)..=new_level {
                    plan.level_ups += 1;
                    plan.commit.rewards.push((
                        player.to_owned(),
                        PendingReward {
                            reward_id: level_reward_id(season, level),
                            item: level_reward_item(level),
                            source: LEVEL_UP_SOURCE.to_owned(),
                            adds_to_inventory: true,
                        },
                    ));
                }
            }
            Payload::DropClaimed(d) => {
                plan.commit.items.push(ItemGrant {
                    player_id: player.to_owned(),
                    item: d.drop_id.clone(),
                    quantity: 1,
                });
                plan.commit.rewards.push((
                    player.to_owned(),
                    PendingReward {
                        reward_id: format!("drop:{}", env.event_id),
                        item: d.drop_id.clone(),
                        source: d.source.clone(),
                        adds_to_inventory: false,
                    },
                ));
            }
            Payload::BossKill(_) => {}
        }
    }

    for key in gain_order {
        if let Some((xp, at_ms)) = gains.remove(&key) {
            plan.commit.xp.push(XpGain {
                player_id: key.0,
                season: key.1,
                xp,
                at_ms,
            });
        }
    }
    plan
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use liveops_testkit::received::{self, envelope};

    use super::*;

    // 2026-03-01T00:00:00Z: season 1 of the default calendar (starts 2026-01-01, 90 days).
    const T: i64 = 1_772_323_200_000;

    fn xp(player: &str, delta: u32, at: i64) -> Envelope {
        envelope(player, received::xp(delta), at)
    }

    fn drop(player: &str, item: &str) -> Envelope {
        envelope(player, received::drop(item), T)
    }

    /// The ids of the rewards a plan grants, in order.
    fn reward_ids(plan: &Plan) -> Vec<&str> {
        plan.commit
            .rewards
            .iter()
            .map(|(_, r)| r.reward_id.as_str())
            .collect()
    }

    #[test]
    fn accumulates_xp_in_order_and_rewards_every_level_crossed() {
        let cal = Calendar::default();
        let curve = LevelCurve::default();
        assert_eq!(cal.season_at_ms(T), 1);
        let events = vec![
            xp("player_1", 600, T),
            xp("player_1", 600, T + 5),
            xp("player_1", 2000, T + 9),
        ];
        let before = HashMap::from([(("player_1".to_owned(), 1), 500)]);
        let plan = plan(&events, &cal, &curve, &before);
        // 500 → 1100 (level 2) → 1700 → 3700 (levels 3 and 4).
        assert_eq!(plan.level_ups, 3);
        assert_eq!(reward_ids(&plan), ["level:1:2", "level:1:3", "level:1:4"]);
        assert_eq!(plan.commit.rewards[2].1.item, "level_4_chest");
        assert!(plan
            .commit
            .rewards
            .iter()
            .all(|(p, r)| p == "player_1" && r.adds_to_inventory && r.source == "level_up"));
        assert_eq!(
            plan.commit.xp,
            vec![XpGain {
                player_id: "player_1".into(),
                season: 1,
                xp: 3200,
                at_ms: T + 9
            }]
        );
        assert_eq!(plan.commit.event_ids.len(), 3);
        assert_eq!(plan.applied[&EventType::Progression], 3);
    }

    #[test]
    fn seasons_keep_separate_xp() {
        let cal = Calendar::default();
        let next_season = T + 90 * 86_400_000;
        let events = vec![xp("player_1", 1000, T), xp("player_1", 1000, next_season)];
        assert_eq!(
            xp_keys(&events, &cal),
            vec![("player_1".to_owned(), 1), ("player_1".to_owned(), 2)]
        );
        let plan = plan(&events, &cal, &LevelCurve::default(), &HashMap::new());
        assert_eq!(reward_ids(&plan), ["level:1:2", "level:2:2"]);
        assert_eq!(plan.commit.xp.len(), 2);
    }

    #[test]
    fn a_drop_goes_to_the_inventory_and_waits_for_its_receipt() {
        let env = drop("player_2", "epic_sword_001");
        let plan = plan(
            std::slice::from_ref(&env),
            &Calendar::default(),
            &LevelCurve::default(),
            &HashMap::new(),
        );
        assert_eq!(
            plan.commit.items,
            vec![ItemGrant {
                player_id: "player_2".into(),
                item: "epic_sword_001".into(),
                quantity: 1
            }]
        );
        let (player, reward) = &plan.commit.rewards[0];
        assert_eq!(player, "player_2");
        assert_eq!(reward.reward_id, format!("drop:{}", env.event_id));
        assert_eq!(reward.item, "epic_sword_001");
        assert_eq!(reward.source, "raid_chest");
        assert!(!reward.adds_to_inventory);
        assert_eq!(plan.level_ups, 0);
        assert!(plan.commit.xp.is_empty());
    }

    #[test]
    fn reward_ids_read_back() {
        assert_eq!(
            item_of_level_reward("level:4:7").as_deref(),
            Some("level_7_chest")
        );
        assert_eq!(item_of_level_reward("level:4:07"), None);
        assert_eq!(item_of_level_reward("level:x:7"), None);
        assert_eq!(item_of_level_reward("drop:abc"), None);
    }
}
