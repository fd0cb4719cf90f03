//! Writing entries out as JSON lines (`faramesh export`, archives before a prune) and the
//! `log/exported` mark.

use super::*;

impl Log {
    /// How far the log was exported or archived (every entry up to the seq returned; 0: none).
    pub fn exported_through(&self) -> Result<u64, LogError> {
        let row: Option<crate::prune::Exported> =
            self.state_get(crate::prune::EXPORTED)?.and_then(|v| serde_json::from_slice(&v).ok());
        Ok(row.map_or(0, |r| r.through_seq))
    }

    /// Records that entries `from_seq..=through_seq` were exported or archived. Only a range
    /// that joins what was recorded before (or starts at the log's first entry) moves the mark:
    /// the mark means every entry up to it. Returns the mark after.
    pub fn mark_exported(&self, from_seq: u64, through_seq: u64) -> Result<u64, LogError> {
        let current = self.exported_through()?;
        let first = self.first_seq()?;
        let through = through_seq.min(self.head().0);
        if from_seq > current.max(first.saturating_sub(1)) + 1 || through <= current {
            return Ok(current);
        }
        let db = self.shared.db.read().ok().and_then(|g| g.clone()).ok_or(LogError::Reopening)?;
        let txn = db.begin_write().map_err(storage)?;
        {
            let row = crate::prune::Exported { through_seq: through, ts: entry::rfc3339(entry::now_ms()) };
            let bytes = row.to_row();
            txn.open_table(STATE)
                .map_err(storage)?
                .insert(crate::prune::EXPORTED, bytes.as_slice())
                .map_err(storage)?;
        }
        txn.commit().map_err(storage)?;
        Ok(through)
    }

    /// Writes one state row on the caller's thread (an export destination's cursor): a row no
    /// entry depends on, so it needs no place in the chain. Not fsynced by itself (the next
    /// commit of the log makes it durable): losing it after a crash only sends again what was
    /// sent, which the destinations take as duplicates.
    pub fn state_put_lazy(&self, key: &str, value: &[u8]) -> Result<(), LogError> {
        let db = self.shared.db.read().ok().and_then(|g| g.clone()).ok_or(LogError::Reopening)?;
        let mut txn = db.begin_write().map_err(storage)?;
        txn.set_durability(redb::Durability::None).map_err(storage)?;
        txn.open_table(STATE).map_err(storage)?.insert(key, value).map_err(storage)?;
        txn.commit().map_err(storage)?;
        Ok(())
    }

    /// Writes every record with `ts >= since_ms` as JSON lines; returns how many.
    pub fn export(&self, out: &mut dyn std::io::Write, since_ms: u64) -> Result<u64, LogError> {
        self.export_range(out, self.first_seq_at_or_after(since_ms)?, u64::MAX)
    }

    /// Writes the records with `from_seq <= seq < to_seq` as JSON lines (an export, an archive
    /// before a prune); returns how many.
    pub fn export_range(
        &self,
        out: &mut dyn std::io::Write,
        from_seq: u64,
        to_seq: u64,
    ) -> Result<u64, LogError> {
        let mut n = 0u64;
        let mut next = from_seq;
        while next < to_seq {
            let chunk = self.numbered_from(next, 1024)?;
            let Some(&(last, _)) = chunk.last() else { break };
            for (_, record) in chunk.iter().take_while(|(seq, _)| *seq < to_seq) {
                writeln!(out, "{record}")
                    .map_err(|e| LogError::io("write", Path::new("(export output)"), e))?;
                n += 1;
            }
            next = last + 1;
        }
        Ok(n)
    }
}
