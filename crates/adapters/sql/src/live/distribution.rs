//! The player inbox, settlement, and webhooks with their delivery queue on SQL.
//!
//! Settlement writes a group of winners' `campaign_settlements` rows and inbox messages in one
//! transaction; a row's key (campaign, player) lets only one of them ever exist per winner, so a
//! re-run after a crash writes nothing twice. Claims of messages are in `claims.rs`.

use std::collections::{HashMap, HashSet};

use liveops_core::stores::distribution::OutboxEvent;
use liveops_core::stores::{
    Attempt, AuditEntry, CampaignEvent, CappedOutcome, Delivery, DeliveryPage, DeliveryState,
    DueDelivery, InboxBelow, InboxMessage, InboxPage, Keyed, KeyedOutcome, ListedMessage,
    Redelivery, UndeliveredEvent, Webhook,
};
use liveops_core::{PortError, PortResult};
use sqlx::Transaction;

use super::claims::claim_of;
use super::requests::Cap;
use super::sealed::{opened_or_passed_over, sealed, webhook_row};
use super::{from_json, sql_impl, to_json, with_tail};
use crate::dialect::{db_error, to_u64, Text};
use crate::repository::within;
use crate::statement::Statement;

/// Most bytes of delivery bodies one `INSERT` carries (a lone larger body goes alone): well
/// within MySQL's smallest default `max_allowed_packet` (4 MiB).
const INSERT_BYTES: usize = 2 * 1024 * 1024;

/// `items` in order, in runs of at most `max` bytes as `size` counts them (a larger item alone).
fn by_bytes<T>(items: &[T], max: usize, size: impl Fn(&T) -> usize) -> Vec<&[T]> {
    let mut runs = Vec::new();
    let (mut start, mut bytes) = (0, 0usize);
    for (i, item) in items.iter().enumerate() {
        let n = size(item);
        if i > start && bytes.saturating_add(n) > max {
            runs.push(&items[start..i]);
            (start, bytes) = (i, 0);
        }
        bytes = bytes.saturating_add(n);
    }
    if start < items.len() {
        runs.push(&items[start..]);
    }
    runs
}

/// A message row: id, player, campaign, title, body, attachments, created, expires.
type MessageRow = (Text, Option<Text>, Option<Text>, Text, Text, Text, i64, i64);

fn message_of(row: MessageRow) -> PortResult<InboxMessage> {
    let (message_id, player_id, campaign_id, title, body, attachments, created, expires) = row;
    Ok(InboxMessage {
        message_id: message_id.0,
        player_id: player_id.map(String::from),
        campaign_id: campaign_id.map(String::from),
        title: title.0,
        body: body.0,
        attachments: from_json("message attachments", &attachments.0)?,
        created_at_ms: created,
        expires_at_ms: expires,
    })
}

/// A webhook attempt as selected: delivery id, attempt, at, status, error, duration.
type AttemptRow = (Text, i64, i64, Option<i64>, Option<Text>, i64);

/// A delivery row: id, webhook, event, its public id, kind, body, state, attempts, next,
/// created.
type DeliveryRow = (
    Text,
    Text,
    i64,
    Option<Text>,
    Text,
    Text,
    Text,
    i64,
    i64,
    i64,
);

/// A leased delivery as selected: its [`DeliveryRow`], then its webhook's url, secret as
/// stored and the key that sealed it.
struct DueRow(DeliveryRow, Text, Text, Option<Text>);

impl<'r, R> sqlx::FromRow<'r, R> for DueRow
where
    R: sqlx::Row,
    usize: sqlx::ColumnIndex<R>,
    DeliveryRow: sqlx::FromRow<'r, R>,
    Text: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    fn from_row(row: &'r R) -> Result<Self, sqlx::Error> {
        // The delivery's ten columns come first.
        let delivery = <DeliveryRow as sqlx::FromRow<R>>::from_row(row)?;
        Ok(Self(
            delivery,
            row.try_get(10)?,
            row.try_get(11)?,
            row.try_get(12)?,
        ))
    }
}

/// The public id of the outbox event `id` as stored, or for a row written before migration
/// 0014 (none stored) the one it was sent under then, `evt_<id>`.
fn public_event_id(id: i64, stored: Option<Text>) -> String {
    stored.map_or_else(|| format!("evt_{id}"), String::from)
}

fn delivery_of(row: DeliveryRow) -> PortResult<Delivery> {
    let (id, webhook_id, event_id, public_id, kind, body, state, attempts, next, created) = row;
    Ok(Delivery {
        id: id.0,
        webhook_id: webhook_id.0,
        event_id,
        event_public_id: public_event_id(event_id, public_id),
        kind: kind.0,
        body: body.0,
        state: DeliveryState::parse(&state.0)
            .ok_or_else(|| PortError::Corrupt(format!("delivery state {:?}", state.0)))?,
        attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
        next_attempt_at_ms: next,
        created_at_ms: created,
    })
}

/// `SELECT` of a delivery row (columns prefixed `d.`) with `$body` for its body, and `$tail`
/// after the table.
macro_rules! select_deliveries {
    ($body:literal, $extra:literal, $($tail:tt)+) => {
        concat!(
            "SELECT d.id, d.webhook_id, d.event_id, d.event_public_id, d.kind, ",
            $body,
            ", d.state, d.attempts, d.next_attempt_at, d.created_at",
            $extra,
            " FROM webhook_deliveries d",
            $($tail)+
        )
    };
}

/// The statement of a page of a player's inbox (`?` placeholders): their live messages and
/// everyone's, the last written first, below `below` if given. Each side is read down the index
/// `(player_id, position)` and stops at the page's size, then the two are merged and cut again:
/// one `OR` of both would gather and sort every live message of the player and every broadcast
/// for each page. (PostgreSQL reads everyone's side down `inbox_messages_live_to_all`,
/// migration 0017: it takes `player_id IS NULL` for no equality, so the other index gives it no
/// order; the index holds the expiry, so an expired message, kept for retention, is passed over
/// in the index, its row never read.)
///
/// Its parameters: the player, the live time, `below`'s position or message id (if given) and
/// the page's size, for the player's side; the same but the player for everyone's; then the
/// player (their claims) and the page's size.
pub fn inbox_page_statement(below: Option<InboxBelow<'_>>) -> &'static str {
    macro_rules! inbox_page {
        ($below:literal) => {
            concat!(
                "SELECT m.message_id, m.player_id, m.campaign_id, m.title, m.body, \
                 m.attachments, m.created_at, m.expires_at, m.position, \
                 c.claimed_at, c.receipts, c.request_sig FROM (",
                inbox_page!(@side "player_id = ?", $below),
                " AS mine UNION ALL ",
                inbox_page!(@side "player_id IS NULL", $below),
                " AS everyone) AS m LEFT JOIN inbox_claims c \
                 ON c.message_id = m.message_id AND c.player_id = ? \
                 ORDER BY m.position DESC LIMIT ?"
            )
        };
        (@side $whose:literal, $below:literal) => {
            concat!(
                "SELECT * FROM (SELECT message_id, player_id, campaign_id, title, body, \
                 attachments, created_at, expires_at, position FROM inbox_messages WHERE ",
                $whose,
                " AND expires_at > ? AND position IS NOT NULL",
                $below,
                " ORDER BY position DESC LIMIT ?)"
            )
        };
    }
    // Continued below the last message of the previous page (named by its id in a cursor given
    // before positions; from the top if it is not found).
    match below {
        Some(InboxBelow::Position(_)) => inbox_page!(" AND position < ?"),
        Some(InboxBelow::Message(_)) => inbox_page!(
            " AND position < COALESCE((SELECT b.position FROM inbox_messages b \
             WHERE b.message_id = ?), 9223372036854775807)"
        ),
        None => inbox_page!(""),
    }
}

sql_impl! {
    pub(crate) async fn settle(
        &self,
        campaign_id: &str,
        messages: &[InboxMessage],
    ) -> PortResult<u64> {
        let mut winners = Vec::with_capacity(messages.len());
        for m in messages {
            let player = m.player_id.as_deref().ok_or_else(|| {
                PortError::Corrupt(format!("settlement message {} names no winner", m.message_id))
            })?;
            winners.push((player, m, to_json("message attachments", &m.attachments)?));
        }
        if winners.is_empty() {
            return Ok(0);
        }
        // The keys in one order for every settler: replicas settling the same group lock them
        // in step (no deadlock), the second waiting for the first's commit.
        winners.sort_by(|a, b| a.0.cmp(b.0));
        within::<DB, _>("settle", async {
            let (mut tx, _turn) = self.begin_write().await?;
            Self::insert_rows(
                &mut tx,
                (
                    "INSERT INTO campaign_settlements \
                     (campaign_id, player_id, message_id, settled_at) ",
                    4,
                    &DB::keep_existing("campaign_id, player_id", "message_id"),
                ),
                &winners,
                |row, (player, m, _)| {
                    row.bind(campaign_id)
                        .bind(*player)
                        .bind(m.message_id.as_str())
                        .bind(m.created_at_ms);
                },
                db_error::<DB>,
            )
            .await?;
            // Whose settlement is this call's: those settled before keep their message.
            let kept: Vec<(Text,)> =
                Self::fetch_chunked(&mut tx, &winners, DB::MAX_BIND - 1, |qb, chunk| {
                    qb.push("SELECT message_id FROM campaign_settlements WHERE campaign_id = ")
                        .bind(campaign_id)
                        .push(" AND player_id")
                        .in_list(chunk.iter().map(|(player, _, _)| *player));
                })
                .await?;
            let kept: HashSet<String> = kept.into_iter().map(|(id,)| id.0).collect();
            let new: Vec<(&InboxMessage, &String)> = winners
                .iter()
                .filter(|(_, m, _)| kept.contains(&m.message_id))
                .map(|(_, m, attachments)| (*m, attachments))
                .collect();
            if new.is_empty() {
                return Self::rolled_back(tx, 0).await;
            }
            let written = u64::try_from(new.len()).unwrap_or(u64::MAX);
            Self::insert_messages(&mut tx, new).await?;
            tx.commit().await.map_err(db_error::<DB>)?;
            Ok(written)
        })
        .await
    }

    /// Takes `count` positions on `conn` (a transaction's): the first of them. They follow
    /// every position given before, and the counter's row stays locked until the transaction
    /// ends, so positions are given in the order messages commit (ADR 0025).
    async fn take_positions(conn: &mut DB::Connection, count: usize) -> PortResult<i64> {
        let count = i64::try_from(count).unwrap_or(i64::MAX);
        let take = DB::placeholders(
            "UPDATE inbox_positions SET last_position = last_position + ? WHERE id = 1",
        );
        Self::run(conn, sqlx::query(&take).bind(count)).await?;
        let last = sqlx::query_as("SELECT last_position FROM inbox_positions WHERE id = 1");
        let (last,): (i64,) = Self::row_on(conn, last).await?;
        Ok(last - count + 1)
    }

    /// Writes messages, each with its attachments as JSON, on `conn` (a transaction's) at
    /// positions taken for them ([`Self::take_positions`]), in creation time and id order.
    async fn insert_messages(
        conn: &mut DB::Connection,
        mut sorted: Vec<(&InboxMessage, &String)>,
    ) -> PortResult<()> {
        sorted.sort_by(|(a, _), (b, _)| {
            (a.created_at_ms, &a.message_id).cmp(&(b.created_at_ms, &b.message_id))
        });
        let first = Self::take_positions(conn, sorted.len()).await?;
        let rows: Vec<((&InboxMessage, &String), i64)> = sorted.into_iter().zip(first..).collect();
        Self::insert_rows(
            conn,
            (
                "INSERT INTO inbox_messages (message_id, player_id, campaign_id, title, body, \
                 attachments, created_at, expires_at, position) ",
                9,
                "",
            ),
            &rows,
            |row, ((m, att), position)| {
                row.bind(m.message_id.as_str())
                    .bind(m.player_id.as_deref())
                    .bind(m.campaign_id.as_deref())
                    .bind(m.title.as_str())
                    .bind(m.body.as_str())
                    .bind(att.as_str())
                    .bind(m.created_at_ms)
                    .bind(m.expires_at_ms)
                    .bind(*position);
            },
            db_error::<DB>,
        )
        .await
        .map(drop)
    }

    pub(crate) async fn send_messages(
        &self,
        keyed: Option<&Keyed>,
        messages: &[InboxMessage],
        audit: &AuditEntry,
    ) -> PortResult<KeyedOutcome> {
        let attachments = messages
            .iter()
            .map(|m| to_json("message attachments", &m.attachments))
            .collect::<PortResult<Vec<_>>>()?;
        within::<DB, _>("send_messages", async {
            let (mut tx, _turn) = self.begin_write().await?;
            if let Some(keyed) = keyed {
                if let Some(before) = Self::take_key(&mut tx, &self.sealer.load(), keyed, audit.at_ms).await? {
                    return Self::rolled_back(tx, before).await;
                }
                if let Some(before) = Self::keep_legacy_send(&mut tx, keyed, messages, audit.at_ms).await? {
                    return Self::rolled_back(tx, before).await;
                }
            }
            Self::insert_messages(&mut tx, messages.iter().zip(&attachments).collect()).await?;
            Self::commit_audited(tx, audit).await?;
            Ok(KeyedOutcome::Written)
        })
        .await
    }

    /// Writes a keyed send's key to `inbox_sends` too, in `tx`, until that table is dropped: a
    /// process of the release before migration 0007 (a rolling upgrade) looks its keys up there
    /// only, so a retry it serves finds this send (it answers 422, its digest taken another way,
    /// rather than sending again), and a send it wrote under the key first is answered here.
    async fn keep_legacy_send(
        tx: &mut Transaction<'static, DB>,
        keyed: &Keyed,
        messages: &[InboxMessage],
        at_ms: i64,
    ) -> PortResult<Option<KeyedOutcome>> {
        let ids: Vec<&str> = messages.iter().map(|m| m.message_id.as_str()).collect();
        let ids = to_json("sent message ids", &ids)?;
        let key = &keyed.key;
        let insert_sql = with_tail::<DB>(
            "INSERT INTO inbox_sends (operator_id, idem_key, request_hash, message_ids, sent_at) \
             VALUES (?, ?, ?, ?, ?)",
            DB::keep_existing("operator_id, idem_key", "request_hash"),
        );
        let select_sql = DB::placeholders(
            "SELECT message_ids FROM inbox_sends WHERE operator_id = ? AND idem_key = ?",
        );
        let insert = || {
            sqlx::query(&insert_sql)
                .bind(key.operator_id.as_str())
                .bind(key.key.as_str())
                .bind(key.request_hash.as_str())
                .bind(ids.as_str())
                .bind(at_ms)
        };
        let read = || {
            sqlx::query_as(&select_sql)
                .bind(key.operator_id.as_str())
                .bind(key.key.as_str())
        };
        let (theirs,): (Text,) = Self::keep_then_read(tx, "inbox_sends", insert, read).await?;
        Ok((theirs.0 != ids)
            .then(|| KeyedOutcome::Replayed(format!("{{\"messageIds\":{}}}", theirs.0))))
    }

    pub(crate) async fn message(
        &self,
        player_id: &str,
        message_id: &str,
    ) -> PortResult<Option<InboxMessage>> {
        let sql = DB::placeholders(
            "SELECT message_id, player_id, campaign_id, title, body, attachments, created_at, \
             expires_at FROM inbox_messages \
             WHERE message_id = ? AND (player_id = ? OR player_id IS NULL)",
        );
        let query = sqlx::query_as(&sql).bind(message_id).bind(player_id);
        self.optional_row("message", query, message_of).await
    }

    pub(crate) async fn inbox(
        &self,
        player_id: &str,
        page: InboxPage<'_>,
    ) -> PortResult<Vec<ListedMessage>> {
        let sql = DB::placeholders(inbox_page_statement(page.below));
        type Row = (
            Text,
            Option<Text>,
            Option<Text>,
            Text,
            Text,
            Text,
            i64,
            i64,
            i64,
            Option<i64>,
            Option<Text>,
            Option<Text>,
        );
        let (live_at, limit) = (page.live_at_ms.unwrap_or(i64::MIN), i64::from(page.limit));
        let mut query = sqlx::query_as(&sql);
        // The player's side names them, everyone's does not; then the claims' player.
        for player in [Some(player_id), None] {
            if let Some(player) = player {
                query = query.bind(player);
            }
            query = query.bind(live_at);
            match page.below {
                Some(InboxBelow::Position(position)) => query = query.bind(position),
                Some(InboxBelow::Message(id)) => query = query.bind(id),
                None => {}
            }
            query = query.bind(limit);
        }
        let query = query.bind(player_id).bind(limit);
        self.all_rows("inbox", query, |r: Row| {
            let message = message_of((r.0, r.1, r.2, r.3, r.4, r.5, r.6, r.7))?;
            let claim = match (r.9, r.10, r.11) {
                (Some(at), Some(receipts), Some(sig)) => Some(claim_of((
                    Text(message.message_id.clone()),
                    Text(player_id.to_owned()),
                    at,
                    receipts,
                    sig,
                ))?),
                _ => None,
            };
            Ok(ListedMessage {
                message,
                claim,
                position: r.8,
            })
        })
        .await
    }

    pub(crate) async fn place_messages(&self, limit: u32) -> PortResult<u64> {
        let unplaced = DB::placeholders(
            "SELECT message_id FROM inbox_messages WHERE position IS NULL \
             ORDER BY created_at, message_id LIMIT ?",
        );
        within::<DB, _>("place_messages", async {
            // Read on the primary first: nearly always none, and then no write turn is taken.
            let any = self.rows(sqlx::query_as(&unplaced).bind(1_i64), |(id,): (Text,)| Ok(id));
            if any.await?.is_empty() {
                return Ok(0);
            }
            let (mut tx, _turn) = self.begin_write().await?;
            // The counter's lock first: it orders this with every other message write and
            // placer, so each message is read unplaced by one of them only.
            Self::take_positions(&mut tx, 0).await?;
            let ids: Vec<(Text,)> = sqlx::query_as(&unplaced)
                .bind(i64::from(limit))
                .fetch_all(&mut *tx)
                .await
                .map_err(db_error::<DB>)?;
            let first = Self::take_positions(&mut tx, ids.len()).await?;
            // One statement for the page: the counter's lock is held for one round trip more.
            if !ids.is_empty() {
                let mut qb = Statement::<DB>::new(
                    "UPDATE inbox_messages SET position = CASE message_id",
                );
                for ((id,), position) in ids.iter().zip(first..) {
                    qb.push(" WHEN ").bind(id.0.as_str()).push(" THEN ").bind(position);
                }
                qb.push(" END WHERE message_id").in_list(ids.iter().map(|(id,)| id.0.as_str()));
                let (sql, args) = qb.finish()?;
                Self::run(&mut tx, sqlx::query_with(&sql, args)).await?;
            }
            tx.commit().await.map_err(db_error::<DB>)?;
            Ok(u64::try_from(ids.len()).unwrap_or(u64::MAX))
        })
        .await
    }

    pub(crate) async fn create_webhook(
        &self,
        keyed: Option<&Keyed>,
        hook: &Webhook,
        audit: &AuditEntry,
        max: u32,
    ) -> PortResult<CappedOutcome> {
        let events = to_json("webhook events", &hook.events)?;
        let sql = DB::placeholders(
            "INSERT INTO webhooks (id, url, events, secret, secret_key, created_by, created_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        );
        let secret = sealed(&self.sealer.load(), &webhook_row(&hook.id), &hook.secret)?;
        let insert = sqlx::query(&sql)
            .bind(hook.id.as_str())
            .bind(hook.url.as_str())
            .bind(events.as_str())
            .bind(secret.text.as_str())
            .bind(secret.key_id.as_deref())
            .bind(hook.created_by.as_str())
            .bind(hook.created_at_ms);
        let cap = Cap {
            name: "webhooks",
            count: "SELECT COUNT(*) FROM webhooks WHERE deleted_at IS NULL",
            max,
        };
        self.run_capped("create_webhook", keyed, cap, insert, audit).await
    }

    pub(crate) async fn webhooks(&self) -> PortResult<Vec<Webhook>> {
        let all = sqlx::query_as(
            "SELECT id, url, events, secret, secret_key, created_by, created_at FROM webhooks \
             WHERE deleted_at IS NULL ORDER BY created_at, id",
        );
        type Row = (Text, Text, Text, Text, Option<Text>, Text, i64);
        let sealer = self.sealer.load();
        self.all_rows("webhooks", all, |(id, url, events, secret, key, created_by, created_at_ms): Row| {
            // A secret that does not open is listed empty: deliveries read theirs when leased.
            let row = webhook_row(&id.0);
            let secret = opened_or_passed_over(&sealer, "webhooks", &row, secret, key)
                .unwrap_or_default();
            Ok(Webhook {
                id: id.0,
                url: url.0,
                events: from_json("webhook events", &events.0)?,
                secret,
                created_by: created_by.0,
                created_at_ms,
            })
        })
        .await
    }

    pub(crate) async fn delete_webhook(&self, id: &str, audit: &AuditEntry) -> PortResult<bool> {
        within::<DB, _>("delete_webhook", async {
            let (mut tx, _turn) = self.begin_write().await?;
            let sql = DB::placeholders(
                "UPDATE webhooks SET deleted_at = ? WHERE id = ? AND deleted_at IS NULL",
            );
            if !Self::changed_one(&mut tx, sqlx::query(&sql).bind(audit.at_ms).bind(id)).await? {
                return Self::rolled_back(tx, false).await;
            }
            let sql = DB::placeholders(
                "UPDATE webhook_deliveries SET state = 'dead' \
                 WHERE webhook_id = ? AND state = 'pending'",
            );
            Self::run(&mut tx, sqlx::query(&sql).bind(id)).await?;
            Self::commit_audited(tx, audit).await?;
            Ok(true)
        })
        .await
    }

    pub(crate) async fn undispatched(&self, limit: u32) -> PortResult<Vec<OutboxEvent>> {
        // The data's size without its data: a draw's is a megabyte for 10 000 winners.
        let sql = format!(
            "SELECT id, campaign_id, kind, at_ms, CAST(OCTET_LENGTH(data) AS {}) \
             FROM campaign_events WHERE dispatched = 0 ORDER BY id LIMIT ",
            DB::INTEGER
        );
        let mut qb = Statement::<DB>::new(&sql);
        qb.bind(i64::from(limit));
        let (sql, args) = qb.finish()?;
        let query = sqlx::query_as_with(&sql, args).persistent(false);
        type Row = (i64, Text, Text, i64, i64);
        self.all_rows("undispatched", query, |(id, campaign_id, kind, at_ms, bytes): Row| {
            Ok(OutboxEvent {
                id,
                kind: kind.0,
                campaign_id: campaign_id.0,
                at_ms,
                data_bytes: to_u64(bytes),
            })
        })
        .await
    }

    pub(crate) async fn undelivered_events(
        &self,
        ids: &[i64],
    ) -> PortResult<Vec<UndeliveredEvent>> {
        within::<DB, _>("undelivered_events", async {
            type Row = (i64, Option<Text>, Text, Text, i64, Text);
            let rows: Vec<Row> = self
                .select_chunked(ids, DB::MAX_BIND, |qb, chunk| {
                    qb.push(
                        "SELECT id, public_id, campaign_id, kind, at_ms, data \
                         FROM campaign_events WHERE dispatched = 0 AND id",
                    )
                    .in_list(chunk.iter().copied());
                })
                .await?;
            let mut events: Vec<UndeliveredEvent> = rows
                .into_iter()
                .map(|(id, public_id, campaign_id, kind, at_ms, data)| UndeliveredEvent {
                    id,
                    public_id: public_event_id(id, public_id),
                    event: CampaignEvent {
                        kind: kind.0,
                        campaign_id: campaign_id.0,
                        at_ms,
                        data: data.0,
                    },
                })
                .collect();
            events.sort_by_key(|e| e.id);
            Ok(events)
        })
        .await
    }

    pub(crate) async fn enqueue(&self, event_ids: &[i64], deliveries: &[Delivery]) -> PortResult<()> {
        within::<DB, _>("enqueue", async {
            let (mut tx, _turn) = self.begin_write().await?;
            // The webhooks still there, held against a delete until commit: a delete that
            // committed since the fan-out read them gets no delivery (nothing would ever send
            // it or mark it dead), and one that comes later dead-letters what this commits.
            let mut hooks: Vec<&str> = deliveries.iter().map(|d| d.webhook_id.as_str()).collect();
            hooks.sort_unstable();
            hooks.dedup();
            let live: Vec<(Text,)> = Self::fetch_chunked(&mut tx, &hooks, DB::MAX_BIND, |qb, chunk| {
                qb.push("SELECT id FROM webhooks WHERE deleted_at IS NULL AND id")
                    .in_list(chunk.iter().copied())
                    // One order for every enqueue: shared locks taken in step.
                    .push(" ORDER BY id")
                    .push(DB::LOCK_SHARED);
            })
            .await?;
            let live: HashSet<String> = live.into_iter().map(|(id,)| id.0).collect();
            let deliveries: Vec<&Delivery> = deliveries
                .iter()
                .filter(|d| live.contains(&d.webhook_id))
                .collect();
            // One statement per few megabytes of bodies (a draw's is a megabyte for 10 000
            // winners): within any server's packet bound however many are queued at once.
            for chunk in by_bytes(&deliveries, INSERT_BYTES, |d| d.body.len()) {
                Self::insert_rows(
                    &mut tx,
                    (
                        "INSERT INTO webhook_deliveries (id, webhook_id, event_id, \
                         event_public_id, kind, body, state, attempts, next_attempt_at, \
                         created_at) ",
                        10,
                        &DB::keep_existing("webhook_id, event_id", "id"),
                    ),
                    chunk,
                    |row, d| {
                        row.bind(d.id.as_str())
                            .bind(d.webhook_id.as_str())
                            .bind(d.event_id)
                            .bind(d.event_public_id.as_str())
                            .bind(d.kind.as_str())
                            .bind(d.body.as_str())
                            .bind(d.state.as_str())
                            .bind(i64::from(d.attempts))
                            .bind(d.next_attempt_at_ms)
                            .bind(d.created_at_ms);
                    },
                    db_error::<DB>,
                )
                .await?;
            }
            for chunk in event_ids.chunks(DB::MAX_BIND) {
                let mut qb =
                    Statement::<DB>::new("UPDATE campaign_events SET dispatched = 1 WHERE id");
                qb.in_list(chunk.iter().copied());
                let (sql, args) = qb.finish()?;
                sqlx::query_with(&sql, args)
                    .persistent(false)
                    .execute(&mut *tx)
                    .await
                    .map_err(db_error::<DB>)?;
            }
            tx.commit().await.map_err(db_error::<DB>)
        })
        .await
    }

    pub(crate) async fn lease_due(
        &self,
        now_ms: i64,
        until_ms: i64,
        limit: u32,
        per_webhook: u32,
        in_flight: &HashMap<String, u32>,
    ) -> PortResult<Vec<DueDelivery>> {
        if limit == 0 || per_webhook == 0 {
            return Ok(Vec::new());
        }
        within::<DB, _>("lease_due", async {
            let chosen = self
                .due_within_caps(now_ms, limit, per_webhook, in_flight)
                .await?;
            if chosen.is_empty() {
                return Ok(Vec::new());
            }
            let leased = self.lease(&chosen, until_ms).await?;
            // Bodies read only for what was leased, and only while still under this lease (a
            // webhook deleted meanwhile has its deliveries dead: not sent).
            let rows: Vec<DueRow> = self
                .select_chunked(&leased, DB::MAX_BIND - 1, |qb, chunk| {
                    qb.push(select_deliveries!(
                        "d.body",
                        ", w.url, w.secret, w.secret_key",
                        " JOIN webhooks w ON w.id = d.webhook_id \
                         WHERE d.state = 'pending' AND d.next_attempt_at = "
                    ))
                    .bind(until_ms)
                    .push(" AND d.id")
                    .in_list(chunk.iter().map(String::as_str));
                })
                .await?;
            let mut due = Vec::with_capacity(rows.len());
            let sealer = self.sealer.load();
            for DueRow(delivery, url, secret, key) in rows {
                let delivery = delivery_of(delivery)?;
                // A secret that does not open signs nothing: the delivery waits out its lease
                // and is tried again (a key put back opens it).
                let row = webhook_row(&delivery.webhook_id);
                let Some(secret) = opened_or_passed_over(&sealer, "webhooks", &row, secret, key)
                else {
                    continue;
                };
                due.push(DueDelivery {
                    delivery,
                    url: url.0,
                    secret,
                });
            }
            // In the order they were due.
            let order: HashMap<&str, usize> = chosen
                .iter()
                .enumerate()
                .map(|(i, (id, _))| (id.as_str(), i))
                .collect();
            due.sort_by_key(|d| order.get(d.delivery.id.as_str()).copied());
            Ok(due)
        })
        .await
    }

    /// Leases `chosen` (id and due time as read) until `until_ms`, each only if it is still
    /// pending at the due time read (nobody leased or tried it since; the rest stay due): one
    /// `UPDATE` for them all, answering what it leased (`RETURNING`), or where a backend has no
    /// `RETURNING` (MySQL) the rows still leasable locked and read first; the ids leased.
    async fn lease(&self, chosen: &[(String, i64)], until_ms: i64) -> PortResult<Vec<String>> {
        // The id, and in the CASE its id and due time: three values a delivery.
        let per_chunk = (DB::MAX_BIND - 1) / 3;
        let (mut tx, _turn) = self.begin_write().await?;
        let leased: Vec<(Text,)> = if DB::UPDATE_RETURNING {
            Self::fetch_chunked(&mut tx, chosen, per_chunk, |qb, chunk| {
                qb.push("UPDATE webhook_deliveries SET next_attempt_at = ")
                    .bind(until_ms);
                Self::still_due(qb, chunk);
                qb.push(" RETURNING id");
            })
            .await?
        } else {
            let leasable: Vec<(Text,)> =
                Self::fetch_chunked(&mut tx, chosen, per_chunk, |qb, chunk| {
                    qb.push("SELECT id FROM webhook_deliveries");
                    Self::still_due(qb, chunk);
                    qb.push(DB::LOCK_ROWS);
                })
                .await?;
            for chunk in leasable.chunks(DB::MAX_BIND - 1) {
                let mut qb =
                    Statement::<DB>::new("UPDATE webhook_deliveries SET next_attempt_at = ");
                qb.bind(until_ms)
                    .push(" WHERE id")
                    .in_list(chunk.iter().map(|(id,)| id.0.as_str()));
                let (sql, args) = qb.finish()?;
                Self::run(&mut tx, sqlx::query_with(&sql, args).persistent(false)).await?;
            }
            leasable
        };
        tx.commit().await.map_err(db_error::<DB>)?;
        Ok(leased.into_iter().map(|(id,)| id.0).collect())
    }

    /// ` WHERE` the deliveries of `chunk` (id and due time as read) are still pending at that
    /// due time: found by their ids (the key), then their due times compared.
    fn still_due<'q>(qb: &mut Statement<'q, DB>, chunk: &'q [(String, i64)]) {
        qb.push(" WHERE id")
            .in_list(chunk.iter().map(|(id, _)| id.as_str()))
            .push(" AND state = 'pending' AND next_attempt_at = CASE id");
        for (id, next) in chunk {
            qb.push(" WHEN ").bind(id.as_str()).push(" THEN ").bind(*next);
        }
        qb.push(" END");
    }

    /// Up to `limit` pending deliveries due at `now_ms` (id and due time), longest due first
    /// (then by id), at most `per_webhook` of a webhook with `in_flight` counted. Each active
    /// webhook under its cap is read along `webhook_deliveries_due_by_hook` (migration 0017),
    /// its oldest due first and no more than it may take, all of them in one statement (a chunk
    /// of webhooks per statement); a webhook at its cap is not read at all, however many of its
    /// deliveries are due. The same choice as reading every due delivery oldest first and
    /// passing over those of webhooks at their cap.
    async fn due_within_caps(
        &self,
        now_ms: i64,
        limit: u32,
        per_webhook: u32,
        in_flight: &HashMap<String, u32>,
    ) -> PortResult<Vec<(String, i64)>> {
        let active = sqlx::query_as("SELECT id FROM webhooks WHERE deleted_at IS NULL");
        let active: Vec<(Text,)> = active.fetch_all(self.pool()).await.map_err(db_error::<DB>)?;
        // Each webhook under its cap with how many it may still take.
        let room: Vec<(String, i64)> = active
            .into_iter()
            .filter_map(|(id,)| {
                let busy = in_flight.get(&id.0).copied().unwrap_or(0);
                let room = per_webhook.saturating_sub(busy).min(limit);
                (room > 0).then(|| (id.0, i64::from(room)))
            })
            .collect();
        let limit = i64::from(limit);
        // A webhook's id, the time and its room in each arm; the page's size once.
        let mut chosen: Vec<(String, i64)> = self
            .select_chunked(&room, (DB::MAX_BIND - 1) / 3, |qb, chunk| {
                qb.push("SELECT id, next_attempt_at FROM (");
                for (i, (hook, room)) in chunk.iter().enumerate() {
                    if i > 0 {
                        qb.push(" UNION ALL ");
                    }
                    qb.push(
                        "SELECT * FROM (SELECT id, next_attempt_at FROM webhook_deliveries \
                         WHERE state = 'pending' AND webhook_id = ",
                    )
                    .bind(hook.as_str())
                    .push(" AND next_attempt_at <= ")
                    .bind(now_ms)
                    .push(" ORDER BY next_attempt_at, id LIMIT ")
                    .bind(*room)
                    .push(&format!(") AS hook{i}"));
                }
                qb.push(") AS due ORDER BY next_attempt_at, id LIMIT ")
                    .bind(limit);
            })
            .await?
            .into_iter()
            .map(|(id, next): (Text, i64)| (id.0, next))
            .collect();
        // Chunks merged.
        chosen.sort_by(|a, b| (a.1, &a.0).cmp(&(b.1, &b.0)));
        chosen.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
        Ok(chosen)
    }

    pub(crate) async fn record_attempt(
        &self,
        leased_until_ms: i64,
        d: &Delivery,
        a: &Attempt,
    ) -> PortResult<bool> {
        within::<DB, _>("record_attempt", async {
            let (mut tx, _turn) = self.begin_write().await?;
            // Only under the lease it was sent under: leases of one delivery end ever later, and
            // a deleted webhook's deliveries are dead.
            let sql = DB::placeholders(
                "UPDATE webhook_deliveries SET state = ?, attempts = ?, next_attempt_at = ? \
                 WHERE id = ? AND state = 'pending' AND next_attempt_at = ?",
            );
            let update = sqlx::query(&sql)
                .bind(d.state.as_str())
                .bind(i64::from(d.attempts))
                .bind(d.next_attempt_at_ms)
                .bind(d.id.as_str())
                .bind(leased_until_ms);
            if !Self::changed_one(&mut tx, update).await? {
                return Self::rolled_back(tx, false).await;
            }
            let sql = with_tail::<DB>(
                "INSERT INTO webhook_attempts \
                 (delivery_id, attempt, at_ms, status, error, duration_ms) \
                 VALUES (?, ?, ?, ?, ?, ?)",
                DB::keep_existing("delivery_id, attempt", "attempt"),
            );
            let insert = sqlx::query(&sql)
                .bind(d.id.as_str())
                .bind(i64::from(a.attempt))
                .bind(a.at_ms)
                .bind(a.status.map(i64::from))
                .bind(a.error.as_deref())
                .bind(a.duration_ms);
            Self::run(&mut tx, insert).await?;
            tx.commit().await.map_err(db_error::<DB>)?;
            Ok(true)
        })
        .await
    }

    pub(crate) async fn deliveries(
        &self,
        webhook_id: &str,
        page: DeliveryPage<'_>,
    ) -> PortResult<Vec<(Delivery, Vec<Attempt>)>> {
        within::<DB, _>("deliveries", async {
            // Without bodies: a listing shows none, and a draw's carries every award (a
            // megabyte for 10 000 winners), so 500 of them would be read for nothing. After a
            // cursor, the first bound repeats the second's so the index on the webhook and
            // creation time is read from the cursor on.
            macro_rules! listing {
                ($where:literal) => {
                    select_deliveries!(
                        "'' AS body",
                        "",
                        concat!(
                            " WHERE d.webhook_id = ?",
                            $where,
                            " ORDER BY d.created_at DESC, d.id DESC LIMIT ?"
                        )
                    )
                };
            }
            let sql = DB::placeholders(match (page.state.is_some(), page.after.is_some()) {
                (false, false) => listing!(""),
                (true, false) => listing!(" AND d.state = ?"),
                (false, true) => listing!(
                    " AND d.created_at <= ? AND (d.created_at < ? OR \
                     (d.created_at = ? AND d.id < ?))"
                ),
                (true, true) => listing!(
                    " AND d.state = ? AND d.created_at <= ? AND (d.created_at < ? OR \
                     (d.created_at = ? AND d.id < ?))"
                ),
            });
            let mut query = sqlx::query_as(&sql).bind(webhook_id);
            if let Some(state) = page.state {
                query = query.bind(state.as_str());
            }
            if let Some((at_ms, id)) = page.after {
                query = query.bind(at_ms).bind(at_ms).bind(at_ms).bind(id);
            }
            let query = query.bind(i64::from(page.limit));
            let deliveries = self.rows(query, delivery_of).await?;
            let rows: Vec<AttemptRow> = self
                .select_chunked(&deliveries, DB::MAX_BIND, |qb, chunk| {
                    qb.push(
                        "SELECT delivery_id, attempt, at_ms, status, error, duration_ms \
                         FROM webhook_attempts WHERE delivery_id",
                    )
                    .in_list(chunk.iter().map(|d| d.id.as_str()))
                    .push(" ORDER BY delivery_id, attempt");
                })
                .await?;
            let mut attempts: HashMap<String, Vec<Attempt>> = HashMap::new();
                for (id, attempt, at_ms, status, error, duration_ms) in rows {
                    attempts.entry(id.0).or_default().push(Attempt {
                        attempt: u32::try_from(to_u64(attempt)).unwrap_or(u32::MAX),
                        at_ms,
                        status: status.and_then(|s| u16::try_from(s).ok()),
                        error: error.map(String::from),
                        duration_ms,
                    });
                }
            Ok(deliveries
                .into_iter()
                .map(|d| {
                    let a = attempts.remove(&d.id).unwrap_or_default();
                    (d, a)
                })
                .collect())
        })
        .await
    }

    pub(crate) async fn redeliver(
        &self,
        webhook_id: &str,
        ids: &[String],
        limit: u32,
        now_ms: i64,
        audit: &AuditEntry,
    ) -> PortResult<Option<Redelivery>> {
        within::<DB, _>("redeliver", async {
            let (mut tx, _turn) = self.begin_write().await?;
            // Held against a delete, which dead-letters the webhook's pending deliveries.
            let sql = with_tail::<DB>(
                "SELECT id FROM webhooks WHERE id = ? AND deleted_at IS NULL",
                DB::LOCK_SHARED,
            );
            let active: Option<(Text,)> =
                Self::optional_on(&mut tx, sqlx::query_as(&sql).bind(webhook_id)).await?;
            if active.is_none() {
                return Self::rolled_back(tx, None).await;
            }
            let hook = webhook_id.to_owned();
            let dead: Vec<(i64, Text)> = if ids.is_empty() {
                let sql = with_tail::<DB>(
                    "SELECT created_at, id FROM webhook_deliveries \
                     WHERE webhook_id = ? AND state = 'dead' ORDER BY created_at, id LIMIT ?",
                    DB::LOCK_ROWS,
                );
                let query = sqlx::query_as(&sql)
                    .bind(webhook_id)
                    .bind(i64::from(limit));
                query.fetch_all(&mut *tx).await.map_err(db_error::<DB>)?
            } else {
                Self::fetch_chunked(&mut tx, ids, DB::MAX_BIND - 1, |qb, chunk| {
                    qb.push("SELECT created_at, id FROM webhook_deliveries WHERE webhook_id = ")
                        .bind(hook.clone())
                        .push(" AND state = 'dead' AND id")
                        .in_list(chunk.iter().map(String::as_str))
                        // Rows locked in one order by every redelivery: no deadlock.
                        .push(" ORDER BY created_at, id")
                        .push(DB::LOCK_ROWS);
                })
                .await?
            };
            let mut dead: Vec<(i64, String)> = dead.into_iter().map(|(at, id)| (at, id.0)).collect();
            dead.sort();
            // A name given twice may come back from two chunks.
            dead.dedup();
            let ids: Vec<String> = dead.into_iter().map(|(_, id)| id).collect();
            for chunk in ids.chunks(DB::MAX_BIND - 1) {
                let mut qb = Statement::<DB>::new(
                    "UPDATE webhook_deliveries SET state = 'pending', next_attempt_at = ",
                );
                qb.bind(now_ms)
                    .push(" WHERE state = 'dead' AND id")
                    .in_list(chunk.iter().map(String::as_str));
                let (sql, args) = qb.finish()?;
                Self::run(&mut tx, sqlx::query_with(&sql, args).persistent(false)).await?;
            }
            let sql = DB::placeholders(
                "SELECT id FROM webhook_deliveries WHERE webhook_id = ? AND state = 'dead' LIMIT 1",
            );
            let more: Option<(Text,)> =
                Self::optional_on(&mut tx, sqlx::query_as(&sql).bind(webhook_id)).await?;
            Self::commit_audited(tx, audit).await?;
            Ok(Some(Redelivery {
                ids,
                more: more.is_some(),
            }))
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::by_bytes;

    #[test]
    fn inserts_are_cut_by_bytes_a_large_row_alone() {
        let sizes = [3, 3, 3, 10, 1, 1];
        let runs = by_bytes(&sizes, 6, |n| *n);
        assert_eq!(runs, [&[3, 3][..], &[3], &[10], &[1, 1]]);
        assert!(by_bytes(&[] as &[usize], 6, |n| *n).is_empty());
    }
}
