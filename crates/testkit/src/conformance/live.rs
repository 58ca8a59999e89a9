//! The live-event store traits' contract (operators, sessions, audit, API keys, campaigns,
//! entries, outcomes, the XP read, inbox, webhooks), as a suite any backend can run:
//! `run_all(repo).await` on a migrated repository.
//!
//! Ids carry a random suffix, so runs can share a database, also at the same time: the checks of
//! [`run_shared`] read back only what they wrote (their own operators, campaigns, players,
//! webhooks and audit targets, every listing filtered on them), whatever other runs write
//! meanwhile. The checks of [`run_alone`] take or sweep what every run writes (leases of the
//! delivery queue, retention purges, the last enabled admins): they need a database no other run
//! uses at the same time.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use liveops_core::ports::Health;
use liveops_core::stores::{
    ApiKeyInfo, Attempt, AuditEntry, Award, Campaign, CampaignEvent, CampaignPage, CampaignState,
    CampaignStore, CappedOutcome, ClaimOutcome, Delivery, DeliveryPage, DeliveryState, DueDelivery,
    Entered, EntriesSummary, Entry, EntryLimit, InboxBelow, InboxClaim, InboxMessage, InboxPage,
    Keyed, KeyedOutcome, ListedMessage, LiveEventStores, OperatorRecord, OperatorUpdate, Outcome,
    ProgressCommit, ProgressStore, RequestKey, Reward, Role, Webhook, WebhookStore, XpGain,
};
use liveops_core::{now_ms, PortError, PortResult, Receipt};

use super::{ok, suffix};

/// An adapter serving every live-event store trait (and progression's, for the XP read).
pub trait LiveStores: LiveEventStores + ProgressStore + Health {}

impl<T> LiveStores for T where T: LiveEventStores + ProgressStore + Health {}

/// Runs every check of the suite on one database: [`run_shared`], then [`run_alone`].
pub async fn run_all<S: LiveStores + 'static>(repo: Arc<S>) {
    run_shared(repo.clone()).await;
    run_alone(repo).await;
}

/// Runs the checks that read back only what they wrote: on a database that other runs may use
/// at the same time.
pub async fn run_shared<S: LiveStores + 'static>(repo: Arc<S>) {
    let r: &S = repo.as_ref();
    operators_are_unique_by_email_and_change_once(r).await;
    sessions_follow_their_operator(r).await;
    a_login_racing_a_new_password_opens_nothing(r).await;
    api_keys_are_listed_without_secrets_and_revoked_once(r).await;
    campaigns_move_once_with_their_event(r).await;
    a_campaign_past_its_end_changes_only_as_a_draft(r).await;
    campaign_pages_continue_where_the_last_ended(r).await;
    due_lists_what_the_scheduler_must_move(r).await;
    entries_need_a_live_campaign_and_one_per_slot(r).await;
    entrant_pages_continue_where_the_last_ended(r).await;
    outcomes_are_recorded_once(r).await;
    a_large_draw_is_recorded_whole(r).await;
    season_xp_reads_progression(r).await;
    settlement_writes_one_message_per_winner(r).await;
    settlement_pays_a_group_once_per_winner(r).await;
    keyed_writes_happen_once(r).await;
    claims_issue_one_set_of_receipts(r).await;
    inbox_pages_continue_where_the_last_ended(r).await;
    messages_written_since_a_read_are_listed_above_it(repo.clone()).await;
    dead_deliveries_are_sent_again_on_request(r).await;
    campaign_events_get_public_ids_of_their_own(r).await;
    concurrent_writers_agree(repo.clone()).await;
    claims_at_once_are_answered_each_alone(repo.clone()).await;
    entries_at_once_are_answered_each_alone(repo.clone()).await;
    entrants_at_once_are_counted_once_each(repo.clone()).await;
    a_campaign_takes_its_cap_of_players_at_once_and_no_more(repo).await;
}

/// Runs the checks that take or sweep what every run writes: a lease takes any run's due
/// deliveries, a purge deletes any run's rows past its cutoff (and skips while another process
/// walks the table), the caps count every active webhook and API key, and the last-admin rule
/// counts every enabled admin. On a database no other run uses at the same time (runs before,
/// and their rows, are welcome).
pub async fn run_alone<S: LiveStores + 'static>(repo: Arc<S>) {
    let r: &S = repo.as_ref();
    webhook_deliveries_are_queued_once_and_leased_once(r).await;
    leases_take_a_few_deliveries_of_each_webhook(r).await;
    leases_pass_over_a_capped_backlog_in_due_order(r).await;
    leases_at_once_take_each_delivery_once(repo.clone()).await;
    large_events_are_sized_and_queued_whole(r).await;
    distribution_rows_past_their_retention_are_purged(repo.clone()).await;
    super::caps::active_webhooks_stay_within_their_cap(repo.clone()).await;
    super::caps::active_api_keys_stay_within_their_cap(repo.clone()).await;
    one_of_the_last_two_admins_racing_goes(repo).await;
}

/// The cap of the shared checks' creates: none (their database holds every run's webhooks and
/// API keys; [`super::caps`] checks the caps, alone).
pub const UNCAPPED: u32 = u32::MAX;

/// A create that had room and wrote.
pub const WRITTEN: CappedOutcome = CappedOutcome::Keyed(KeyedOutcome::Written);

/// An audit entry of `action` on `target` by the conformance actor, now.
pub fn audit(action: &str, target: &str) -> AuditEntry {
    AuditEntry {
        at_ms: now_ms(),
        actor: "conformance@example.com".into(),
        action: action.into(),
        target: target.into(),
        before: None,
        after: Some(format!("{{\"id\":\"{target}\"}}")),
    }
}

fn operator(email: &str, role: Role) -> OperatorRecord {
    let now = now_ms();
    OperatorRecord {
        id: format!("op_{}", suffix()),
        email: email.into(),
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
        role,
        disabled: false,
        created_at_ms: now,
        updated_at_ms: now,
    }
}

/// A draft draw campaign that started a minute ago and ends in an hour.
pub fn campaign(tag: &str) -> Campaign {
    let now = now_ms();
    Campaign {
        id: format!("cmp_{tag}_{}", suffix()),
        title: format!("Campaign {tag}"),
        description: "A conformance campaign".into(),
        starts_at_ms: now - 60_000,
        ends_at_ms: now + 3_600_000,
        min_level: 1,
        entry_limit: EntryLimit::Once,
        reward: Reward::Draw {
            winners: 2,
            item: "gold_chest".into(),
        },
        state: CampaignState::Draft,
        seed: None,
        commitment: None,
        created_by: "conformance@example.com".into(),
        created_at_ms: now,
        updated_at_ms: now,
    }
}

/// Creates `c` (a draft).
async fn create(repo: &dyn CampaignStore, c: &Campaign) {
    let audit = audit("campaign.create", &c.id);
    let created = ok(
        repo.create_campaign(None, c, &audit).await,
        "create_campaign",
    );
    assert_eq!(created, KeyedOutcome::Written);
}

/// Creates `c` and moves it through the states up to `to` (draft, scheduled, live or ended), as
/// the scheduler would.
pub async fn create_in(repo: &dyn CampaignStore, c: &Campaign, to: CampaignState) {
    create(repo, c).await;
    let path = [
        CampaignState::Draft,
        CampaignState::Scheduled,
        CampaignState::Live,
        CampaignState::Ended,
    ];
    for step in path.windows(2) {
        if step[0] == to {
            break;
        }
        let moved = repo.advance(&c.id, step[0], step[1], None).await;
        assert!(ok(moved, "advance"), "{:?} → {:?}", step[0], step[1]);
    }
}

/// Creates `c` and schedules it.
async fn scheduled(repo: &dyn LiveStores, c: &Campaign) {
    create_in(repo, c, CampaignState::Scheduled).await;
}

/// Creates `c` and moves it to live.
async fn live(repo: &dyn LiveStores, c: &Campaign) {
    create_in(repo, c, CampaignState::Live).await;
}

/// The entrant cap of the checks that are not about it: one no campaign of theirs reaches.
const NO_CAP: u64 = u64::MAX;

/// An entry whose request signature is unique to this run (`tag` tells them apart).
fn entry(campaign_id: &str, player: &str, slot: &str, tag: &str) -> Entry {
    Entry {
        entry_id: format!("ent_{}", suffix()),
        campaign_id: campaign_id.into(),
        player_id: player.into(),
        slot: slot.into(),
        entered_at_ms: now_ms(),
        request_sig: format!("sha256={tag}_{}", suffix()),
    }
}

fn message(player: Option<&str>, campaign: Option<&str>, expires_in_ms: i64) -> InboxMessage {
    let now = now_ms();
    InboxMessage {
        message_id: format!("msg_{}", suffix()),
        player_id: player.map(str::to_owned),
        campaign_id: campaign.map(str::to_owned),
        title: "You won".into(),
        body: "Your prize".into(),
        attachments: vec!["gold_chest".into()],
        created_at_ms: now,
        expires_at_ms: now + expires_in_ms,
    }
}

/// The first page of `limit` messages, only those live at `live_at_ms` if given.
fn page(limit: u32, live_at_ms: Option<i64>) -> InboxPage<'static> {
    InboxPage {
        limit,
        live_at_ms,
        below: None,
    }
}

fn claim(m: &InboxMessage, player: &str, tag: &str) -> InboxClaim {
    InboxClaim {
        message_id: m.message_id.clone(),
        player_id: player.into(),
        claimed_at_ms: now_ms(),
        receipts: vec![Receipt {
            receipt_id: format!("rcp_{tag}"),
            player_id: player.into(),
            item: "gold_chest".into(),
            timestamp: 1,
            sig: format!("sig{tag}"),
        }],
        request_sig: format!("sha256={tag}_{}", suffix()),
    }
}

/// Emails are unique; a change applies only against the version it was made from; every change
/// leaves an audit entry, and the log lists its entries newest first, a page at a time. Other
/// runs may add operators and entries meanwhile: the counts are checked against the listing read
/// between them, the log's order on this operator's entries and on what was read before.
pub async fn operators_are_unique_by_email_and_change_once(repo: &dyn LiveStores) {
    let email = format!("admin_{}@example.com", suffix());
    let first = operator(&email, Role::Operator);
    let before = ok(repo.operator_count().await, "operator_count");
    assert!(ok(
        repo.create_operator(&first, &audit("operator.create", &first.id))
            .await,
        "create_operator"
    ));
    let twin = operator(&email, Role::Viewer);
    assert!(
        !ok(
            repo.create_operator(&twin, &audit("operator.create", &twin.id))
                .await,
            "create_operator"
        ),
        "the email is taken"
    );
    assert_eq!(ok(repo.operator(&twin.id).await, "operator"), None);
    // Operators are never deleted: the count read before the listing is at most its length, the
    // count read after at least.
    let counted = ok(repo.operator_count().await, "operator_count");
    let all = ok(repo.operators().await, "operators");
    let recounted = ok(repo.operator_count().await, "operator_count");
    let listed = u64::try_from(all.len()).unwrap_or(u64::MAX);
    assert!(
        before < counted && counted <= listed && listed <= recounted,
        "{before} before, then {counted}, {listed} listed, {recounted}"
    );
    let under_email: Vec<&OperatorRecord> = all.iter().filter(|o| o.email == email).collect();
    assert_eq!(under_email, [&first], "one operator under the email");
    assert!(ok(repo.any_operator().await, "any_operator"));
    let found = ok(repo.operator_by_email(&email).await, "operator_by_email");
    assert_eq!(found.as_ref(), Some(&first));
    assert_eq!(ok(repo.operator(&first.id).await, "operator"), found);
    assert!(ok(repo.operators().await, "operators").contains(&first));

    let mut after = first.clone();
    after.role = Role::Viewer;
    after.updated_at_ms = first.updated_at_ms + 1;
    let change = audit("operator.update", &first.id);
    assert_eq!(
        ok(
            repo.update_operator(&first, &after, &change).await,
            "update_operator"
        ),
        OperatorUpdate::Updated
    );
    assert_eq!(
        ok(
            repo.update_operator(&first, &after, &change).await,
            "update_operator"
        ),
        OperatorUpdate::ChangedMeanwhile,
        "a change against a stale version is refused"
    );
    assert_eq!(
        ok(repo.operator(&first.id).await, "operator").map(|o| o.role),
        Some(Role::Viewer)
    );
    let log = ok(repo.audit(None, 500).await, "audit");
    let mine: Vec<&str> = log
        .iter()
        .filter(|l| l.entry.target == first.id)
        .map(|l| l.entry.action.as_str())
        .collect();
    assert_eq!(mine, ["operator.update", "operator.create"], "newest first");
    ok(
        repo.record(&audit("player.unblock", &first.id)).await,
        "record",
    );
    // The latest entry first: this operator's newest is listed above everything read before it,
    // and the top of the log is it or newer.
    let latest = ok(repo.audit(None, 500).await, "audit");
    let positions: Vec<i64> = latest.iter().map(|l| l.position).collect();
    assert!(positions.windows(2).all(|w| w[0] > w[1]), "{positions:?}");
    let newest = latest
        .iter()
        .find(|l| l.entry.target == first.id)
        .expect("recorded");
    assert_eq!(
        newest.entry.action, "player.unblock",
        "the latest entry first"
    );
    assert!(
        newest.position > log[0].position,
        "listed above what came before"
    );
    let top = ok(repo.audit(None, 1).await, "audit");
    assert!(
        top.len() == 1 && top[0].position >= newest.position,
        "the latest entry first: {top:?}"
    );
    // Pages below a position: newest first, each entry once, down to the first. Below the
    // newest, down to the second entry read before it: those two, in order, with only entries
    // read since (other runs') among them.
    let floor = log[1].position;
    let (mut below, mut from) = (Vec::new(), newest.position);
    while from > floor {
        let page = ok(repo.audit(Some(from), 2).await, "audit");
        let at: Vec<i64> = page.iter().map(|l| l.position).collect();
        assert!(!at.is_empty() && at.len() <= 2, "below {from}: {at:?}");
        assert!(at[0] < from && at.windows(2).all(|w| w[0] > w[1]), "{at:?}");
        from = at[at.len() - 1];
        below.extend(page);
    }
    let read_before: Vec<&AuditEntry> = below
        .iter()
        .filter(|l| l.position >= floor && log.iter().any(|k| k.position == l.position))
        .map(|l| &l.entry)
        .collect();
    assert_eq!(
        read_before,
        log.iter().take(2).map(|l| &l.entry).collect::<Vec<_>>(),
        "the page below the newest is what came before it"
    );
    let oldest = log.last().map(|l| l.position).unwrap_or_default();
    assert!(ok(repo.audit(Some(oldest), 10).await, "audit")
        .iter()
        .all(|l| l.position < oldest));
}

/// A session reads back with its operator's role and state; disabling an operator closes their
/// sessions; logout closes one.
pub async fn sessions_follow_their_operator(repo: &dyn LiveStores) {
    let op = operator(&format!("ops_{}@example.com", suffix()), Role::Operator);
    ok(
        repo.create_operator(&op, &audit("operator.create", &op.id))
            .await,
        "create_operator",
    );
    let (a, b) = (
        format!("{}{:052x}", suffix(), 1),
        format!("{}{:052x}", suffix(), 2),
    );
    let expires = now_ms() + 3_600_000;
    for t in [&a, &b] {
        assert!(ok(
            repo.open_session(t, &op.id, &op.password_hash, expires)
                .await,
            "open_session"
        ));
    }
    let nobody = format!("{}{:052x}", suffix(), 3);
    let opened = repo
        .open_session(&nobody, "op_nobody", &op.password_hash, expires)
        .await;
    assert!(
        !ok(opened, "open_session"),
        "no session for an unknown operator"
    );
    let s = ok(repo.session(&b).await, "session").expect("open");
    assert_eq!(
        (s.operator_id.as_str(), s.role, s.disabled, s.expires_at_ms),
        (op.id.as_str(), Role::Operator, false, expires)
    );
    assert_eq!(s.email, op.email);
    ok(repo.close_session(&a).await, "close_session");
    assert_eq!(ok(repo.session(&a).await, "session"), None);

    // A new password closes every session, as disabling does: the old one may be what leaked.
    let closes = |before: OperatorRecord, change: fn(&mut OperatorRecord), action: &'static str| {
        let b = b.clone();
        async move {
            let mut after = before.clone();
            change(&mut after);
            after.updated_at_ms += 1;
            let entry = audit(action, &before.id);
            let updated = repo.update_operator(&before, &after, &entry).await;
            assert_eq!(ok(updated, "update_operator"), OperatorUpdate::Updated);
            let left = ok(repo.session(&b).await, "session");
            assert_eq!(left, None, "{action} closes every session");
            after
        }
    };
    let op = closes(
        op,
        |o| o.password_hash = "$argon2id$another".into(),
        "operator.password",
    )
    .await;
    assert!(ok(
        repo.open_session(&b, &op.id, &op.password_hash, expires)
            .await,
        "open_session"
    ));
    let op = closes(op, |o| o.disabled = true, "operator.disable").await;
    // A login that read the operator before the disable, and opens its session after the disable
    // committed, opens nothing. (A session opened first is closed by the disable, above; the
    // shared lock that orders the two when they overlap is not raced here.)
    let late = format!("{}{:052x}", suffix(), 4);
    let opened = repo
        .open_session(&late, &op.id, &op.password_hash, expires)
        .await;
    assert!(
        !ok(opened, "open_session"),
        "no session for a disabled operator"
    );
    assert_eq!(ok(repo.session(&late).await, "session"), None);
}

/// A login that checked the password hash it read, and opens its session after a new password
/// committed (an admin's reset, or the owner's change), opens nothing: the old password no
/// longer signs in, however the two interleave. The new hash opens one.
pub async fn a_login_racing_a_new_password_opens_nothing(repo: &dyn LiveStores) {
    let op = operator(&format!("reset_{}@example.com", suffix()), Role::Operator);
    ok(
        repo.create_operator(&op, &audit("operator.create", &op.id))
            .await,
        "create_operator",
    );
    // The login reads the operator (and checks the password against its hash) ...
    let read = ok(repo.operator_by_email(&op.email).await, "operator_by_email");
    let checked = read.expect("created").password_hash;
    // ... an admin resets the password meanwhile ...
    let mut reset = op.clone();
    reset.password_hash = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdDI$bmV3".into();
    reset.updated_at_ms += 1;
    let entry = audit("operator.password_reset", &op.id);
    let updated = repo.update_operator(&op, &reset, &entry).await;
    assert_eq!(ok(updated, "update_operator"), OperatorUpdate::Updated);
    // ... and the login opens its session with the hash it checked: refused.
    let token = format!("{}{:052x}", suffix(), 5);
    let expires = now_ms() + 3_600_000;
    let opened = repo.open_session(&token, &op.id, &checked, expires).await;
    assert!(
        !ok(opened, "open_session"),
        "no session for a password replaced since it was checked"
    );
    assert_eq!(ok(repo.session(&token).await, "session"), None);
    let opened = repo
        .open_session(&token, &op.id, &reset.password_hash, expires)
        .await;
    assert!(
        ok(opened, "open_session"),
        "the new password's login opens one"
    );
    assert!(ok(repo.session(&token).await, "session").is_some());
}

/// Keys list without secrets, newest first; active keys carry the secret; a revoked key is
/// gone from the active ones, and revoking again finds nothing.
pub async fn api_keys_are_listed_without_secrets_and_revoked_once(repo: &dyn LiveStores) {
    let key = ApiKeyInfo {
        key_id: format!("ak_{}", suffix()),
        name: "game server eu-1".into(),
        created_by: "admin@example.com".into(),
        created_at_ms: now_ms(),
        revoked_at_ms: None,
    };
    let secret = format!("{}{}", suffix(), "s".repeat(40));
    ok(
        repo.create_api_key(
            None,
            &key,
            &secret,
            &audit("api_key.create", &key.key_id),
            UNCAPPED,
        )
        .await,
        "create_api_key",
    );
    assert!(ok(repo.api_keys(0).await, "api_keys").contains(&key));
    let active = ok(repo.active_api_keys().await, "active_api_keys");
    assert!(active.contains(&(key.key_id.clone(), secret.clone().into_bytes())));
    let revoked = ok(
        repo.revoke_api_key(&key.key_id, &audit("api_key.revoke", &key.key_id))
            .await,
        "revoke_api_key",
    )
    .expect("revoked");
    assert!(revoked.revoked_at_ms.is_some());
    assert!(!ok(repo.active_api_keys().await, "active_api_keys")
        .iter()
        .any(|(k, _)| *k == key.key_id));
    assert_eq!(
        ok(
            repo.revoke_api_key(&key.key_id, &audit("api_key.revoke", &key.key_id))
                .await,
            "revoke_api_key"
        ),
        None
    );
}

fn event(kind: &str, campaign_id: &str) -> CampaignEvent {
    CampaignEvent {
        kind: kind.into(),
        campaign_id: campaign_id.into(),
        at_ms: now_ms(),
        data: format!("{{\"campaignId\":\"{campaign_id}\"}}"),
    }
}

/// The campaigns `page` and every page after it (each after the last campaign of the one
/// before, until a short one), checked to be each campaign once in the listing's order (creation
/// time, then id, both descending): their ids in order.
async fn paged(repo: &dyn CampaignStore, first: CampaignPage<'_>) -> Vec<String> {
    let mut read: Vec<Campaign> = ok(repo.campaigns(first).await, "campaigns");
    let mut from = 0;
    while read.len() - from >= first.limit as usize {
        let page = CampaignPage {
            after: read.last().map(Campaign::position),
            ..first
        };
        let more = ok(repo.campaigns(page).await, "campaigns");
        from = read.len();
        read.extend(more);
    }
    let order: Vec<(i64, &str)> = read
        .iter()
        .map(|c| (c.created_at_ms, c.id.as_str()))
        .collect();
    assert!(order.windows(2).all(|w| w[0] > w[1]), "{order:?}");
    read.into_iter().map(|c| c.id).collect()
}

/// Pages of the campaigns list each one after the last of the page before, newest created first
/// and ties by id, with or without a state: together every campaign once, in order.
pub async fn campaign_pages_continue_where_the_last_ended(repo: &dyn LiveStores) {
    // Created before anything else in a shared database: a listing from just after them holds
    // them and only a later run's, run at the same time (an earlier run's are newer: its base,
    // ten times its clock negated, lies more than the four milliseconds these span above this
    // one's). The listing is checked whole, and compared on this run's campaigns.
    let base = -now_ms() * 10;
    let at = [base, base, base - 1, base - 2, base - 3];
    let mut made: Vec<Campaign> = at
        .iter()
        .enumerate()
        .map(|(k, at)| Campaign {
            created_at_ms: *at,
            ..campaign(&format!("page{k}"))
        })
        .collect();
    for c in &made {
        create(repo, c).await;
    }
    // The listing's order: creation time, then id, both descending.
    made.sort_by(|a, b| (b.created_at_ms, &b.id).cmp(&(a.created_at_ms, &a.id)));
    let ids: Vec<String> = made.iter().map(|c| c.id.clone()).collect();
    let mine = |listed: Vec<String>| -> Vec<String> {
        listed.into_iter().filter(|id| ids.contains(id)).collect()
    };
    let from_here = Some((base + 1, ""));
    for limit in [1, 2, 5, 10] {
        let page = CampaignPage {
            state: None,
            limit,
            after: from_here,
        };
        assert_eq!(mine(paged(repo, page).await), ids, "limit {limit}");
    }
    // One of them scheduled: the drafts' pages pass over it.
    let moved = &made[2];
    assert!(ok(
        repo.advance(
            &moved.id,
            CampaignState::Draft,
            CampaignState::Scheduled,
            None
        )
        .await,
        "advance"
    ));
    let drafts: Vec<String> = ids.iter().filter(|id| **id != moved.id).cloned().collect();
    let page = CampaignPage {
        state: Some(CampaignState::Draft),
        limit: 2,
        after: from_here,
    };
    assert_eq!(mine(paged(repo, page).await), drafts);
}

/// A campaign reads back as written; an update applies against its version only; a state moves
/// once from the state it is in, with its outbox event.
pub async fn campaigns_move_once_with_their_event(repo: &dyn LiveStores) {
    let c = campaign("moves");
    create(repo, &c).await;
    assert_eq!(
        ok(repo.campaign(&c.id).await, "campaign").as_ref(),
        Some(&c)
    );
    assert_eq!(ok(repo.campaign("cmp_nope").await, "campaign"), None);
    let drafts = ok(
        repo.campaigns(CampaignPage::first(Some(CampaignState::Draft), 1000))
            .await,
        "campaigns",
    );
    assert!(drafts.iter().any(|d| d.id == c.id));

    let mut next = c.clone();
    next.title = "Renamed".into();
    next.reward = Reward::Rank {
        window: liveops_core::Window::Weekly,
        tiers: vec![liveops_core::stores::Tier {
            from_rank: 1,
            to_rank: 3,
            item: "crown".into(),
        }],
    };
    next.updated_at_ms += 1;
    let change = audit("campaign.update", &c.id);
    let told = event("campaign.cancelled", &c.id);
    assert!(ok(
        repo.update_campaign(&c, &next, &change, Some(&told)).await,
        "update_campaign"
    ));
    // Changed meanwhile: nothing written, its event neither.
    assert!(!ok(
        repo.update_campaign(&c, &next, &change, Some(&told)).await,
        "update_campaign"
    ));
    let events = outbox(repo).await;
    let told = events
        .iter()
        .filter(|(_, e)| e.campaign_id == c.id && e.kind == "campaign.cancelled")
        .count();
    assert_eq!(told, 1, "the update's event is in the outbox once");
    assert_eq!(
        ok(repo.campaign(&c.id).await, "campaign"),
        Some(next.clone())
    );

    let e = event("campaign.live", &c.id);
    let (draft, scheduled, live) = (
        CampaignState::Draft,
        CampaignState::Scheduled,
        CampaignState::Live,
    );
    // Not in that state yet; then each move once.
    for (from, to, event, moves) in [
        (scheduled, live, Some(&e), false),
        (draft, scheduled, None, true),
        (scheduled, live, Some(&e), true),
        (scheduled, live, Some(&e), false),
    ] {
        let moved = ok(repo.advance(&c.id, from, to, event).await, "advance");
        assert_eq!(moved, moves, "{from:?} to {to:?}");
    }
    let events = outbox(repo).await;
    let mine: Vec<&CampaignEvent> = events
        .iter()
        .map(|(_, e)| e)
        .filter(|e| e.campaign_id == c.id && e.kind != "campaign.cancelled")
        .collect();
    assert_eq!(mine, [&e], "one event, from the move that happened");
    dispatch_events_of(repo, &c.id).await;
}

/// A change of a scheduled or live campaign written after its end matches nothing (checked
/// before the end, it waited for its write: cancelling it then would void its draw); a draft
/// past its end never ran and still changes.
pub async fn a_campaign_past_its_end_changes_only_as_a_draft(repo: &dyn LiveStores) {
    let now = now_ms();
    for (state, changes) in [
        (CampaignState::Live, false),
        (CampaignState::Scheduled, false),
        (CampaignState::Draft, true),
    ] {
        let c = Campaign {
            starts_at_ms: now - 60_000,
            ends_at_ms: now - 10,
            ..campaign("ended_unseen")
        };
        create_in(repo, &c, state).await;
        let before = ok(repo.campaign(&c.id).await, "campaign").expect("created");
        let mut next = before.clone();
        next.state = CampaignState::Cancelled;
        next.updated_at_ms = before.updated_at_ms + 1;
        let change = audit("campaign.cancel", &c.id);
        let written = ok(
            repo.update_campaign(&before, &next, &change, None).await,
            "update_campaign",
        );
        assert_eq!(written, changes, "{state:?}");
        let stored = ok(repo.campaign(&c.id).await, "campaign").expect("kept");
        let expected = if changes {
            CampaignState::Cancelled
        } else {
            state
        };
        assert_eq!(stored.state, expected, "{state:?}");
    }
}

/// `due` lists scheduled campaigns past their start and live ones past their end, not others.
pub async fn due_lists_what_the_scheduler_must_move(repo: &dyn LiveStores) {
    let now = now_ms();
    // Started before every other run's campaign (a later run's start further back, as in the
    // pages' check): first in the list, longest due first, however many other runs left due.
    let base = -now * 10;
    let mut starting = campaign("starting");
    starting.starts_at_ms = base;
    let mut later = campaign("later");
    later.starts_at_ms = now + 60_000;
    let mut ending = campaign("ending");
    ending.starts_at_ms = base - 1;
    ending.ends_at_ms = now - 1;
    for c in [&starting, &later] {
        scheduled(repo, c).await;
    }
    live(repo, &ending).await;
    let due: Vec<String> = ok(repo.due(now, 10_000).await, "due")
        .into_iter()
        .map(|c| c.id)
        .collect();
    assert!(
        due.contains(&starting.id) && due.contains(&ending.id),
        "{due:?}"
    );
    assert!(!due.contains(&later.id));
}

/// Entries need a live campaign; one per player and slot (the first stands); entrants are
/// distinct and sorted by bytes.
pub async fn entries_need_a_live_campaign_and_one_per_slot(repo: &dyn LiveStores) {
    let c = campaign("entries");
    create(repo, &c).await;
    let e = entry(&c.id, "player_b", "once", "aa");
    assert_eq!(
        ok(repo.enter(&e, NO_CAP).await, "enter"),
        Entered::NotLive(Some(CampaignState::Draft))
    );
    assert_eq!(
        ok(
            repo.enter(&entry("cmp_missing", "p", "once", "s"), NO_CAP)
                .await,
            "enter"
        ),
        Entered::NotLive(None)
    );
    assert!(ok(
        repo.advance(&c.id, CampaignState::Draft, CampaignState::Scheduled, None)
            .await,
        "advance"
    ));
    assert!(ok(
        repo.advance(&c.id, CampaignState::Scheduled, CampaignState::Live, None)
            .await,
        "advance"
    ));
    assert_eq!(
        ok(repo.enter(&e, NO_CAP).await, "enter"),
        Entered::Created(e.clone())
    );
    // The same call again (a retry of the store call), and the same signed request again as
    // the handler sends it (a new entry id): not a new entry.
    assert_eq!(
        ok(repo.enter(&e, NO_CAP).await, "enter"),
        Entered::Existing(e.clone())
    );
    let resent = Entry {
        entry_id: format!("ent_{}", suffix()),
        ..e.clone()
    };
    assert_eq!(
        ok(repo.enter(&resent, NO_CAP).await, "enter"),
        Entered::Existing(e.clone())
    );
    let again = entry(&c.id, "player_b", "once", "bb");
    assert_eq!(
        ok(repo.enter(&again, NO_CAP).await, "enter"),
        Entered::Existing(e.clone()),
        "the first entry of the slot stands"
    );
    let next_day = entry(&c.id, "player_b", "2026-12-03", "cc");
    assert!(matches!(
        ok(repo.enter(&next_day, NO_CAP).await, "enter"),
        Entered::Created(_)
    ));
    for p in ["player_a", "Player_z", "player_c"] {
        let e = entry(&c.id, p, "once", p);
        assert!(matches!(
            ok(repo.enter(&e, NO_CAP).await, "enter"),
            Entered::Created(_)
        ));
    }
    assert_eq!(
        ok(repo.entrants(&c.id).await, "entrants"),
        ["Player_z", "player_a", "player_b", "player_c"]
    );
    for (sig, want) in [
        (e.request_sig.as_str(), Some(e.clone())),
        ("sha256=never", None),
    ] {
        let got = ok(repo.entry_by_request(sig).await, "entry_by_request");
        assert_eq!(got, want, "{sig}");
    }
    // A signed request already entered, entering again for someone else (the race the
    // handler's `entry_by_request` check cannot see): a conflicting write to retry, which adds
    // nothing; never corrupt.
    let reused = Entry {
        request_sig: e.request_sig.clone(),
        ..entry(&c.id, "player_e", "once", "ee")
    };
    assert!(
        matches!(
            repo.enter(&reused, NO_CAP).await,
            Err(PortError::Unavailable(_))
        ),
        "a reused request_sig"
    );
    assert_eq!(ok(repo.entrants(&c.id).await, "entrants").len(), 4);

    let mine = ok(
        repo.entries_of("player_b", &[c.id.clone(), "cmp_other".into()])
            .await,
        "entries_of",
    );
    assert_eq!(mine.len(), 2);
    assert!(ok(
        repo.advance(&c.id, CampaignState::Live, CampaignState::Ended, None)
            .await,
        "advance"
    ));
    assert_eq!(
        ok(
            repo.enter(&entry(&c.id, "player_d", "once", "s"), NO_CAP)
                .await,
            "enter"
        ),
        Entered::NotLive(Some(CampaignState::Ended))
    );
}

/// Entrants read page by page from each page's last on: every distinct entrant once, in byte
/// order (upper case, digits and `_` included), with their count; a cursor need not be an
/// entrant; another campaign's and an unknown one's entrants are not listed.
pub async fn entrant_pages_continue_where_the_last_ended(repo: &dyn LiveStores) {
    let c = Campaign {
        entry_limit: EntryLimit::Daily,
        ..campaign("entrant_pages")
    };
    live(repo, &c).await;
    let other = campaign("entrant_pages_other");
    live(repo, &other).await;
    let players = [
        "player_b", "Player_z", "player_a", "_under", "A1", "a1", "Z9", "zz_top", "007", "0_7",
        "player_", "PLAYER", "p1", "p10", "p2",
    ];
    for (i, p) in players.iter().enumerate() {
        let e = entry(&c.id, p, "2026-12-02", &format!("page{i}"));
        assert!(matches!(
            ok(repo.enter(&e, NO_CAP).await, "enter"),
            Entered::Created(_)
        ));
    }
    // A second day's entry of one player, and another campaign's entrant: neither is listed.
    let again = entry(&c.id, "player_a", "2026-12-03", "page_again");
    assert!(matches!(
        ok(repo.enter(&again, NO_CAP).await, "enter"),
        Entered::Created(_)
    ));
    let elsewhere = entry(&other.id, "player_c", "once", "page_other");
    assert!(matches!(
        ok(repo.enter(&elsewhere, NO_CAP).await, "enter"),
        Entered::Created(_)
    ));

    let mut want: Vec<String> = players.iter().map(|p| (*p).to_owned()).collect();
    want.sort_unstable();
    assert_eq!(ok(repo.entrants(&c.id).await, "entrants"), want);
    assert_eq!(ok(repo.entrant_count(&c.id).await, "entrant_count"), 15);
    for limit in [1, 4, 15, 100] {
        let (mut read, mut after) = (Vec::new(), None::<String>);
        loop {
            let page = ok(
                repo.entrants_page(&c.id, after.as_deref(), limit).await,
                "entrants_page",
            );
            assert!(page.len() <= limit as usize, "{page:?}");
            read.extend(page.iter().cloned());
            match page.last() {
                Some(last) if page.len() == limit as usize => after = Some(last.clone()),
                _ => break,
            }
        }
        assert_eq!(read, want, "pages of {limit}");
    }
    // From a cursor that is no entrant: the entrants after it.
    let from_p = ok(
        repo.entrants_page(&c.id, Some("p"), 3).await,
        "entrants_page",
    );
    assert_eq!(from_p, ["p1", "p10", "p2"]);
    let past_all = ok(
        repo.entrants_page(&c.id, Some("zz_top"), 3).await,
        "entrants_page",
    );
    assert!(past_all.is_empty(), "{past_all:?}");
    let none = ok(
        repo.entrants_page("cmp_missing", None, 3).await,
        "entrants_page",
    );
    assert!(none.is_empty(), "{none:?}");
    assert_eq!(
        ok(repo.entrant_count("cmp_missing").await, "entrant_count"),
        0
    );
    assert_eq!(ok(repo.entrant_count(&other.id).await, "entrant_count"), 1);
}

fn outcome(campaign_id: &str, winners: &[&str]) -> Outcome {
    Outcome {
        campaign_id: campaign_id.into(),
        algorithm: "liveops-draw-v1".into(),
        entrants: vec!["a".into(), "b".into(), "c".into()],
        entrants_hash: "ab".repeat(32),
        seed: Some("cd".repeat(32)),
        commitment: Some("ef".repeat(32)),
        winner_count: Some(2),
        source: None,
        awards: winners
            .iter()
            .enumerate()
            .map(|(i, w)| Award {
                player_id: (*w).into(),
                item: "gold_chest".into(),
                rank: i as u32 + 1,
            })
            .collect(),
        decided_at_ms: now_ms(),
    }
}

/// A draw of 400 000 entrants with 50-character ids (21 MB of entrants, past MySQL's
/// MEDIUMTEXT and MariaDB's default packet) and 20 000 awards is recorded and read back whole.
pub async fn a_large_draw_is_recorded_whole(repo: &dyn LiveStores) {
    let c = campaign("large_draw");
    live(repo, &c).await;
    let mut large = outcome(&c.id, &[]);
    large.entrants = (0..400_000).map(|i| format!("player_{i:043}")).collect();
    large.awards = (0..20_000)
        .map(|i| Award {
            player_id: large.entrants[i * 20].clone(),
            item: "gold_chest".into(),
            rank: u32::try_from(i).unwrap_or(u32::MAX) + 1,
        })
        .collect();
    let recorded = ok(repo.record_outcome(&large, None).await, "record_outcome");
    assert!(recorded, "the outcome recorded");
    let read = ok(repo.outcome(&c.id).await, "outcome");
    assert!(read.as_ref() == Some(&large), "the outcome read back whole");
}

/// The first outcome recorded stands; its event is written once.
pub async fn outcomes_are_recorded_once(repo: &dyn LiveStores) {
    let c = campaign("outcome");
    live(repo, &c).await;
    assert_eq!(ok(repo.outcome(&c.id).await, "outcome"), None);
    assert_eq!(
        ok(repo.outcome_summary(&c.id).await, "outcome_summary"),
        None
    );
    assert!(!ok(repo.decided(&c.id).await, "decided"), "not decided yet");
    let first = outcome(&c.id, &["b", "a"]);
    let e = event("draw.completed", &c.id);
    assert!(
        ok(
            repo.record_outcome(&first, Some(&e)).await,
            "record_outcome"
        ),
        "the first is recorded"
    );
    let mut other = outcome(&c.id, &["c"]);
    other.source = Some("weekly 2026-W49".into());
    assert!(
        !ok(
            repo.record_outcome(&other, Some(&e)).await,
            "record_outcome"
        ),
        "a second is not recorded"
    );
    assert_eq!(
        ok(repo.outcome_summary(&c.id).await, "outcome_summary"),
        Some(first.clone().into_summary().0),
        "the summary is the outcome without its entrants"
    );
    assert_eq!(ok(repo.outcome(&c.id).await, "outcome"), Some(first));
    assert!(ok(repo.decided(&c.id).await, "decided"), "decided");
    let events = outbox(repo).await;
    assert_eq!(
        events
            .iter()
            .filter(|(_, ev)| ev.campaign_id == c.id && ev.kind == "draw.completed")
            .count(),
        1
    );
    dispatch_events_of(repo, &c.id).await;
}

/// The XP read sees what progression committed, per season.
pub async fn season_xp_reads_progression(repo: &dyn LiveStores) {
    let player = format!("xp_{}", suffix());
    assert_eq!(ok(repo.season_xp(&player, 3).await, "season_xp"), 0);
    let commit = ProgressCommit {
        event_ids: vec![uuid::Uuid::now_v7()],
        xp: vec![XpGain {
            player_id: player.clone(),
            season: 3,
            xp: 1200,
            at_ms: now_ms(),
        }],
        ..Default::default()
    };
    ok(
        repo.commit_progress(&format!("conformance_{}", suffix()), &commit)
            .await,
        "commit_progress",
    );
    assert_eq!(ok(repo.season_xp(&player, 3).await, "season_xp"), 1200);
    assert_eq!(ok(repo.season_xp(&player, 4).await, "season_xp"), 0);
}

/// A winner is settled once: the second settlement writes nothing, and the inbox holds one
/// message of the campaign; everyone's messages show in every inbox.
pub async fn settlement_writes_one_message_per_winner(repo: &dyn LiveStores) {
    let campaign_id = format!("cmp_settle_{}", suffix());
    let player = format!("winner_{}", suffix());
    let first = message(Some(&player), Some(&campaign_id), 3_600_000);
    let settled = repo.settle(&campaign_id, std::slice::from_ref(&first));
    assert_eq!(ok(settled.await, "settle"), 1);
    let retry = message(Some(&player), Some(&campaign_id), 3_600_000);
    let settled = repo.settle(&campaign_id, std::slice::from_ref(&retry));
    assert_eq!(ok(settled.await, "settle"), 0);
    let broadcast = message(None, None, 3_600_000);
    let sent = send(repo, None, std::slice::from_ref(&broadcast)).await;
    assert_eq!(sent, KeyedOutcome::Written);
    let of_campaign = inbox_of(repo, &player, |m| {
        m.campaign_id.as_deref() == Some(campaign_id.as_str())
    });
    assert_eq!(of_campaign.await, std::slice::from_ref(&first));
    let someone_else = ok(
        repo.inbox(&format!("other_{}", suffix()), page(1000, None))
            .await,
        "inbox",
    );
    assert!(someone_else.iter().any(|l| l.message == broadcast));
    assert!(!someone_else.iter().any(|l| l.message == first));
}

/// A group of winners is paid in one call, more than a statement holds on any backend: each
/// winner not settled before gets their message, in one run of positions; those settled before
/// keep theirs and get nothing; a group naming a message to every player writes nothing.
pub async fn settlement_pays_a_group_once_per_winner(repo: &dyn LiveStores) {
    let campaign_id = format!("cmp_group_{}", suffix());
    let players: Vec<String> = (0..300)
        .map(|i| format!("grp_{}_{i:03}", suffix()))
        .collect();
    let messages = |range: std::ops::Range<usize>| -> Vec<InboxMessage> {
        players[range]
            .iter()
            .map(|p| message(Some(p), Some(&campaign_id), 3_600_000))
            .collect()
    };
    let before = messages(0..100);
    let settled = repo.settle(&campaign_id, &before);
    assert_eq!(ok(settled.await, "settle"), 100);
    let mut everyone = messages(0..300);
    everyone.push(message(None, Some(&campaign_id), 3_600_000));
    let refused = repo.settle(&campaign_id, &everyone).await;
    assert!(matches!(refused, Err(PortError::Corrupt(_))), "{refused:?}");
    everyone.pop();
    let settled = repo.settle(&campaign_id, &everyone);
    assert_eq!(
        ok(settled.await, "settle"),
        200,
        "the 200 not settled before"
    );
    let mut positions = Vec::new();
    for (i, p) in players.iter().enumerate() {
        // Deep enough for whatever other runs send to every player meanwhile.
        let inbox = ok(repo.inbox(p, page(1000, None)).await, "inbox");
        let mine: Vec<&ListedMessage> = inbox
            .iter()
            .filter(|l| l.message.campaign_id.as_deref() == Some(campaign_id.as_str()))
            .collect();
        let expected = if i < 100 { &before[i] } else { &everyone[i] };
        assert_eq!(mine.len(), 1, "{p}: one message");
        assert_eq!(&mine[0].message, expected, "{p}: the first settlement's");
        if i >= 100 {
            positions.push(mine[0].position);
        }
    }
    positions.sort_unstable();
    let run = positions[positions.len() - 1] - positions[0];
    assert_eq!(run, 199, "one run of positions: {positions:?}");
}

/// A write under a key happens once: the same request again writes nothing and gets the first
/// answer, another request under the key writes nothing either, and looking a key up tells the
/// same without writing; keys are per operator, one key for all of an operator's creates.
pub async fn keyed_writes_happen_once(repo: &dyn LiveStores) {
    // Sends: one message for three sends under one key.
    let player = format!("keyed_{}", suffix());
    let key = request_key("op_a", "digest-1");
    let first = [message(Some(&player), None, 3_600_000)];
    let first_keyed = keyed(&key, &first);
    assert_eq!(
        send(repo, Some(&first_keyed), &first).await,
        KeyedOutcome::Written
    );
    let retry = [message(Some(&player), None, 3_600_000)];
    let again = send(repo, Some(&keyed(&key, &retry)), &retry).await;
    assert_eq!(again, KeyedOutcome::Replayed(first_keyed.answer.clone()));
    let other = RequestKey {
        request_hash: "digest-2".into(),
        ..key.clone()
    };
    let looked = ok(repo.answered(&key).await, "answered");
    assert_eq!(looked, Some(KeyedOutcome::Replayed(first_keyed.answer)));
    let looked = ok(repo.answered(&other).await, "answered");
    assert_eq!(looked, Some(KeyedOutcome::KeyReused));
    let unused = request_key("op_a", "digest-1");
    assert_eq!(ok(repo.answered(&unused).await, "answered"), None);
    let reused = send(repo, Some(&keyed(&other, &retry)), &retry).await;
    assert_eq!(reused, KeyedOutcome::KeyReused);
    let mine = inbox_of(repo, &player, |m| m.player_id.is_some()).await;
    assert_eq!(mine, [first[0].clone()], "one message for three sends");
    let theirs = RequestKey {
        operator_id: format!("op_b_{}", suffix()),
        ..key.clone()
    };
    let sent = send(repo, Some(&keyed(&theirs, &retry)), &retry).await;
    assert_eq!(sent, KeyedOutcome::Written, "another operator's key");

    // Creates: a campaign, a webhook, an API key, each once under its key.
    let campaign_key = request_key("op_c", "campaign");
    let (one, two) = (campaign("keyed"), campaign("keyed"));
    assert_eq!(
        create_keyed(repo, &campaign_key, &one).await,
        KeyedOutcome::Written
    );
    let again = create_keyed(repo, &campaign_key, &two).await;
    assert_eq!(
        again,
        KeyedOutcome::Replayed(keyed(&campaign_key, &one.id).answer)
    );
    assert!(ok(repo.campaign(&one.id).await, "campaign").is_some());
    assert_eq!(
        ok(repo.campaign(&two.id).await, "campaign"),
        None,
        "not created twice"
    );
    let hook = webhook();
    let audit_hook = audit("webhook.create", &hook.id);
    let in_use = RequestKey {
        request_hash: "webhook".into(),
        ..campaign_key.clone()
    };
    let refused = repo
        .create_webhook(
            Some(&keyed(&in_use, &hook.id)),
            &hook,
            &audit_hook,
            UNCAPPED,
        )
        .await;
    assert_eq!(
        ok(refused, "create_webhook"),
        CappedOutcome::Keyed(KeyedOutcome::KeyReused),
        "the campaign's key"
    );
    assert!(!ok(repo.webhooks().await, "webhooks").contains(&hook));
    let hook_key = request_key("op_c", "webhook");
    let written = repo
        .create_webhook(
            Some(&keyed(&hook_key, &hook.id)),
            &hook,
            &audit_hook,
            UNCAPPED,
        )
        .await;
    assert_eq!(ok(written, "create_webhook"), WRITTEN);
    let api_key = request_key("op_d", "api-key");
    let mut answers = Vec::new();
    for _ in 0..2 {
        let info = ApiKeyInfo {
            key_id: format!("ak_{}", suffix()),
            name: "keyed".into(),
            created_by: "admin@example.com".into(),
            created_at_ms: now_ms(),
            revoked_at_ms: None,
        };
        let keyed = keyed(&api_key, &info.key_id);
        let audit = audit("api_key.create", &info.key_id);
        let made = repo.create_api_key(Some(&keyed), &info, "secret", &audit, UNCAPPED);
        answers.push((info.key_id.clone(), ok(made.await, "create_api_key")));
    }
    assert_eq!(answers[0].1, WRITTEN);
    assert_eq!(
        answers[1].1,
        CappedOutcome::Keyed(KeyedOutcome::Replayed(
            keyed(&api_key, &answers[0].0).answer
        ))
    );
    let listed = ok(repo.api_keys(0).await, "api_keys");
    assert!(listed.iter().any(|k| k.key_id == answers[0].0));
    assert!(
        !listed.iter().any(|k| k.key_id == answers[1].0),
        "not created twice"
    );
}

/// Asserts one of the racing writes under `key` was written and every other one was answered
/// with the answer the key now holds (the written one's).
async fn one_written(repo: &dyn LiveStores, key: &RequestKey, got: &[KeyedOutcome], what: &str) {
    let held = ok(repo.answered(key).await, "answered");
    let Some(KeyedOutcome::Replayed(answer)) = held else {
        panic!("{what}: the key holds no answer: {held:?}");
    };
    let written = got.iter().filter(|o| **o == KeyedOutcome::Written).count();
    assert_eq!(written, 1, "{what}: {got:?}");
    let replayed = KeyedOutcome::Replayed(answer);
    let others = got.iter().filter(|o| **o != KeyedOutcome::Written);
    assert!(
        others.into_iter().all(|o| *o == replayed),
        "{what}: {got:?}"
    );
}

/// Creates `c` under `key`.
async fn create_keyed(repo: &dyn LiveStores, key: &RequestKey, c: &Campaign) -> KeyedOutcome {
    let audit = audit("campaign.create", &c.id);
    let keyed = keyed(key, &c.id);
    ok(
        repo.create_campaign(Some(&keyed), c, &audit).await,
        "create_campaign",
    )
}

/// A webhook to a public host, subscribed to one event.
pub(super) fn webhook() -> Webhook {
    Webhook {
        id: format!("whk_{}", suffix()),
        url: "https://hooks.example.com/liveops".into(),
        events: vec!["campaign.live".into()],
        secret: "whsec_0123456789abcdef".into(),
        created_by: "ops@example.com".into(),
        created_at_ms: now_ms(),
    }
}

/// Creates each of `hooks`, audited.
async fn create_webhooks(repo: &dyn LiveStores, hooks: &[&Webhook]) {
    for h in hooks {
        let entry = audit("webhook.create", &h.id);
        let made = repo.create_webhook(None, h, &entry, UNCAPPED).await;
        assert_eq!(ok(made, "create_webhook"), WRITTEN);
    }
}

/// A pending `campaign.live` delivery of `event_id` to `hook`, with an empty body, ids of its
/// own, never tried, due at `due_ms` and created at `created_at_ms`.
fn pending(hook: &Webhook, event_id: i64, due_ms: i64, created_at_ms: i64) -> Delivery {
    Delivery {
        id: format!("dlv_{}", suffix()),
        webhook_id: hook.id.clone(),
        event_id,
        event_public_id: format!("evt_{}", suffix()),
        kind: "campaign.live".into(),
        body: "{}".into(),
        state: DeliveryState::Pending,
        attempts: 0,
        next_attempt_at_ms: due_ms,
        created_at_ms,
    }
}

/// Records `d`'s first attempt, made when it was due and answered HTTP `status`, as finishing
/// it in `state`, under the lease it was queued at (its due time): whether it was recorded.
pub async fn finish(
    repo: &(impl WebhookStore + ?Sized),
    d: &Delivery,
    state: DeliveryState,
    status: u16,
) -> PortResult<bool> {
    let tried = Attempt {
        attempt: 1,
        at_ms: d.next_attempt_at_ms,
        status: Some(status),
        error: None,
        duration_ms: 5,
    };
    let finished = Delivery {
        state,
        attempts: 1,
        ..d.clone()
    };
    repo.record_attempt(d.next_attempt_at_ms, &finished, &tried)
        .await
}

/// The messages in `player`'s inbox that `keep` keeps, newest first.
async fn inbox_of(
    repo: &dyn LiveStores,
    player: &str,
    keep: impl Fn(&InboxMessage) -> bool,
) -> Vec<InboxMessage> {
    let inbox = ok(repo.inbox(player, page(1000, None)).await, "inbox");
    inbox
        .into_iter()
        .map(|l| l.message)
        .filter(|m| keep(m))
        .collect()
}

/// Sends `messages` (under a key, if `keyed`) with an audit entry.
async fn send(
    repo: &dyn LiveStores,
    keyed: Option<&Keyed>,
    messages: &[InboxMessage],
) -> KeyedOutcome {
    let audit = audit("inbox.send", "players");
    ok(
        repo.send_messages(keyed, messages, &audit).await,
        "send_messages",
    )
}

/// A key of `operator` (made unique) for a request whose digest is `digest`.
pub(super) fn request_key(operator: &str, digest: &str) -> RequestKey {
    RequestKey {
        operator_id: format!("{operator}_{}", suffix()),
        key: "retry-me".into(),
        route: "POST /conformance".into(),
        request_hash: digest.into(),
    }
}

/// `key` with an answer naming what the write makes (`made`: ids, or anything serializable).
pub(super) fn keyed(key: &RequestKey, made: &impl std::fmt::Debug) -> Keyed {
    Keyed {
        key: key.clone(),
        answer: format!("{made:?}"),
    }
}

/// A claim issues its receipts once; a second claim (the same one again included) gets the
/// first one's, also after the message expired; another player's message is not found; an expired one says when it expired.
pub async fn claims_issue_one_set_of_receipts(repo: &dyn LiveStores) {
    let player = format!("claimer_{}", suffix());
    let m = message(Some(&player), None, 3_600_000);
    let expired = message(Some(&player), None, -1);
    let other = message(Some(&player), None, 3_600_000);
    let sent = send(repo, None, &[m.clone(), expired.clone(), other.clone()]).await;
    assert_eq!(sent, KeyedOutcome::Written);
    let first = claim(&m, &player, "one");
    let now = now_ms();
    assert_eq!(
        ok(repo.claim(&first, now).await, "claim"),
        ClaimOutcome::Claimed(first.clone())
    );
    // The very same claim again (one signed request sent twice, its message without
    // attachments, so both carry the same receipts): the second is not a new claim.
    assert_eq!(
        ok(repo.claim(&first, now).await, "claim"),
        ClaimOutcome::AlreadyClaimed(first.clone())
    );
    assert_eq!(
        ok(repo.claim(&claim(&m, &player, "two"), now).await, "claim"),
        ClaimOutcome::AlreadyClaimed(first.clone())
    );
    assert_eq!(
        ok(
            repo.claim(&claim(&m, "someone_else", "x"), now).await,
            "claim"
        ),
        ClaimOutcome::NotFound
    );
    assert_eq!(
        ok(
            repo.claim(&claim(&expired, &player, "late"), now).await,
            "claim"
        ),
        ClaimOutcome::Expired(expired.expires_at_ms)
    );
    // A signed request that claimed one message, claiming another of the player's (the race
    // the handler's `claim_by_request` check cannot see): a conflicting write to retry, which
    // claims nothing; never corrupt.
    let reused = InboxClaim {
        request_sig: first.request_sig.clone(),
        ..claim(&other, &player, "reused")
    };
    assert!(
        matches!(
            repo.claim(&reused, now).await,
            Err(PortError::Unavailable(_))
        ),
        "a reused request_sig"
    );
    assert_eq!(
        ok(repo.claim_of(&player, &other.message_id).await, "claim_of"),
        None
    );
    // Claimed, then expired: the claim made still stands and is answered.
    assert_eq!(
        ok(
            repo.claim(&claim(&m, &player, "after"), m.expires_at_ms + 1)
                .await,
            "claim"
        ),
        ClaimOutcome::AlreadyClaimed(first.clone())
    );
    assert_eq!(
        ok(repo.claim_of(&player, &m.message_id).await, "claim_of"),
        Some(first.clone())
    );
    for (sig, want) in [
        (first.request_sig.as_str(), Some(first.clone())),
        ("sha256=never", None),
    ] {
        let got = ok(repo.claim_by_request(sig).await, "claim_by_request");
        assert_eq!(got, want, "{sig}");
    }
    assert_eq!(
        ok(repo.message(&player, &m.message_id).await, "message"),
        Some(m.clone())
    );
    assert_eq!(
        ok(repo.message("someone_else", &m.message_id).await, "message"),
        None
    );
    // Pages deep enough for whatever other runs send to every player meanwhile.
    let inbox = ok(repo.inbox(&player, page(1000, None)).await, "inbox");
    let claimed = inbox.iter().find(|l| l.message.message_id == m.message_id);
    assert_eq!(claimed.map(|l| l.claim.clone()), Some(Some(first)));
    // Live at a time: the expired message is left out, the claimable one kept.
    let ids = |inbox: Vec<ListedMessage>| -> Vec<String> {
        inbox.into_iter().map(|l| l.message.message_id).collect()
    };
    let all = ids(ok(repo.inbox(&player, page(1000, None)).await, "inbox"));
    assert!(all.contains(&expired.message_id), "{all:?}");
    let live = ids(ok(
        repo.inbox(&player, page(1000, Some(now))).await,
        "inbox",
    ));
    assert!(
        live.contains(&m.message_id) && !live.contains(&expired.message_id),
        "{live:?}"
    );
}

/// An inbox read page by page lists every message once, in the listing's order: each page
/// starts below the last message of the one before; the messages of one send are listed by
/// creation time, ties broken by id; a message written later is listed above them, whatever its
/// creation time. Messages to every player (other runs' among them, sent at any moment) are
/// listed with the player's own: the order is checked on the player's.
pub async fn inbox_pages_continue_where_the_last_ended(repo: &dyn LiveStores) {
    let player = format!("pager_{}", suffix());
    let t = now_ms();
    let mine: Vec<InboxMessage> = [t, t, t, t - 1_000, t - 2_000]
        .into_iter()
        .enumerate()
        .map(|(i, at)| InboxMessage {
            // Ids that differ in case among the ties: the order is by bytes everywhere.
            message_id: format!("msg_{}{i}_{}", if i % 2 == 0 { "P" } else { "p" }, suffix()),
            created_at_ms: at,
            expires_at_ms: at + 3_600_000,
            ..message(Some(&player), None, 0)
        })
        .collect();
    assert_eq!(send(repo, None, &mine).await, KeyedOutcome::Written);
    let mut want: Vec<(i64, String)> = mine
        .iter()
        .map(|m| (m.created_at_ms, m.message_id.clone()))
        .collect();
    want.sort_by(|a, b| b.cmp(a));

    // Pages of two down to the last of the five: each message once, positions falling; the
    // five in order among them.
    let theirs = |l: &ListedMessage| l.message.player_id.as_deref() == Some(player.as_str());
    let (mut seen, mut below) = (Vec::<ListedMessage>::new(), None);
    while seen.iter().filter(|l| theirs(l)).count() < mine.len() {
        let next = InboxPage {
            limit: 2,
            live_at_ms: None,
            below,
        };
        let got = ok(repo.inbox(&player, next).await, "inbox");
        assert!(!got.is_empty() && got.len() <= 2, "{got:?}");
        let last = seen.last().map_or(i64::MAX, |l| l.position);
        assert!(got[0].position < last, "below the page before: {got:?}");
        below = got.last().map(|l| InboxBelow::Position(l.position));
        seen.extend(got);
    }
    let positions: Vec<i64> = seen.iter().map(|l| l.position).collect();
    assert!(positions.windows(2).all(|w| w[0] > w[1]), "{positions:?}");
    let to_all = |l: &ListedMessage| l.message.player_id.is_none();
    assert!(seen.iter().all(|l| theirs(l) || to_all(l)), "{seen:?}");
    let listed: Vec<(i64, String)> = seen
        .iter()
        .filter(|l| theirs(l))
        .map(|l| (l.message.created_at_ms, l.message.message_id.clone()))
        .collect();
    assert_eq!(listed, want);

    // Written later, created before them all: listed first.
    let later = InboxMessage {
        created_at_ms: t - 60_000,
        ..message(Some(&player), None, 3_600_000)
    };
    assert_eq!(
        send(repo, None, std::slice::from_ref(&later)).await,
        KeyedOutcome::Written
    );
    let top = ok(repo.inbox(&player, page(1000, None)).await, "inbox");
    assert!(top.iter().all(|l| theirs(l) || to_all(l)), "{top:?}");
    let first = top.iter().find(|l| theirs(l)).map(|l| &l.message);
    assert_eq!(first, Some(&later));
}

/// A player's inbox read again from the top lists what was written since the last read above
/// everything that read listed, also while eight senders write at once (each message made, as
/// a handler makes it, a moment before its write): a client that syncs by reading down to the
/// first message it has seen misses none.
pub async fn messages_written_since_a_read_are_listed_above_it<S: LiveStores + 'static>(
    repo: Arc<S>,
) {
    const SENDERS: usize = 8;
    const EACH: usize = 12;
    let player = format!("syncer_{}", suffix());
    let senders: Vec<usize> = (0..SENDERS).collect();
    let sending = at_once(&senders, |_| {
        let (repo, player) = (repo.clone(), player.clone());
        async move {
            for _ in 0..EACH {
                let m = message(Some(&player), None, 3_600_000);
                let pause = rand::random::<u64>() % 3;
                tokio::time::sleep(std::time::Duration::from_millis(pause)).await;
                send(repo.as_ref(), None, std::slice::from_ref(&m)).await;
            }
        }
    });
    let reading = async {
        let mut seen = std::collections::HashSet::<String>::new();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            assert!(
                std::time::Instant::now() < deadline,
                "{} of the messages listed",
                seen.len()
            );
            let mine = |m: &InboxMessage| m.player_id.as_deref() == Some(player.as_str());
            let listed = inbox_of(repo.as_ref(), &player, mine).await;
            let ids: Vec<&str> = listed.iter().map(|m| m.message_id.as_str()).collect();
            let first_seen = ids.iter().position(|id| seen.contains(*id));
            let below = first_seen.map_or(&[][..], |k| &ids[k..]);
            let missed: Vec<&&str> = below.iter().filter(|id| !seen.contains(**id)).collect();
            assert!(
                missed.is_empty(),
                "written since the last read but listed below what it listed: {missed:?}"
            );
            seen.extend(ids.iter().map(|id| (*id).to_owned()));
            if seen.len() == SENDERS * EACH {
                return;
            }
            tokio::task::yield_now().await;
        }
    };
    let ((), _) = tokio::join!(reading, sending);
}

/// Events become deliveries once per webhook; a due delivery is leased by one caller; attempts
/// read back with the delivery, recorded only under the lease they were sent under; deleting a
/// webhook dead-letters what it had pending, and a late attempt does not bring it back.
pub async fn webhook_deliveries_are_queued_once_and_leased_once(repo: &dyn LiveStores) {
    let hook = webhook();
    create_webhooks(repo, &[&hook]).await;
    assert!(ok(repo.webhooks().await, "webhooks").contains(&hook));
    let c = campaign("hooked");
    live(repo, &c).await;
    let e = event("campaign.live", &c.id);
    ok(
        repo.advance(&c.id, CampaignState::Live, CampaignState::Ended, Some(&e))
            .await,
        "advance",
    );
    let events = outbox(repo).await;
    let (event_id, _) = events
        .iter()
        .find(|(_, ev)| ev.campaign_id == c.id)
        .expect("the event is in the outbox");
    let now = now_ms();
    let delivery = pending(&hook, *event_id, now - 1, now);
    let twin = Delivery {
        id: format!("dlv_{}", suffix()),
        ..delivery.clone()
    };
    ok(
        repo.enqueue(&[*event_id], std::slice::from_ref(&delivery))
            .await,
        "enqueue",
    );
    ok(repo.enqueue(&[*event_id], &[twin]).await, "enqueue");
    assert!(!outbox(repo).await.iter().any(|(id, _)| id == event_id));
    let listed = ok(
        repo.deliveries(&hook.id, DeliveryPage::newest(10)).await,
        "deliveries",
    );
    assert_eq!(listed.len(), 1, "one delivery per webhook and event");
    assert!(listed[0].0.body.is_empty(), "listed without its body");
    assert_eq!(
        listed[0].0.event_public_id, delivery.event_public_id,
        "listed with the event id it was queued with"
    );

    let leased = ok(
        repo.lease_due(now, now + 30_000, 100, 100, &HashMap::new())
            .await,
        "lease_due",
    );
    let mine = leased
        .iter()
        .find(|d| d.delivery.id == delivery.id)
        .expect("due and leased");
    assert_eq!(mine.delivery.body, delivery.body, "leased with its body");
    assert_eq!(
        (mine.url.as_str(), mine.secret.as_str()),
        (hook.url.as_str(), hook.secret.as_str())
    );
    assert!(
        !ok(
            repo.lease_due(now, now + 30_000, 100, 100, &HashMap::new())
                .await,
            "lease_due"
        )
        .iter()
        .any(|d| d.delivery.id == delivery.id),
        "leased once"
    );

    let attempt = Attempt {
        attempt: 1,
        at_ms: now,
        status: Some(500),
        error: Some("HTTP 500".into()),
        duration_ms: 12,
    };
    let mut tried = mine.delivery.clone();
    tried.attempts = 1;
    tried.next_attempt_at_ms = now + 1000;
    let record = |until: i64, d: Delivery, a: Attempt| async move {
        ok(repo.record_attempt(until, &d, &a).await, "record_attempt")
    };
    assert!(
        !record(now - 1, tried.clone(), attempt.clone()).await,
        "not under a lease it no longer holds"
    );
    assert!(record(now + 30_000, tried.clone(), attempt.clone()).await);
    let listed = ok(
        repo.deliveries(&hook.id, DeliveryPage::newest(10)).await,
        "deliveries",
    );
    assert_eq!(listed[0].0.attempts, 1);
    assert_eq!(listed[0].1, std::slice::from_ref(&attempt));

    // Due again: a second lease (other runs' due deliveries may come first on a shared
    // database); the first sender, late, records nothing over it.
    let none = HashMap::new();
    loop {
        let leased = repo.lease_due(now + 2000, now + 60_000, 100, 100, &none);
        let leased = ok(leased.await, "lease_due");
        assert!(!leased.is_empty(), "due again and leased");
        if leased.iter().any(|d| d.delivery.id == delivery.id) {
            break;
        }
    }
    let second = Attempt {
        attempt: 2,
        status: Some(200),
        error: None,
        ..attempt.clone()
    };
    let delivered = Delivery {
        state: DeliveryState::Delivered,
        attempts: 2,
        ..tried.clone()
    };
    assert!(!record(now + 30_000, delivered.clone(), second.clone()).await);
    let failed_again = Delivery {
        attempts: 2,
        next_attempt_at_ms: now + 5000,
        ..tried.clone()
    };
    assert!(record(now + 60_000, failed_again, attempt_2_failed(&second)).await);
    let listed = ok(
        repo.deliveries(&hook.id, DeliveryPage::newest(10)).await,
        "deliveries",
    );
    assert_eq!(
        (listed[0].0.state, listed[0].0.attempts),
        (DeliveryState::Pending, 2)
    );
    assert_eq!(listed[0].1, [attempt.clone(), attempt_2_failed(&second)]);

    assert!(ok(
        repo.delete_webhook(&hook.id, &audit("webhook.delete", &hook.id))
            .await,
        "delete_webhook"
    ));
    assert!(!ok(
        repo.delete_webhook(&hook.id, &audit("webhook.delete", &hook.id))
            .await,
        "delete_webhook"
    ));
    assert!(!ok(repo.webhooks().await, "webhooks").contains(&hook));
    // A sender that leased it before the delete records nothing: it stays dead.
    assert!(!record(now + 5000, delivered, second).await);
    let listed = ok(
        repo.deliveries(&hook.id, DeliveryPage::newest(10)).await,
        "deliveries",
    );
    assert_eq!(
        (listed[0].0.state, listed[0].0.attempts, listed[0].1.len()),
        (DeliveryState::Dead, 2, 2)
    );

    // A fan-out that read the webhooks before the delete queues nothing for it after: no
    // delivery that no sender would ever take, nor a delete mark as dead.
    let late = Delivery {
        id: format!("dlv_{}", suffix()),
        webhook_id: hook.id.clone(),
        event_id: *event_id + 1_000_000,
        event_public_id: format!("evt_{}", suffix()),
        ..delivery.clone()
    };
    ok(
        repo.enqueue(&[], std::slice::from_ref(&late)).await,
        "enqueue",
    );
    let listed = ok(
        repo.deliveries(&hook.id, DeliveryPage::newest(10)).await,
        "deliveries",
    );
    assert!(
        listed.iter().all(|(d, _)| d.id != late.id),
        "nothing queued for a deleted webhook"
    );
}

/// The outbox events not yet turned into deliveries (10 000 at most), with their data.
async fn outbox(repo: &dyn LiveStores) -> Vec<(i64, CampaignEvent)> {
    let waiting = ok(repo.undispatched(10_000).await, "undispatched");
    let ids: Vec<i64> = waiting.iter().map(|e| e.id).collect();
    let read = ok(repo.undelivered_events(&ids).await, "undelivered_events");
    read.into_iter().map(|e| (e.id, e.event)).collect()
}

/// Marks the outbox events of `campaign_id` dispatched, queued to no webhook: a run leaves
/// none of its events in the outbox every run reads the oldest of.
async fn dispatch_events_of(repo: &dyn LiveStores, campaign_id: &str) {
    let events = outbox(repo).await.into_iter();
    let ids: Vec<i64> = events
        .filter(|(_, e)| e.campaign_id == campaign_id)
        .map(|(id, _)| id)
        .collect();
    ok(repo.enqueue(&ids, &[]).await, "enqueue");
}

/// A lease takes at most so many deliveries of one webhook, counting those the caller still
/// has in flight, and goes on to another webhook's due after them; what it does not take stays
/// due, for a later lease, and no delivery is leased twice.
pub async fn leases_take_a_few_deliveries_of_each_webhook(repo: &dyn LiveStores) {
    let (busy, quiet) = (webhook(), webhook());
    create_webhooks(repo, &[&busy, &quiet]).await;
    let now = now_ms();
    let base = i64::from(rand::random::<u32>()) + (1 << 41);
    // Due long ago, before any other run's on a shared database: the busy webhook's ten, then
    // the quiet one's.
    let delivery = |hook: &Webhook, n: i64| Delivery {
        id: format!("dlv_{}_{n:02}", suffix()),
        body: format!("{{\"n\":{n}}}"),
        ..pending(hook, base + n, 1_000 + n, now)
    };
    let backlog: Vec<Delivery> = (1..=10).map(|n| delivery(&busy, n)).collect();
    let other = delivery(&quiet, 20);
    let all: Vec<Delivery> = backlog.iter().chain([&other]).cloned().collect();
    ok(repo.enqueue(&[], &all).await, "enqueue");
    let mut leased: Vec<String> = Vec::new();
    let (busy, quiet) = (&busy, &quiet);
    let lease = |in_flight: &[(&Webhook, u32)]| {
        let in_flight: HashMap<String, u32> =
            in_flight.iter().map(|(h, n)| (h.id.clone(), *n)).collect();
        async move {
            let due = repo.lease_due(now, now + 30_000, 100, 4, &in_flight).await;
            let due = ok(due, "lease_due");
            let of = |h: &Webhook| -> Vec<String> {
                due.iter()
                    .filter(|d| d.delivery.webhook_id == h.id)
                    .map(|d| d.delivery.id.clone())
                    .collect()
            };
            (of(busy), of(quiet))
        }
    };
    let ids = |r: std::ops::Range<usize>| -> Vec<String> {
        backlog[r].iter().map(|d| d.id.clone()).collect()
    };
    let (first, quiet_first) = lease(&[]).await;
    assert_eq!(first, ids(0..4), "the four longest due of the busy webhook");
    assert_eq!(
        quiet_first,
        std::slice::from_ref(&other.id),
        "the quiet webhook's, due after them"
    );
    leased.extend(first);
    let (capped, _) = lease(&[(busy, 4)]).await;
    assert!(capped.is_empty(), "none past the cap: {capped:?}");
    let (two, _) = lease(&[(busy, 2)]).await;
    assert_eq!(two, ids(4..6), "two more with two in flight, the next due");
    leased.extend(two);
    let (rest, _) = lease(&[]).await;
    assert_eq!(rest, ids(6..10), "those not taken stayed due");
    leased.extend(rest);
    let (none, quiet_none) = lease(&[]).await;
    assert!(none.is_empty() && quiet_none.is_empty(), "each leased once");
    assert_eq!(leased, ids(0..10));
    // Their pending deliveries die with them (no other run leases them).
    for h in [busy, quiet] {
        let entry = audit("webhook.delete", &h.id);
        assert!(ok(
            repo.delete_webhook(&h.id, &entry).await,
            "delete_webhook"
        ));
    }
}

/// A webhook at its cap with a backlog due before everything else's takes nothing, and the
/// others' due deliveries are leased past it: each webhook's oldest first up to its cap, all of
/// them in the order they were due (the longest due first across webhooks), up to the limit.
pub async fn leases_pass_over_a_capped_backlog_in_due_order(repo: &dyn LiveStores) {
    let (dead, a, b) = (webhook(), webhook(), webhook());
    create_webhooks(repo, &[&dead, &a, &b]).await;
    let now = now_ms();
    let base = i64::from(rand::random::<u32>()) + (1 << 43);
    let delivery = |hook: &Webhook, n: i64| Delivery {
        id: format!("dlv_{}_{n:03}", suffix()),
        ..pending(hook, base + n, n, now)
    };
    // Due long ago, before any other run's: the dead receiver's 200 first, then a's and b's
    // interleaved.
    let backlog: Vec<Delivery> = (1..=200).map(|n| delivery(&dead, n)).collect();
    let of_a: Vec<Delivery> = [201, 203, 205, 207].map(|n| delivery(&a, n)).into();
    let of_b: Vec<Delivery> = [202, 204].map(|n| delivery(&b, n)).into();
    let all: Vec<Delivery> = backlog.iter().chain(&of_a).chain(&of_b).cloned().collect();
    ok(repo.enqueue(&[], &all).await, "enqueue");
    let in_flight: HashMap<String, u32> = [(dead.id.clone(), 3)].into();
    let mine = |due: Vec<DueDelivery>| -> Vec<String> {
        due.into_iter()
            .map(|d| d.delivery.id)
            .filter(|id| all.iter().any(|d| d.id == *id))
            .collect()
    };
    let due = repo.lease_due(now, now + 30_000, 4, 3, &in_flight).await;
    let expected = [&of_a[0], &of_b[0], &of_a[1], &of_b[1]].map(|d| d.id.clone());
    assert_eq!(
        mine(ok(due, "lease_due")),
        expected,
        "in due order, none of the capped"
    );
    let in_flight: HashMap<String, u32> =
        [(dead.id.clone(), 3), (a.id.clone(), 2), (b.id.clone(), 2)].into();
    let due = repo.lease_due(now, now + 30_000, 100, 3, &in_flight).await;
    assert_eq!(
        mine(ok(due, "lease_due")),
        [of_a[2].id.clone()],
        "a's third, up to its cap of three; its fourth stays due"
    );
    for h in [&dead, &a, &b] {
        let entry = audit("webhook.delete", &h.id);
        assert!(ok(
            repo.delete_webhook(&h.id, &entry).await,
            "delete_webhook"
        ));
    }
}

/// Replicas leasing at once, the same due deliveries read by each: every delivery is leased by
/// one of them only, and all of them are leased.
pub async fn leases_at_once_take_each_delivery_once<S: LiveStores + 'static>(repo: Arc<S>) {
    let hook = webhook();
    create_webhooks(repo.as_ref(), &[&hook]).await;
    let now = now_ms();
    let base = i64::from(rand::random::<u32>()) + (1 << 44);
    let queued: Vec<Delivery> = (1..=30).map(|n| pending(&hook, base + n, n, now)).collect();
    ok(repo.enqueue(&[], &queued).await, "enqueue");
    let mut leased: Vec<String> = Vec::new();
    while leased.len() < queued.len() {
        let rounds = race("lease_due", |_| {
            let repo = repo.clone();
            async move {
                repo.lease_due(now, now + 30_000, 12, 100, &HashMap::new())
                    .await
            }
        })
        .await;
        let before = leased.len();
        for due in rounds.into_iter().flatten() {
            if queued.iter().any(|d| d.id == due.delivery.id) {
                leased.push(due.delivery.id);
            }
        }
        assert!(leased.len() > before, "some leased each round");
    }
    let mut once = leased.clone();
    once.sort_unstable();
    once.dedup();
    assert_eq!(once.len(), leased.len(), "none leased twice: {leased:?}");
    assert_eq!(once.len(), queued.len());
    let entry = audit("webhook.delete", &hook.id);
    assert!(ok(
        repo.delete_webhook(&hook.id, &entry).await,
        "delete_webhook"
    ));
}

/// An event of a megabyte (a draw of 10 000 winners) is sized in the outbox without its data,
/// read by id with it, and deliveries of several megabytes are queued in one call, each body
/// whole (in several statements: within a server's packet bound).
pub async fn large_events_are_sized_and_queued_whole(repo: &dyn LiveStores) {
    let hook = webhook();
    create_webhooks(repo, &[&hook]).await;
    let c = campaign("large");
    live(repo, &c).await;
    let awards: Vec<String> = (0..10_000)
        .map(|i| {
            format!("{{\"playerId\":\"player_{i:05}\",\"item\":\"chest\",\"tier\":1,\"é\":true}}")
        })
        .collect();
    let data = format!(
        "{{\"campaignId\":\"{}\",\"awards\":[{}]}}",
        c.id,
        awards.join(",")
    );
    let drawn = CampaignEvent {
        kind: "draw.completed".into(),
        data: data.clone(),
        ..event("draw.completed", &c.id)
    };
    let (live_, ended) = (CampaignState::Live, CampaignState::Ended);
    let moved = repo.advance(&c.id, live_, ended, Some(&drawn)).await;
    assert!(ok(moved, "advance"));
    let waiting = ok(repo.undispatched(10_000).await, "undispatched");
    let mine = waiting
        .iter()
        .find(|e| e.campaign_id == c.id)
        .expect("the draw is in the outbox");
    assert_eq!(mine.kind, "draw.completed");
    assert_eq!(mine.data_bytes, data.len() as u64, "its size in bytes");
    let read = ok(
        repo.undelivered_events(&[mine.id]).await,
        "undelivered_events",
    );
    let read: Vec<(i64, CampaignEvent)> = read.into_iter().map(|e| (e.id, e.event)).collect();
    assert_eq!(read, [(mine.id, drawn.clone())]);

    // Five deliveries of a megabyte each, and the event marked queued, in one call.
    let now = now_ms();
    let base = i64::from(rand::random::<u32>()) + (1 << 42);
    let bodies: Vec<Delivery> = (0..5)
        .map(|n| Delivery {
            id: format!("dlv_{}_{n}", suffix()),
            kind: "draw.completed".into(),
            body: format!("{n}{data}"),
            ..pending(
                &hook,
                if n == 0 { mine.id } else { base + n },
                1_000 + n,
                now + n,
            )
        })
        .collect();
    ok(repo.enqueue(&[mine.id], &bodies).await, "enqueue");
    let still = ok(repo.undispatched(10_000).await, "undispatched");
    assert!(!still.iter().any(|e| e.id == mine.id), "marked queued");
    let listed = ok(
        repo.deliveries(&hook.id, DeliveryPage::newest(10)).await,
        "deliveries",
    );
    assert_eq!(listed.len(), 5, "every delivery queued");
    let in_flight = HashMap::new();
    let due = ok(
        repo.lease_due(now, now + 30_000, 100, 10, &in_flight).await,
        "lease_due",
    );
    let mut sent: Vec<&Delivery> = due
        .iter()
        .map(|d| &d.delivery)
        .filter(|d| d.webhook_id == hook.id)
        .collect();
    sent.sort_by_key(|d| d.created_at_ms);
    let bodies_sent: Vec<&str> = sent.iter().map(|d| d.body.as_str()).collect();
    let bodies_queued: Vec<&str> = bodies.iter().map(|d| d.body.as_str()).collect();
    assert!(bodies_sent == bodies_queued, "every body whole");
    let entry = audit("webhook.delete", &hook.id);
    assert!(ok(
        repo.delete_webhook(&hook.id, &entry).await,
        "delete_webhook"
    ));
}

/// Every campaign event gets a public id of its own as it is written, `evt_` and 32 hex digits
/// of a random value, read with it from the outbox, the same on every read: never its outbox
/// row's key (`evt_<n>`), which a restored backup gives again and every other deployment gives
/// too. A delivery keeps the id it was queued with and is listed with it.
pub async fn campaign_events_get_public_ids_of_their_own(repo: &dyn LiveStores) {
    let (a, b) = (campaign("named_a"), campaign("named_b"));
    for c in [&a, &b] {
        create(repo, c).await;
        let e = event("campaign.live", &c.id);
        let (draft, scheduled) = (CampaignState::Draft, CampaignState::Scheduled);
        assert!(ok(
            repo.advance(&c.id, draft, scheduled, Some(&e)).await,
            "advance"
        ));
    }
    let waiting = ok(repo.undispatched(10_000).await, "undispatched");
    let ids: Vec<i64> = waiting
        .iter()
        .filter(|e| e.campaign_id == a.id || e.campaign_id == b.id)
        .map(|e| e.id)
        .collect();
    let read = ok(repo.undelivered_events(&ids).await, "undelivered_events");
    assert_eq!(read.len(), 2, "both events are in the outbox: {read:?}");
    for e in &read {
        let hex = e.public_id.strip_prefix("evt_").unwrap_or_default();
        let lower_hex = |c: u8| c.is_ascii_digit() || (b'a'..=b'f').contains(&c);
        assert!(
            hex.len() == 32 && hex.bytes().all(lower_hex),
            "evt_ and 32 hex digits: {}",
            e.public_id
        );
        assert_ne!(e.public_id, format!("evt_{}", e.id), "not the outbox key");
    }
    assert_ne!(read[0].public_id, read[1].public_id, "one id per event");
    let again = ok(repo.undelivered_events(&ids).await, "undelivered_events");
    assert_eq!(again, read, "the same ids on every read");

    let hook = webhook();
    create_webhooks(repo, &[&hook]).await;
    let now = now_ms();
    let queued = Delivery {
        event_public_id: read[0].public_id.clone(),
        body: format!("{{\"id\":\"{}\"}}", read[0].public_id),
        ..pending(&hook, read[0].id, now + 3_600_000, now)
    };
    ok(
        repo.enqueue(&ids, std::slice::from_ref(&queued)).await,
        "enqueue",
    );
    let listed = ok(
        repo.deliveries(&hook.id, DeliveryPage::newest(10)).await,
        "deliveries",
    );
    let listed: Vec<(&str, &str)> = listed
        .iter()
        .map(|(d, _)| (d.id.as_str(), d.event_public_id.as_str()))
        .collect();
    assert_eq!(listed, [(queued.id.as_str(), read[0].public_id.as_str())]);
    let entry = audit("webhook.delete", &hook.id);
    assert!(ok(
        repo.delete_webhook(&hook.id, &entry).await,
        "delete_webhook"
    ));
}

/// Distribution's retention. Delivered and dead deliveries whose last attempt ended before the
/// cutoff go with their attempts; pending ones stay however old, and so do finished ones tried
/// since. Outbox events before the cutoff go once none of their deliveries is left; one not yet
/// queued, or with a delivery left, stays. Messages that expired before the cutoff go with their
/// claims (one to every player with more claims than a step deletes among them); messages
/// expiring later stay, claims and all.
///
/// Its rows lie far in the past, below every other check's, from a base that falls as the clock
/// moves: a later run's purges never reach them, and an earlier run's finished before this run
/// began unless the two overlap. What a purge counts may include older runs' rows (or, runs
/// overlapping, miss this run's): which rows are left is checked, and an event purge that
/// deleted something.
pub async fn distribution_rows_past_their_retention_are_purged<S: LiveStores + 'static>(
    shared: Arc<S>,
) {
    let repo: &S = shared.as_ref();
    let base = -now_ms() * 10;
    let (cutoff, old, new) = (base, base - 1_000, base + 1_000);
    let (a, b) = (webhook(), webhook());
    create_webhooks(repo, &[&a, &b]).await;
    // Four outbox events: `done` long ago, both its deliveries finished long ago; `kept` long
    // ago, one delivery still pending; `fresh` since the cutoff, queued to nobody; `waiting`
    // long ago, never queued.
    let mut events = Vec::new();
    for (tag, at_ms) in [
        ("done", old),
        ("kept", old),
        ("fresh", new),
        ("waiting", old),
    ] {
        let c = campaign(&format!("retained_{tag}"));
        create(repo, &c).await;
        let e = CampaignEvent {
            at_ms,
            ..event("campaign.live", &c.id)
        };
        let (draft, scheduled) = (CampaignState::Draft, CampaignState::Scheduled);
        assert!(ok(
            repo.advance(&c.id, draft, scheduled, Some(&e)).await,
            "advance"
        ));
        let queued = outbox(repo).await;
        let (id, _) = queued
            .iter()
            .find(|(_, e)| e.campaign_id == c.id)
            .expect("in the outbox");
        events.push(*id);
    }
    let [done, kept, fresh, waiting]: [i64; 4] = events.try_into().expect("four events");
    let delivery =
        |hook: &Webhook, event_id: i64, at_ms: i64| pending(hook, event_id, at_ms, at_ms);
    let done_a = delivery(&a, done, old);
    let done_b = delivery(&b, done, old + 1);
    let kept_a = delivery(&a, kept, old + 2);
    let kept_b = delivery(&b, kept, new);
    let all = [
        done_a.clone(),
        done_b.clone(),
        kept_a.clone(),
        kept_b.clone(),
    ];
    ok(repo.enqueue(&[done, kept, fresh], &all).await, "enqueue");
    // Delivered and dead as their attempt (under the lease they were queued at) ended.
    for (d, state) in [
        (&done_a, DeliveryState::Delivered),
        (&done_b, DeliveryState::Dead),
        (&kept_b, DeliveryState::Dead),
    ] {
        assert!(ok(finish(repo, d, state, 500).await, "record_attempt"));
    }

    let walking = || liveops_core::stores::PurgeRound::walking(now_ms());
    ok(
        repo.purge_deliveries(cutoff, walking()).await,
        "purge_deliveries",
    );
    let left = |hook: &Webhook| {
        let id = hook.id.clone();
        async move {
            let listed = ok(
                repo.deliveries(&id, DeliveryPage::newest(10)).await,
                "deliveries",
            );
            listed
                .into_iter()
                .map(|(d, attempts)| (d.id, d.state, attempts.len()))
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        left(&a).await,
        [(kept_a.id.clone(), DeliveryState::Pending, 0)],
        "the delivered one went; the pending one, however old, stayed"
    );
    assert_eq!(
        left(&b).await,
        [(kept_b.id.clone(), DeliveryState::Dead, 1)],
        "the one dead long ago went; the one dead since the cutoff stayed, with its attempt"
    );
    let events_purged = ok(repo.purge_events(cutoff, walking()).await, "purge_events");
    assert!(
        events_purged >= 1,
        "the event none of whose deliveries is left"
    );
    let queued: Vec<i64> = outbox(repo).await.into_iter().map(|(id, _)| id).collect();
    assert!(queued.contains(&waiting), "an event never queued stays");
    // Their attempts went with them: one queued again under its id has none.
    let again = Delivery {
        event_id: waiting,
        ..done_a.clone()
    };
    ok(
        repo.enqueue(&[], std::slice::from_ref(&again)).await,
        "enqueue",
    );
    let listed = left(&a).await;
    assert!(
        listed.contains(&(done_a.id.clone(), DeliveryState::Pending, 0)),
        "no attempt of the purged delivery is left: {listed:?}"
    );
    ok(repo.enqueue(&[waiting], &[]).await, "enqueue");

    // Messages: one to a player and one to everyone expired long ago, both claimed; one to the
    // player expiring after the cutoff, claimed.
    let player = format!("retained_{}", suffix());
    let at = |m: InboxMessage, expires_at_ms: i64| InboxMessage {
        created_at_ms: old - 10_000,
        expires_at_ms,
        ..m
    };
    let gone = at(message(Some(&player), None, 0), old);
    let everyone = at(message(None, None, 0), old + 1);
    let stays = at(message(Some(&player), None, 0), new);
    send(repo, None, &[gone.clone(), everyone.clone(), stays.clone()]).await;
    for m in [&gone, &everyone, &stays] {
        let c = claim(m, &player, &format!("retained_{}", suffix()));
        let claimed = ok(repo.claim(&c, old - 5_000).await, "claim");
        assert!(matches!(claimed, ClaimOutcome::Claimed(_)), "{claimed:?}");
    }
    // More claims of the message to everyone than one step of the purge deletes.
    let players: Vec<String> = (0..2_050).map(|i| format!("{player}_{i:04}")).collect();
    for chunk in players.chunks(100) {
        let (everyone, at_ms) = (everyone.clone(), old - 5_000);
        let claimed = at_once(chunk, |p| {
            let repo = shared.clone();
            let c = claim(&everyone, &p, &format!("everyone_{p}"));
            async move { repo.claim(&c, at_ms).await }
        })
        .await;
        for c in claimed {
            assert!(matches!(ok(c, "claim"), ClaimOutcome::Claimed(_)));
        }
    }
    let walking = liveops_core::stores::PurgeRound::walking(now_ms());
    ok(repo.purge_messages(cutoff, walking).await, "purge_messages");
    let ids = |player: String| async move {
        let listed = inbox_of(repo, &player, |_| true).await;
        listed.into_iter().map(|m| m.message_id).collect::<Vec<_>>()
    };
    let mine = ids(player.clone()).await;
    assert!(
        mine.contains(&stays.message_id),
        "not expired by the cutoff: stays"
    );
    for m in [&gone, &everyone] {
        assert!(!mine.contains(&m.message_id), "expired long ago: purged");
        assert_eq!(
            ok(repo.claim_of(&player, &m.message_id).await, "claim_of"),
            None,
            "its claim went with it"
        );
    }
    let last = players.last().expect("players").clone();
    let theirs = ok(repo.claim_of(&last, &everyone.message_id).await, "claim_of");
    assert_eq!(theirs, None, "every claim of the message to everyone went");
    let kept_claim = ok(repo.claim_of(&player, &stays.message_id).await, "claim_of");
    assert!(kept_claim.is_some(), "the live message's claim stays");

    for h in [&a, &b] {
        let entry = audit("webhook.delete", &h.id);
        assert!(ok(
            repo.delete_webhook(&h.id, &entry).await,
            "delete_webhook"
        ));
    }
}

/// `second` as a failure (HTTP 502).
fn attempt_2_failed(second: &Attempt) -> Attempt {
    Attempt {
        status: Some(502),
        error: Some("answered HTTP 502".into()),
        ..second.clone()
    }
}

/// Dead deliveries of an active webhook go back to pending, due now: those named, or the
/// oldest up to a limit; others (pending, another webhook's, unknown) are left as they are, and
/// a deleted webhook's are not sent again.
pub async fn dead_deliveries_are_sent_again_on_request(repo: &dyn LiveStores) {
    let (hook, other) = (webhook(), webhook());
    create_webhooks(repo, &[&hook, &other]).await;
    let now = now_ms();
    // Event ids of their own: one delivery per webhook and event.
    let base = i64::from(rand::random::<u32>()) + (1 << 40);
    let delivery = |hook: &Webhook, n: i64| Delivery {
        id: format!("dlv_{}_{n}", suffix()),
        ..pending(hook, base + n, now + 3_600_000, now - 10_000 + n)
    };
    let (d1, d2, d3, d4) = (
        delivery(&hook, 1),
        delivery(&hook, 2),
        delivery(&hook, 3),
        delivery(&other, 4),
    );
    let all = [d1.clone(), d2.clone(), d3.clone(), d4.clone()];
    ok(repo.enqueue(&[], &all).await, "enqueue");
    let dead = |d: &Delivery| Delivery {
        state: DeliveryState::Dead,
        attempts: 10,
        ..d.clone()
    };
    let failed = Attempt {
        attempt: 10,
        at_ms: now,
        status: Some(503),
        error: Some("answered HTTP 503".into()),
        duration_ms: 5,
    };
    for d in [&d1, &d2, &d4] {
        let gave_up = dead(d);
        let recorded = repo.record_attempt(d.next_attempt_at_ms, &gave_up, &failed);
        assert!(ok(recorded.await, "record_attempt"));
    }
    // Listed by state, a page at a time, newest first: the webhook's dead ones, its pending.
    let listed = |state: DeliveryState, after: Option<&Delivery>| {
        let after = after.map(|d| (d.created_at_ms, d.id.clone()));
        let id = hook.id.clone();
        async move {
            let page = DeliveryPage {
                state: Some(state),
                limit: 1,
                after: after.as_ref().map(|(at, d)| (*at, d.as_str())),
            };
            let got = ok(repo.deliveries(&id, page).await, "deliveries");
            got.into_iter().map(|(d, _)| d.id).collect::<Vec<_>>()
        }
    };
    assert_eq!(listed(DeliveryState::Dead, None).await, [d2.id.as_str()]);
    assert_eq!(
        listed(DeliveryState::Dead, Some(&d2)).await,
        [d1.id.as_str()]
    );
    assert!(listed(DeliveryState::Dead, Some(&d1)).await.is_empty());
    assert_eq!(listed(DeliveryState::Pending, None).await, [d3.id.as_str()]);
    let all = DeliveryPage {
        after: Some((d3.created_at_ms, d3.id.as_str())),
        ..DeliveryPage::newest(10)
    };
    let below = ok(repo.deliveries(&hook.id, all).await, "deliveries");
    let below: Vec<&str> = below.iter().map(|(d, _)| d.id.as_str()).collect();
    assert_eq!(
        below,
        [d2.id.as_str(), d1.id.as_str()],
        "after a cursor, any state"
    );

    let redeliver = |ids: Vec<String>, limit: u32| {
        let (id, entry) = (hook.id.clone(), audit("webhook.redeliver", &hook.id));
        async move {
            ok(
                repo.redeliver(&id, &ids, limit, now, &entry).await,
                "redeliver",
            )
        }
    };

    // All of them, oldest first, `limit` at a time.
    let first = redeliver(vec![], 1).await.expect("active webhook");
    assert_eq!((first.ids, first.more), (vec![d1.id.clone()], true));
    let rest = redeliver(vec![], 500).await.expect("active webhook");
    assert_eq!((rest.ids, rest.more), (vec![d2.id.clone()], false));
    // Due now (read from the listing: a lease here would take other runs' deliveries too).
    let listed = ok(
        repo.deliveries(&hook.id, DeliveryPage::newest(10)).await,
        "deliveries",
    );
    for d in [&d1, &d2] {
        let (now_d, _) = listed.iter().find(|(x, _)| x.id == d.id).expect("listed");
        assert_eq!(
            (now_d.state, now_d.next_attempt_at_ms),
            (DeliveryState::Pending, now)
        );
    }
    let d1_now = listed.iter().find(|(d, _)| d.id == d1.id).expect("listed");
    assert_eq!(d1_now.0.attempts, 10, "its attempts are kept");
    assert_eq!(d1_now.1, std::slice::from_ref(&failed));

    // Named: only this webhook's dead ones.
    let names = vec![d3.id.clone(), d4.id.clone(), "dlv_none".into()];
    let none = redeliver(names, 500).await.expect("active webhook");
    assert_eq!((none.ids.len(), none.more), (0, false));
    let again = Attempt {
        attempt: 11,
        ..failed.clone()
    };
    let d1_dead = Delivery {
        attempts: 11,
        ..dead(&d1)
    };
    // Pending again, due now: as if leased at `now`.
    assert!(ok(
        repo.record_attempt(now, &d1_dead, &again).await,
        "record_attempt"
    ));
    let named = redeliver(vec![d1.id.clone()], 500)
        .await
        .expect("active webhook");
    assert_eq!(named.ids, std::slice::from_ref(&d1.id));
    let log = ok(repo.audit(None, 1_000).await, "audit");
    let redelivered = log
        .iter()
        .filter(|l| l.entry.action == "webhook.redeliver" && l.entry.target == hook.id)
        .count();
    assert_eq!(redelivered, 4, "every call is audited");

    // The other webhook's dead delivery stays dead; a deleted webhook sends nothing again.
    let entry = audit("webhook.delete", &other.id);
    assert!(ok(
        repo.delete_webhook(&other.id, &entry).await,
        "delete_webhook"
    ));
    let entry = audit("webhook.redeliver", &other.id);
    assert_eq!(
        ok(
            repo.redeliver(&other.id, &[], 500, now, &entry).await,
            "redeliver"
        ),
        None
    );
    let d4_now = ok(
        repo.deliveries(&other.id, DeliveryPage::newest(10)).await,
        "deliveries",
    );
    assert_eq!(d4_now[0].0.state, DeliveryState::Dead);
    // Nothing of this run stays due for later runs on the same database.
    let entry = audit("webhook.delete", &hook.id);
    assert!(ok(
        repo.delete_webhook(&hook.id, &entry).await,
        "delete_webhook"
    ));
}

/// Replicas racing: one state move, one entry per slot, one settlement, one claim win.
pub async fn concurrent_writers_agree<S: LiveStores + 'static>(repo: Arc<S>) {
    let c = campaign("race");
    scheduled(repo.as_ref(), &c).await;
    let moved = race("advance", |_| {
        let (repo, id) = (repo.clone(), c.id.clone());
        async move {
            repo.advance(&id, CampaignState::Scheduled, CampaignState::Live, None)
                .await
        }
    })
    .await;
    let won = moved.into_iter().filter(|m| *m).count();
    assert_eq!(won, 1, "one replica moves the campaign");

    let entered = race("enter", |i| {
        let repo = repo.clone();
        let e = entry(&c.id, "player_race", "once", &format!("r{i}"));
        async move { repo.enter(&e, NO_CAP).await }
    })
    .await;
    let created = entered
        .iter()
        .filter(|e| matches!(e, Entered::Created(_)))
        .count();
    assert_eq!(created, 1, "one entry per slot");

    let player = format!("race_{}", suffix());
    let settles = race("settle", |_| {
        let (repo, c, p) = (repo.clone(), c.id.clone(), player.clone());
        let m = message(Some(&p), Some(&c), 3_600_000);
        async move { repo.settle(&c, &[m]).await }
    })
    .await;
    let settled: u64 = settles.into_iter().sum();
    assert_eq!(settled, 1, "one settlement per winner");
    let inbox = inbox_of(repo.as_ref(), &player, |m| {
        m.campaign_id.as_deref() == Some(c.id.as_str())
    })
    .await;
    assert_eq!(inbox.len(), 1, "one message");
    let m = inbox[0].clone();
    let claims = race("claim", |i| {
        let (repo, claim) = (repo.clone(), claim(&m, &player, &format!("c{i}")));
        async move { repo.claim(&claim, now_ms()).await }
    })
    .await;
    let mut first = Vec::new();
    for c in claims {
        match c {
            ClaimOutcome::Claimed(c) => first.push(c),
            ClaimOutcome::AlreadyClaimed(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(first.len(), 1, "one claim issues receipts");
    assert_eq!(
        ok(repo.claim_of(&player, &m.message_id).await, "claim_of"),
        first.pop()
    );
    // A message to all: players claiming it at once each get their own receipts.
    let all = message(None, None, 3_600_000);
    assert_eq!(
        send(repo.as_ref(), None, std::slice::from_ref(&all)).await,
        KeyedOutcome::Written
    );
    let claims = race("claim all", |i| {
        let claim = claim(
            &all,
            &format!("everyone_{i}_{}", suffix()),
            &format!("a{i}"),
        );
        let repo = repo.clone();
        async move { repo.claim(&claim, now_ms()).await }
    })
    .await;
    let claimed = claims
        .iter()
        .filter(|c| matches!(c, ClaimOutcome::Claimed(_)))
        .count();
    assert_eq!(claimed, claims.len(), "{claims:?}");
    let key = request_key("op_race", "digest");
    let sends = race("send_messages", |_| {
        let m = message(Some(&player), None, 3_600_000);
        let (repo, keyed) = (repo.clone(), keyed(&key, &m.message_id));
        async move {
            let audit = audit("inbox.send", &keyed.key.key);
            repo.send_messages(Some(&keyed), std::slice::from_ref(&m), &audit)
                .await
        }
    })
    .await;
    one_written(repo.as_ref(), &key, &sends, "one send per key").await;
    let key = request_key("op_race", "campaign");
    let creates = race("create_campaign", |_| {
        let (repo, key) = (repo.clone(), key.clone());
        async move { Ok(create_keyed(repo.as_ref(), &key, &campaign("keyed_race")).await) }
    })
    .await;
    one_written(repo.as_ref(), &key, &creates, "one campaign per key").await;
}

/// Replicas disabling the last two enabled admins at once: one of them goes, the other stays.
/// (Every other enabled admin is disabled first: on a database no other run uses meanwhile.)
pub async fn one_of_the_last_two_admins_racing_goes<S: LiveStores + 'static>(repo: Arc<S>) {
    let [a, b] = the_last_two_admins_cannot_both_go(repo.as_ref()).await;
    let changes = race("update_operator", |i| {
        let repo = repo.clone();
        let before = if i % 2 == 0 { a.clone() } else { b.clone() };
        let mut after = before.clone();
        after.disabled = true;
        after.updated_at_ms += 1;
        async move {
            let change = audit("operator.disable", &before.id);
            repo.update_operator(&before, &after, &change).await
        }
    })
    .await;
    let done = changes
        .iter()
        .filter(|c| **c == OperatorUpdate::Updated)
        .count();
    assert_eq!(done, 1, "one of the last two admins goes: {changes:?}");
    assert_eq!(enabled_admins(repo.as_ref()).await.len(), 1);
}

/// The enabled admins, oldest first.
async fn enabled_admins(repo: &dyn LiveStores) -> Vec<OperatorRecord> {
    let all = ok(repo.operators().await, "operators");
    all.into_iter()
        .filter(|o| o.role == Role::Admin && !o.disabled)
        .collect()
}

/// Leaves exactly two enabled admins (every other admin disabled), after showing that, one at a
/// time, the second cannot be disabled or demoted once the first is demoted; returns them.
async fn the_last_two_admins_cannot_both_go(repo: &dyn LiveStores) -> [OperatorRecord; 2] {
    let pair = [
        operator(&format!("last-a-{}@example.com", suffix()), Role::Admin),
        operator(&format!("last-b-{}@example.com", suffix()), Role::Admin),
    ];
    for o in &pair {
        assert!(ok(
            repo.create_operator(o, &audit("operator.create", &o.id))
                .await,
            "create_operator"
        ));
    }
    let changed = |o: &OperatorRecord, disabled: bool, role: Role| {
        let mut after = o.clone();
        after.disabled = disabled;
        after.role = role;
        after.updated_at_ms += 1;
        after
    };
    for o in enabled_admins(repo).await {
        if pair.iter().all(|p| p.id != o.id) {
            let off = changed(&o, true, o.role);
            let change = audit("operator.disable", &o.id);
            let answer = repo.update_operator(&o, &off, &change).await;
            assert_eq!(ok(answer, "update_operator"), OperatorUpdate::Updated);
        }
    }
    assert_eq!(enabled_admins(repo).await.len(), 2);
    // Demote the first; the second is then the last and stays, disabled or demoted alike.
    let demoted = changed(&pair[0], false, Role::Operator);
    let change = audit("operator.update", &pair[0].id);
    let answer = repo.update_operator(&pair[0], &demoted, &change).await;
    assert_eq!(ok(answer, "update_operator"), OperatorUpdate::Updated);
    for (disabled, role) in [(true, Role::Admin), (false, Role::Viewer)] {
        let after = changed(&pair[1], disabled, role);
        let change = audit("operator.update", &pair[1].id);
        let answer = repo.update_operator(&pair[1], &after, &change).await;
        assert_eq!(ok(answer, "update_operator"), OperatorUpdate::LastAdmin);
    }
    // Promote the first again: two enabled admins, for the race.
    let back = changed(&demoted, false, Role::Admin);
    let change = audit("operator.update", &pair[0].id);
    let answer = repo.update_operator(&demoted, &back, &change).await;
    assert_eq!(ok(answer, "update_operator"), OperatorUpdate::Updated);
    let mut ids: Vec<String> = enabled_admins(repo)
        .await
        .into_iter()
        .map(|o| o.id)
        .collect();
    ids.sort();
    let mut want = vec![back.id.clone(), pair[1].id.clone()];
    want.sort();
    assert_eq!(ids, want, "the two admins left");
    [back, pair[1].clone()]
}

/// Claims sent at once, of every kind (where claims are written in groups, they share
/// groups): each is answered as if it came alone. Players claiming a message to all each get
/// theirs; the same claim sent twice is claimed once; a missing message is not found, an expired
/// one expired; one request's signature on two messages claims one of them, the other failing
/// alone as a conflicting write.
pub async fn claims_at_once_are_answered_each_alone<S: LiveStores + 'static>(repo: Arc<S>) {
    let player = format!("burst_{}", suffix());
    let all = message(None, None, 3_600_000);
    let (mine, also_mine) = (
        message(Some(&player), None, 3_600_000),
        message(Some(&player), None, 3_600_000),
    );
    let expired = message(Some(&player), None, -1);
    let sent = send(
        repo.as_ref(),
        None,
        &[
            all.clone(),
            mine.clone(),
            also_mine.clone(),
            expired.clone(),
        ],
    )
    .await;
    assert_eq!(sent, KeyedOutcome::Written);
    let twice = claim(&mine, &player, "twice");
    let shared = claim(&all, &format!("{player}_other"), "shared");
    let clash = InboxClaim {
        request_sig: format!("sha256=one_request_{}", suffix()),
        ..claim(&also_mine, &player, "clash")
    };
    let mut claims: Vec<InboxClaim> = (0..24)
        .map(|i| claim(&all, &format!("{player}_{i}"), &format!("all{i}")))
        .collect();
    claims.extend([twice.clone(), twice.clone(), shared]);
    claims.push(claim(&expired, &player, "late"));
    claims.push(InboxClaim {
        message_id: "msg_never_sent".into(),
        ..claim(&all, &player, "none")
    });
    claims.push(clash.clone());
    claims.push(InboxClaim {
        message_id: all.message_id.clone(),
        ..clash.clone()
    });
    let answers = at_once(&claims, |c| {
        let repo = repo.clone();
        async move { repo.claim(&c, now_ms()).await }
    })
    .await;
    for (c, answer) in claims.iter().zip(&answers).take(24) {
        assert_eq!(answer, &Ok(ClaimOutcome::Claimed(c.clone())));
        let stored = ok(repo.claim_of(&c.player_id, &c.message_id).await, "claim_of");
        assert_eq!(stored.as_ref(), Some(c), "as stored");
    }
    let twice_answers = [&answers[24], &answers[25]];
    assert!(
        twice_answers.contains(&&Ok(ClaimOutcome::Claimed(twice.clone())))
            && twice_answers.contains(&&Ok(ClaimOutcome::AlreadyClaimed(twice.clone()))),
        "the same claim twice at once: {twice_answers:?}"
    );
    assert!(
        matches!(answers[26], Ok(ClaimOutcome::Claimed(_))),
        "{:?}",
        answers[26]
    );
    assert_eq!(
        answers[27],
        Ok(ClaimOutcome::Expired(expired.expires_at_ms))
    );
    assert_eq!(answers[28], Ok(ClaimOutcome::NotFound));
    // One request, two messages: one claimed, the other refused alone, nothing written for it.
    let clashed = [&answers[29], &answers[30]];
    let refused = clashed
        .iter()
        .filter(|a| matches!(a, Err(PortError::Unavailable(_))))
        .count();
    let claimed = clashed
        .iter()
        .filter(|a| matches!(a, Ok(ClaimOutcome::Claimed(_))))
        .count();
    assert_eq!((claimed, refused), (1, 1), "{clashed:?}");
    let kept = [
        ok(
            repo.claim_of(&player, &also_mine.message_id).await,
            "claim_of",
        ),
        ok(repo.claim_of(&player, &all.message_id).await, "claim_of"),
    ];
    assert_eq!(
        kept.iter().flatten().count(),
        1,
        "one of the two messages claimed: {kept:?}"
    );
    assert_eq!(
        ok(
            repo.claim_by_request(&clash.request_sig).await,
            "claim_by_request"
        )
        .map(|c| c.message_id),
        kept.iter().flatten().next().map(|c| c.message_id.clone())
    );
}

/// Entries sent at once, of every kind (where entries are written in groups, they share
/// groups): each is answered as if it came alone. Players
/// entering a live campaign each get theirs; the same signed request sent twice enters once; a player
/// entering twice with two requests keeps one entry; a campaign not live takes none; one
/// request's signature on two campaigns enters one of them, the other failing alone as a
/// conflicting write.
pub async fn entries_at_once_are_answered_each_alone<S: LiveStores + 'static>(repo: Arc<S>) {
    let (live, other, draft) = (
        campaign("burst"),
        campaign("burst_other"),
        campaign("burst_draft"),
    );
    create_in(repo.as_ref(), &live, CampaignState::Live).await;
    create_in(repo.as_ref(), &other, CampaignState::Live).await;
    create_in(repo.as_ref(), &draft, CampaignState::Draft).await;
    let player = format!("burst_{}", suffix());
    let twice = entry(&live.id, &player, "once", "twice");
    let clash = entry(&other.id, &format!("{player}_clash"), "once", "clash");
    let mut entries: Vec<Entry> = (0..24)
        .map(|i| entry(&live.id, &format!("{player}_{i}"), "once", &format!("e{i}")))
        .collect();
    // The same signed request twice, as the handler sends it: a new entry id each time.
    let resent = Entry {
        entry_id: format!("ent_{}", suffix()),
        ..twice.clone()
    };
    entries.extend([twice.clone(), resent.clone()]);
    let second = format!("{player}_second");
    entries.extend([
        entry(&live.id, &second, "once", "first_try"),
        entry(&live.id, &second, "once", "second_try"),
    ]);
    entries.push(entry(&draft.id, &player, "once", "draft"));
    entries.push(clash.clone());
    entries.push(Entry {
        entry_id: format!("ent_{}", suffix()),
        campaign_id: live.id.clone(),
        ..clash.clone()
    });
    let answers = at_once(&entries, |e| {
        let repo = repo.clone();
        async move { repo.enter(&e, NO_CAP).await }
    })
    .await;
    for (e, answer) in entries.iter().zip(&answers).take(24) {
        assert_eq!(answer, &Ok(Entered::Created(e.clone())));
    }
    // One of the two made the entry; the other is answered with it.
    let made = match (&answers[24], &answers[25]) {
        (Ok(Entered::Created(a)), Ok(Entered::Existing(b)))
        | (Ok(Entered::Existing(b)), Ok(Entered::Created(a))) => (a.clone(), b.clone()),
        other => panic!("the same request twice at once: {other:?}"),
    };
    assert_eq!(made.0, made.1);
    assert!([&twice, &resent].contains(&&made.0), "{made:?}");
    // Two requests of one player: one entry made, the other answered with it.
    let (a, b) = (&answers[26], &answers[27]);
    let made = [a, b]
        .iter()
        .filter_map(|x| match x {
            Ok(Entered::Created(e)) => Some(e.clone()),
            _ => None,
        })
        .collect::<Vec<_>>();
    assert_eq!(made.len(), 1, "{a:?} {b:?}");
    assert!(
        [a, b].contains(&&Ok(Entered::Existing(made[0].clone()))),
        "{a:?} {b:?}"
    );
    assert_eq!(
        answers[28],
        Ok(Entered::NotLive(Some(CampaignState::Draft)))
    );
    let clashed = [&answers[29], &answers[30]];
    let refused = clashed
        .iter()
        .filter(|a| matches!(a, Err(PortError::Unavailable(_))))
        .count();
    assert_eq!(refused, 1, "{clashed:?}");
    assert_eq!(
        ok(
            repo.entry_by_request(&clash.request_sig).await,
            "entry_by_request"
        )
        .map(|e| e.campaign_id),
        clashed.iter().find_map(|a| match a {
            Ok(Entered::Created(e)) => Some(e.campaign_id.clone()),
            _ => None,
        })
    );
    let mut entrants = ok(repo.entrants(&live.id).await, "entrants");
    entrants.sort();
    let mut want: Vec<String> = (0..24).map(|i| format!("{player}_{i}")).collect();
    want.extend([player.clone(), second]);
    if answers[30].is_ok() {
        want.push(format!("{player}_clash"));
    }
    want.sort();
    assert_eq!(entrants, want, "every entry made, once");
}

/// Runs `call` on each of `items` at once, each in a task of its own: the answers, in order.
async fn at_once<T, R, F, Fut>(items: &[T], mut call: F) -> Vec<R>
where
    T: Clone,
    F: FnMut(T) -> Fut,
    Fut: Future<Output = R> + Send + 'static,
    R: Send + 'static,
{
    let tasks: Vec<_> = items
        .iter()
        .map(|i| tokio::spawn(call(i.clone())))
        .collect();
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await.expect("join"));
    }
    answers
}

/// Entries at once count each player once in their campaign's entrant count: first entries of
/// many players each count (their stripes shared), the same entry sent twice counts once, and a
/// player's entries in two slots at once (a daily campaign's two days) count once; a player's
/// entries sum up to one per campaign, with their last time and whether one is in the slots
/// asked about.
pub async fn entrants_at_once_are_counted_once_each<S: LiveStores + 'static>(repo: Arc<S>) {
    let once = campaign("counted_once");
    let daily = Campaign {
        entry_limit: EntryLimit::Daily,
        ..campaign("counted_daily")
    };
    create_in(repo.as_ref(), &once, CampaignState::Live).await;
    create_in(repo.as_ref(), &daily, CampaignState::Live).await;
    let player = format!("counted_{}", suffix());
    let mut entries: Vec<Entry> = (0..40)
        .map(|i| entry(&once.id, &format!("{player}_{i}"), "once", &format!("o{i}")))
        .collect();
    // Player 0 again, in the same slot: answered with the entry made, not counted again.
    entries.push(entry(&once.id, &format!("{player}_0"), "once", "o_again"));
    for i in 0..16 {
        let who = format!("{player}_{i}");
        for day in ["2026-12-01", "2026-12-02", "2026-12-03"] {
            entries.push(entry(&daily.id, &who, day, &format!("d{i}_{day}")));
        }
    }
    let answers = at_once(&entries, |e| {
        let repo = repo.clone();
        async move { repo.enter(&e, NO_CAP).await }
    })
    .await;
    let created = answers
        .iter()
        .filter(|a| matches!(a, Ok(Entered::Created(_))))
        .count();
    assert_eq!(created, 40 + 16 * 3, "every entry but the repeat made");
    assert_eq!(ok(repo.entrant_count(&once.id).await, "entrant_count"), 40);
    assert_eq!(ok(repo.entrant_count(&daily.id).await, "entrant_count"), 16);
    // Another day, alone: the player is in already.
    let later = entry(&daily.id, &format!("{player}_3"), "2026-12-04", "d3_later");
    assert!(matches!(
        ok(repo.enter(&later, NO_CAP).await, "enter"),
        Entered::Created(_)
    ));
    assert_eq!(ok(repo.entrant_count(&daily.id).await, "entrant_count"), 16);
    assert_eq!(ok(repo.entrants(&daily.id).await, "entrants").len(), 16);

    let who = format!("{player}_3");
    let ids = [once.id.clone(), daily.id.clone(), "cmp_missing".into()];
    let mine = ok(repo.entries_of(&who, &ids).await, "entries_of");
    let last = |c: &str| {
        let at = mine.iter().filter(|e| e.campaign_id == c);
        at.map(|e| e.entered_at_ms).max()
    };
    let slots = ["once".to_owned(), "2026-12-02".to_owned()];
    let mut summed = ok(
        repo.entries_summary(&who, &ids, &slots).await,
        "entries_summary",
    );
    summed.sort_by(|a, b| a.campaign_id.cmp(&b.campaign_id));
    let mut want = vec![
        EntriesSummary {
            campaign_id: once.id.clone(),
            last_entered_at_ms: last(&once.id).unwrap_or_default(),
            in_slots: true,
        },
        EntriesSummary {
            campaign_id: daily.id.clone(),
            last_entered_at_ms: last(&daily.id).unwrap_or_default(),
            in_slots: true,
        },
    ];
    want.sort_by(|a, b| a.campaign_id.cmp(&b.campaign_id));
    assert_eq!(summed, want);
    let other_day = ["2026-12-09".to_owned()];
    let summed = ok(
        repo.entries_summary(&who, std::slice::from_ref(&daily.id), &other_day)
            .await,
        "entries_summary",
    );
    assert_eq!(summed.len(), 1);
    assert!(!summed[0].in_slots, "{summed:?}");
    let nobody = ok(
        repo.entries_summary("counted_nobody", &ids, &slots).await,
        "entries_summary",
    );
    assert!(nobody.is_empty(), "{nobody:?}");
}

/// Many players entering at once a campaign that takes a few: it takes exactly its cap of players
/// and refuses every other one ([`Entered::Full`], nothing written), whether its cap is smaller
/// than its stripes of the count or larger (a daily campaign, some players entering two days at
/// once); a player it refused has no entry, one it took enters again (another day) once it is
/// full, and a new one is refused.
pub async fn a_campaign_takes_its_cap_of_players_at_once_and_no_more<S>(repo: Arc<S>)
where
    S: LiveStores + 'static,
{
    let small = campaign("capped_small");
    let large = Campaign {
        entry_limit: EntryLimit::Daily,
        ..campaign("capped_large")
    };
    let player = format!("capped_{}", suffix());
    for (c, cap, players, twice) in [(&small, 5, 48, 0), (&large, 40, 120, 12)] {
        create_in(repo.as_ref(), c, CampaignState::Live).await;
        let day = |i: usize| format!("2026-12-0{}", 1 + i);
        let slot = |d: usize| match c.entry_limit {
            EntryLimit::Once => "once".to_owned(),
            EntryLimit::Daily => day(d),
        };
        let mut entries: Vec<Entry> = (0..players)
            .map(|i| entry(&c.id, &format!("{player}_{i}"), &slot(0), &format!("c{i}")))
            .collect();
        // Some players on a second day at the same time.
        entries.extend((0..twice).map(|i| {
            entry(
                &c.id,
                &format!("{player}_{i}"),
                &slot(1),
                &format!("c{i}_again"),
            )
        }));
        let answers = at_once(&entries, |e| {
            let repo = repo.clone();
            async move { repo.enter(&e, cap).await }
        })
        .await;
        let mut took = Vec::new();
        for (e, answer) in entries.iter().zip(&answers) {
            match answer {
                Ok(Entered::Created(made)) => {
                    assert_eq!(made, e);
                    took.push(e.player_id.clone());
                }
                Ok(Entered::Full) => {}
                other => panic!("{} entering {}: {other:?}", e.player_id, c.id),
            }
        }
        took.sort();
        took.dedup();
        let entrants = ok(repo.entrants(&c.id).await, "entrants");
        let cap_len = usize::try_from(cap).unwrap_or(usize::MAX);
        assert_eq!(entrants.len(), cap_len, "{}: {entrants:?}", c.id);
        assert_eq!(entrants, liveops_core::draw::entrants(took), "{}", c.id);
        assert_eq!(ok(repo.entrant_count(&c.id).await, "entrant_count"), cap);
        for (e, answer) in entries.iter().zip(&answers) {
            if matches!(answer, Ok(Entered::Full)) {
                assert!(!entrants.contains(&e.player_id), "{e:?} refused, yet in");
            }
        }
        // A player it took, again: answered by the entry limit (once), or entered (another day).
        let back = entry(&c.id, &entrants[0], &slot(5), "back");
        let got = ok(repo.enter(&back, cap).await, "enter");
        match c.entry_limit {
            EntryLimit::Once => assert!(matches!(got, Entered::Existing(_)), "{got:?}"),
            EntryLimit::Daily => assert_eq!(got, Entered::Created(back)),
        }
        let late = entry(&c.id, &format!("{player}_late"), &slot(5), "late");
        assert_eq!(ok(repo.enter(&late, cap).await, "enter"), Entered::Full);
        assert_eq!(ok(repo.entrant_count(&c.id).await, "entrant_count"), cap);
        assert_eq!(ok(repo.entrants(&c.id).await, "entrants").len(), cap_len);
    }
}

/// Runs six copies of a write at once, as racing replicas would: their answers, in order.
async fn race<T, F, Fut>(what: &str, call: F) -> Vec<T>
where
    F: FnMut(usize) -> Fut,
    Fut: Future<Output = PortResult<T>> + Send + 'static,
    T: Send + 'static,
{
    let copies: Vec<usize> = (0..6).collect();
    let answers = at_once(&copies, call).await;
    answers.into_iter().map(|a| ok(a, what)).collect()
}
