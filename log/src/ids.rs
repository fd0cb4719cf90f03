//! Action ids: 16 lower-case hex characters computed from the entry's sequence number with a
//! keyed permutation, so they look random (any 8-character prefix is almost always unique) yet
//! need no index: the id is computed from `seq`, and `seq` from the id.
//!
//! Two schemes, chosen per log (`meta.ids`) and never changed for a log, since ids are stored in
//! its records:
//! - **1** (logs created in format 2): a 4-round Feistel network over all 64 bits. An id prefix
//!   tells nothing about `seq`, so prefix lookups compute ids for every entry.
//! - **2** (logs created in format 3 on): the first 8 hex characters are a keyed permutation of
//!   the low 32 bits of `seq`, the last 8 the high 32 bits masked by a keyed hash of the first
//!   8. An 8-character prefix names the low 32 bits of `seq`, so a prefix lookup computes one
//!   candidate per 2³² entries of the log: no scan, no index.

/// How a log derives its action ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// A 64-bit Feistel permutation (logs created before format 3).
    Feistel64,
    /// Prefix-addressable (logs created in format 3 on).
    Prefixed,
}

impl Scheme {
    /// The value stored in `meta.ids`.
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Feistel64 => "1",
            Scheme::Prefixed => "2",
        }
    }

    /// The scheme `meta.ids` names (absent: a format-2 log, scheme 1).
    pub fn from_meta(value: Option<&str>) -> Option<Scheme> {
        match value {
            None | Some("1") => Some(Scheme::Feistel64),
            Some("2") => Some(Scheme::Prefixed),
            Some(_) => None,
        }
    }
}

/// The action ids of one log.
#[derive(Debug, Clone)]
pub struct ActionIds {
    keys: [u64; 4],
    scheme: Scheme,
}

/// A keyed mix (the SplitMix64 finalizer); a Feistel network makes any round function a
/// permutation.
fn mix(key: u64, x: u64) -> u64 {
    let mut z = key ^ x.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl ActionIds {
    /// The ids of the log with this id, in `scheme`.
    pub fn new(log_id: &str, scheme: Scheme) -> ActionIds {
        let digest = blake3::hash(format!("faramesh action ids {log_id}").as_bytes());
        let b = digest.as_bytes();
        let word = |i: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&b[i * 8..i * 8 + 8]);
            u64::from_le_bytes(w)
        };
        ActionIds { keys: [word(0), word(1), word(2), word(3)], scheme }
    }

    /// The scheme in use.
    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    /// The id of entry `seq`, as a number.
    pub fn number_of(&self, seq: u64) -> u64 {
        match self.scheme {
            Scheme::Feistel64 => {
                let (mut l, mut r) = ((seq >> 32) as u32, seq as u32);
                for k in self.keys {
                    let next = l ^ mix(k, u64::from(r)) as u32;
                    l = r;
                    r = next;
                }
                (u64::from(l) << 32) | u64::from(r)
            }
            Scheme::Prefixed => {
                let hi = self.permute32(seq as u32);
                let lo = ((seq >> 32) as u32) ^ (mix(self.keys[3], u64::from(hi)) as u32);
                (u64::from(hi) << 32) | u64::from(lo)
            }
        }
    }

    /// The id of entry `seq`.
    pub fn id_of(&self, seq: u64) -> String {
        format!("{:016x}", self.number_of(seq))
    }

    /// The sequence number an id stands for, if it is well-formed.
    pub fn seq_of(&self, id: &str) -> Option<u64> {
        if id.len() != 16 || !id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            return None;
        }
        let v = u64::from_str_radix(id, 16).ok()?;
        Some(match self.scheme {
            Scheme::Feistel64 => {
                let (mut l, mut r) = ((v >> 32) as u32, v as u32);
                for k in self.keys.iter().rev() {
                    let prev = r ^ mix(*k, u64::from(l)) as u32;
                    r = l;
                    l = prev;
                }
                (u64::from(l) << 32) | u64::from(r)
            }
            Scheme::Prefixed => {
                let hi = (v >> 32) as u32;
                let seq_hi = (v as u32) ^ (mix(self.keys[3], u64::from(hi)) as u32);
                (u64::from(seq_hi) << 32) | u64::from(self.unpermute32(hi))
            }
        })
    }

    /// Entries in `1..=size` whose id starts with `prefix` (lower-case hex), newest first, at
    /// most `limit`. Scheme 2 computes one candidate per 2³² entries for a prefix of 8 or more
    /// characters; scheme 1 (and shorter prefixes) walk the sequence numbers.
    pub fn with_prefix(&self, prefix: &str, first: u64, size: u64, limit: usize) -> Vec<u64> {
        let mut out = Vec::new();
        if prefix.len() > 16 || !prefix.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            return out;
        }
        let Ok(value) = u64::from_str_radix(if prefix.is_empty() { "0" } else { prefix }, 16) else {
            return out;
        };
        let shift = 4 * (16 - prefix.len() as u32);
        let (lo, hi) = if shift >= 64 {
            (0, u64::MAX)
        } else {
            (value << shift, (value << shift) | ((1u64 << shift).wrapping_sub(1)))
        };
        let hit = |seq: u64| (lo..=hi).contains(&self.number_of(seq));
        if self.scheme == Scheme::Prefixed && prefix.len() >= 8 {
            let seq_lo = u64::from(self.unpermute32((lo >> 32) as u32));
            for seq_hi in (0..=(size >> 32)).rev() {
                let seq = (seq_hi << 32) | seq_lo;
                if (first..=size).contains(&seq) && hit(seq) {
                    out.push(seq);
                    if out.len() >= limit {
                        break;
                    }
                }
            }
            return out;
        }
        for seq in (first.max(1)..=size).rev() {
            if hit(seq) {
                out.push(seq);
                if out.len() >= limit {
                    break;
                }
            }
        }
        out
    }

    /// A keyed permutation of 32-bit values (4 Feistel rounds on 16-bit halves).
    fn permute32(&self, x: u32) -> u32 {
        let (mut l, mut r) = ((x >> 16) as u16, x as u16);
        for k in self.keys {
            let next = l ^ mix(k, u64::from(r)) as u16;
            l = r;
            r = next;
        }
        (u32::from(l) << 16) | u32::from(r)
    }

    fn unpermute32(&self, x: u32) -> u32 {
        let (mut l, mut r) = ((x >> 16) as u16, x as u16);
        for k in self.keys.iter().rev() {
            let prev = r ^ mix(*k, u64::from(l)) as u16;
            r = l;
            l = prev;
        }
        (u32::from(l) << 16) | u32::from(r)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn both_schemes_round_trip_and_look_random() {
        for scheme in [Scheme::Feistel64, Scheme::Prefixed] {
            let ids = ActionIds::new("abc", scheme);
            let mut seen = std::collections::HashSet::new();
            for seq in (1..5000u64).chain([1 << 32, (7 << 32) + 5, u64::MAX - 1]) {
                let id = ids.id_of(seq);
                assert_eq!(id.len(), 16);
                assert_eq!(ids.seq_of(&id), Some(seq), "{scheme:?} {seq}");
                // Below 2^32 entries no two ids share an 8-character prefix in scheme 2 (the
                // prefix is a permutation of the low 32 bits); scheme 1 almost never does.
                if seq < 5000 {
                    assert!(
                        seen.insert(id[..8].to_owned()),
                        "{scheme:?}: 8-character prefixes collide at {seq}"
                    );
                }
            }
            assert_ne!(ActionIds::new("other", scheme).id_of(1), ids.id_of(1));
            assert_eq!(ids.seq_of("not-an-id"), None);
            assert_eq!(ids.seq_of("00000000000000000"), None);
        }
        // The first scheme's ids are what logs created before format 3 hold: they never change.
        assert_eq!(
            ActionIds::new("abc", Scheme::Feistel64).id_of(1),
            ActionIds::new("abc", Scheme::Feistel64).id_of(1)
        );
        assert_ne!(
            ActionIds::new("abc", Scheme::Feistel64).id_of(1),
            ActionIds::new("abc", Scheme::Prefixed).id_of(1)
        );
    }

    #[test]
    fn prefixes_find_their_entries_in_either_scheme() {
        for scheme in [Scheme::Feistel64, Scheme::Prefixed] {
            let ids = ActionIds::new("log", scheme);
            let size = 3000;
            for seq in [1u64, 17, 2999, 3000] {
                let id = ids.id_of(seq);
                for len in [8, 9, 12, 16] {
                    assert_eq!(ids.with_prefix(&id[..len], 1, size, 10), vec![seq], "{scheme:?} {len}");
                }
                // Outside the kept range (pruned, or not yet written): not found.
                assert!(ids.with_prefix(&id, seq + 1, size, 10).is_empty());
            }
            assert!(ids.with_prefix("zz", 1, size, 10).is_empty());
            assert_eq!(ids.with_prefix("", 1, size, 5).len(), 5);
        }
    }
}
