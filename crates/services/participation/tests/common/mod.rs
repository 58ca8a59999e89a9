//! What participation's test binaries share: the state over one SQLite repository.

use std::sync::Arc;
use std::time::Duration;

use liveops_core::{Calendar, KeyStore, Keyring, LevelCurve};
use liveops_http::SignatureCheck;
use liveops_memory::MemoryHotState;
use liveops_participation::{ParticipationConfig, ParticipationState};
use liveops_sql::SqliteRepository;

/// Participation over `repo` for every store, in-process decide holds, entries signed with
/// `keyring`, rank campaigns read `settle` after their end, at most `max_entrants` a campaign.
pub fn state(
    repo: &Arc<SqliteRepository>,
    keyring: Keyring,
    settle: Duration,
    max_entrants: u64,
) -> ParticipationState {
    ParticipationState {
        config: Arc::new(ParticipationConfig {
            calendar: Calendar::default(),
            curve: LevelCurve::default(),
            tick: Duration::from_secs(1),
            settle,
            max_entrants,
        }),
        signatures: SignatureCheck {
            keys: Arc::new(KeyStore::new(keyring)),
            tolerance_s: 300,
            accept_v1: true,
        },
        campaigns: repo.clone(),
        entries: repo.clone(),
        outcomes: repo.clone(),
        xp: repo.clone(),
        scores: repo.clone(),
        holds: Arc::new(MemoryHotState::new()),
        closed: Arc::default(),
    }
}
