//! The Merkle tree in the store: node hashes at every 8th height from the `tree` table, the
//! compact range a prune recorded for the entries it removed, and everything else computed from
//! the entry hashes in the batches (at most 256 leaves, or 128 stored nodes, per node asked for).
//! Building the tree of a log from before it kept one (and after a crash, the last few hundred
//! leaves of the frontier) happens on open, in [`catch_up`].

use super::*;
use crate::merkle::{self, Frontier, Hash, Nodes, TILE_HEIGHT, TreeError};
use crate::prune::{MARK, Mark};
use crate::tables::{TREE, tree_key};
use crate::witness::Receipt;

/// Leaves per level-0 tile.
const TILE_WIDTH: u64 = 1 << TILE_HEIGHT;

/// The `entry_hash` field of a stored record, read without building the whole JSON value.
pub(crate) fn entry_hash_of(record: &[u8]) -> Option<Hash> {
    #[derive(serde::Deserialize)]
    struct HashOnly<'a> {
        #[serde(borrow)]
        entry_hash: &'a str,
    }
    serde_json::from_slice::<HashOnly<'_>>(record).ok().and_then(|h| entry::unhex32(h.entry_hash))
}

/// The compact range of the entries the newest prune removed, as its mark records it: `None`
/// when nothing was pruned or the prune was made before the log kept a tree.
pub(crate) fn pruned_range(mark: Option<&Mark>) -> Option<Frontier> {
    let mark = mark?;
    let size = mark.first_kept_seq.saturating_sub(1);
    let nodes = mark.pruned_range.iter().map(|b| decode_hash(b)).collect::<Option<Vec<_>>>()?;
    if size > 0 && nodes.is_empty() {
        return None;
    }
    Frontier::from_parts(size, nodes)
}

/// 32 bytes from standard base64.
pub(crate) fn decode_hash(text: &str) -> Option<Hash> {
    crate::keys::base64_decode(text).and_then(|b| <[u8; 32]>::try_from(b).ok())
}

/// The newest prune's mark from the state table.
pub(crate) fn read_mark(
    state: &impl ReadableTable<&'static str, &'static [u8]>,
) -> Result<Option<Mark>, LogError> {
    Ok(state.get(MARK).map_err(storage)?.and_then(|v| serde_json::from_slice(v.value()).ok()))
}

/// Node hashes of the tree of the first `size` entries, read or computed from the tables.
pub(crate) struct StoredNodes<'a, B, T> {
    batches: &'a B,
    tree: Option<&'a T>,
    pruned: Option<&'a Frontier>,
    size: u64,
    /// The leaves of one level-0 tile: `(tile index, leaf hashes, None where pruned)`.
    block: Option<(u64, Vec<Option<Hash>>)>,
}

impl<'a, B, T> StoredNodes<'a, B, T>
where
    B: ReadableTable<u64, &'static [u8]>,
    T: ReadableTable<u64, &'static [u8]>,
{
    pub(crate) fn new(batches: &'a B, tree: Option<&'a T>, pruned: Option<&'a Frontier>, size: u64) -> Self {
        StoredNodes { batches, tree, pruned, size, block: None }
    }

    fn load_block(&mut self, block: u64) -> Result<&[Option<Hash>], TreeError> {
        if self.block.as_ref().is_none_or(|(b, _)| *b != block) {
            let first = block * TILE_WIDTH + 1;
            let last = (first + TILE_WIDTH - 1).min(self.size);
            let mut leaves = vec![None; TILE_WIDTH as usize];
            let storage_err = |e: &dyn std::fmt::Display| TreeError::Storage(e.to_string());
            for item in self.batches.range(first..).map_err(|e| storage_err(&e))? {
                let (k, v) = item.map_err(|e| storage_err(&e))?;
                let key = k.value();
                let batch = Batch::decode(v.value()).map_err(|e| storage_err(&corrupt(key, e)))?;
                let start = first_seq(key, batch.records.len());
                for (seq, record) in (start..).zip(&batch.records) {
                    if (first..=last).contains(&seq) {
                        let hash = entry_hash_of(record).ok_or_else(|| {
                            TreeError::Storage(format!("entry {seq} has no readable entry_hash"))
                        })?;
                        leaves[(seq - first) as usize] = Some(merkle::leaf_hash(&hash));
                    }
                }
                if key >= last {
                    break;
                }
            }
            self.block = Some((block, leaves));
        }
        Ok(self.block.as_ref().map_or(&[][..], |(_, l)| l.as_slice()))
    }
}

impl<B, T> Nodes for StoredNodes<'_, B, T>
where
    B: ReadableTable<u64, &'static [u8]>,
    T: ReadableTable<u64, &'static [u8]>,
{
    fn node(&mut self, height: u32, index: u64) -> Result<Hash, TreeError> {
        let width =
            1u64.checked_shl(height).ok_or(TreeError::TooSmall { size: self.size, wanted: u64::MAX })?;
        let start =
            index.checked_mul(width).ok_or(TreeError::TooSmall { size: self.size, wanted: u64::MAX })?;
        let end = start.saturating_add(width);
        if end > self.size {
            return Err(TreeError::TooSmall { size: self.size, wanted: end });
        }
        if height > 0
            && height.is_multiple_of(TILE_HEIGHT)
            && let Some(tree) = self.tree
            && let Some(v) = tree
                .get(tree_key(height / TILE_HEIGHT, index))
                .map_err(|e| TreeError::Storage(e.to_string()))?
            && let Ok(hash) = <[u8; 32]>::try_from(v.value())
        {
            return Ok(hash);
        }
        if let Some(p) = self.pruned
            && start < p.size()
        {
            let found = Frontier::positions(p.size())
                .into_iter()
                .zip(p.nodes())
                .find(|((h, i), _)| (*h, *i) == (height, index));
            if let Some((_, hash)) = found {
                return Ok(*hash);
            }
            if end <= p.size() && height < TILE_HEIGHT {
                return Err(TreeError::Pruned { seq: start + 1 });
            }
        }
        if height == 0 {
            let leaves = self.load_block(index / TILE_WIDTH)?;
            return leaves
                .get((index % TILE_WIDTH) as usize)
                .copied()
                .flatten()
                .ok_or(TreeError::Pruned { seq: index + 1 });
        }
        let left = self.node(height - 1, index * 2)?;
        let right = self.node(height - 1, index * 2 + 1)?;
        Ok(merkle::node_hash(&left, &right))
    }
}

/// Builds what the `tree` table lacks (all of it for a log from before format 4, the nodes a
/// crash lost otherwise: none, since they commit with their batch) and returns the frontier of
/// the whole log. Reads each stored entry hash once, a chunk of entries per transaction.
pub(super) fn catch_up(db: &Database) -> Result<Frontier, LogError> {
    const CHUNK: u64 = 50_000;
    loop {
        let txn = db.begin_write().map_err(storage)?;
        let (frontier, done) = {
            let batches = txn.open_table(BATCHES).map_err(storage)?;
            let mut tree = txn.open_table(TREE).map_err(storage)?;
            let state = txn.open_table(STATE).map_err(storage)?;
            let mark = read_mark(&state)?;
            let pruned = pruned_range(mark.as_ref());
            let size = batches.last().map_err(storage)?.map_or(0, |(k, _)| k.value());
            let first_stored = match batches.first().map_err(storage)? {
                None => size + 1,
                Some((k, v)) => {
                    let plain = Batch::plain(v.value()).map_err(|e| corrupt(k.value(), e))?;
                    first_seq(k.value(), Batch::count(&plain).map_err(|e| corrupt(k.value(), e))?)
                }
            };
            // Level-1 nodes are stored in order: the last one says how far the tree is built.
            let built = tree
                .range(tree_key(1, 0)..tree_key(2, 0))
                .map_err(storage)?
                .next_back()
                .transpose()
                .map_err(storage)?
                .map_or(0, |(k, _)| ((k.value() & ((1 << 56) - 1)) + 1) * TILE_WIDTH)
                .min(size);
            let mut frontier = match &pruned {
                Some(p) if p.size() >= built => p.clone(),
                _ => {
                    if first_stored > built + 1 {
                        return Err(LogError::Unconvertible { pruned_through: first_stored - 1 });
                    }
                    let mut nodes = StoredNodes::new(&batches, Some(&tree), pruned.as_ref(), size);
                    merkle::frontier(&mut nodes, built).map_err(LogError::Tree)?
                }
            };
            if frontier.size() + 1 < first_stored {
                return Err(LogError::Unconvertible { pruned_through: first_stored - 1 });
            }
            let from = frontier.size();
            let mut completed = Vec::new();
            for item in batches.range(from + 1..).map_err(storage)? {
                let (k, v) = item.map_err(storage)?;
                let key = k.value();
                let batch = Batch::decode(v.value()).map_err(|e| corrupt(key, e))?;
                let start = first_seq(key, batch.records.len());
                for (seq, record) in (start..).zip(&batch.records) {
                    if seq <= frontier.size() {
                        continue;
                    }
                    if seq != frontier.size() + 1 {
                        return Err(corrupt(key, Corruption::Misfiled(seq)));
                    }
                    let hash = entry_hash_of(record)
                        .ok_or_else(|| corrupt(key, entry::EntryError::Missing("entry_hash")))?;
                    frontier.push(merkle::leaf_hash(&hash), |h, i, node| {
                        completed.push((tree_key(h / TILE_HEIGHT, i), *node));
                    });
                }
                if frontier.size() - from >= CHUNK {
                    break;
                }
            }
            for (key, node) in &completed {
                tree.insert(key, node.as_slice()).map_err(storage)?;
            }
            let done = frontier.size() >= size;
            (frontier, done)
        };
        txn.commit().map_err(storage)?;
        if done {
            return Ok(frontier);
        }
    }
}

impl Log {
    /// The size and Merkle root of the log as of the last commit.
    pub fn tree_head(&self) -> (u64, Hash) {
        self.shared.tree.lock().map_or((0, merkle::empty_root()), |t| (t.size(), t.root()))
    }

    /// Runs `f` on the nodes of the tree of the first `size` entries.
    pub(super) fn with_nodes<R>(
        &self,
        size: u64,
        f: impl FnOnce(&mut dyn Nodes) -> Result<R, TreeError>,
    ) -> Result<R, LogError> {
        let (head, _) = self.head();
        if size > head {
            return Err(LogError::Tree(TreeError::TooSmall { size: head, wanted: size }));
        }
        self.read(|txn| {
            let batches = txn.open_table(BATCHES).map_err(storage)?;
            let tree = txn.open_table(TREE).map_err(storage)?;
            let state = txn.open_table(STATE).map_err(storage)?;
            let mark = read_mark(&state)?;
            let pruned = pruned_range(mark.as_ref());
            let mut nodes = StoredNodes::new(&batches, Some(&tree), pruned.as_ref(), size);
            f(&mut nodes).map_err(LogError::Tree)
        })
    }

    /// The compact range of the first `size` entries: the roots of the perfect subtrees that
    /// cover them exactly, largest first (what a prune records of the entries it removes).
    pub fn compact_range(&self, size: u64) -> Result<Vec<Hash>, LogError> {
        self.with_nodes(size, |n| merkle::frontier(n, size)).map(|f| f.nodes().to_vec())
    }

    /// The Merkle root of the first `size` entries.
    pub fn tree_root(&self, size: u64) -> Result<Hash, LogError> {
        self.with_nodes(size, |n| merkle::root(n, size))
    }

    /// The inclusion proof of entry `seq` in the tree of the first `size` entries.
    pub fn inclusion_proof(&self, seq: u64, size: u64) -> Result<Vec<Hash>, LogError> {
        if seq == 0 {
            return Err(LogError::Tree(TreeError::TooSmall { size, wanted: 0 }));
        }
        self.with_nodes(size, |n| merkle::inclusion_proof(n, seq - 1, size))
    }

    /// The consistency proof from the tree of `old` entries to the tree of `new`.
    pub fn consistency_proof(&self, old: u64, new: u64) -> Result<Vec<Hash>, LogError> {
        self.with_nodes(new, |n| merkle::consistency_proof(n, old, new))
    }

    /// The hashes of tile `index` at `level` (`tlog-tiles`), `width` of them (256 for a full
    /// tile): leaf hashes at level 0, the roots of full tiles below otherwise.
    pub fn tile(&self, level: u32, index: u64, width: u64) -> Result<Vec<u8>, LogError> {
        let height = level.saturating_mul(TILE_HEIGHT);
        let size = self.head().0;
        let first = index.saturating_mul(TILE_WIDTH);
        let needed = first
            .saturating_add(width)
            .checked_mul(1u64.checked_shl(height).unwrap_or(0))
            .ok_or(LogError::Tree(TreeError::TooSmall { size, wanted: u64::MAX }))?;
        self.with_nodes(needed, |n| {
            let mut out = Vec::with_capacity(width as usize * 32);
            for i in first..first + width {
                out.extend_from_slice(&n.node(height, i)?);
            }
            Ok(out)
        })
    }
}

/// The state row holding the newest checkpoint cosigned by witnesses (the note with their
/// cosignature lines), written with the `witness_cosigned` entry that records them.
pub const COSIGNED: &str = "witness/checkpoint";

/// A `tlog-proof` receipt for entry `seq`, read from one transaction: the record, its inclusion
/// proof, and the newest cosigned checkpoint that covers it, or (not yet witnessed: `false`)
/// the newest checkpoint.
pub(crate) fn receipt_txn(txn: &ReadTransaction, seq: u64) -> Result<(Receipt, bool), LogError> {
    let batches = txn.open_table(BATCHES).map_err(storage)?;
    let tree = txn.open_table(TREE).ok();
    let state = txn.open_table(STATE).map_err(storage)?;
    let mark = read_mark(&state)?;
    let pruned = pruned_range(mark.as_ref());
    let size = batches.last().map_err(storage)?.map_or(0, |(k, _)| k.value());
    if seq == 0 || seq > size {
        return Err(LogError::Tree(TreeError::TooSmall { size, wanted: seq }));
    }
    let Some(record) = super::reads::record_of(&batches, seq)? else {
        return Err(LogError::Tree(TreeError::Pruned { seq }));
    };
    let cosigned = state
        .get(COSIGNED)
        .map_err(storage)?
        .and_then(|v| String::from_utf8(v.value().to_vec()).ok())
        .filter(|note| Checkpoint::parse_note(note).is_ok_and(|cp| cp.size >= seq));
    let (note, witnessed) = match cosigned {
        Some(note) => (note, true),
        None => {
            let Some((k, v)) = batches.last().map_err(storage)? else {
                return Err(LogError::Tree(TreeError::TooSmall { size: 0, wanted: seq }));
            };
            (Batch::decode(v.value()).map_err(|e| corrupt(k.value(), e))?.checkpoint, false)
        }
    };
    let cp = Checkpoint::parse_note(&note).map_err(|e| corrupt(seq, BatchError::Codec(e.to_string())))?;
    if cp.legacy || cp.size < seq {
        return Err(LogError::Tree(TreeError::TooSmall { size: cp.size, wanted: seq }));
    }
    let mut nodes = StoredNodes::new(&batches, tree.as_ref(), pruned.as_ref(), cp.size);
    let proof = merkle::inclusion_proof(&mut nodes, seq - 1, cp.size).map_err(LogError::Tree)?;
    Ok((Receipt { record: record.into_bytes(), index: seq - 1, proof, checkpoint: note }, witnessed))
}

impl Log {
    /// A `tlog-proof` receipt for entry `seq` (see [`receipt_txn`]); `true` when its checkpoint
    /// is cosigned by witnesses.
    pub fn receipt(&self, seq: u64) -> Result<(Receipt, bool), LogError> {
        self.read(|txn| receipt_txn(txn, seq))
    }
}
