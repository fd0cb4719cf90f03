//! The redb tables of the decision log and the batch record format (see `docs/decision-log.md`).

use redb::TableDefinition;

/// `last seq of the batch → batch` (see [`Batch`]): one row per commit.
pub const BATCHES: TableDefinition<u64, &[u8]> = TableDefinition::new("batches");
/// `log_id`, `format`.
pub const META: TableDefinition<&str, &str> = TableDefinition::new("meta");
/// Daemon state kept with the log, written in the same transaction as the entry that changes
/// it: `approval/<id>` (JSON), `action/<id>` (JSON), `budget/<agent>/<period>` (JSON count).
pub const STATE: TableDefinition<&str, &[u8]> = TableDefinition::new("state");

/// The value of `meta.format` this code writes and reads.
pub const FORMAT: &str = "2";

/// Most records the writer puts in one batch.
pub const MAX_BATCH_RECORDS: usize = 4096;

/// Largest entry the writer accepts (a request line is at most 1 MiB by default; an entry
/// holds its params once).
pub const MAX_ENTRY_BYTES: usize = 16 << 20;

/// The writer stops adding entries to a batch once its records reach this size.
pub const MAX_BATCH_BYTES: usize = 64 << 20;

/// Largest batch value accepted when decoding: what the writer can produce (one entry may
/// take a batch past [`MAX_BATCH_BYTES`]), so a corrupted length never allocates more.
const MAX_DECODED_BYTES: usize = MAX_BATCH_BYTES + MAX_ENTRY_BYTES + (1 << 20);

/// The entries of one commit and the checkpoint signed over the log as of that commit.
///
/// Encoding (all integers little-endian `u32`): the number of records `n`; `n` times the
/// length of a record then its bytes (canonical JSON, UTF-8); the length of the checkpoint note
/// then its bytes. Nothing may follow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    /// The records, in sequence order.
    pub records: Vec<Vec<u8>>,
    /// The signed checkpoint note.
    pub checkpoint: String,
}

impl Batch {
    /// Encodes `records` (in order) and `checkpoint` into one batch value.
    pub fn encode<'a>(records: impl ExactSizeIterator<Item = &'a [u8]>, checkpoint: &str) -> Vec<u8> {
        let mut out = Vec::new();
        push_len(&mut out, records.len());
        for record in records {
            push_len(&mut out, record.len());
            out.extend_from_slice(record);
        }
        push_len(&mut out, checkpoint.len());
        out.extend_from_slice(checkpoint.as_bytes());
        out
    }

    /// This batch, encoded.
    pub fn to_bytes(&self) -> Vec<u8> {
        Batch::encode(self.records.iter().map(Vec::as_slice), &self.checkpoint)
    }

    /// Decodes a batch value, naming what is wrong with a malformed one.
    pub fn decode(bytes: &[u8]) -> Result<Batch, BatchError> {
        if bytes.len() > MAX_DECODED_BYTES {
            return Err(BatchError::TooLarge(bytes.len()));
        }
        let mut at = 0usize;
        let n = read_len(bytes, &mut at)?;
        if n > MAX_BATCH_RECORDS {
            return Err(BatchError::TooManyRecords(n));
        }
        let mut records = Vec::with_capacity(n);
        for _ in 0..n {
            records.push(read_slice(bytes, &mut at)?.to_vec());
        }
        let note = read_slice(bytes, &mut at)?;
        if at != bytes.len() {
            return Err(BatchError::Trailing(bytes.len() - at));
        }
        let checkpoint = String::from_utf8(note.to_vec()).map_err(|_| BatchError::CheckpointNotUtf8)?;
        Ok(Batch { records, checkpoint })
    }

    /// The `i`-th record without decoding the others' bytes into vectors.
    pub fn record_at(bytes: &[u8], i: usize) -> Result<&[u8], BatchError> {
        let mut at = 0usize;
        let n = read_len(bytes, &mut at)?;
        if i >= n {
            return Err(BatchError::NoRecord { index: i, count: n });
        }
        for _ in 0..i {
            read_slice(bytes, &mut at)?;
        }
        read_slice(bytes, &mut at)
    }

    /// The number of records in an encoded batch.
    pub fn count(bytes: &[u8]) -> Result<usize, BatchError> {
        read_len(bytes, &mut 0)
    }
}

/// What is wrong with a stored batch value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    /// Larger than any batch the writer stores.
    #[error("batch of {0} bytes is over the {MAX_DECODED_BYTES}-byte limit")]
    TooLarge(usize),
    /// Claims more records than one commit carries.
    #[error("batch claims {0} records, more than the {MAX_BATCH_RECORDS} of one commit")]
    TooManyRecords(usize),
    /// A length points past the end of the value.
    #[error("batch is cut short")]
    CutShort,
    /// Bytes after the checkpoint.
    #[error("{0} unexpected bytes after the checkpoint")]
    Trailing(usize),
    /// The checkpoint note is not text.
    #[error("the checkpoint is not UTF-8")]
    CheckpointNotUtf8,
    /// A record index past the batch's end.
    #[error("record {index} of a batch of {count}")]
    NoRecord {
        /// The index asked for.
        index: usize,
        /// The records in the batch.
        count: usize,
    },
}

fn push_len(out: &mut Vec<u8>, len: usize) {
    // Batches are far below 4 GiB (the writer caps them); saturate rather than wrap.
    out.extend_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_le_bytes());
}

fn read_len(bytes: &[u8], at: &mut usize) -> Result<usize, BatchError> {
    let end = at.checked_add(4).filter(|&e| e <= bytes.len()).ok_or(BatchError::CutShort)?;
    let mut word = [0u8; 4];
    word.copy_from_slice(&bytes[*at..end]);
    *at = end;
    usize::try_from(u32::from_le_bytes(word)).map_err(|_| BatchError::CutShort)
}

fn read_slice<'a>(bytes: &'a [u8], at: &mut usize) -> Result<&'a [u8], BatchError> {
    let len = read_len(bytes, at)?;
    let end = at.checked_add(len).filter(|&e| e <= bytes.len()).ok_or(BatchError::CutShort)?;
    let slice = &bytes[*at..end];
    *at = end;
    Ok(slice)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn batches_round_trip_and_reject_damage() {
        let batch =
            Batch { records: vec![b"{\"a\":1}".to_vec(), b"{}".to_vec()], checkpoint: "note\n".into() };
        let bytes = batch.to_bytes();
        assert_eq!(Batch::decode(&bytes).unwrap(), batch);
        assert_eq!(Batch::record_at(&bytes, 1).unwrap(), b"{}");
        assert_eq!(Batch::count(&bytes).unwrap(), 2);
        assert!(Batch::record_at(&bytes, 2).is_err());
        for cut in 0..bytes.len() {
            assert!(Batch::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(matches!(Batch::decode(&longer).unwrap_err(), BatchError::Trailing(_)));
        let mut huge = bytes;
        huge[0..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(Batch::decode(&huge).is_err());
    }
}
