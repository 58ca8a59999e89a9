//! [`RankTree`]: the in-process order-statistic structure behind the embedded rank store: O(log n)
//! increment, rank-of and neighbours, O(log n + k) top-k, about 60–70 bytes per ranked player. Why
//! this shape: `docs/adr/0012-rank-tree.md`.

use std::cmp::Ordering;
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;

/// "No node".
const NIL: u32 = u32::MAX;
/// In `Node::right`: the node is on the free list.
const FREE: u32 = u32::MAX - 1;
/// Most players one tree holds (keeps every index and hash-table size comfortably in range).
pub const MAX_PLAYERS: usize = 1 << 31;
/// Longest player id accepted, in bytes.
pub const MAX_ID_LEN: usize = (1 << ID_LEN_BITS) - 1;
const ID_LEN_BITS: u32 = 24;
const ID_OFF_BITS: u32 = 40;
/// Largest id arena (bytes of ids, live and removed but not yet compacted).
const MAX_ARENA: usize = 1 << ID_OFF_BITS;
/// The arena is compacted once removed ids take more than this and more than the live ids.
const COMPACT_MIN_GARBAGE: usize = 1 << 16;

/// Why a tree refused a change.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RankTreeError {
    /// The tree holds as many players (or id bytes) as it can.
    #[error("leaderboard is full ({players} players)")]
    Full {
        /// Players held.
        players: u64,
    },
    /// The player id is longer than [`MAX_ID_LEN`].
    #[error("player id is {0} bytes long, over the limit")]
    IdTooLong(usize),
}

/// Where a player id sits in the arena: offset in the low 40 bits, length in the high 24.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct IdRef(u64);

impl IdRef {
    fn new(offset: usize, len: usize) -> Self {
        Self(((len as u64) << ID_OFF_BITS) | offset as u64)
    }
    fn offset(self) -> usize {
        (self.0 & ((1 << ID_OFF_BITS) - 1)) as usize
    }
    fn len(self) -> usize {
        (self.0 >> ID_OFF_BITS) as usize
    }
}

/// One ranked player, or a free slot (`right == FREE`, `left` links the free list).
#[derive(Clone, Copy, Debug)]
struct Node {
    score: i64,
    id: IdRef,
    left: u32,
    right: u32,
    /// Nodes in the left subtree.
    left_size: u32,
    /// Treap priority: a keyed hash of the id (also the id's hash-table fingerprint).
    prio: u32,
}

/// A child link to rewrite.
#[derive(Clone, Copy)]
enum Slot {
    Root,
    Left(u32),
    Right(u32),
}

/// The ranking of one board. See the module docs.
pub struct RankTree {
    nodes: Vec<Node>,
    root: u32,
    /// Players ranked.
    count: u32,
    /// Head of the free-node list.
    free: u32,
    index: Index,
    ids: String,
    /// Bytes of `ids` that belong to removed players.
    garbage: usize,
    hasher: RandomState,
    /// Scratch for `attach`: the split path, each entry `node << 1 | went_left_of_x`.
    path: Vec<u32>,
}

impl Default for RankTree {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for RankTree {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RankTree")
            .field("players", &self.len())
            .field("heap_bytes", &self.approx_heap_bytes())
            .finish()
    }
}

/// Does `(a_score, a_id)` rank strictly before `(b_score, b_id)`? Higher scores first; on equal
/// scores the greater id (byte order) first, as Redis `ZREVRANGE` does.
pub fn ranks_before(a_score: i64, a_id: &str, b_score: i64, b_id: &str) -> bool {
    key_cmp(a_score, a_id, b_score, b_id) == Ordering::Less
}

/// Rank order of two keys: `Less` means `a` ranks before `b`.
fn key_cmp(a_score: i64, a_id: &str, b_score: i64, b_id: &str) -> Ordering {
    b_score.cmp(&a_score).then_with(|| b_id.cmp(a_id))
}

fn id_of<'a>(ids: &'a str, node: &Node) -> &'a str {
    let start = node.id.offset();
    ids.get(start..start + node.id.len()).unwrap_or_default()
}

/// Does node `a` rank before node `b`?
fn node_before(nodes: &[Node], ids: &str, a: u32, b: u32) -> bool {
    let (na, nb) = (&nodes[a as usize], &nodes[b as usize]);
    match nb.score.cmp(&na.score) {
        Ordering::Less => true,
        Ordering::Greater => false,
        Ordering::Equal => id_of(ids, nb) < id_of(ids, na),
    }
}

fn set_slot(nodes: &mut [Node], root: &mut u32, slot: Slot, value: u32) {
    match slot {
        Slot::Root => *root = value,
        Slot::Left(p) => nodes[p as usize].left = value,
        Slot::Right(p) => nodes[p as usize].right = value,
    }
}

/// Merges two treaps, `l` of `l_size` nodes and `r`, where every key of `l` ranks before every
/// key of `r`, writing the result into `slot`. Iterative: no recursion depth to worry about.
fn merge(nodes: &mut [Node], root: &mut u32, mut slot: Slot, mut l: u32, mut r: u32, l_size: u32) {
    let mut l_size = l_size;
    loop {
        if l == NIL {
            set_slot(nodes, root, slot, r);
            return;
        }
        if r == NIL {
            set_slot(nodes, root, slot, l);
            return;
        }
        if nodes[l as usize].prio >= nodes[r as usize].prio {
            // `l` stays on top; what is left of `l` to merge is its right subtree.
            set_slot(nodes, root, slot, l);
            l_size -= nodes[l as usize].left_size + 1;
            slot = Slot::Right(l);
            l = nodes[l as usize].right;
        } else {
            // `r` goes on top and all of what remains of `l` joins its left subtree.
            nodes[r as usize].left_size += l_size;
            set_slot(nodes, root, slot, r);
            slot = Slot::Left(r);
            r = nodes[r as usize].left;
        }
    }
}

/// Grows `v` by about a quarter when it is full (instead of doubling), still amortized `O(1)`.
fn grow<T>(v: &mut Vec<T>, extra: usize) {
    if v.capacity() - v.len() < extra {
        v.reserve_exact((v.len() / 4).max(extra).max(64));
    }
}

impl RankTree {
    /// An empty tree.
    pub fn new() -> Self {
        Self {
            nodes: Vec::new(),
            root: NIL,
            count: 0,
            free: NIL,
            index: Index::default(),
            ids: String::new(),
            garbage: 0,
            hasher: RandomState::new(),
            path: Vec::new(),
        }
    }

    /// An empty tree with room for `players` players before it reallocates.
    pub fn with_capacity(players: usize) -> Self {
        let mut tree = Self::new();
        let players = players.min(MAX_PLAYERS);
        tree.nodes.reserve_exact(players);
        tree.index.reserve(players);
        tree
    }

    /// Builds a tree from `(player, score)` pairs in `O(n log n)`; a repeated player keeps its
    /// last score.
    pub fn from_scores<I, S>(scores: I) -> Result<Self, RankTreeError>
    where
        I: IntoIterator<Item = (S, i64)>,
        S: AsRef<str>,
    {
        let scores = scores.into_iter();
        let mut tree = Self::with_capacity(scores.size_hint().0);
        for (player, score) in scores {
            let player = player.as_ref();
            let fp = tree.fingerprint(player);
            match tree.find(fp, player) {
                Some(n) => tree.nodes[n as usize].score = score,
                None => {
                    let n = tree.new_node(player, fp, score)?;
                    tree.index.insert(fp, n);
                }
            }
        }
        tree.build_from_nodes();
        Ok(tree)
    }

    /// Links every allocated node (none may be free) into a treap: sort, then build the
    /// Cartesian tree of the priorities in one pass.
    fn build_from_nodes(&mut self) {
        let Self {
            nodes,
            ids,
            root,
            count,
            ..
        } = self;
        let mut order: Vec<u32> = (0..nodes.len() as u32).collect();
        order.sort_unstable_by(|&a, &b| {
            let (na, nb) = (&nodes[a as usize], &nodes[b as usize]);
            key_cmp(na.score, id_of(ids, na), nb.score, id_of(ids, nb))
        });
        // Subtree sizes while building; a node's subtree is final once it leaves the spine.
        let mut sizes = vec![0u32; nodes.len()];
        let size = |sizes: &[u32], n: u32| if n == NIL { 0 } else { sizes[n as usize] };
        let finish = |nodes: &mut [Node], sizes: &mut [u32], n: u32| {
            let node = &mut nodes[n as usize];
            node.left_size = size(sizes, node.left);
            sizes[n as usize] = 1 + node.left_size + size(sizes, node.right);
        };
        // The right spine of the tree built so far.
        let mut spine: Vec<u32> = Vec::new();
        for &x in &order {
            let prio = nodes[x as usize].prio;
            let mut last = NIL;
            while let Some(&top) = spine.last() {
                if nodes[top as usize].prio >= prio {
                    break;
                }
                spine.pop();
                finish(nodes, &mut sizes, top);
                last = top;
            }
            let node = &mut nodes[x as usize];
            node.left = last;
            node.right = NIL;
            if let Some(&top) = spine.last() {
                nodes[top as usize].right = x;
            }
            spine.push(x);
        }
        *root = spine.first().copied().unwrap_or(NIL);
        while let Some(top) = spine.pop() {
            finish(nodes, &mut sizes, top);
        }
        *count = order.len() as u32;
    }

    /// Number of ranked players.
    pub fn len(&self) -> usize {
        self.count as usize
    }

    /// No player ranked.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Forgets every player (keeps the allocations).
    pub fn clear(&mut self) {
        self.nodes.clear();
        self.root = NIL;
        self.count = 0;
        self.free = NIL;
        self.index.clear();
        self.ids.clear();
        self.garbage = 0;
    }

    /// A player's score.
    pub fn score(&self, player: &str) -> Option<i64> {
        let n = self.find(self.fingerprint(player), player)?;
        Some(self.nodes[n as usize].score)
    }

    /// A player's 1-based rank.
    pub fn rank(&self, player: &str) -> Option<u64> {
        let n = self.find(self.fingerprint(player), player)?;
        Some(self.rank_of(n))
    }

    /// A player's 1-based rank and score.
    pub fn entry(&self, player: &str) -> Option<(u64, i64)> {
        let n = self.find(self.fingerprint(player), player)?;
        Some((self.rank_of(n), self.nodes[n as usize].score))
    }

    /// Adds `delta` to a player's score (a new player starts from 0) and returns the new score.
    /// Scores saturate at the bounds of `i64`.
    pub fn incr(&mut self, player: &str, delta: i64) -> Result<i64, RankTreeError> {
        self.upsert(player, |old| old.unwrap_or(0).saturating_add(delta))
    }

    /// Raises a player's score to `score` unless it is already as high (a new player gets it);
    /// returns the previous score.
    pub fn raise(&mut self, player: &str, score: i64) -> Result<Option<i64>, RankTreeError> {
        let mut previous = None;
        self.upsert(player, |old| {
            previous = old;
            old.map_or(score, |old| old.max(score))
        })?;
        Ok(previous)
    }

    /// Sets a player's score; returns the previous one.
    pub fn set(&mut self, player: &str, score: i64) -> Result<Option<i64>, RankTreeError> {
        let mut previous = None;
        self.upsert(player, |old| {
            previous = old;
            score
        })?;
        Ok(previous)
    }

    fn upsert(
        &mut self,
        player: &str,
        new_score: impl FnOnce(Option<i64>) -> i64,
    ) -> Result<i64, RankTreeError> {
        let fp = self.fingerprint(player);
        match self.find(fp, player) {
            Some(n) => {
                let old = self.nodes[n as usize].score;
                let score = new_score(Some(old));
                if score != old {
                    self.detach(n);
                    self.nodes[n as usize].score = score;
                    self.attach(n);
                }
                Ok(score)
            }
            None => {
                let score = new_score(None);
                let n = self.new_node(player, fp, score)?;
                self.index.insert(fp, n);
                self.attach(n);
                Ok(score)
            }
        }
    }

    /// Removes a player; returns the score it had.
    pub fn remove(&mut self, player: &str) -> Option<i64> {
        let fp = self.fingerprint(player);
        let n = self.find(fp, player)?;
        self.detach(n);
        self.index.remove(fp, n);
        let node = &mut self.nodes[n as usize];
        let score = node.score;
        self.garbage += node.id.len();
        *node = Node {
            score: 0,
            id: IdRef::default(),
            left: self.free,
            right: FREE,
            left_size: 0,
            prio: 0,
        };
        self.free = n;
        if self.garbage > COMPACT_MIN_GARBAGE && self.garbage > self.ids.len() / 2 {
            self.compact_ids();
        }
        Some(score)
    }

    /// Entries at 0-based positions `offset .. offset + limit`, in rank order.
    pub fn range(&self, offset: u64, limit: u64) -> Vec<(&str, i64)> {
        let len = self.len() as u64;
        let take = limit.min(len.saturating_sub(offset));
        let mut out = Vec::with_capacity(take as usize);
        out.extend(self.iter_from(offset).take(take as usize));
        out
    }

    /// Every entry from 0-based position `offset` on, in rank order.
    pub fn iter_from(&self, offset: u64) -> Iter<'_> {
        let mut stack = Vec::with_capacity(48);
        let mut pos = offset;
        let mut c = self.root;
        while c != NIL {
            let node = &self.nodes[c as usize];
            let left = u64::from(node.left_size);
            match pos.cmp(&left) {
                Ordering::Less => {
                    stack.push(c);
                    c = node.left;
                }
                Ordering::Equal => {
                    stack.push(c);
                    break;
                }
                Ordering::Greater => {
                    pos -= left + 1;
                    c = node.right;
                }
            }
        }
        Iter {
            tree: self,
            stack,
            remaining: (self.len() as u64).saturating_sub(offset) as usize,
        }
    }

    /// Every entry in rank order.
    pub fn iter(&self) -> Iter<'_> {
        self.iter_from(0)
    }

    /// A player with up to `n` neighbours above and `n` below: the 1-based rank of the first
    /// entry returned, and the entries in rank order.
    pub fn around(&self, player: &str, n: u64) -> Option<(u64, Vec<(&str, i64)>)> {
        let rank = self.rank(player)?;
        let first = rank.saturating_sub(n).max(1);
        let limit = (rank - first + 1).saturating_add(n);
        Some((first, self.range(first - 1, limit)))
    }

    /// Heap memory held, in bytes (capacities, not just lengths).
    pub fn approx_heap_bytes(&self) -> usize {
        self.nodes.capacity() * std::mem::size_of::<Node>()
            + self.index.slots.capacity() * std::mem::size_of::<u64>()
            + self.ids.capacity()
            + self.path.capacity() * std::mem::size_of::<u32>()
    }

    // ---- internals ----

    fn fingerprint(&self, player: &str) -> u32 {
        let h = self.hasher.hash_one(player);
        (h >> 32) as u32 ^ h as u32
    }

    fn find(&self, fp: u32, player: &str) -> Option<u32> {
        let (nodes, ids) = (&self.nodes, &self.ids);
        self.index
            .find(fp, |n| id_of(ids, &nodes[n as usize]) == player)
    }

    fn rank_of(&self, x: u32) -> u64 {
        let nodes = &self.nodes;
        let mut rank = 0u64;
        let mut c = self.root;
        while c != NIL {
            let node = &nodes[c as usize];
            if c == x {
                return rank + u64::from(node.left_size) + 1;
            }
            if node_before(nodes, &self.ids, x, c) {
                c = node.left;
            } else {
                rank += u64::from(node.left_size) + 1;
                c = node.right;
            }
        }
        // Unreachable while the tree is consistent: `x` is always found on its key's path.
        rank
    }

    fn new_node(&mut self, player: &str, fp: u32, score: i64) -> Result<u32, RankTreeError> {
        if player.len() > MAX_ID_LEN {
            return Err(RankTreeError::IdTooLong(player.len()));
        }
        let full = RankTreeError::Full {
            players: self.len() as u64,
        };
        if self.free == NIL && self.nodes.len() >= MAX_PLAYERS {
            return Err(full);
        }
        if self.ids.len() + player.len() > MAX_ARENA {
            if self.garbage == 0 {
                return Err(full);
            }
            self.compact_ids();
            if self.ids.len() + player.len() > MAX_ARENA {
                return Err(full);
            }
        }
        if self.ids.capacity() - self.ids.len() < player.len() {
            self.ids
                .reserve_exact((self.ids.len() / 4).max(player.len()).max(1024));
        }
        let id = IdRef::new(self.ids.len(), player.len());
        self.ids.push_str(player);
        let node = Node {
            score,
            id,
            left: NIL,
            right: NIL,
            left_size: 0,
            prio: fp,
        };
        if self.free != NIL {
            let n = self.free;
            self.free = self.nodes[n as usize].left;
            self.nodes[n as usize] = node;
            Ok(n)
        } else {
            grow(&mut self.nodes, 1);
            self.nodes.push(node);
            Ok((self.nodes.len() - 1) as u32)
        }
    }

    /// Unlinks node `x` from the tree, leaving it a lone node.
    fn detach(&mut self, x: u32) {
        let Self {
            nodes,
            ids,
            root,
            count,
            ..
        } = self;
        let mut slot = Slot::Root;
        let mut c = *root;
        while c != x {
            debug_assert!(c != NIL, "detached node not on its key's path");
            if c == NIL {
                return;
            }
            if node_before(nodes, ids, x, c) {
                nodes[c as usize].left_size -= 1;
                slot = Slot::Left(c);
                c = nodes[c as usize].left;
            } else {
                slot = Slot::Right(c);
                c = nodes[c as usize].right;
            }
        }
        let node = nodes[x as usize];
        merge(nodes, root, slot, node.left, node.right, node.left_size);
        let node = &mut nodes[x as usize];
        node.left = NIL;
        node.right = NIL;
        node.left_size = 0;
        *count -= 1;
    }

    /// Links the lone node `x` into the tree at the place its key and priority call for.
    fn attach(&mut self, x: u32) {
        let Self {
            nodes,
            ids,
            root,
            path,
            count,
            ..
        } = self;
        let prio = nodes[x as usize].prio;
        // Walk down while the current node stays above `x`.
        let mut slot = Slot::Root;
        let mut c = *root;
        while c != NIL && nodes[c as usize].prio >= prio {
            if node_before(nodes, ids, x, c) {
                nodes[c as usize].left_size += 1;
                slot = Slot::Left(c);
                c = nodes[c as usize].left;
            } else {
                slot = Slot::Right(c);
                c = nodes[c as usize].right;
            }
        }
        // Split the subtree at `c` by `x`'s key: nodes before `x` into `x.left`, the rest into
        // `x.right`.
        let mut left_slot = Slot::Left(x);
        let mut right_slot = Slot::Right(x);
        path.clear();
        while c != NIL {
            if node_before(nodes, ids, c, x) {
                path.push(c << 1 | 1);
                set_slot(nodes, root, left_slot, c);
                left_slot = Slot::Right(c);
                c = nodes[c as usize].right;
            } else {
                path.push(c << 1);
                set_slot(nodes, root, right_slot, c);
                right_slot = Slot::Left(c);
                c = nodes[c as usize].left;
            }
        }
        set_slot(nodes, root, left_slot, NIL);
        set_slot(nodes, root, right_slot, NIL);
        // Bottom-up: a node that went right of `x` lost, from its left subtree, every node that
        // went left of `x` further down the path (with their left subtrees).
        let mut moved_left = 0u32;
        for &step in path.iter().rev() {
            let node = &mut nodes[(step >> 1) as usize];
            if step & 1 == 1 {
                moved_left += node.left_size + 1;
            } else {
                node.left_size -= moved_left;
            }
        }
        nodes[x as usize].left_size = moved_left;
        set_slot(nodes, root, slot, x);
        *count += 1;
    }

    /// Rewrites the id arena with live ids only.
    fn compact_ids(&mut self) {
        let mut ids = String::with_capacity(self.ids.len() - self.garbage);
        for node in self.nodes.iter_mut().filter(|n| n.right != FREE) {
            let id = id_of(&self.ids, node);
            let fresh = IdRef::new(ids.len(), id.len());
            ids.push_str(id);
            node.id = fresh;
        }
        self.ids = ids;
        self.garbage = 0;
    }

    /// Checks every structural invariant; for tests.
    #[cfg(test)]
    pub(crate) fn check(&self) -> Result<(), String> {
        fn walk(t: &RankTree, n: u32, out: &mut Vec<u32>) -> Result<u32, String> {
            if n == NIL {
                return Ok(0);
            }
            let node = &t.nodes[n as usize];
            for child in [node.left, node.right] {
                if child != NIL && t.nodes[child as usize].prio > node.prio {
                    return Err(format!("heap order broken at {n}"));
                }
            }
            let l = walk(t, node.left, out)?;
            out.push(n);
            let r = walk(t, node.right, out)?;
            if node.left_size != l {
                return Err(format!("left size of {n} is {} not {l}", node.left_size));
            }
            Ok(l + r + 1)
        }
        let mut order = Vec::new();
        walk(self, self.root, &mut order)?;
        if order.len() != self.len() {
            return Err(format!("count {} but {} nodes", self.len(), order.len()));
        }
        for pair in order.windows(2) {
            if !node_before(&self.nodes, &self.ids, pair[0], pair[1]) {
                return Err(format!("key order broken at {} {}", pair[0], pair[1]));
            }
        }
        if order.len() != self.index.len {
            return Err(format!("index holds {} of {}", self.index.len, order.len()));
        }
        for &n in &order {
            let id = id_of(&self.ids, &self.nodes[n as usize]);
            if self.find(self.fingerprint(id), id) != Some(n) {
                return Err(format!("index lost {id}"));
            }
        }
        let free = self.nodes.iter().filter(|n| n.right == FREE).count();
        if free + order.len() != self.nodes.len() {
            return Err(format!(
                "{} nodes: {free} free, {} live",
                self.nodes.len(),
                order.len()
            ));
        }
        Ok(())
    }
}

/// Entries in rank order, from [`RankTree::iter_from`].
pub struct Iter<'a> {
    tree: &'a RankTree,
    /// Nodes still to visit, next on top: each with its left subtree already visited.
    stack: Vec<u32>,
    remaining: usize,
}

impl<'a> Iterator for Iter<'a> {
    type Item = (&'a str, i64);

    fn next(&mut self) -> Option<Self::Item> {
        let n = self.stack.pop()?;
        let nodes = &self.tree.nodes;
        let node = &nodes[n as usize];
        let mut c = node.right;
        while c != NIL {
            self.stack.push(c);
            c = nodes[c as usize].left;
        }
        self.remaining = self.remaining.saturating_sub(1);
        Some((id_of(&self.tree.ids, node), node.score))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining, Some(self.remaining))
    }
}

impl ExactSizeIterator for Iter<'_> {}

/// Player id → node: open addressing over 8-byte slots `fingerprint << 32 | (node + 1)`
/// (0 = empty), linear probing, home slot from the fingerprint's top bits, backward-shift
/// deletion (no tombstones). Ids are compared through the caller's `matches` on a fingerprint
/// hit.
#[derive(Default)]
struct Index {
    slots: Vec<u64>,
    /// log2 of `slots.len()` (0 while unallocated).
    bits: u32,
    len: usize,
}

impl Index {
    const MIN_BITS: u32 = 3;

    fn mask(&self) -> usize {
        self.slots.len() - 1
    }

    fn home(&self, fp: u32) -> usize {
        (fp >> (32 - self.bits)) as usize
    }

    fn slot_fp(slot: u64) -> u32 {
        (slot >> 32) as u32
    }

    /// Slots needed for `len` entries at a load of at most 7/8, as a power of two.
    fn bits_for(len: usize) -> u32 {
        let want = (len * 8).div_ceil(7).max(1 << Self::MIN_BITS);
        want.next_power_of_two().trailing_zeros()
    }

    fn clear(&mut self) {
        self.slots.iter_mut().for_each(|s| *s = 0);
        self.len = 0;
    }

    fn reserve(&mut self, len: usize) {
        let bits = Self::bits_for(len);
        if bits > self.bits {
            self.rehash(bits);
        }
    }

    fn find(&self, fp: u32, mut matches: impl FnMut(u32) -> bool) -> Option<u32> {
        if self.len == 0 {
            return None;
        }
        let mask = self.mask();
        let mut i = self.home(fp);
        loop {
            let slot = self.slots[i];
            if slot == 0 {
                return None;
            }
            if Self::slot_fp(slot) == fp {
                let n = (slot as u32).wrapping_sub(1);
                if matches(n) {
                    return Some(n);
                }
            }
            i = (i + 1) & mask;
        }
    }

    /// Adds `node` (not present yet).
    fn insert(&mut self, fp: u32, node: u32) {
        self.reserve(self.len + 1);
        self.place((u64::from(fp) << 32) | u64::from(node + 1));
        self.len += 1;
    }

    fn place(&mut self, slot: u64) {
        let mask = self.mask();
        let mut i = self.home(Self::slot_fp(slot));
        while self.slots[i] != 0 {
            i = (i + 1) & mask;
        }
        self.slots[i] = slot;
    }

    /// Removes `node`, known to be present under `fp`.
    fn remove(&mut self, fp: u32, node: u32) {
        if self.len == 0 {
            return;
        }
        let want = (u64::from(fp) << 32) | u64::from(node + 1);
        let mask = self.mask();
        let mut i = self.home(fp);
        loop {
            match self.slots[i] {
                0 => return,
                s if s == want => break,
                _ => i = (i + 1) & mask,
            }
        }
        // Shift later members of the cluster back into the hole when that keeps them
        // reachable from their home slot.
        let mut hole = i;
        let mut j = (i + 1) & mask;
        loop {
            let s = self.slots[j];
            if s == 0 {
                break;
            }
            let home = self.home(Self::slot_fp(s));
            if (j.wrapping_sub(home) & mask) >= (j.wrapping_sub(hole) & mask) {
                self.slots[hole] = s;
                hole = j;
            }
            j = (j + 1) & mask;
        }
        self.slots[hole] = 0;
        self.len -= 1;
    }

    fn rehash(&mut self, bits: u32) {
        let old = std::mem::replace(&mut self.slots, vec![0; 1 << bits]);
        self.bits = bits;
        for slot in old.into_iter().filter(|&s| s != 0) {
            self.place(slot);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    fn entries(t: &RankTree) -> Vec<(String, i64)> {
        t.iter().map(|(p, s)| (p.to_owned(), s)).collect()
    }

    #[test]
    fn orders_by_score_then_id_descending() {
        let mut t = RankTree::new();
        t.incr("alice", 10).unwrap();
        t.incr("bob", 20).unwrap();
        t.incr("carol", 10).unwrap();
        t.incr("dave", 20).unwrap();
        t.check().unwrap();
        assert_eq!(
            t.range(0, 10),
            vec![("dave", 20), ("bob", 20), ("carol", 10), ("alice", 10)]
        );
        assert_eq!(t.rank("dave"), Some(1));
        assert_eq!(t.rank("alice"), Some(4));
        assert_eq!(t.rank("nobody"), None);
        assert_eq!(t.len(), 4);
    }

    #[test]
    fn incr_set_remove() {
        let mut t = RankTree::new();
        assert!(t.is_empty());
        assert_eq!(t.incr("p1", 5).unwrap(), 5);
        assert_eq!(t.incr("p1", -8).unwrap(), -3);
        assert_eq!(t.incr("p2", 0).unwrap(), 0);
        assert_eq!(t.score("p2"), Some(0));
        assert_eq!(t.rank("p1"), Some(2));
        assert_eq!(t.set("p1", 100).unwrap(), Some(-3));
        assert_eq!(t.set("p3", 1).unwrap(), None);
        assert_eq!(t.rank("p1"), Some(1));
        assert_eq!(t.remove("p1"), Some(100));
        assert_eq!(t.remove("p1"), None);
        assert_eq!(t.score("p1"), None);
        assert_eq!(t.range(0, 10), vec![("p3", 1), ("p2", 0)]);
        t.check().unwrap();
        // The freed node is reused.
        t.incr("p4", 7).unwrap();
        assert_eq!(t.nodes.len(), 3);
        assert_eq!(t.entry("p4"), Some((1, 7)));
        t.check().unwrap();
    }

    #[test]
    fn scores_saturate() {
        let mut t = RankTree::new();
        t.incr("max", i64::MAX).unwrap();
        assert_eq!(t.incr("max", 1).unwrap(), i64::MAX);
        t.incr("min", i64::MIN).unwrap();
        assert_eq!(t.incr("min", -1).unwrap(), i64::MIN);
        assert_eq!(t.range(0, 2), vec![("max", i64::MAX), ("min", i64::MIN)]);
    }

    #[test]
    fn range_and_around_edges() {
        let mut t = RankTree::new();
        for i in 0..10 {
            t.incr(&format!("p{i}"), i).unwrap();
        }
        // p9 is first.
        assert_eq!(t.range(0, 3), vec![("p9", 9), ("p8", 8), ("p7", 7)]);
        assert_eq!(t.range(8, 5), vec![("p1", 1), ("p0", 0)]);
        assert!(t.range(10, 5).is_empty());
        assert!(t.range(u64::MAX, u64::MAX).is_empty());
        assert!(t.range(3, 0).is_empty());
        assert_eq!(t.range(0, u64::MAX).len(), 10);

        let (first, top) = t.around("p9", 2).unwrap();
        assert_eq!(first, 1);
        assert_eq!(top, vec![("p9", 9), ("p8", 8), ("p7", 7)]);
        let (first, bottom) = t.around("p0", 2).unwrap();
        assert_eq!(first, 8);
        assert_eq!(bottom, vec![("p2", 2), ("p1", 1), ("p0", 0)]);
        let (first, mid) = t.around("p5", 1).unwrap();
        assert_eq!(first, 4);
        assert_eq!(mid, vec![("p6", 6), ("p5", 5), ("p4", 4)]);
        assert_eq!(t.around("p5", 0).unwrap(), (5, vec![("p5", 5)]));
        assert_eq!(t.around("p5", u64::MAX).unwrap().1.len(), 10);
        assert!(t.around("nobody", 3).is_none());
        let it = t.iter_from(7);
        assert_eq!(it.len(), 3);
    }

    #[test]
    fn empty_tree() {
        let t = RankTree::new();
        assert!(t.range(0, 10).is_empty());
        assert_eq!(t.iter().next(), None);
        assert_eq!(t.rank("x"), None);
        t.check().unwrap();
    }

    #[test]
    fn odd_ids() {
        let mut t = RankTree::new();
        t.incr("", 1).unwrap();
        t.incr("é", 1).unwrap();
        t.incr("e", 1).unwrap();
        assert_eq!(t.range(0, 3), vec![("é", 1), ("e", 1), ("", 1)]);
        let long = "x".repeat(MAX_ID_LEN + 1);
        assert_eq!(
            t.incr(&long, 1),
            Err(RankTreeError::IdTooLong(MAX_ID_LEN + 1))
        );
        assert_eq!(t.len(), 3);
        t.check().unwrap();
    }

    #[test]
    fn from_scores_builds_and_dedups() {
        let t = RankTree::from_scores(vec![("a", 1), ("b", 3), ("c", 2), ("a", 5)]).unwrap();
        t.check().unwrap();
        assert_eq!(t.range(0, 10), vec![("a", 5), ("b", 3), ("c", 2)]);
        let empty = RankTree::from_scores(Vec::<(String, i64)>::new()).unwrap();
        assert!(empty.is_empty());
        empty.check().unwrap();

        let big: Vec<(String, i64)> = (0..5000).map(|i| (format!("p{i}"), i % 97)).collect();
        let mut t = RankTree::from_scores(big.clone()).unwrap();
        t.check().unwrap();
        let mut naive = big;
        naive.sort_by(|a, b| key_cmp(a.1, &a.0, b.1, &b.0));
        assert_eq!(entries(&t), naive);
        // It stays usable afterwards.
        t.incr("p1", 1000).unwrap();
        assert_eq!(t.rank("p1"), Some(1));
        t.check().unwrap();
    }

    #[test]
    fn compacts_ids_after_many_removals() {
        let mut t = RankTree::new();
        for i in 0..20_000 {
            t.incr(&format!("player_{i:08}"), i).unwrap();
        }
        for i in 0..19_000 {
            t.remove(&format!("player_{i:08}")).unwrap();
        }
        assert!(t.ids.len() < 20_000 * 15 / 2, "arena not compacted");
        t.check().unwrap();
        assert_eq!(t.len(), 1000);
        assert_eq!(t.range(0, 1), vec![("player_00019999", 19_999)]);
        assert_eq!(t.rank("player_00019000"), Some(1000));
    }

    #[test]
    fn clear_resets() {
        let mut t = RankTree::new();
        t.incr("a", 1).unwrap();
        t.clear();
        assert!(t.is_empty());
        assert_eq!(t.score("a"), None);
        t.incr("b", 2).unwrap();
        assert_eq!(t.range(0, 5), vec![("b", 2)]);
        t.check().unwrap();
    }

    /// A sorted `Vec` as the reference model.
    #[derive(Default)]
    struct Model(Vec<(String, i64)>);

    impl Model {
        fn sort(&mut self) {
            self.0.sort_by(|a, b| key_cmp(a.1, &a.0, b.1, &b.0));
        }
        fn pos(&self, p: &str) -> Option<usize> {
            self.0.iter().position(|(q, _)| q == p)
        }
        fn upsert(&mut self, p: &str, f: impl FnOnce(i64) -> i64) -> i64 {
            let score = match self.pos(p) {
                Some(i) => {
                    self.0[i].1 = f(self.0[i].1);
                    self.0[i].1
                }
                None => {
                    let s = f(0);
                    self.0.push((p.to_owned(), s));
                    s
                }
            };
            self.sort();
            score
        }
    }

    #[test]
    fn random_ops_match_a_sorted_vec() {
        for seed in 0..4u64 {
            let mut rng = StdRng::seed_from_u64(seed);
            let mut t = RankTree::new();
            let mut m = Model::default();
            // Few players and a narrow score range force many ties.
            let players = [60usize, 300, 1000, 20][seed as usize];
            for step in 0..5000 {
                let p = format!("p{}", rng.gen_range(0..players));
                match rng.gen_range(0..100) {
                    0..=44 => {
                        let d = rng.gen_range(-20..=20);
                        assert_eq!(t.incr(&p, d).unwrap(), m.upsert(&p, |s| s + d));
                    }
                    45..=54 => {
                        let s = rng.gen_range(-50..=50);
                        let before = m.pos(&p).map(|i| m.0[i].1);
                        assert_eq!(t.set(&p, s).unwrap(), before);
                        m.upsert(&p, |_| s);
                    }
                    55..=64 => {
                        let expect = m.pos(&p).map(|i| m.0.remove(i).1);
                        assert_eq!(t.remove(&p), expect);
                    }
                    65..=79 => {
                        let expect = m.pos(&p).map(|i| i as u64 + 1);
                        assert_eq!(t.rank(&p), expect);
                        assert_eq!(t.score(&p), m.pos(&p).map(|i| m.0[i].1));
                    }
                    80..=94 => {
                        let off = rng.gen_range(0..=m.0.len() as u64 + 2);
                        let lim = rng.gen_range(0..=30);
                        let got: Vec<(String, i64)> = t
                            .range(off, lim)
                            .into_iter()
                            .map(|(p, s)| (p.to_owned(), s))
                            .collect();
                        let expect: Vec<(String, i64)> =
                            m.0.iter()
                                .skip(off as usize)
                                .take(lim as usize)
                                .cloned()
                                .collect();
                        assert_eq!(got, expect, "seed {seed} step {step}");
                    }
                    _ => {
                        let n = rng.gen_range(0..5u64);
                        let got = t.around(&p, n).map(|(first, es)| {
                            let es: Vec<(String, i64)> =
                                es.into_iter().map(|(p, s)| (p.to_owned(), s)).collect();
                            (first, es)
                        });
                        let expect = m.pos(&p).map(|i| {
                            let lo = i.saturating_sub(n as usize);
                            let hi = (i + n as usize + 1).min(m.0.len());
                            (lo as u64 + 1, m.0[lo..hi].to_vec())
                        });
                        assert_eq!(got, expect);
                    }
                }
                assert_eq!(t.len(), m.0.len());
                if step % 250 == 0 {
                    t.check().unwrap();
                }
            }
            t.check().unwrap();
            assert_eq!(entries(&t), m.0);
        }
    }

    #[test]
    fn memory_per_player_stays_under_80_bytes() {
        let mut t = RankTree::new();
        let mut worst = 0.0f64;
        for i in 0..150_000i64 {
            t.incr(&format!("player_{i}"), (i * 7919) % 10_007).unwrap();
            // Checked often enough to see every growth step of every array.
            if i >= 2000 && i % 97 == 0 {
                worst = worst.max(t.approx_heap_bytes() as f64 / t.len() as f64);
            }
        }
        assert!(worst <= 80.0, "{worst:.1} bytes per player");
        let n = 100_000;
        let packed = RankTree::from_scores((0..n).map(|i| (format!("player_{i}"), i))).unwrap();
        let per_player = packed.approx_heap_bytes() as f64 / n as f64;
        assert!(per_player <= 80.0, "{per_player:.1} bytes per player");
    }
}
