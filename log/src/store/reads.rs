//! Reading the log: entries by seq, id or prefix, newest-first scans with the index, events
//! about an action, state rows.

use super::*;

/// Reads records by seq, keeping the last batch it decompressed (index hits cluster).
#[derive(Default)]
pub(super) struct BatchReader {
    /// `(first seq, last seq, plain batch)`.
    cached: Option<(u64, u64, Vec<u8>)>,
}

impl BatchReader {
    fn record(
        &mut self,
        t: &impl ReadableTable<u64, &'static [u8]>,
        seq: u64,
    ) -> Result<Option<String>, LogError> {
        if !self.cached.as_ref().is_some_and(|(first, last, _)| (*first..=*last).contains(&seq)) {
            let Some(item) = t.range(seq..).map_err(storage)?.next() else { return Ok(None) };
            let (k, v) = item.map_err(storage)?;
            let plain = Batch::plain(v.value()).map_err(|e| corrupt(k.value(), e))?.into_owned();
            let n = Batch::count(&plain).map_err(|e| corrupt(k.value(), e))?;
            self.cached = Some((first_seq(k.value(), n), k.value(), plain));
        }
        let Some((first, last, plain)) = &self.cached else { return Ok(None) };
        if seq < *first {
            return Ok(None);
        }
        let index = usize::try_from(seq - first)
            .map_err(|_| corrupt(*last, BatchError::NoRecord { index: usize::MAX, count: 0 }))?;
        let record = Batch::record_at(plain, index).map_err(|e| corrupt(*last, e))?;
        Ok(Some(String::from_utf8_lossy(record).into_owned()))
    }
}

/// The `ts` of a record, in milliseconds.
pub(super) fn record_ts(record: &str) -> Option<u64> {
    // `ts` is a fixed-width string; find it without parsing the whole record.
    let at = record.find("\"ts\":\"")? + 6;
    entry::parse_rfc3339(record.get(at..at + 24)?)
}

/// The seq of the first record of the batch stored under `last` with `n` records.
pub(super) fn first_seq(last: u64, n: usize) -> u64 {
    (last + 1).saturating_sub(n as u64)
}

pub(super) fn corrupt(seq: u64, why: impl Into<Corruption>) -> LogError {
    LogError::Corrupt { seq, source: why.into() }
}

/// The record `seq` from the batches table.
pub(super) fn record_of(
    t: &impl ReadableTable<u64, &'static [u8]>,
    seq: u64,
) -> Result<Option<String>, LogError> {
    BatchReader::default().record(t, seq)
}

impl Log {
    /// The record with sequence number `seq`.
    pub fn get(&self, seq: u64) -> Result<Option<String>, LogError> {
        self.read(|txn| {
            let t = txn.open_table(BATCHES).map_err(storage)?;
            record_of(&t, seq)
        })
    }

    /// The decision whose action id is `id`.
    pub fn get_by_id(&self, id: &str) -> Result<Option<String>, LogError> {
        let Some(seq) = self.shared.ids.seq_of(id) else { return Ok(None) };
        let record = self.get(seq)?;
        // The id is a permutation of the sequence number; check the entry really is that decision.
        Ok(record.filter(|r| r.contains(&format!("\"id\":\"{id}\""))))
    }

    /// The seq an action id stands for (whether or not that entry exists).
    pub fn seq_of_id(&self, id: &str) -> Option<u64> {
        self.shared.ids.seq_of(id)
    }

    /// The action id of the decision stored as entry `seq`.
    pub fn action_id(&self, seq: u64) -> String {
        self.shared.ids.id_of(seq)
    }

    /// Action ids starting with `prefix` (at most `limit`), newest first, for unique-prefix
    /// lookups. Ids are computed from sequence numbers, so this reads nothing from disk (see
    /// `ids.rs` for what each id scheme costs).
    pub fn ids_with_prefix(&self, prefix: &str, limit: usize) -> Result<Vec<String>, LogError> {
        let (size, _) = self.head();
        let first = self.first_seq()?;
        Ok(self
            .shared
            .ids
            .with_prefix(prefix, first, size, limit)
            .into_iter()
            .map(|s| self.shared.ids.id_of(s))
            .collect())
    }

    /// The first entry still in the log: 1, or the first kept after a prune.
    pub fn first_seq(&self) -> Result<u64, LogError> {
        self.read(|txn| {
            let t = txn.open_table(BATCHES).map_err(storage)?;
            let Some((k, v)) = t.first().map_err(storage)? else { return Ok(1) };
            let plain = Batch::plain(v.value()).map_err(|e| corrupt(k.value(), e))?;
            let n = Batch::count(&plain).map_err(|e| corrupt(k.value(), e))?;
            Ok(first_seq(k.value(), n))
        })
    }

    /// Entries in `lo..=hi`, newest first: those with `term` (from the index) or all of them,
    /// calling `f(seq, record)` until it returns `false`.
    pub fn scan_newest(
        &self,
        term: Option<&str>,
        lo: u64,
        hi: u64,
        mut f: impl FnMut(u64, &str) -> bool,
    ) -> Result<(), LogError> {
        let Some(term) = term else {
            return self.read(|txn| {
                let t = txn.open_table(BATCHES).map_err(storage)?;
                for item in t.range(lo..).map_err(storage)?.rev() {
                    let (k, v) = item.map_err(storage)?;
                    let batch = Batch::decode(v.value()).map_err(|e| corrupt(k.value(), e))?;
                    let first = first_seq(k.value(), batch.records.len());
                    for (i, record) in batch.records.iter().enumerate().rev() {
                        let seq = first + i as u64;
                        if seq < lo {
                            return Ok(());
                        }
                        if seq <= hi && !f(seq, &String::from_utf8_lossy(record)) {
                            return Ok(());
                        }
                    }
                }
                Ok(())
            });
        };
        // The pending rows first (taken before the read transaction begins: rows flushed after
        // this are in the tables that transaction sees, and `indexed_through` tells which).
        let pending = self.shared.pending.lock().map(|p| p.seqs_with(term, lo, hi)).unwrap_or_default();
        self.read(|txn| {
            let through = index::indexed_through(txn)?;
            let batches = txn.open_table(BATCHES).map_err(storage)?;
            let mut reader = BatchReader::default();
            for seq in pending.into_iter().filter(|&s| s > through) {
                match reader.record(&batches, seq)? {
                    Some(r) if !f(seq, &r) => return Ok(()),
                    _ => {}
                }
            }
            index::table_seqs(txn, term, lo, hi.min(through), |seq| {
                Ok(match reader.record(&batches, seq)? {
                    Some(r) => f(seq, &r),
                    None => true,
                })
            })
        })
    }

    /// Records of the events about the decision stored as entry `seq` (action lifecycle and
    /// approval events), oldest first, from the index.
    pub fn events_about(&self, seq: u64) -> Result<Vec<String>, LogError> {
        let pending = self.shared.pending.lock().map(|p| p.events_of(seq)).unwrap_or_default();
        self.read(|txn| {
            let through = index::indexed_through(txn)?;
            let batches = txn.open_table(BATCHES).map_err(storage)?;
            let mut reader = BatchReader::default();
            let mut out = Vec::new();
            let seqs = index::table_events(txn, seq)?
                .into_iter()
                .chain(pending.into_iter().filter(|&s| s > through));
            for event in seqs {
                if let Some(r) = reader.record(&batches, event)? {
                    out.push(r);
                }
            }
            Ok(out)
        })
    }

    /// Records from `from_seq` on, at most `limit`.
    pub fn entries_from(&self, from_seq: u64, limit: usize) -> Result<Vec<String>, LogError> {
        Ok(self.numbered_from(from_seq, limit)?.into_iter().map(|(_, r)| r).collect())
    }

    /// Records from `from_seq` on (after a prune, from the first kept), at most `limit`, with
    /// their seqs.
    pub fn numbered_from(&self, from_seq: u64, limit: usize) -> Result<Vec<(u64, String)>, LogError> {
        self.read(|txn| {
            let t = txn.open_table(BATCHES).map_err(storage)?;
            let mut out = Vec::new();
            for item in t.range(from_seq..).map_err(storage)? {
                let (k, v) = item.map_err(storage)?;
                let batch = Batch::decode(v.value()).map_err(|e| corrupt(k.value(), e))?;
                let first = first_seq(k.value(), batch.records.len());
                for (seq, record) in (first..).zip(batch.records) {
                    if out.len() >= limit {
                        return Ok(out);
                    }
                    if seq >= from_seq {
                        out.push((
                            seq,
                            String::from_utf8(record)
                                .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()),
                        ));
                    }
                }
            }
            Ok(out)
        })
    }

    /// The first sequence number whose `ts` is at or after `ms` (size + 1 when none is).
    pub fn first_seq_at_or_after(&self, ms: u64) -> Result<u64, LogError> {
        self.read(|txn| {
            let t = txn.open_table(BATCHES).map_err(storage)?;
            let size = t.last().map_err(storage)?.map_or(0, |(k, _)| k.value());
            let (mut lo, mut hi) = (1u64, size + 1);
            while lo < hi {
                let mid = lo + (hi - lo) / 2;
                let ts = record_of(&t, mid)?.and_then(|r| record_ts(&r)).unwrap_or(0);
                if ts < ms {
                    lo = mid + 1;
                } else {
                    hi = mid;
                }
            }
            Ok(lo)
        })
    }

    /// A state row.
    pub fn state_get(&self, key: &str) -> Result<Option<Vec<u8>>, LogError> {
        self.read(|txn| {
            let t = txn.open_table(STATE).map_err(storage)?;
            Ok(t.get(key).map_err(storage)?.map(|v| v.value().to_vec()))
        })
    }

    /// State rows whose key starts with `prefix`.
    pub fn state_scan(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, LogError> {
        self.read(|txn| {
            let t = txn.open_table(STATE).map_err(storage)?;
            let mut out = Vec::new();
            for item in t.range(prefix..).map_err(storage)? {
                let (k, v) = item.map_err(storage)?;
                if !k.value().starts_with(prefix) {
                    break;
                }
                out.push((k.value().to_owned(), v.value().to_vec()));
            }
            Ok(out)
        })
    }
}
