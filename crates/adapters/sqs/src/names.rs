//! Queue names, message group ids and deduplication ids, within SQS's character sets and lengths.

use sha2::{Digest, Sha256};

/// Longest topic or group part of a queue name.
const MAX_PART: usize = 24;

/// First 8 hex digits of SHA-256: tells apart names that were shortened to the same prefix.
fn short_hash(s: &str) -> String {
    hex::encode(&Sha256::digest(s.as_bytes())[..4])
}

/// A topic or group as a queue-name part: `[A-Za-z0-9_]` kept, anything else (`.`, `-`, …)
/// becomes `_`, so `-` only ever separates parts; names over 24 characters keep their first 15
/// and a hash of the whole name.
pub fn part(name: &str) -> String {
    let clean: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if clean.len() <= MAX_PART && !clean.is_empty() {
        return clean;
    }
    let head: String = clean.chars().take(MAX_PART - 9).collect();
    format!("{head}_{}", short_hash(name))
}

/// The queue names of a prefix (at most 20 characters, checked by the config).
#[derive(Clone, Debug)]
pub struct Names {
    prefix: String,
}

impl Names {
    /// Names under `prefix`.
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
        }
    }

    /// `ListQueues` prefix of a topic's group queues (and their dead-letter queues).
    pub fn topic_prefix(&self, topic: &str) -> String {
        format!("{}-{}-", self.prefix, part(topic))
    }

    /// `<prefix>-<topic>-<group>.fifo`: the group's queue.
    pub fn group_queue(&self, topic: &str, group: &str) -> String {
        format!("{}{}.fifo", self.topic_prefix(topic), part(group))
    }

    /// `<prefix>-<topic>-<group>-dlq.fifo`: the group's dead letters.
    pub fn dead_letter_queue(&self, topic: &str, group: &str) -> String {
        format!("{}{}-dlq.fifo", self.topic_prefix(topic), part(group))
    }

    /// `<prefix>-<topic>.fifo`: where a topic's messages wait while it has no group yet.
    pub fn holding_queue(&self, topic: &str) -> String {
        format!("{}-{}.fifo", self.prefix, part(topic))
    }

    /// Whether a listed queue URL (or name) under [`Names::topic_prefix`] is a group queue.
    pub fn is_group_queue(&self, topic: &str, url: &str) -> bool {
        let name = url.rsplit('/').next().unwrap_or(url);
        let Some(rest) = name.strip_prefix(&self.topic_prefix(topic)) else {
            return false;
        };
        match rest.strip_suffix(".fifo") {
            Some(group) => !group.is_empty() && !group.contains('-'),
            None => false,
        }
    }
}

/// Whether SQS takes `s` as a message group or deduplication id: 1 to 128 of
/// alphanumerics and ASCII punctuation.
fn valid_token(s: &str) -> bool {
    !s.is_empty() && s.len() <= 128 && s.chars().all(|c| c.is_ascii_graphic())
}

/// The `MessageGroupId` of a key: the key itself when SQS accepts it, else `h` and its SHA-256.
pub fn group_id(key: &str) -> String {
    if valid_token(key) {
        key.to_owned()
    } else {
        format!("h{}", hex::encode(Sha256::digest(key.as_bytes())))
    }
}

/// The `MessageDeduplicationId` of a message id: the id itself when SQS accepts it, else its
/// SHA-256; an empty id gets a fresh random one (no deduplication).
pub fn dedup_id(id: &str) -> String {
    if id.is_empty() {
        uuid::Uuid::new_v4().simple().to_string()
    } else if valid_token(id) {
        id.to_owned()
    } else {
        hex::encode(Sha256::digest(id.as_bytes()))
    }
}

/// A deduplication id for a replayed dead letter: never seen before, so SQS takes it again.
pub fn replay_dedup_id() -> String {
    format!("replay-{}", uuid::Uuid::new_v4().simple())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_fit_sqs_and_keep_parts_apart() {
        let n = Names::new("liveops");
        assert_eq!(
            n.group_queue("events.ingested", "fairness"),
            "liveops-events_ingested-fairness.fifo"
        );
        assert_eq!(
            n.dead_letter_queue("events.accepted", "leaderboard"),
            "liveops-events_accepted-leaderboard-dlq.fifo"
        );
        assert_eq!(
            n.holding_queue("events.flagged"),
            "liveops-events_flagged.fifo"
        );
        let long = n.dead_letter_queue(
            "conformance.order.0123456789abcdef",
            "conformance.g.fedcba9876543210",
        );
        assert!(long.len() <= 80, "{long} ({})", long.len());
        let prefix20 = Names::new("abcdefghijklmnopqrst");
        let longest = prefix20.dead_letter_queue(&"t".repeat(200), &"g".repeat(200));
        assert!(longest.len() <= 80, "{longest} ({})", longest.len());
        assert!(longest
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.'));
        assert_ne!(
            part(&"x".repeat(30)),
            part(&"x".repeat(31)),
            "hash tells them apart"
        );
        assert_eq!(part("a-b"), "a_b", "a dash never appears inside a part");
    }

    #[test]
    fn only_group_queues_of_the_topic_are_listed_as_groups() {
        let n = Names::new("liveops");
        let t = "events.ingested";
        let base = "http://127.0.0.1:15000/123456789012/";
        assert!(n.is_group_queue(t, &format!("{base}liveops-events_ingested-fairness.fifo")));
        assert!(!n.is_group_queue(
            t,
            &format!("{base}liveops-events_ingested-fairness-dlq.fifo")
        ));
        assert!(!n.is_group_queue(t, &format!("{base}liveops-events_ingested.fifo")));
        assert!(!n.is_group_queue(t, &format!("{base}liveops-events_ingested_x-g.fifo")));
        assert!(!n.is_group_queue(t, &format!("{base}liveops-events_accepted-g.fifo")));
    }

    #[test]
    fn ids_sqs_refuses_are_hashed() {
        assert_eq!(group_id("player_42"), "player_42");
        let odd = group_id("spieler mit leerzeichen");
        assert!(odd.starts_with('h') && odd.len() == 65, "{odd}");
        assert_eq!(
            dedup_id("0190f7a2-1c2b-7c3d-8e4f-0123456789ab"),
            "0190f7a2-1c2b-7c3d-8e4f-0123456789ab"
        );
        assert_eq!(dedup_id(&"x".repeat(129)).len(), 64);
        assert_ne!(dedup_id(""), dedup_id(""), "no id, no deduplication");
        assert_ne!(replay_dedup_id(), replay_dedup_id());
    }
}
