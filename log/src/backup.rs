//! A consistent copy of the log file: every table read in one read transaction and written
//! into a new redb file, so the copy is exactly the log as of one commit (a file copied with
//! `cp` while the daemon writes it can be torn). The copy verifies with `faramesh verify-log
//! --file COPY --pubkey KEY` like the original.

use std::path::Path;

use redb::{Database, ReadTransaction, ReadableTable, TableDefinition, TableError, WriteTransaction};

use super::tables::{ACTION_EVENTS, BATCHES, META, POSTINGS, STATE, TERMS};

/// Writes the log as `txn` sees it into a new file at `dest` (which must not exist); returns
/// the number of batches copied.
pub fn backup_txn(txn: &ReadTransaction, dest: &Path) -> Result<u64, redb::Error> {
    let file = std::fs::OpenOptions::new().read(true).write(true).create_new(true).open(dest)?;
    let db = Database::builder().create_with_backend(redb::backends::FileBackend::new(file)?)?;
    let w = db.begin_write()?;
    let batches = copy(txn, &w, BATCHES)?;
    copy(txn, &w, META)?;
    copy(txn, &w, TERMS)?;
    copy(txn, &w, POSTINGS)?;
    copy(txn, &w, ACTION_EVENTS)?;
    copy(txn, &w, STATE)?;
    w.commit()?;
    drop(db);
    // The copy is durable before anyone is told it exists.
    std::fs::File::open(dest)?.sync_all()?;
    Ok(batches)
}

/// Copies one table (absent in the source: nothing to copy); returns its rows.
fn copy<K: redb::Key + 'static, V: redb::Value + 'static>(
    txn: &ReadTransaction,
    w: &WriteTransaction,
    def: TableDefinition<K, V>,
) -> Result<u64, redb::Error> {
    let src = match txn.open_table(def) {
        Ok(t) => t,
        Err(TableError::TableDoesNotExist(_)) => return Ok(0),
        Err(e) => return Err(e.into()),
    };
    let mut dst = w.open_table(def)?;
    let mut rows = 0;
    for row in src.iter()? {
        let (k, v) = row?;
        dst.insert(k.value(), v.value())?;
        rows += 1;
    }
    Ok(rows)
}
