//! Opening a file: creating the tables (and the log id) or checking the format, and reading
//! the chain's tail.

use super::*;

/// Creates the tables and the log id on first open, and upgrades a format-2 log to format 3
/// (new tables; its batches stay as they are); returns the log id and its action id scheme.
pub(super) fn init_tables(db: &Database) -> Result<(String, Scheme), LogError> {
    let txn = db.begin_write().map_err(storage)?;
    let log_id;
    let scheme;
    {
        txn.open_table(BATCHES).map_err(storage)?;
        txn.open_table(STATE).map_err(storage)?;
        txn.open_table(TERMS).map_err(storage)?;
        txn.open_table(POSTINGS).map_err(storage)?;
        txn.open_table(ACTION_EVENTS).map_err(storage)?;
        txn.open_table(crate::tables::TREE).map_err(storage)?;
        let mut meta = txn.open_table(META).map_err(storage)?;
        let existing = meta.get("log_id").map_err(storage)?.map(|v| v.value().to_owned());
        let format = meta.get("format").map_err(storage)?.map(|v| v.value().to_owned());
        let ids = meta.get("ids").map_err(storage)?.map(|v| v.value().to_owned());
        (log_id, scheme) = match existing {
            Some(id) => {
                if !format.as_deref().is_some_and(|f| READS_FORMATS.contains(&f)) {
                    return Err(LogError::Format { found: format.unwrap_or_else(|| "(none)".into()) });
                }
                let Some(scheme) = Scheme::from_meta(ids.as_deref()) else {
                    return Err(LogError::Format {
                        found: format!("{} (action ids {})", FORMAT, ids.unwrap_or_default()),
                    });
                };
                if format.as_deref() != Some(FORMAT) {
                    meta.insert("format", FORMAT).map_err(storage)?;
                }
                (id, scheme)
            }
            None => {
                let id = crate::random_hex(16)
                    .map_err(|e| LogError::io("read", Path::new(crate::RANDOM_SOURCE), e))?;
                meta.insert("log_id", id.as_str()).map_err(storage)?;
                meta.insert("format", FORMAT).map_err(storage)?;
                meta.insert("ids", Scheme::Prefixed.as_str()).map_err(storage)?;
                (id, Scheme::Prefixed)
            }
        };
    }
    txn.commit().map_err(storage)?;
    Ok((log_id, scheme))
}

/// `(size, hash of the last entry)` and the last entry's `ts` (0 for an empty log), from one
/// read of the last batch.
pub(super) fn read_tail(db: &Database) -> Result<((u64, [u8; 32]), u64), LogError> {
    let txn = db.begin_read().map_err(storage)?;
    let t = txn.open_table(BATCHES).map_err(storage)?;
    let Some((k, v)) = t.last().map_err(storage)? else { return Ok(((0, GENESIS), 0)) };
    let seq = k.value();
    let batch = Batch::decode(v.value()).map_err(|e| corrupt(seq, e))?;
    let Some(record) = batch.records.last() else { return Err(corrupt(seq, Corruption::Empty)) };
    let opened = entry::open(record).map_err(|e| corrupt(seq, e))?;
    if opened.seq != seq {
        return Err(corrupt(seq, Corruption::Misfiled(opened.seq)));
    }
    let ts = record_ts(&String::from_utf8_lossy(record)).unwrap_or(0);
    Ok(((seq, opened.entry_hash), ts))
}
