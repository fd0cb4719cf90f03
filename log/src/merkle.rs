//! The RFC 6962 Merkle tree over the log: leaf `i` is the `entry_hash` of entry `i + 1`.
//!
//! Leaf hash `SHA-256(0x00 ‖ entry_hash)`, interior node `SHA-256(0x01 ‖ left ‖ right)`, the
//! tree of size `n` split at the largest power of two below `n` (RFC 6962 §2.1). A [`Frontier`]
//! is the compact range `[0, n)`: the roots of the perfect subtrees the binary digits of `n`
//! name, largest first. The writer keeps one and folds the root at each commit; proofs are
//! computed from any [`Nodes`] source (the stored tree, an in-memory list in tests).

use sha2::{Digest, Sha256};

/// A SHA-256 hash.
pub type Hash = [u8; 32];

/// The root of the empty tree: SHA-256 of the empty string.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// `SHA-256(0x00 ‖ entry_hash)`.
pub fn leaf_hash(entry_hash: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(entry_hash);
    h.finalize().into()
}

/// `SHA-256(0x01 ‖ left ‖ right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// Heights at which the log stores node hashes: every 8th (the levels of `tlog-tiles`).
pub const TILE_HEIGHT: u32 = 8;

/// The compact range `[0, size)`: the perfect subtrees' roots, largest (leftmost) first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Frontier {
    size: u64,
    nodes: Vec<Hash>,
}

impl Frontier {
    /// A frontier from its parts: `nodes` are the roots of the subtrees named by the set bits
    /// of `size`, highest first. `None` when their number does not match.
    pub fn from_parts(size: u64, nodes: Vec<Hash>) -> Option<Frontier> {
        (nodes.len() == size.count_ones() as usize).then_some(Frontier { size, nodes })
    }

    /// Leaves in the tree.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The subtree roots, largest first.
    pub fn nodes(&self) -> &[Hash] {
        &self.nodes
    }

    /// `(height, index)` of each subtree root, largest first.
    pub fn positions(size: u64) -> Vec<(u32, u64)> {
        (0..64u32).rev().filter(|h| size >> h & 1 == 1).map(|h| (h, (size >> h) - 1)).collect()
    }

    /// Appends a leaf (already hashed with [`leaf_hash`]); `completed` hears of every node at a
    /// height that is a positive multiple of [`TILE_HEIGHT`] the leaf completes, as
    /// `(height, index, hash)`.
    pub fn push(&mut self, leaf: Hash, mut completed: impl FnMut(u32, u64, &Hash)) {
        let mut hash = leaf;
        let mut height = 0u32;
        while self.size >> height & 1 == 1 {
            let Some(left) = self.nodes.pop() else { break };
            hash = node_hash(&left, &hash);
            height += 1;
            if height.is_multiple_of(TILE_HEIGHT) {
                completed(height, ((self.size + 1) >> height) - 1, &hash);
            }
        }
        self.nodes.push(hash);
        self.size += 1;
    }

    /// The tree's root hash.
    pub fn root(&self) -> Hash {
        let mut nodes = self.nodes.iter().rev();
        let Some(last) = nodes.next() else { return empty_root() };
        nodes.fold(*last, |acc, left| node_hash(left, &acc))
    }
}

/// Why a node hash cannot be had.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TreeError {
    /// The node covers leaves that were pruned and no stored hash covers it.
    #[error("entry {seq} was pruned: the tree below it is no longer stored")]
    Pruned {
        /// The first entry under the node that is gone.
        seq: u64,
    },
    /// The node covers leaves past the tree's end.
    #[error("the tree has {size} entries, not {wanted}")]
    TooSmall {
        /// The tree size.
        size: u64,
        /// The size asked for.
        wanted: u64,
    },
    /// The storage failed or holds something unreadable.
    #[error("{0}")]
    Storage(String),
}

/// A source of node hashes of a tree: `node(h, i)` is the root of the perfect subtree over
/// leaves `[i·2^h, (i+1)·2^h)`.
pub trait Nodes {
    /// The hash of that subtree.
    fn node(&mut self, height: u32, index: u64) -> Result<Hash, TreeError>;
}

/// The largest power of two strictly below `n` (`n >= 2`).
fn split(n: u64) -> u64 {
    1u64 << (63 - (n - 1).leading_zeros())
}

/// `MTH(D[start:end])` for any range the RFC's recursion produces (`start` aligned to the
/// largest power of two not above `end - start`).
pub fn subtree_hash(nodes: &mut dyn Nodes, start: u64, end: u64) -> Result<Hash, TreeError> {
    let n = end - start;
    if n == 0 {
        return Ok(empty_root());
    }
    if n.is_power_of_two() && start.is_multiple_of(n) {
        return nodes.node(n.trailing_zeros(), start >> n.trailing_zeros());
    }
    let k = split(n);
    let left = subtree_hash(nodes, start, start + k)?;
    let right = subtree_hash(nodes, start + k, end)?;
    Ok(node_hash(&left, &right))
}

/// The root of the tree of the first `size` leaves.
pub fn root(nodes: &mut dyn Nodes, size: u64) -> Result<Hash, TreeError> {
    subtree_hash(nodes, 0, size)
}

/// The compact range `[0, size)` read from `nodes`.
pub fn frontier(nodes: &mut dyn Nodes, size: u64) -> Result<Frontier, TreeError> {
    let hashes = Frontier::positions(size)
        .into_iter()
        .map(|(h, i)| nodes.node(h, i))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Frontier { size, nodes: hashes })
}

/// The RFC 6962 inclusion proof (audit path) of leaf `index` in the tree of `size` leaves,
/// from the leaf's sibling up.
pub fn inclusion_proof(nodes: &mut dyn Nodes, index: u64, size: u64) -> Result<Vec<Hash>, TreeError> {
    if index >= size {
        return Err(TreeError::TooSmall { size, wanted: index + 1 });
    }
    let mut proof = Vec::new();
    path(nodes, index, 0, size, &mut proof)?;
    Ok(proof)
}

fn path(nodes: &mut dyn Nodes, m: u64, start: u64, end: u64, out: &mut Vec<Hash>) -> Result<(), TreeError> {
    let n = end - start;
    if n <= 1 {
        return Ok(());
    }
    let k = split(n);
    if m < start + k {
        path(nodes, m, start, start + k, out)?;
        out.push(subtree_hash(nodes, start + k, end)?);
    } else {
        path(nodes, m, start + k, end, out)?;
        out.push(subtree_hash(nodes, start, start + k)?);
    }
    Ok(())
}

/// The RFC 6962 consistency proof from the tree of `old` leaves to the tree of `new`.
pub fn consistency_proof(nodes: &mut dyn Nodes, old: u64, new: u64) -> Result<Vec<Hash>, TreeError> {
    if old > new {
        return Err(TreeError::TooSmall { size: new, wanted: old });
    }
    let mut proof = Vec::new();
    if old == 0 || old == new {
        return Ok(proof);
    }
    subproof(nodes, old, 0, new, true, &mut proof)?;
    Ok(proof)
}

fn subproof(
    nodes: &mut dyn Nodes,
    m: u64,
    start: u64,
    end: u64,
    complete: bool,
    out: &mut Vec<Hash>,
) -> Result<(), TreeError> {
    let n = end - start;
    if m == n {
        if !complete {
            out.push(subtree_hash(nodes, start, end)?);
        }
        return Ok(());
    }
    let k = split(n);
    if m <= k {
        subproof(nodes, m, start, start + k, complete, out)?;
        out.push(subtree_hash(nodes, start + k, end)?);
    } else {
        subproof(nodes, m - k, start + k, end, false, out)?;
        out.push(subtree_hash(nodes, start, start + k)?);
    }
    Ok(())
}

/// Checks an inclusion proof (RFC 9162 §2.1.3.2): leaf hash `leaf` at `index` in the tree of
/// `size` leaves with root `root`.
pub fn verify_inclusion(leaf: &Hash, index: u64, size: u64, proof: &[Hash], root: &Hash) -> bool {
    if index >= size {
        return false;
    }
    let (mut f_n, mut s_n) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if s_n == 0 {
            return false;
        }
        if f_n & 1 == 1 || f_n == s_n {
            r = node_hash(p, &r);
            if f_n & 1 == 0 {
                while f_n & 1 == 0 && f_n != 0 {
                    f_n >>= 1;
                    s_n >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        f_n >>= 1;
        s_n >>= 1;
    }
    s_n == 0 && r == *root
}

/// Checks a consistency proof (RFC 9162 §2.1.4.2) from `(old, old_root)` to `(new, new_root)`.
/// From the empty tree only an empty proof is consistent; equal sizes need equal roots and an
/// empty proof.
pub fn verify_consistency(old: u64, new: u64, old_root: &Hash, new_root: &Hash, proof: &[Hash]) -> bool {
    if old > new {
        return false;
    }
    if old == 0 {
        return proof.is_empty();
    }
    if old == new {
        return proof.is_empty() && old_root == new_root;
    }
    let mut path: Vec<Hash> = proof.to_vec();
    if old.is_power_of_two() {
        path.insert(0, *old_root);
    }
    let (mut f_n, mut s_n) = (old - 1, new - 1);
    while f_n & 1 == 1 {
        f_n >>= 1;
        s_n >>= 1;
    }
    let Some((first, rest)) = path.split_first() else { return false };
    let (mut fr, mut sr) = (*first, *first);
    for c in rest {
        if s_n == 0 {
            return false;
        }
        if f_n & 1 == 1 || f_n == s_n {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if f_n & 1 == 0 {
                while f_n & 1 == 0 && f_n != 0 {
                    f_n >>= 1;
                    s_n >>= 1;
                }
            }
        } else {
            sr = node_hash(&sr, c);
        }
        f_n >>= 1;
        s_n >>= 1;
    }
    fr == *old_root && sr == *new_root && s_n == 0
}

/// Nodes computed from a list of leaf hashes in memory (tests, offline receipts).
pub struct Leaves<'a>(pub &'a [Hash]);

impl Nodes for Leaves<'_> {
    fn node(&mut self, height: u32, index: u64) -> Result<Hash, TreeError> {
        let width = 1u64.checked_shl(height).unwrap_or(u64::MAX);
        let start = index.saturating_mul(width);
        let end = start.saturating_add(width);
        let size = self.0.len() as u64;
        if end > size {
            return Err(TreeError::TooSmall { size, wanted: end });
        }
        if height == 0 {
            return Ok(self.0[start as usize]);
        }
        let l = self.node(height - 1, index * 2)?;
        let r = self.node(height - 1, index * 2 + 1)?;
        Ok(node_hash(&l, &r))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn leaves(n: u64) -> Vec<Hash> {
        (0..n).map(|i| leaf_hash(&Sha256::digest(i.to_le_bytes()).into())).collect()
    }

    /// RFC 6962's recursive definition, written out directly.
    fn reference(d: &[Hash]) -> Hash {
        match d.len() {
            0 => empty_root(),
            1 => d[0],
            n => {
                let k = split(n as u64) as usize;
                node_hash(&reference(&d[..k]), &reference(&d[k..]))
            }
        }
    }

    #[test]
    fn frontier_root_matches_the_recursive_definition_and_reports_tile_nodes() {
        let all = leaves(700);
        let mut f = Frontier::default();
        let mut stored = Vec::new();
        assert_eq!(f.root(), empty_root());
        for (i, leaf) in all.iter().enumerate() {
            f.push(*leaf, |h, idx, hash| stored.push((h, idx, *hash)));
            assert_eq!(f.root(), reference(&all[..=i]), "size {}", i + 1);
            assert_eq!(f, frontier(&mut Leaves(&all[..=i]), i as u64 + 1).unwrap());
        }
        assert_eq!(stored.len(), 2);
        assert_eq!(stored[0], (8, 0, Leaves(&all).node(8, 0).unwrap()));
        assert_eq!(stored[1], (8, 1, Leaves(&all).node(8, 1).unwrap()));
    }

    #[test]
    fn proofs_verify_and_tampered_ones_do_not() {
        let all = leaves(70);
        for size in 1..=all.len() as u64 {
            let root = reference(&all[..size as usize]);
            for index in 0..size {
                let p = inclusion_proof(&mut Leaves(&all), index, size).unwrap();
                assert!(verify_inclusion(&all[index as usize], index, size, &p, &root));
                assert!(
                    !verify_inclusion(&all[(index as usize + 1) % 70], index, size, &p, &root) || size == 1
                );
                if let Some(first) = p.first() {
                    let mut bad = p.clone();
                    bad[0] = node_hash(first, first);
                    assert!(!verify_inclusion(&all[index as usize], index, size, &bad, &root));
                }
            }
            for old in 0..=size {
                let old_root = reference(&all[..old as usize]);
                let p = consistency_proof(&mut Leaves(&all), old, size).unwrap();
                assert!(verify_consistency(old, size, &old_root, &root, &p), "{old} -> {size}");
                if old > 0 && old < size {
                    assert!(!verify_consistency(old, size, &root, &root, &p) || old_root == root);
                }
            }
        }
    }
}
