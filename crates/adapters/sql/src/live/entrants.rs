//! Each campaign's entrant count and its cap (`max_entrants`), kept exact whatever the entries at
//! once. The count is split over 16 rows of `campaign_entrant_counts` (migration 0018), a new
//! player counted first in the stripe their id hashes to, so first entries at once wait for one
//! another only within a stripe; the cap is split the same way, each stripe's share `max / 16` (one
//! more for the first `max % 16`), so the shares add up to the cap. An entry written with its
//! campaign's row shared counts nobody if its player has an entry in another slot (a daily
//! campaign's next day: counted by that one, wherever); else, while every stripe is within its
//! share, it counts its player in a stripe below its share (a conditional `UPDATE`, ordered by the
//! stripe's row lock), so the stripes never add up past the cap: their own stripe, or if that is
//! full the others below their share, one at a time, in an order the player's id picks (the same
//! for each of their entries; the players of a full stripe spread over the stripes with room).
//! Another stripe is tried only if the count as read has its row (none past the first without
//! one) and, read again just before, it is below its share: the rows an entry holds without
//! counting (an `UPDATE` that waited for a row keeps it locked, on InnoDB as on PostgreSQL) were
//! full when it came to them, and it waits only for a row it read below its share after that,
//! which fills later; so entries at once never wait for one another in a ring, and a player's
//! entries in two slots at once meet on a stripe (see `count_in_share`).
//! A new player no stripe takes is written again with the campaign's row held alone (no other
//! entry of the campaign is being written then, the count is exact): refused once the campaign
//! holds its cap, else counted in a stripe still below its share. Stripes past their share (a
//! recount's, entries of the release before, a cap lowered) send every new player's entry the
//! alone way, which writes them anew within their shares while the campaign has room.

use liveops_core::stores::{Entry, EntryLimit};

use super::{sql_impl, with_tail};
use crate::dialect::{to_i64, Text};
use crate::statement::Statement;

/// The stripes a campaign's entrant count and its cap are split over.
const ENTRANT_STRIPES: i64 = 16;

/// How an entry's transaction holds its campaign's row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum CampaignHold {
    /// Shared with the campaign's other entries at once: a new player is counted only in a
    /// stripe below its share of the cap, their own first.
    Shared,
    /// Alone: no other entry of the campaign is being written, so its count is exact.
    Alone,
}

/// Whether a campaign, its row held alone, takes the player of an entry.
#[derive(Debug)]
pub(super) enum Room {
    /// The player is among its entrants already: their entry counts nobody new.
    Among,
    /// A new player, and the campaign holds fewer than its cap: its stripes as read.
    Free(Stripes),
    /// A new player, and the campaign holds its cap (or more).
    Full,
}

/// A campaign's rows of `campaign_entrant_counts`: (stripe, entrants), in stripe order.
pub(super) type Stripes = Vec<(i64, i64)>;

/// FNV-1a of `player_id`'s bytes: the same for every entry of a player.
fn entrant_hash(player_id: &str) -> u32 {
    player_id.bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

/// The stripe of `campaign_entrant_counts` that counts `player_id` first (their hash modulo the
/// stripes): the same for every entry of a player, so a player's entries take the same row lock.
fn entrant_stripe(player_id: &str) -> i64 {
    i64::from(entrant_hash(player_id)) % ENTRANT_STRIPES
}

/// The stripes a new player whose own stripe is full tries next, in one order for every entry of
/// theirs (from a stripe their hash's bits above their own stripe pick): those `stripes` has a
/// row of below its share of `max_entrants`, up to the first stripe with a share and no row.
fn borrow_order(stripes: &Stripes, max_entrants: u64, player_id: &str) -> Vec<i64> {
    let hash = i64::from(entrant_hash(player_id));
    let (home, start) = (hash % ENTRANT_STRIPES, hash / ENTRANT_STRIPES);
    let mut order = Vec::new();
    for s in (0..ENTRANT_STRIPES).map(|i| (start + i) % ENTRANT_STRIPES) {
        let share = share(max_entrants, s);
        if s == home || share == 0 {
            continue;
        }
        match stripes.iter().find(|(row, _)| *row == s) {
            None => break,
            Some(&(_, n)) if n < share => order.push(s),
            Some(_) => {}
        }
    }
    order
}

/// Stripe `stripe`'s share of a cap of `max_entrants` (none for a stripe out of range): the
/// shares of the stripes add up to the cap.
fn share(max_entrants: u64, stripe: i64) -> i64 {
    let Ok(s) = u64::try_from(stripe) else {
        return 0;
    };
    let stripes = ENTRANT_STRIPES.unsigned_abs();
    if s >= stripes {
        return 0;
    }
    to_i64(max_entrants / stripes + u64::from(s < max_entrants % stripes))
}

/// The entrants counted in `stripe`.
fn count_in(stripes: &Stripes, stripe: i64) -> i64 {
    stripes
        .iter()
        .find(|(s, _)| *s == stripe)
        .map_or(0, |(_, n)| *n)
}

/// The entrants counted in all stripes.
fn total(stripes: &Stripes) -> i64 {
    stripes.iter().map(|(_, n)| n).sum()
}

/// Whether every stripe is within its share of a cap of `max_entrants`.
fn within_shares(stripes: &Stripes, max_entrants: u64) -> bool {
    stripes.iter().all(|&(s, n)| n <= share(max_entrants, s))
}

/// `total` entrants spread over the stripes, each up to its share of a cap of `max_entrants`
/// in stripe order (the last takes whatever is past the cap): the rows to write, none empty.
fn spread(total: i64, max_entrants: u64) -> Stripes {
    let mut left = total;
    let mut rows = Stripes::new();
    for s in 0..ENTRANT_STRIPES {
        let n = if s == ENTRANT_STRIPES - 1 {
            left
        } else {
            left.min(share(max_entrants, s))
        };
        if n > 0 {
            rows.push((s, n));
        }
        left -= n;
    }
    rows
}

sql_impl! {
    /// The stripes of campaign `campaign_id`, read on `conn`.
    async fn stripes_on(
        conn: &mut DB::Connection,
        campaign_id: &str,
    ) -> Result<Stripes, sqlx::Error> {
        // `stripe` is a 4-byte integer on PostgreSQL: read as 8 bytes everywhere.
        let sql = format!(
            "SELECT CAST(stripe AS {}), entrants FROM campaign_entrant_counts \
             WHERE campaign_id = ",
            DB::INTEGER
        );
        let mut stmt = Statement::<DB>::new(&sql);
        stmt.bind(campaign_id).push(" ORDER BY stripe");
        let (sql, args) = stmt.finish().map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
        sqlx::query_as_with(&sql, args).fetch_all(&mut *conn).await
    }

    /// The entrants counted in stripe `stripe` of campaign `campaign_id` (none without its row),
    /// read on `conn` as committed when the statement began.
    async fn entrants_in(
        conn: &mut DB::Connection,
        campaign_id: &str,
        stripe: i64,
    ) -> Result<Option<i64>, sqlx::Error> {
        let sql = DB::placeholders(
            "SELECT entrants FROM campaign_entrant_counts WHERE campaign_id = ? AND stripe = ?",
        );
        let query = sqlx::query_as(&sql).bind(campaign_id).bind(stripe);
        let row: Option<(i64,)> = query.fetch_optional(&mut *conn).await?;
        Ok(row.map(|(n,)| n))
    }

    /// Whether the player of `entry` has an entry in its campaign (in a slot other than
    /// `except`, if given), read on `conn` as committed when the statement began.
    async fn entered_on(
        conn: &mut DB::Connection,
        entry: &Entry,
        except: Option<&str>,
    ) -> Result<bool, sqlx::Error> {
        let sql = DB::placeholders(if except.is_some() {
            "SELECT slot FROM campaign_entries WHERE campaign_id = ? AND player_id = ? \
             AND slot <> ? LIMIT 1"
        } else {
            "SELECT slot FROM campaign_entries WHERE campaign_id = ? AND player_id = ? LIMIT 1"
        });
        let mut query = sqlx::query_as(&sql)
            .bind(entry.campaign_id.as_str())
            .bind(entry.player_id.as_str());
        if let Some(slot) = except {
            query = query.bind(slot);
        }
        let found: Option<(Text,)> = query.fetch_optional(&mut *conn).await?;
        Ok(found.is_some())
    }

    /// Whether the player of `entry` has an entry in another slot of its campaign (none for a
    /// campaign entered once), read on `conn` as committed when the statement began.
    async fn in_another_slot(
        conn: &mut DB::Connection,
        entry: &Entry,
    ) -> Result<bool, sqlx::Error> {
        if entry.slot == EntryLimit::Once.slot(entry.entered_at_ms) {
            return Ok(false);
        }
        Self::entered_on(conn, entry, Some(&entry.slot)).await
    }

    /// Whether the campaign of `entry`, its row held alone on `conn`, takes the entry's player
    /// while it holds fewer than `max_entrants` players (read before the entry is written).
    pub(super) async fn room_on(
        conn: &mut DB::Connection,
        entry: &Entry,
        max_entrants: u64,
    ) -> Result<Room, sqlx::Error> {
        if Self::entered_on(conn, entry, None).await? {
            return Ok(Room::Among);
        }
        let stripes = Self::stripes_on(conn, &entry.campaign_id).await?;
        Ok(if total(&stripes) >= to_i64(max_entrants) {
            Room::Full
        } else {
            Room::Free(stripes)
        })
    }

    /// Counts the new player of `entry`, just written on `conn` with its campaign's row held
    /// alone, `stripes` read before ([`Room::Free`]): in their stripe if it is below its share
    /// of `max_entrants`, else in the first that is; with a stripe past its share, every stripe
    /// is written anew within its share.
    pub(super) async fn add_entrant(
        conn: &mut DB::Connection,
        entry: &Entry,
        stripes: &Stripes,
        max_entrants: u64,
    ) -> Result<(), sqlx::Error> {
        let home = entrant_stripe(&entry.player_id);
        let below = |s: &i64| count_in(stripes, *s) < share(max_entrants, *s);
        let first_below = std::iter::once(home).chain(0..ENTRANT_STRIPES).find(below);
        let campaign_id = entry.campaign_id.as_str();
        match first_below {
            Some(stripe) if within_shares(stripes, max_entrants) => {
                let sql = if stripes.iter().any(|(s, _)| *s == stripe) {
                    "UPDATE campaign_entrant_counts SET entrants = entrants + 1 \
                     WHERE campaign_id = ? AND stripe = ?"
                } else {
                    "INSERT INTO campaign_entrant_counts (campaign_id, stripe, entrants) \
                     VALUES (?, ?, 1)"
                };
                let sql = DB::placeholders(sql);
                sqlx::query(&sql).bind(campaign_id).bind(stripe).execute(&mut *conn).await?;
            }
            _ => {
                let sql =
                    DB::placeholders("DELETE FROM campaign_entrant_counts WHERE campaign_id = ?");
                sqlx::query(&sql).bind(campaign_id).execute(&mut *conn).await?;
                let sql = DB::placeholders(
                    "INSERT INTO campaign_entrant_counts (campaign_id, stripe, entrants) \
                     VALUES (?, ?, ?)",
                );
                for (stripe, n) in spread(total(stripes) + 1, max_entrants) {
                    let insert = sqlx::query(&sql).bind(campaign_id).bind(stripe).bind(n);
                    insert.execute(&mut *conn).await?;
                }
            }
        }
        Ok(())
    }

    /// Adds one to stripe `stripe` of campaign `campaign_id` on `conn` if it is below `share`
    /// once its row lock is had (its latest count decides): whether it did.
    async fn add_below_share(
        conn: &mut DB::Connection,
        campaign_id: &str,
        stripe: i64,
        share: i64,
    ) -> Result<bool, sqlx::Error> {
        let sql = DB::placeholders(
            "UPDATE campaign_entrant_counts SET entrants = entrants + 1 \
             WHERE campaign_id = ? AND stripe = ? AND entrants < ?",
        );
        let add = sqlx::query(&sql).bind(campaign_id).bind(stripe).bind(share);
        Ok(DB::rows_affected(&add.execute(&mut *conn).await?) == 1)
    }

    /// Counts the player of `entry`, just written on `conn` with its campaign's row shared:
    /// not at all if they have an entry in another slot committed (counted then, whatever the
    /// stripes); else, if every stripe is within its share of `max_entrants`, in their stripe
    /// if below its share, else in the first of their [`borrow_order`] still below its share.
    /// Whether the entry stands so (if not, the count is as it was and the entry is to be
    /// written again with the row held alone). Counting locks the stripe's row until commit.
    /// The player's entry in another slot at the same time tries the same stripes in the same
    /// order, so whichever counts further along passed the other's stripe: it waited for that
    /// lock, or read the stripe full once the other was committed, or (no row of it read) went
    /// the alone way, which waits for that commit; then it finds the other entry (committed:
    /// each statement reads what was committed before it began) and takes the player off again.
    pub(super) async fn count_in_share(
        conn: &mut DB::Connection,
        entry: &Entry,
        max_entrants: u64,
    ) -> Result<bool, sqlx::Error> {
        // Among the entrants already: counted by that entry, whose stripe may be full.
        if Self::in_another_slot(conn, entry).await? {
            return Ok(true);
        }
        let home = entrant_stripe(&entry.player_id);
        let campaign_id = entry.campaign_id.as_str();
        let stripes = Self::stripes_on(conn, campaign_id).await?;
        if !within_shares(&stripes, max_entrants) {
            return Ok(false);
        }
        let home_share = share(max_entrants, home);
        let mut counted = None;
        if count_in(&stripes, home) < home_share {
            if !stripes.iter().any(|(s, _)| *s == home) {
                let sql = with_tail::<DB>(
                    "INSERT INTO campaign_entrant_counts (campaign_id, stripe, entrants) \
                     VALUES (?, ?, 0)",
                    DB::keep_existing("campaign_id, stripe", "entrants"),
                );
                sqlx::query(&sql).bind(campaign_id).bind(home).execute(&mut *conn).await?;
            }
            if Self::add_below_share(conn, campaign_id, home, home_share).await? {
                counted = Some(home);
            }
        }
        if counted.is_none() {
            for stripe in borrow_order(&stripes, max_entrants, &entry.player_id) {
                // Waits only for a row read below its share since the rows held were full.
                let share = share(max_entrants, stripe);
                let now = Self::entrants_in(conn, campaign_id, stripe).await?;
                let below = now.is_some_and(|n| n < share);
                if below && Self::add_below_share(conn, campaign_id, stripe, share).await? {
                    counted = Some(stripe);
                    break;
                }
            }
        }
        let Some(stripe) = counted else {
            return Ok(false);
        };
        // The player's first entry in another slot, committed meanwhile, counted them too.
        if Self::in_another_slot(conn, entry).await? {
            let sql = DB::placeholders(
                "UPDATE campaign_entrant_counts SET entrants = entrants - 1 \
                 WHERE campaign_id = ? AND stripe = ?",
            );
            let take_off = sqlx::query(&sql).bind(campaign_id).bind(stripe);
            take_off.execute(&mut *conn).await?;
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shares add up to the cap, whatever it is, and differ by one at most.
    #[test]
    fn shares_add_up_to_the_cap() {
        for max in [0, 1, 3, 15, 16, 17, 40, 1_000_000, 10_000_001] {
            let shares: Vec<i64> = (0..ENTRANT_STRIPES).map(|s| share(max, s)).collect();
            assert_eq!(shares.iter().sum::<i64>(), to_i64(max), "{max}");
            let (lo, hi) = (shares.iter().min(), shares.iter().max());
            assert!(hi.zip(lo).is_some_and(|(h, l)| h - l <= 1), "{max}");
        }
        assert_eq!(share(40, -1), 0);
        assert_eq!(share(40, ENTRANT_STRIPES), 0);
        assert_eq!(share(u64::MAX, 0), 1 << 60);
    }

    /// Spread anew, a count below the cap is within every share and sums to what it was.
    #[test]
    fn a_spread_count_is_within_its_shares() {
        for (total, max) in [
            (0, 5),
            (1, 5),
            (5, 5),
            (41, 100),
            (100, 100),
            (999_999, 1_000_000),
        ] {
            let rows = spread(total, max);
            assert_eq!(rows.iter().map(|(_, n)| n).sum::<i64>(), total);
            assert!(within_shares(&rows, max), "{total} of {max}: {rows:?}");
            assert!(rows.iter().all(|(_, n)| *n > 0));
        }
        // Past the cap, the last stripe holds what is past it.
        assert_eq!(spread(7, 5).iter().map(|(_, n)| n).sum::<i64>(), 7);
    }

    /// A player tries, past their own stripe, those with a row below their share, in the same
    /// order whatever the count, up to the first stripe with a share and no row.
    #[test]
    fn a_full_stripe_lends_in_one_order() {
        let player = "player_1";
        let home = entrant_stripe(player);
        let all: Stripes = (0..ENTRANT_STRIPES).map(|s| (s, 1)).collect();
        let order = borrow_order(&all, 160, player);
        assert_eq!(order.len(), 15);
        assert!(!order.contains(&home));
        // Full stripes are passed over; the others keep their order.
        let full = |s: i64| s % 3 == 0;
        let some: Stripes = all
            .iter()
            .map(|&(s, _)| (s, if full(s) { 10 } else { 1 }))
            .collect();
        let kept: Vec<i64> = order.iter().copied().filter(|&s| !full(s)).collect();
        assert_eq!(borrow_order(&some, 160, player), kept);
        // None past a stripe without a row; stripes without a share are no stop.
        let without = order[2];
        let rows: Stripes = all.iter().copied().filter(|&(s, _)| s != without).collect();
        assert_eq!(borrow_order(&rows, 160, player), order[..2]);
        let few: Stripes = (0..3).map(|s| (s, 0)).collect();
        let expect: Vec<i64> = order.iter().copied().filter(|&s| s < 3).collect();
        assert_eq!(borrow_order(&few, 3, player), expect);
        // Players of one stripe start apart.
        let starts: std::collections::HashSet<i64> = (0..200)
            .map(|i| format!("p{i}"))
            .filter(|p| entrant_stripe(p) == home)
            .filter_map(|p| borrow_order(&all, 160, &p).first().copied())
            .collect();
        assert!(starts.len() > 3, "{starts:?}");
    }

    /// A player's stripe is one of the 16, the same each time.
    #[test]
    fn a_player_has_one_stripe() {
        for p in ["", "a", "player_1", "Player_1", "zzzzzzzzzz"] {
            let s = entrant_stripe(p);
            assert!((0..ENTRANT_STRIPES).contains(&s), "{p}");
            assert_eq!(s, entrant_stripe(p));
        }
    }
}
