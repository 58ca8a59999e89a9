//! The provably fair draw `liveops-draw-v1`, written so anyone can re-run it (the reasons are in
//! docs/adr/0014-provably-fair-draw.md):
//!
//! 1. when a campaign is scheduled, a 32-byte random `seed` is drawn and
//!    `commitment = hex(SHA-256(seed))` is published;
//! 2. at the end, `entrants` = the distinct player ids sorted by bytes and
//!    `entrantsHash = hex(SHA-256(entrants joined by "\n"))`;
//! 3. winners are picked one by one from the remaining list with one counter `k` from 0:
//!    `x` = the first 8 bytes, big-endian, of `HMAC-SHA256(key = seed, message = entrantsHash +
//!    ":" + decimal(k))`, then `k += 1`; with `n` remaining, only `x < 2^64 − (2^64 mod n)` is
//!    accepted (no modulo bias) and `remaining[x mod n]` is picked, removed, and the order of the
//!    rest kept; it stops at `winners` or when none remain.

use std::collections::HashSet;

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

type HmacSha256 = Hmac<Sha256>;

/// The algorithm's name, published with every draw.
pub const ALGORITHM: &str = "liveops-draw-v1";

/// The seed's length in bytes.
pub const SEED_LEN: usize = 32;

/// `hex(SHA-256(seed))`: published when a campaign is scheduled, before anyone enters.
pub fn commitment(seed: &[u8]) -> String {
    hex::encode(Sha256::digest(seed))
}

/// The distinct ids of `ids`, sorted by bytes: the entrants list of a draw.
pub fn entrants<I, S>(ids: I) -> Vec<String>
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    let mut list: Vec<String> = ids.into_iter().map(Into::into).collect();
    // `String`'s order is the order of its UTF-8 bytes.
    list.sort_unstable();
    list.dedup();
    list
}

/// `hex(SHA-256(entrants joined by "\n"))`.
pub fn entrants_hash(entrants: &[String]) -> String {
    EntrantsHash::of(entrants).finish()
}

/// [`entrants_hash`] taken one entrant at a time (a list read page by page), with their count.
#[derive(Clone, Debug, Default)]
pub struct EntrantsHash {
    sha: Sha256,
    count: u64,
}

impl EntrantsHash {
    /// The hash taken over `entrants` (distinct, sorted by bytes).
    pub fn of(entrants: &[String]) -> Self {
        let mut h = Self::default();
        h.extend(entrants);
        h
    }

    /// Adds the next entrants, in order (a page of them).
    pub fn extend(&mut self, entrants: &[String]) {
        entrants.iter().for_each(|e| self.push(e));
    }

    /// Adds the next entrant (they come distinct and sorted by bytes).
    pub fn push(&mut self, entrant: &str) {
        if self.count > 0 {
            self.sha.update(b"\n");
        }
        self.sha.update(entrant.as_bytes());
        self.count += 1;
    }

    /// How many entrants were added.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The hash of the entrants added, hex.
    pub fn finish(self) -> String {
        hex::encode(self.sha.finalize())
    }
}

/// The `k`-th random number of a draw: the first 8 bytes, big-endian, of
/// `HMAC-SHA256(seed, entrantsHash + ":" + k)`.
fn number(seed: &[u8], entrants_hash: &str, k: u64) -> u64 {
    // HMAC accepts keys of any length.
    let mut mac = <HmacSha256 as Mac>::new_from_slice(seed).expect("HMAC takes any key length");
    mac.update(entrants_hash.as_bytes());
    mac.update(b":");
    mac.update(k.to_string().as_bytes());
    let out = mac.finalize().into_bytes();
    let mut first = [0u8; 8];
    first.copy_from_slice(&out[..8]);
    u64::from_be_bytes(first)
}

/// Picks up to `winners` of `entrants` (distinct, sorted by bytes: see [`entrants`]) with `seed`.
pub fn draw(seed: &[u8], entrants: &[String], winners: usize) -> Vec<String> {
    let hash = entrants_hash(entrants);
    let mut remaining = Remaining::new(entrants.len());
    let mut picked = Vec::with_capacity(winners.min(entrants.len()));
    let mut k: u64 = 0;
    while picked.len() < winners && remaining.len > 0 {
        let x = number(seed, &hash, k);
        k += 1;
        if let Some(i) = pick(x, remaining.len) {
            picked.push(entrants[remaining.take(i)].clone());
        }
    }
    picked
}

/// [`draw`] as the spec words it, removing each pick from a list (O(n) a pick): the reference
/// the tree is checked and benchmarked against.
pub fn draw_by_list(seed: &[u8], entrants: &[String], winners: usize) -> Vec<String> {
    let hash = entrants_hash(entrants);
    let mut remaining: Vec<&String> = entrants.iter().collect();
    let mut picked = Vec::new();
    let mut k: u64 = 0;
    while picked.len() < winners && !remaining.is_empty() {
        let x = number(seed, &hash, k);
        k += 1;
        if let Some(i) = pick(x, remaining.len()) {
            picked.push(remaining.remove(i).clone());
        }
    }
    picked
}

/// The entrants not picked yet, in their order: a Fenwick tree of ones over their positions, so
/// that taking the `i`-th remaining costs O(log n) where removing it from a list moved up to
/// n entries (10 000 winners among 200 000 entrants: 12 ms instead of 126, docs/BENCHMARKS.md).
struct Remaining {
    /// `tree[j]` counts the remaining positions in `(j - lowbit(j), j]` (1-based).
    tree: Vec<usize>,
    /// How many remain.
    len: usize,
    /// The largest power of two not above the number of positions (0 for none).
    top: usize,
}

impl Remaining {
    /// All of `n` positions remaining.
    fn new(n: usize) -> Self {
        let mut tree = vec![0; n + 1];
        for j in 1..=n {
            tree[j] += 1;
            let parent = j + (j & j.wrapping_neg());
            if parent <= n {
                tree[parent] += tree[j];
            }
        }
        let top = if n == 0 { 0 } else { 1 << n.ilog2() };
        Self { tree, len: n, top }
    }

    /// Removes the `i`-th remaining position (from 0; `i < len`) and returns it.
    fn take(&mut self, i: usize) -> usize {
        // The largest `pos` with fewer than `i + 1` remaining at or before it.
        let (mut pos, mut before, mut step) = (0, i, self.top);
        while step > 0 {
            let next = pos + step;
            if next < self.tree.len() && self.tree[next] <= before {
                pos = next;
                before -= self.tree[next];
            }
            step >>= 1;
        }
        let mut j = pos + 1;
        while j < self.tree.len() {
            self.tree[j] -= 1;
            j += j & j.wrapping_neg();
        }
        self.len -= 1;
        pos
    }
}

/// The index `x` picks among `n` remaining, or `None` when `x` falls in the biased tail
/// (`x ≥ 2^64 − (2^64 mod n)`) and the next number must be drawn.
fn pick(x: u64, n: usize) -> Option<usize> {
    let (x, n) = (u128::from(x), n as u128);
    let span = 1u128 << 64;
    (n > 0 && x < span - (span % n)).then(|| (x % n) as usize)
}

/// A published draw, as `GET /campaigns/{id}/draw` answers it once drawn.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PublishedDraw {
    /// `liveops-draw-v1`.
    pub algorithm: String,
    /// `hex(SHA-256(seed))`, published at scheduling.
    pub commitment: String,
    /// `hex(SHA-256(entrants joined by "\n"))`.
    pub entrants_hash: String,
    /// How many distinct entrants (absent from draws published before it was).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrant_count: Option<u64>,
    /// The distinct entrants, sorted by bytes; absent when asked for without them
    /// (`?entrants=false`): `GET /campaigns/{id}/entrants` pages through them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrants: Option<Vec<String>>,
    /// The seed, hex; published once drawn.
    pub seed: Option<String>,
    /// How many winners the campaign draws.
    pub winner_count: Option<u32>,
    /// The winners in the order drawn; published once drawn.
    pub winners: Option<Vec<String>>,
}

/// Why a published draw does not check out.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DrawMismatch {
    /// Another algorithm.
    #[error("algorithm is {0:?}, not liveops-draw-v1")]
    Algorithm(String),
    /// Not drawn yet: no seed or no winners.
    #[error("the draw has no {0} yet")]
    NotDrawn(&'static str),
    /// The seed is not 32 bytes of hex.
    #[error("seed must be 64 hex digits")]
    BadSeed,
    /// SHA-256 of the seed is not the commitment.
    #[error("SHA-256(seed) is {0}, not the published commitment")]
    Commitment(String),
    /// The entrants given are not the draw's.
    #[error("the entrants file differs from the published entrants ({0})")]
    Entrants(String),
    /// The entrants given are not as many as the draw's.
    #[error("the entrants file holds {given} distinct entrants, the draw {published}")]
    EntrantCount {
        /// How many the draw published.
        published: u64,
        /// How many were given.
        given: u64,
    },
    /// The entrants hash does not match the entrants.
    #[error("entrantsHash is not SHA-256 of the entrants (expected {0})")]
    EntrantsHash(String),
    /// Re-running the draw picks other winners.
    #[error("re-running the draw gives {0:?}")]
    Winners(Vec<String>),
}

/// Re-runs a published draw against `entrants` (any order, repeats allowed): `Ok` when the seed
/// matches the commitment, the entrants (where published), their count and their hash match, and
/// the same winners come out.
pub fn verify(draw: &PublishedDraw, entrants_given: &[String]) -> Result<(), DrawMismatch> {
    if draw.algorithm != ALGORITHM {
        return Err(DrawMismatch::Algorithm(draw.algorithm.clone()));
    }
    let seed_hex = draw.seed.as_deref().ok_or(DrawMismatch::NotDrawn("seed"))?;
    let winners = draw
        .winners
        .as_ref()
        .ok_or(DrawMismatch::NotDrawn("winners"))?;
    let seed = hex::decode(seed_hex).map_err(|_| DrawMismatch::BadSeed)?;
    if seed.len() != SEED_LEN {
        return Err(DrawMismatch::BadSeed);
    }
    let committed = commitment(&seed);
    if !committed.eq_ignore_ascii_case(&draw.commitment) {
        return Err(DrawMismatch::Commitment(committed));
    }
    let given = entrants(entrants_given.iter().cloned());
    if let Some(published) = draw.entrants.as_ref().filter(|p| **p != given) {
        // Sets, not lists: a million entrants against a list one page short is a moment, not
        // 10^12 comparisons.
        let (on_file, listed): (HashSet<&String>, HashSet<&String>) =
            (given.iter().collect(), published.iter().collect());
        let missing = listed.difference(&on_file).count();
        let extra = on_file.difference(&listed).count();
        return Err(DrawMismatch::Entrants(format!(
            "{missing} published entrants missing from the file, {extra} not published"
        )));
    }
    let count = given.len() as u64;
    if let Some(published) = draw.entrant_count.filter(|n| *n != count) {
        return Err(DrawMismatch::EntrantCount {
            published,
            given: count,
        });
    }
    let hash = entrants_hash(&given);
    if !hash.eq_ignore_ascii_case(&draw.entrants_hash) {
        return Err(DrawMismatch::EntrantsHash(hash));
    }
    // The number drawn: what the campaign asked for, or (older records) as many as published.
    let wanted = draw.winner_count.map_or(winners.len(), |w| w as usize);
    let again = self::draw(&seed, &given, wanted);
    if &again != winners {
        return Err(DrawMismatch::Winners(again));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn entrants_are_distinct_and_sorted_by_bytes() {
        let e = entrants(["b", "B", "a", "b", "_x"]);
        assert_eq!(e, ids(&["B", "_x", "a", "b"]));
        assert_eq!(
            entrants_hash(&[]),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn numbers_in_the_biased_tail_are_rejected() {
        // 2^64 mod 3 = 1: only u64::MAX is rejected among three.
        assert_eq!(pick(u64::MAX, 3), None);
        assert_eq!(pick(u64::MAX - 1, 3), Some(((u64::MAX - 1) % 3) as usize));
        // 2^64 mod 2 = 0: nothing is rejected; nor for one.
        assert_eq!(pick(u64::MAX, 2), Some(1));
        assert_eq!(pick(u64::MAX, 1), Some(0));
        // 2^64 mod 10 = 6: the last six values are rejected.
        assert_eq!(pick(u64::MAX - 5, 10), None);
        assert_eq!(pick(u64::MAX - 6, 10), Some(((u64::MAX - 6) % 10) as usize));
        assert_eq!(pick(7, 0), None);
    }

    proptest::proptest! {
        #[test]
        fn the_tree_picks_what_removing_from_a_list_picks(
            seed in proptest::array::uniform32(proptest::num::u8::ANY),
            n in 0usize..300,
            winners in 0usize..320,
        ) {
            let all = entrants((0..n).map(|i| format!("p{i:04}")));
            proptest::prop_assert_eq!(draw(&seed, &all, winners), draw_by_list(&seed, &all, winners));
        }
    }

    #[test]
    fn taking_from_the_tree_takes_the_i_th_remaining() {
        for n in 0..70 {
            let mut tree = Remaining::new(n);
            let mut list: Vec<usize> = (0..n).collect();
            let mut i = 0;
            while !list.is_empty() {
                // Every index from the front, the middle and the end in turn.
                let at = [0, list.len() / 2, list.len() - 1][i % 3];
                i += 1;
                assert_eq!(tree.take(at), list.remove(at), "n = {n}");
                assert_eq!(tree.len, list.len());
            }
        }
    }

    #[test]
    fn a_draw_picks_distinct_entrants_and_stops_when_none_remain() {
        let seed = [7u8; 32];
        let all = entrants((0..10).map(|i| format!("player_{i}")));
        let three = draw(&seed, &all, 3);
        assert_eq!(three.len(), 3);
        assert_eq!(
            &draw(&seed, &all, 5)[..3],
            &three[..],
            "a prefix of a longer draw"
        );
        let everyone = draw(&seed, &all, 100);
        assert_eq!(entrants(everyone.clone()), all, "everyone, once each");
        assert!(draw(&seed, &[], 3).is_empty());
        assert_ne!(
            draw(&[8u8; 32], &all, 3),
            three,
            "another seed, other winners"
        );
    }

    #[test]
    fn verify_accepts_the_published_draw_and_names_each_fault() {
        let seed = [42u8; 32];
        let list = entrants((0..30).map(|i| format!("p{i:02}")));
        let published = PublishedDraw {
            algorithm: ALGORITHM.into(),
            commitment: commitment(&seed),
            entrants_hash: entrants_hash(&list),
            entrant_count: Some(30),
            entrants: Some(list.clone()),
            seed: Some(hex::encode(seed)),
            winner_count: Some(4),
            winners: Some(draw(&seed, &list, 4)),
        };
        let mut shuffled = list.clone();
        shuffled.reverse();
        shuffled.push(list[0].clone());
        assert_eq!(verify(&published, &shuffled), Ok(()));

        let mut other = published.clone();
        other.seed = Some(hex::encode([43u8; 32]));
        assert!(matches!(
            verify(&other, &list),
            Err(DrawMismatch::Commitment(_))
        ));
        assert!(matches!(
            verify(&published, &list[1..]),
            Err(DrawMismatch::Entrants(_))
        ));
        // Each side's difference counted: p00 and p01 missing, two strangers not published.
        let mut mixed = list[2..].to_vec();
        mixed.extend(["q1".to_owned(), "q2".to_owned()]);
        assert_eq!(
            verify(&published, &mixed),
            Err(DrawMismatch::Entrants(
                "2 published entrants missing from the file, 2 not published".into()
            ))
        );
        let mut swapped = published.clone();
        if let Some(w) = swapped.winners.as_mut() {
            w.swap(0, 1);
        }
        assert!(matches!(
            verify(&swapped, &list),
            Err(DrawMismatch::Winners(_))
        ));
        let mut hidden = published.clone();
        hidden.seed = None;
        assert_eq!(verify(&hidden, &list), Err(DrawMismatch::NotDrawn("seed")));

        // Published without its list, the draw is checked by the count and hash of the list
        // given (one missing entrant, or one changed, is caught).
        let listless = PublishedDraw {
            entrants: None,
            ..published.clone()
        };
        assert_eq!(verify(&listless, &shuffled), Ok(()));
        assert_eq!(
            verify(&listless, &list[1..]),
            Err(DrawMismatch::EntrantCount {
                published: 30,
                given: 29
            })
        );
        let mut changed = list.clone();
        changed[7] = "p07x".into();
        assert!(matches!(
            verify(&listless, &changed),
            Err(DrawMismatch::EntrantsHash(_))
        ));
    }

    #[test]
    fn the_hash_taken_an_entrant_at_a_time_is_the_hash_of_the_list() {
        for n in [0, 1, 2, 17] {
            let list = entrants((0..n).map(|i| format!("p{i:02}")));
            let mut h = EntrantsHash::default();
            for chunk in list.chunks(3) {
                chunk.iter().for_each(|e| h.push(e));
            }
            assert_eq!(h.count(), n as u64);
            assert_eq!(h.finish(), entrants_hash(&list), "{n} entrants");
        }
    }
}
