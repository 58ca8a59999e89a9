//! `RankStore` on Redis sorted sets, single node or Redis Cluster.
//!
//! Keys (after an optional prefix):
//! - `lb:{<window>:<period>}` — one ZSET per board (score = points, member = player id), changed
//!   only by raising scores to totals (a Lua script: `ZSCORE`, then `ZADD` if higher), so
//!   replicas and reloads can raise it in any order.
//! - `lb:boards` — a SET of `<window>:<period>` names, so `boards()` needs no cluster-wide SCAN.
//!
//! Ordering comes from Redis itself: `ZREVRANGE` gives score descending, then member descending
//! in byte order — the order the port promises. Scores are doubles on the server, exact for the
//! integers the game produces (|score| < 2^53).

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use liveops_core::ports::{Board, PortError, PortResult, RankEntry, RankStore, ScoreTotal};
use liveops_core::Window;
use redis::{Pipeline, Script};

use super::conn::{clean_prefix, ttl_ms, RedisConn};

/// Raises members of the board `KEYS[1]` to totals (`ARGV`: total, member, total, member, ..),
/// adding absent ones; a lower or equal total changes nothing. `ZADD … GT` does the same but
/// needs Redis 6.2, and Azure Cache for Redis runs 6.0.
const RAISE_LUA: &str = r"
for i = 1, #ARGV, 2 do
  local held = redis.call('ZSCORE', KEYS[1], ARGV[i + 1])
  if not held or tonumber(held) < tonumber(ARGV[i]) then
    redis.call('ZADD', KEYS[1], ARGV[i], ARGV[i + 1])
  end
end
return 0
";
/// Players per raise (one script call).
const RAISE_CHUNK: usize = 1000;
/// Raises per round trip (a whole board reloaded takes several trips).
const RAISES_PER_TRIP: usize = 10;
/// `around` neighbours are capped so the window bounds stay exact integers inside Lua.
const MAX_AROUND: u64 = u32::MAX as u64;

/// Rank, then the window `[rank - n, rank + n]` of a player, atomically. Returns nil for an
/// unranked player, else `{first position (0-based), {member, score, ...}}`.
const AROUND_LUA: &str = r"
local r = redis.call('ZREVRANK', KEYS[1], ARGV[1])
if not r then return false end
local n = tonumber(ARGV[2])
local from = r - n
if from < 0 then from = 0 end
return {from, redis.call('ZREVRANGE', KEYS[1], from, r + n, 'WITHSCORES')}
";

/// The Redis `RankStore`: one sorted set per board.
pub struct RedisRankStore {
    conn: RedisConn,
    prefix: String,
    around: Script,
}

super::conn::store_debug_and_health!(RedisRankStore);

/// The registry member naming a board: `weekly:2026-W47`.
fn board_name(board: &Board) -> String {
    format!("{}:{}", board.window, board.period)
}

fn parse_board_name(name: &str) -> Option<Board> {
    let (window, period) = name.split_once(':')?;
    Some(Board {
        window: Window::parse(window)?,
        period: period.to_owned(),
    })
}

/// A server score as points; anything but an integral, in-range number is corrupt data.
fn points(board_key: &str, score: f64) -> PortResult<i64> {
    // 2^63 as a double; every integral double strictly below it (and ≥ -2^63) fits an i64.
    const LIMIT: f64 = 9_223_372_036_854_775_808.0;
    if score.is_finite() && score.fract() == 0.0 && (-LIMIT..LIMIT).contains(&score) {
        Ok(score as i64)
    } else {
        Err(PortError::Corrupt(format!(
            "{board_key} holds score {score}, not a whole number of points"
        )))
    }
}

fn entries(key: &str, first_rank: u64, items: Vec<(String, f64)>) -> PortResult<Vec<RankEntry>> {
    items
        .into_iter()
        .zip(first_rank..)
        .map(|((player_id, score), rank)| {
            Ok(RankEntry {
                rank,
                player_id,
                score: points(key, score)?,
            })
        })
        .collect()
}

impl RedisRankStore {
    /// A store over `conn`, with keys `lb:{window:period}` and `lb:boards`.
    pub fn new(conn: RedisConn) -> Self {
        Self {
            conn,
            prefix: String::new(),
            around: Script::new(AROUND_LUA),
        }
    }

    /// Puts `prefix` in front of every key (to share a server; tests use one per run).
    /// Braces in it are replaced, so it never becomes a cluster hash tag.
    pub fn with_prefix(mut self, prefix: &str) -> Self {
        self.prefix = clean_prefix(prefix);
        self
    }

    /// The ZSET of a board.
    fn key(&self, board: &Board) -> String {
        format!("{}lb:{{{}}}", self.prefix, board_name(board))
    }

    /// The SET of board names.
    fn registry(&self) -> String {
        format!("{}lb:boards", self.prefix)
    }

    /// The pipelines that drop `board`: its set goes with `UNLINK`, not `DEL` (a board of a
    /// million players is freed off Redis's main thread), and its name leaves the registry;
    /// both in one transaction on a single node, side by side on a cluster (other slots).
    fn drop_plan(&self, board: &Board, cluster: bool) -> Vec<Pipeline> {
        let mut unlink = redis::pipe();
        unlink.cmd("UNLINK").arg(self.key(board)).ignore();
        let unregister = self.registry_pipe("SREM", board_name(board));
        if cluster {
            return vec![unlink, unregister];
        }
        unlink.atomic();
        for cmd in unregister.cmd_iter() {
            unlink.add_command(cmd.clone()).ignore();
        }
        vec![unlink]
    }

    /// A pipeline running `cmd` (`SADD` or `SREM`) on the registry with the board names `names`.
    fn registry_pipe(&self, cmd: &str, names: impl redis::ToRedisArgs) -> Pipeline {
        let mut pipe = redis::pipe();
        pipe.cmd(cmd).arg(self.registry()).arg(names).ignore();
        pipe
    }

    /// Lets a board's scores expire after `ttl` (for a period whose final snapshot is taken).
    /// Until then it reads and counts as usual (late increments keep the expiry); once gone,
    /// `boards()` no longer lists it.
    pub async fn expire_board(&self, board: &Board, ttl: Duration) -> PortResult<()> {
        let _: i64 = self
            .conn
            .query(
                "rank.expire_board",
                redis::cmd("PEXPIRE").arg(self.key(board)).arg(ttl_ms(ttl)),
            )
            .await?;
        Ok(())
    }

    /// The round trips raising `totals`, each a set of pipelines sent side by side: on a single
    /// node one pipeline, on a cluster one per board (a board is one slot), of up to
    /// [`RAISES_PER_TRIP`] [`RAISE_LUA`] calls of [`RAISE_CHUNK`] players; the registry rides
    /// the first trip. A player's highest total in the batch is the one sent. No trip needs to
    /// be atomic: a partly applied raise is completed by raising again.
    pub(crate) fn raise_plan(&self, totals: &[ScoreTotal], cluster: bool) -> Vec<Vec<Pipeline>> {
        // Per board, per player the highest total, in order of first appearance.
        let mut boards: Vec<(&Board, Vec<(&str, i64)>)> = Vec::new();
        let mut board_index: HashMap<&Board, usize> = HashMap::new();
        let mut player_index: HashMap<(usize, &str), usize> = HashMap::new();
        for t in totals {
            let b = *board_index.entry(&t.board).or_insert_with(|| {
                boards.push((&t.board, Vec::new()));
                boards.len() - 1
            });
            let players = &mut boards[b].1;
            match player_index.get(&(b, t.player_id.as_str())) {
                Some(&i) => players[i].1 = players[i].1.max(t.total),
                None => {
                    player_index.insert((b, t.player_id.as_str()), players.len());
                    players.push((t.player_id.as_str(), t.total));
                }
            }
        }
        let commands: Vec<(String, &[(&str, i64)])> = boards
            .iter()
            .flat_map(|(board, players)| {
                let key = self.key(board);
                players.chunks(RAISE_CHUNK).map(move |c| (key.clone(), c))
            })
            .collect();
        let names: Vec<String> = boards.iter().map(|(b, _)| board_name(b)).collect();
        let mut trips = Vec::new();
        for (i, trip) in commands.chunks(RAISES_PER_TRIP).enumerate() {
            let mut pipes: Vec<(&str, Pipeline)> = Vec::new();
            for (key, players) in trip {
                let at = match pipes.iter().position(|(k, _)| cluster && k == key) {
                    Some(at) => at,
                    None if cluster || pipes.is_empty() => {
                        pipes.push((key, redis::pipe()));
                        pipes.len() - 1
                    }
                    None => 0,
                };
                let cmd = pipes[at].1.cmd("EVAL").arg(RAISE_LUA).arg(1).arg(key);
                for (player, total) in players.iter() {
                    cmd.arg(*total).arg(*player);
                }
                cmd.ignore();
            }
            let mut pipes: Vec<Pipeline> = pipes.into_iter().map(|(_, p)| p).collect();
            if i == 0 {
                let register = self.registry_pipe("SADD", names.clone());
                match pipes.first_mut() {
                    Some(pipe) if !cluster => {
                        for cmd in register.cmd_iter() {
                            pipe.add_command(cmd.clone()).ignore();
                        }
                    }
                    _ => pipes.push(register),
                }
            }
            trips.push(pipes);
        }
        trips
    }

    /// Sends pipelines of commands returning nothing of interest.
    async fn send(&self, op: &'static str, pipes: Vec<Pipeline>) -> PortResult<()> {
        let _: Vec<()> = self.conn.query_pipelines(op, pipes).await?;
        Ok(())
    }
}

#[async_trait]
impl RankStore for RedisRankStore {
    async fn raise(&self, totals: &[ScoreTotal]) -> PortResult<()> {
        for trip in self.raise_plan(totals, self.conn.is_cluster()) {
            self.send("rank.raise", trip).await?;
        }
        Ok(())
    }

    async fn top(&self, board: &Board, offset: u64, limit: u64) -> PortResult<Vec<RankEntry>> {
        let last = i64::MAX as u64;
        if limit == 0 || offset > last {
            return Ok(Vec::new());
        }
        let stop = offset.saturating_add(limit - 1).min(last);
        let key = self.key(board);
        let items: Vec<(String, f64)> = self
            .conn
            .query(
                "rank.top",
                redis::cmd("ZREVRANGE")
                    .arg(&key)
                    .arg(offset)
                    .arg(stop)
                    .arg("WITHSCORES"),
            )
            .await?;
        entries(&key, offset + 1, items)
    }

    async fn rank(&self, board: &Board, player_id: &str) -> PortResult<Option<RankEntry>> {
        let key = self.key(board);
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("ZREVRANK")
            .arg(&key)
            .arg(player_id)
            .cmd("ZSCORE")
            .arg(&key)
            .arg(player_id);
        let (rank, score): (Option<u64>, Option<f64>) =
            self.conn.query_pipeline("rank.rank", &pipe).await?;
        match (rank, score) {
            (Some(rank), Some(score)) => Ok(Some(RankEntry {
                rank: rank + 1,
                player_id: player_id.to_owned(),
                score: points(&key, score)?,
            })),
            _ => Ok(None),
        }
    }

    async fn around(
        &self,
        board: &Board,
        player_id: &str,
        n: u64,
    ) -> PortResult<Option<Vec<RankEntry>>> {
        let key = self.key(board);
        let mut call = self.around.prepare_invoke();
        call.key(&key).arg(player_id).arg(n.min(MAX_AROUND));
        let found: Option<(u64, Vec<(String, f64)>)> =
            self.conn.invoke("rank.around", &call).await?;
        found
            .map(|(first, items)| entries(&key, first + 1, items))
            .transpose()
    }

    async fn size(&self, board: &Board) -> PortResult<u64> {
        self.conn
            .query("rank.size", redis::cmd("ZCARD").arg(self.key(board)))
            .await
    }

    async fn drop_board(&self, board: &Board) -> PortResult<()> {
        let plan = self.drop_plan(board, self.conn.is_cluster());
        self.send("rank.drop_board", plan).await
    }

    /// Boards in the registry whose sorted set exists (a board that expired or was loaded
    /// empty holds no players, so it is not listed).
    async fn boards(&self) -> PortResult<Vec<Board>> {
        let names: Vec<String> = self
            .conn
            .query("rank.boards", redis::cmd("SMEMBERS").arg(self.registry()))
            .await?;
        let mut boards: Vec<Board> = names
            .iter()
            .filter_map(|name| {
                let board = parse_board_name(name);
                if board.is_none() {
                    tracing::warn!(name = %name, registry = %self.registry(), "ignoring an unreadable board name");
                }
                board
            })
            .collect();
        boards.sort();
        if boards.is_empty() {
            return Ok(boards);
        }
        let exists: Vec<bool> = if self.conn.is_cluster() {
            let pipes = boards
                .iter()
                .map(|b| {
                    let mut pipe = redis::pipe();
                    pipe.cmd("EXISTS").arg(self.key(b));
                    pipe
                })
                .collect();
            let found: Vec<(bool,)> = self.conn.query_pipelines("rank.boards", pipes).await?;
            found.into_iter().map(|(e,)| e).collect()
        } else {
            let mut pipe = redis::pipe();
            for b in &boards {
                pipe.cmd("EXISTS").arg(self.key(b));
            }
            self.conn.query_pipeline("rank.boards", &pipe).await?
        };
        Ok(boards
            .into_iter()
            .zip(exists)
            .filter_map(|(b, e)| e.then_some(b))
            .collect())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;

    use liveops_testkit::fixtures::{board, score_total as total};

    async fn store() -> RedisRankStore {
        // Nothing listens on port 1; `connect` only parses, and the plan needs no server.
        let conn =
            RedisConn::connect_with_timeout("redis://127.0.0.1:1/", Duration::from_millis(50))
                .await
                .unwrap();
        RedisRankStore::new(conn).with_prefix("t:")
    }

    /// (command name, first key) of every command, MULTI/EXEC left out.
    fn commands(pipe: &Pipeline) -> Vec<(String, String)> {
        args(pipe)
            .into_iter()
            .map(|a| {
                // EVAL script numkeys key ..
                let key = if a[0] == "EVAL" { &a[3] } else { &a[1] };
                (a[0].clone(), key.clone())
            })
            .collect()
    }

    /// The arguments of a raise after the script: numkeys, key, totals and members.
    fn raised(args: &[String]) -> &[String] {
        assert_eq!(args[..2], ["EVAL", RAISE_LUA]);
        &args[2..]
    }

    /// Every argument of every command of `pipe`, as text.
    fn args(pipe: &Pipeline) -> Vec<Vec<String>> {
        pipe.cmd_iter()
            .map(|c| {
                c.args_iter()
                    .map(|a| match a {
                        redis::Arg::Simple(bytes) => String::from_utf8_lossy(bytes).into_owned(),
                        redis::Arg::Cursor => String::new(),
                    })
                    .collect()
            })
            .collect()
    }

    #[tokio::test]
    async fn a_batch_of_500_on_one_node_is_one_round_trip() {
        let store = store().await;
        let b = board(Window::Weekly, "2026-W47");
        let totals: Vec<_> = (0..500).map(|i| total(&b, &format!("p{i}"), i)).collect();
        let plan = store.raise_plan(&totals, false);
        assert_eq!(plan.len(), 1, "one round trip");
        assert_eq!(plan[0].len(), 1, "one pipeline");
        let cmds = commands(&plan[0][0]);
        assert_eq!(
            cmds,
            [
                ("EVAL".to_owned(), "t:lb:{weekly:2026-W47}".to_owned()),
                ("SADD".to_owned(), "t:lb:boards".to_owned())
            ]
        );
        let raise = &args(&plan[0][0])[0];
        assert_eq!(raised(raise).len(), 2 + 2 * 500);
    }

    #[tokio::test]
    async fn a_player_repeated_in_a_batch_is_sent_its_highest_total() {
        let store = store().await;
        let b = board(Window::Daily, "2026-11-21");
        let plan = store.raise_plan(
            &[total(&b, "a", 5), total(&b, "b", 2), total(&b, "a", 3)],
            false,
        );
        let args = args(&plan[0][0]);
        assert_eq!(
            raised(&args[0]),
            ["1", "t:lb:{daily:2026-11-21}", "5", "a", "2", "b"]
        );
        assert_eq!(args[1], ["SADD", "t:lb:boards", "daily:2026-11-21"]);
    }

    #[tokio::test]
    async fn a_whole_board_takes_trips_of_ten_raises_of_a_thousand() {
        let store = store().await;
        let b = board(Window::Seasonal, "season-4");
        let totals: Vec<_> = (0..25_001)
            .map(|i| total(&b, &format!("p{i}"), i))
            .collect();
        let plan = store.raise_plan(&totals, false);
        assert_eq!(plan.len(), 3);
        let sizes: Vec<usize> = plan.iter().map(|trip| commands(&trip[0]).len()).collect();
        assert_eq!(sizes, [11, 10, 6], "the registry rides the first trip");
    }

    #[tokio::test]
    async fn on_a_cluster_each_pipeline_stays_in_one_slot() {
        let store = store().await;
        let (w, d) = (
            board(Window::Weekly, "2026-W47"),
            board(Window::Daily, "2026-11-21"),
        );
        let totals = vec![total(&w, "a", 1), total(&d, "a", 2), total(&w, "b", 3)];
        let plan = store.raise_plan(&totals, true);
        assert_eq!(plan.len(), 1);
        let trip = &plan[0];
        assert_eq!(trip.len(), 3);
        for pipe in trip {
            let keys: Vec<String> = commands(pipe).into_iter().map(|(_, k)| k).collect();
            assert!(keys.windows(2).all(|k| k[0] == k[1]), "{keys:?}");
        }
        assert_eq!(
            raised(&args(&trip[0])[0]),
            ["1", "t:lb:{weekly:2026-W47}", "1", "a", "3", "b"]
        );
        assert_eq!(
            commands(&trip[2]),
            vec![("SADD".to_owned(), "t:lb:boards".to_owned())]
        );
        assert!(store.raise_plan(&[], true).is_empty());
    }

    #[tokio::test]
    async fn a_board_is_dropped_with_unlink_and_unregistered() {
        let store = store().await;
        let b = board(Window::Weekly, "2026-W47");
        let unlink = ("UNLINK".to_owned(), "t:lb:{weekly:2026-W47}".to_owned());
        let srem = ("SREM".to_owned(), "t:lb:boards".to_owned());
        let single = store.drop_plan(&b, false);
        assert_eq!(single.len(), 1, "one transaction");
        assert_eq!(commands(&single[0]), [unlink.clone(), srem.clone()]);
        let cluster = store.drop_plan(&b, true);
        let cluster: Vec<_> = cluster.iter().map(commands).collect();
        assert_eq!(cluster, [vec![unlink], vec![srem]]);
    }

    #[test]
    fn board_names_round_trip() {
        let b = board(Window::Seasonal, "season-3");
        assert_eq!(parse_board_name(&board_name(&b)), Some(b));
        assert_eq!(parse_board_name("yearly:2026"), None);
        assert_eq!(parse_board_name("nocolon"), None);
    }

    #[test]
    fn scores_must_be_whole_points() {
        assert_eq!(points("k", 42.0).unwrap(), 42);
        assert_eq!(points("k", -7.0).unwrap(), -7);
        for bad in [0.5, f64::INFINITY, f64::NAN, 1e19] {
            assert!(
                matches!(points("k", bad), Err(PortError::Corrupt(_))),
                "{bad}"
            );
        }
    }
}
