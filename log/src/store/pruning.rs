//! Retention through the handle: planning a cut, recording it as a `prune` entry and handing
//! the deletes to the writer (`crate::prune` holds the deletes and the marks).

use super::*;

/// Where a prune cuts the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// Entries recorded before this time (ms since the epoch).
    Before(u64),
    /// All but the newest this many entries.
    KeepLast(u64),
    /// Entries before this seq (a plan's `first_kept_seq`, so what runs is what was shown).
    BeforeSeq(u64),
}

/// What a prune would remove: whole batches only, so the first kept entry is the first of its
/// batch (never later than the cut asked for).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PrunePlan {
    /// The first entry in the log now.
    pub first_seq: u64,
    /// The first entry that stays.
    pub first_kept_seq: u64,
    /// Entries that go (`first_kept_seq - first_seq`).
    pub entries: u64,
    /// The log's size now.
    pub size: u64,
    /// Every entry up to this one was exported or archived (0: none).
    pub exported_through: u64,
    /// The first entry a required export destination still needs, when that kept the cut
    /// earlier than asked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub held_for_export: Option<u64>,
}

/// What a prune did, or (a dry run) would do: the reply of `log.prune` and of
/// `faramesh log prune --json`.
///
/// JSON: `{"dry_run": false, "plan": {…}, "entry_seq": 1000003, "batches": 10253, "compacted": true}`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PruneOutcome {
    /// Only planned: nothing was recorded or removed.
    pub dry_run: bool,
    /// The plan carried out.
    pub plan: PrunePlan,
    /// The seq of the `prune` entry that records the cut (none when nothing was pruned).
    pub entry_seq: Option<u64>,
    /// Batches removed.
    pub batches: u64,
    /// Whether the file was compacted.
    pub compacted: bool,
}

/// Clears the pruning flag when dropped.
pub(super) struct PruneGuard<'a>(&'a std::sync::atomic::AtomicBool);

impl Drop for PruneGuard<'_> {
    fn drop(&mut self) {
        self.0.store(false, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Log {
    /// The newest recorded prune, if any.
    pub fn prune_mark(&self) -> Result<Option<crate::prune::Mark>, LogError> {
        Ok(self.state_get(crate::prune::MARK)?.and_then(|v| serde_json::from_slice(&v).ok()))
    }

    /// What pruning at `cut` would remove.
    pub fn plan_prune(&self, cut: Cut) -> Result<PrunePlan, LogError> {
        let (size, _) = self.head();
        let first_seq = self.first_seq()?;
        let wanted = match cut {
            Cut::Before(ms) => self.first_seq_at_or_after(ms)?,
            Cut::KeepLast(n) => (size + 1).saturating_sub(n),
            Cut::BeforeSeq(seq) => seq.min(size + 1),
        }
        .max(first_seq);
        // A required export destination that has not acknowledged an entry keeps it.
        let hold = self.prune_hold.load(std::sync::atomic::Ordering::SeqCst);
        let held_for_export = (wanted > hold).then_some(hold);
        let wanted = wanted.min(hold).max(first_seq);
        // Whole batches: the batch holding `wanted` stays.
        let first_kept_seq = if wanted > size {
            size + 1
        } else {
            self.read(|txn| {
                let t = txn.open_table(BATCHES).map_err(storage)?;
                let Some(item) = t.range(wanted..).map_err(storage)?.next() else { return Ok(size + 1) };
                let (k, v) = item.map_err(storage)?;
                let plain = Batch::plain(v.value()).map_err(|e| corrupt(k.value(), e))?;
                Ok(super::first_seq(k.value(), Batch::count(&plain).map_err(|e| corrupt(k.value(), e))?))
            })?
        }
        .max(first_seq);
        Ok(PrunePlan {
            first_seq,
            first_kept_seq,
            entries: first_kept_seq - first_seq,
            size,
            exported_through: self.exported_through()?,
            held_for_export,
        })
    }

    /// Keeps every entry from `first_needed` on through any prune (`None`: no hold). Set by the
    /// export senders from the lowest cursor of the destinations marked required.
    pub fn set_prune_hold(&self, first_needed: Option<u64>) {
        self.prune_hold.store(first_needed.unwrap_or(u64::MAX), std::sync::atomic::Ordering::SeqCst);
    }

    /// What pruning at `cut` would do, as a dry run's outcome.
    pub fn dry_run_prune(&self, cut: Cut) -> Result<PruneOutcome, LogError> {
        Ok(PruneOutcome {
            dry_run: true,
            plan: self.plan_prune(cut)?,
            entry_seq: None,
            batches: 0,
            compacted: false,
        })
    }

    /// Prunes the log at `cut`: refuses (unless `force`) when entries that would go were never
    /// exported or archived; records the cut as a `prune` entry (`by` names who asked), then
    /// removes the batches while appends go on, and compacts the file.
    pub async fn prune(&self, cut: Cut, force: bool, by: Value) -> Result<PruneOutcome, LogError> {
        if self.pruning.swap(true, std::sync::atomic::Ordering::SeqCst) {
            return Err(LogError::PruneRunning);
        }
        let _guard = PruneGuard(&self.pruning);
        let plan = self.plan_prune(cut)?;
        if plan.entries == 0 {
            return Ok(PruneOutcome { dry_run: false, plan, entry_seq: None, batches: 0, compacted: false });
        }
        if !force && plan.exported_through + 1 < plan.first_kept_seq {
            return Err(LogError::NotExported {
                last_pruned: plan.first_kept_seq - 1,
                exported_through: plan.exported_through,
            });
        }
        // The anchor is the hash of the last entry that goes: the `prev_hash` the first kept
        // entry holds (or will hold, when the cut is at the head).
        let last_pruned = plan.first_kept_seq - 1;
        let anchor = match self.get(last_pruned)? {
            Some(record) => entry::open(record.as_bytes()).map_err(|e| corrupt(last_pruned, e))?.entry_hash,
            None => return Err(corrupt(last_pruned, Corruption::Empty)),
        };
        let anchor_hex = entry::hex(&anchor);
        // What every later root and proof needs of the entries that go: the roots of the perfect
        // subtrees that cover them exactly (the compact range of the pruned prefix).
        let pruned_range: Vec<String> =
            self.compact_range(last_pruned)?.iter().map(|h| crate::keys::base64_encode(h)).collect();
        let body = crate::dpr::event_entry(
            "prune",
            serde_json::json!({
                "first_kept_seq": plan.first_kept_seq,
                "anchor_hash": anchor_hex,
                "pruned_from_seq": plan.first_seq,
                "pruned_entries": plan.entries,
                "exported_through": plan.exported_through,
                "forced": force && plan.exported_through + 1 < plan.first_kept_seq,
                "pruned_range": pruned_range,
                "by": by,
            }),
        );
        let first_kept_seq = plan.first_kept_seq;
        let pruned_range = pruned_range.clone();
        let writes: StateWrites = Box::new(move |seq, _| {
            let mark = crate::prune::Mark { first_kept_seq, anchor_hash: anchor_hex, seq, pruned_range };
            vec![(crate::prune::MARK.to_owned(), Some(mark.to_row()))]
        });
        let recorded = self.append_with_state(body, Some(writes)).await?;
        let (reply, rx) = oneshot::channel();
        self.sender()?
            .send(Msg::Prune(PruneJob { first_kept: first_kept_seq, reply: Some(reply) }))
            .await
            .map_err(|_| LogError::Closed)?;
        let stats = rx.await.map_err(|_| LogError::Closed)??;
        Ok(PruneOutcome {
            dry_run: false,
            plan,
            entry_seq: Some(recorded.seq),
            batches: stats.batches,
            compacted: stats.compacted,
        })
    }
}
