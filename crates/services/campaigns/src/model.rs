//! What the campaign routes read and answer, and the rules a campaign must follow: its window,
//! its eligibility, its reward (draw winners, or rank tiers within one leaderboard period).

use chrono::DateTime;
use liveops_core::event::is_label;
use liveops_core::stores::{Campaign, CampaignState, EntryLimit, Reward};
use liveops_core::{Calendar, Window};
use liveops_http::{rfc3339, Problem, Text, Title};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A campaign's description: at most 2000 characters.
pub type Description = Text<2000, false>;

/// Longest campaign: a year.
pub(crate) const MAX_DURATION_MS: i64 = 366 * 86_400_000;
/// Most winners a draw may ask for.
pub(crate) const MAX_WINNERS: u32 = 10_000;
/// Most tiers of a rank reward.
pub(crate) const MAX_TIERS: usize = 20;
/// Lowest rank a tier may reach: prizes for the best thousand entrants at most.
pub(crate) const MAX_RANK: u32 = 1000;
/// Highest minimum level.
pub(crate) const MAX_LEVEL: u32 = 10_000;

/// Who may enter.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Eligibility {
    /// Lowest level (in the current season) that may enter.
    #[serde(deserialize_with = "liveops_core::event::whole")]
    #[schema(minimum = 1, maximum = 10000)]
    pub min_level: u32,
}

/// The body of `POST /campaigns`.
#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewCampaign {
    /// Shown to players.
    #[schema(inline)]
    pub title: Title,
    /// Shown to players.
    #[serde(default)]
    #[schema(inline)]
    pub description: Description,
    /// When it goes live (RFC 3339).
    #[schema(format = DateTime)]
    pub starts_at: String,
    /// When it ends (RFC 3339), after `startsAt`, within a year of it.
    #[schema(format = DateTime)]
    pub ends_at: String,
    /// Who may enter.
    pub eligibility: Eligibility,
    /// How often a player may enter.
    pub entry_limit: EntryLimit,
    /// What it pays.
    pub reward: Reward,
}

/// The body of `PATCH /campaigns/{id}` (drafts only): the fields to change.
#[derive(Clone, Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CampaignChange {
    /// Shown to players.
    #[schema(inline)]
    pub title: Option<Title>,
    /// Shown to players.
    #[schema(inline)]
    pub description: Option<Description>,
    /// When it goes live (RFC 3339).
    #[schema(format = DateTime)]
    pub starts_at: Option<String>,
    /// When it ends (RFC 3339).
    #[schema(format = DateTime)]
    pub ends_at: Option<String>,
    /// Who may enter.
    pub eligibility: Option<Eligibility>,
    /// How often a player may enter.
    pub entry_limit: Option<EntryLimit>,
    /// What it pays.
    pub reward: Option<Reward>,
}

/// A campaign, as operators see it (the draw's seed stays secret until drawn:
/// `GET /campaigns/{id}/draw`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CampaignView {
    /// Its id.
    pub id: String,
    /// Shown to players.
    pub title: String,
    /// Shown to players.
    pub description: String,
    /// When it goes live (RFC 3339).
    pub starts_at: String,
    /// When it ends (RFC 3339).
    pub ends_at: String,
    /// Who may enter.
    pub eligibility: Eligibility,
    /// How often a player may enter.
    pub entry_limit: EntryLimit,
    /// What it pays.
    pub reward: Reward,
    /// Where it is in its life.
    pub state: CampaignState,
    /// `hex(SHA-256(seed))` of its draw, published when scheduled.
    pub commitment: Option<String>,
    /// Who created it.
    pub created_by: String,
    /// Created (RFC 3339).
    pub created_at: String,
    /// Last changed (RFC 3339).
    pub updated_at: String,
}

impl From<&Campaign> for CampaignView {
    fn from(c: &Campaign) -> Self {
        Self {
            id: c.id.clone(),
            title: c.title.clone(),
            description: c.description.clone(),
            starts_at: rfc3339(c.starts_at_ms),
            ends_at: rfc3339(c.ends_at_ms),
            eligibility: Eligibility {
                min_level: c.min_level,
            },
            entry_limit: c.entry_limit,
            reward: c.reward.clone(),
            state: c.state,
            commitment: c.commitment.clone(),
            created_by: c.created_by.clone(),
            created_at: rfc3339(c.created_at_ms),
            updated_at: rfc3339(c.updated_at_ms),
        }
    }
}

/// A campaign as the audit log records it (no seed).
pub(crate) fn audit_json(c: &Campaign) -> String {
    serde_json::to_string(&CampaignView::from(c)).unwrap_or_default()
}

/// Campaigns.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CampaignList {
    /// Newest created first.
    pub campaigns: Vec<CampaignView>,
    /// Where the next page starts (`?cursor=`), when this page is full: more may follow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub next_cursor: Option<String>,
}

/// Unix ms of an RFC 3339 instant, or a 400 naming `field`.
pub(crate) fn instant(field: &str, text: &str) -> Result<i64, Problem> {
    DateTime::parse_from_rfc3339(text.trim())
        .map(|t| t.timestamp_millis())
        .map_err(|e| Problem::invalid(field, format!("must be an RFC 3339 instant: {e}")))
}

/// Checks everything an operator can set on `c`, at `now_ms`, a rank reward against the ranked
/// `windows`: 400 naming the field at fault.
pub(crate) fn check(
    c: &Campaign,
    calendar: &Calendar,
    windows: &[Window],
    now_ms: i64,
) -> Result<(), Problem> {
    if c.ends_at_ms <= c.starts_at_ms {
        return Err(Problem::invalid("endsAt", "must be after startsAt"));
    }
    if c.ends_at_ms - c.starts_at_ms > MAX_DURATION_MS {
        return Err(Problem::invalid(
            "endsAt",
            "a campaign lasts at most 366 days",
        ));
    }
    if c.ends_at_ms <= now_ms {
        return Err(Problem::invalid("endsAt", "must be in the future"));
    }
    if !(1..=MAX_LEVEL).contains(&c.min_level) {
        return Err(Problem::invalid(
            "eligibility.minLevel",
            format!("must be between 1 and {MAX_LEVEL}"),
        ));
    }
    match &c.reward {
        Reward::Draw { winners, item } => {
            if !(1..=MAX_WINNERS).contains(winners) {
                return Err(Problem::invalid(
                    "reward.winners",
                    format!("must be between 1 and {MAX_WINNERS}"),
                ));
            }
            check_item("reward.item", item)?;
        }
        Reward::Rank { window, tiers } => {
            if !windows.contains(window) {
                let ranked: Vec<&str> = windows.iter().map(|w| w.as_str()).collect();
                return Err(Problem::invalid(
                    "reward.window",
                    format!("must be a ranked window ({})", ranked.join(", ")),
                ));
            }
            if tiers.is_empty() || tiers.len() > MAX_TIERS {
                return Err(Problem::invalid(
                    "reward.tiers",
                    format!("must list 1..={MAX_TIERS} tiers"),
                ));
            }
            let mut sorted: Vec<_> = tiers.iter().enumerate().collect();
            sorted.sort_by_key(|(_, t)| t.from_rank);
            for (i, t) in &sorted {
                let field = format!("reward.tiers[{i}]");
                if t.from_rank < 1 || t.to_rank < t.from_rank || t.to_rank > MAX_RANK {
                    return Err(Problem::invalid(
                        &field,
                        format!("ranks must satisfy 1 <= fromRank <= toRank <= {MAX_RANK}"),
                    ));
                }
                check_item(&format!("{field}.item"), &t.item)?;
            }
            if let Some(w) = sorted
                .windows(2)
                .find(|w| w[1].1.from_rank <= w[0].1.to_rank)
            {
                return Err(Problem::invalid(
                    &format!("reward.tiers[{}]", w[1].0),
                    "tiers must not overlap",
                ));
            }
            let period = calendar.period_at_ms(*window, c.starts_at_ms);
            if c.ends_at_ms > period.to.timestamp_millis() {
                return Err(Problem::invalid(
                    "endsAt",
                    format!(
                        "a {window} rank campaign must end within the period it starts in \
                         ({}, until {})",
                        period.id,
                        rfc3339(period.to.timestamp_millis())
                    ),
                ));
            }
        }
    }
    Ok(())
}

fn check_item(field: &str, item: &str) -> Result<(), Problem> {
    if is_label(item) {
        Ok(())
    } else {
        Err(Problem::invalid(
            field,
            "must be 1..=64 characters of [A-Za-z0-9_.:-]",
        ))
    }
}

#[cfg(test)]
mod tests {
    use liveops_core::stores::Tier;
    use liveops_core::Window;

    use super::*;

    fn draft(reward: Reward) -> Campaign {
        let start = 1_800_000_000_000;
        Campaign {
            id: "cmp_1".into(),
            title: "Winter draw".into(),
            description: String::new(),
            starts_at_ms: start,
            ends_at_ms: start + 3_600_000,
            min_level: 1,
            entry_limit: EntryLimit::Once,
            reward,
            state: CampaignState::Draft,
            seed: None,
            commitment: None,
            created_by: "ops@example.com".into(),
            created_at_ms: 0,
            updated_at_ms: 0,
        }
    }

    fn field(c: &Campaign) -> Option<String> {
        let ranked = [Window::Daily, Window::Weekly];
        check(c, &Calendar::default(), &ranked, 1_700_000_000_000)
            .err()
            .and_then(|p| p.field)
    }

    fn tier(from_rank: u32, to_rank: u32) -> Tier {
        Tier {
            from_rank,
            to_rank,
            item: "crown".into(),
        }
    }

    #[test]
    fn bad_campaigns_name_the_field_at_fault() {
        let draw = |winners| Reward::Draw {
            winners,
            item: "chest".into(),
        };
        assert_eq!(field(&draft(draw(3))), None);
        assert_eq!(field(&draft(draw(0))).as_deref(), Some("reward.winners"));
        let mut backwards = draft(draw(3));
        backwards.ends_at_ms = backwards.starts_at_ms;
        assert_eq!(field(&backwards).as_deref(), Some("endsAt"));
        let mut past = draft(draw(3));
        past.ends_at_ms = 1_600_000_000_000;
        past.starts_at_ms = past.ends_at_ms - 1000;
        assert_eq!(field(&past).as_deref(), Some("endsAt"));
        let rank = |tiers| Reward::Rank {
            window: Window::Daily,
            tiers,
        };
        assert_eq!(field(&draft(rank(vec![tier(1, 1), tier(2, 10)]))), None);
        assert_eq!(
            field(&draft(rank(vec![tier(1, 5), tier(5, 10)]))).as_deref(),
            Some("reward.tiers[1]")
        );
        assert_eq!(
            field(&draft(rank(vec![tier(3, 2)]))).as_deref(),
            Some("reward.tiers[0]")
        );
        assert_eq!(field(&draft(rank(vec![]))).as_deref(), Some("reward.tiers"));
        let seasonal = Reward::Rank {
            window: Window::Seasonal,
            tiers: vec![tier(1, 1)],
        };
        assert_eq!(field(&draft(seasonal)).as_deref(), Some("reward.window"));
        let mut two_days = draft(rank(vec![tier(1, 1)]));
        two_days.ends_at_ms = two_days.starts_at_ms + 2 * 86_400_000;
        assert_eq!(
            field(&two_days).as_deref(),
            Some("endsAt"),
            "one period only"
        );
    }

    #[test]
    fn rewards_read_their_kind_and_refuse_unknown_windows() {
        let r: Reward =
            serde_json::from_str(r#"{"kind":"draw","winners":3,"item":"chest"}"#).expect("draw");
        assert_eq!(
            r,
            Reward::Draw {
                winners: 3,
                item: "chest".into()
            }
        );
        let r: Reward = serde_json::from_str(
            r#"{"kind":"rank","window":"weekly","tiers":[{"fromRank":1,"toRank":3,"item":"crown"}]}"#,
        )
        .expect("rank");
        assert!(matches!(
            r,
            Reward::Rank {
                window: Window::Weekly,
                ..
            }
        ));
        assert!(
            serde_json::from_str::<Reward>(r#"{"kind":"rank","window":"hourly","tiers":[]}"#)
                .is_err()
        );
        assert!(serde_json::from_str::<Reward>(r#"{"kind":"lottery"}"#).is_err());
    }

    #[test]
    fn integers_may_be_written_with_a_zero_fraction_as_json_schema_allows() {
        let r: Reward = serde_json::from_str(r#"{"kind":"draw","winners":3.0,"item":"chest"}"#)
            .expect("3.0 winners");
        assert!(matches!(r, Reward::Draw { winners: 3, .. }));
        let e: Eligibility = serde_json::from_str(r#"{"minLevel":5.0}"#).expect("5.0");
        assert_eq!(e.min_level, 5);
        let tier =
            r#"{"kind":"rank","window":"daily","tiers":[{"fromRank":1.0,"toRank":2,"item":"x"}]}"#;
        assert!(serde_json::from_str::<Reward>(tier).is_ok());
        for bad in [
            r#"{"kind":"draw","winners":2.5,"item":"chest"}"#,
            r#"{"kind":"draw","winners":-1,"item":"chest"}"#,
            r#"{"kind":"draw","winners":4294967296,"item":"chest"}"#,
            r#"{"kind":"draw","winners":"3","item":"chest"}"#,
        ] {
            assert!(serde_json::from_str::<Reward>(bad).is_err(), "{bad}");
        }
    }
}
