//! The redb tables of the decision log and the batch record format (see `docs/decision-log.md`).

use redb::TableDefinition;

/// `last seq of the batch → batch` (see [`Batch`]): one row per commit.
pub const BATCHES: TableDefinition<u64, &[u8]> = TableDefinition::new("batches");
/// `log_id`, `format`, `ids` (the action id scheme, see `ids.rs`), `indexed_through` and
/// `next_term` (the query index). The prune and export marks live in [`STATE`].
pub const META: TableDefinition<&str, &str> = TableDefinition::new("meta");
/// The query index's term numbers: `a:<agent_id>`, `t:<tool>`, `e:<effect>` → number.
pub const TERMS: TableDefinition<&str, u64> = TableDefinition::new("terms");
/// `term number << 64 | seq` for each decision with that term.
pub const POSTINGS: TableDefinition<u128, ()> = TableDefinition::new("postings");
/// `seq of a decision << 64 | seq of an event about its action`.
pub const ACTION_EVENTS: TableDefinition<u128, ()> = TableDefinition::new("action_events");
/// The Merkle tree's node hashes at heights 8, 16, 24, … (the levels of `tlog-tiles` above 0):
/// `level << 56 | index` → 32 bytes, where the node at height `8·level` and index `i` covers
/// leaves `[i·256^level, (i+1)·256^level)`. Written with the commit that completes each node;
/// leaf hashes are not stored (they are `SHA-256(0x00 ‖ entry_hash)` of the records).
pub const TREE: TableDefinition<u64, &[u8]> = TableDefinition::new("tree");

/// The [`TREE`] key of a node.
pub fn tree_key(level: u32, index: u64) -> u64 {
    u64::from(level) << 56 | index
}

/// Daemon state kept with the log, written in the same transaction as the entry that changes
/// it: `approval/<id>` (JSON), `action/<id>` (JSON), `budget/<agent>/<period>` (JSON count),
/// `log/prune` (the newest prune's cut) and `log/exported` (how far the log was exported).
pub const STATE: TableDefinition<&str, &[u8]> = TableDefinition::new("state");

/// The value of `meta.format` this code writes. Format 4 adds the Merkle tree. Format 3 stores each batch zstd-compressed and
/// keeps the query index tables; a format-2 file is upgraded on open (its batches stay as they
/// are and read as before: the two encodings cannot be confused, see [`Batch::plain`]).
pub const FORMAT: &str = "4";

/// Formats this code opens (older ones are upgraded in place by [`FORMAT`]'s rules). Format 4
/// signs C2SP checkpoints over the Merkle tree of the entries and keeps the [`TREE`] table; a
/// format-2 or -3 log gets its tree built on open (one pass over the stored entry hashes).
pub const READS_FORMATS: [&str; 3] = ["2", "3", "4"];

/// The first four bytes of a compressed batch value: a record count no plain batch can have.
const COMPRESSED: [u8; 4] = [0xff; 4];
/// The codec byte after [`COMPRESSED`]: zstd.
const ZSTD: u8 = 1;
/// zstd's level for batches: the fastest. Records are JSON with the same keys over and over, so
/// even level 1 takes a batch to about a fifth of its size.
const ZSTD_LEVEL: i32 = 1;

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
/// Plain encoding (all integers little-endian `u32`): the number of records `n`; `n` times the
/// length of a record then its bytes (canonical JSON, UTF-8); the length of the checkpoint note
/// then its bytes. Nothing may follow. Stored encoding (format 3): `ff ff ff ff`, the codec byte
/// `01` (zstd), then one zstd frame of the plain encoding. Format 2 stored the plain encoding,
/// which still reads.
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

    /// This batch, encoded (plain).
    pub fn to_bytes(&self) -> Vec<u8> {
        Batch::encode(self.records.iter().map(Vec::as_slice), &self.checkpoint)
    }

    /// The stored form of a plain encoding: compressed.
    pub fn compress(plain: &[u8]) -> Result<Vec<u8>, BatchError> {
        let mut out = Vec::with_capacity(plain.len() / 4 + 64);
        out.extend_from_slice(&COMPRESSED);
        out.push(ZSTD);
        // One compression context per thread (the writer's), not one per commit: creating it
        // was a measurable part of the writer's CPU.
        thread_local! {
            static COMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Compressor<'static>>> =
                const { std::cell::RefCell::new(None) };
        }
        let frame = COMPRESSOR.with(|cell| {
            let mut slot = cell.borrow_mut();
            let compressor = match slot.as_mut() {
                Some(c) => c,
                None => slot.insert(zstd::bulk::Compressor::new(ZSTD_LEVEL)?),
            };
            compressor.compress(plain)
        });
        out.extend_from_slice(&frame.map_err(|e| BatchError::Codec(e.to_string()))?);
        Ok(out)
    }

    /// The plain encoding of a stored value (decompressed if it is compressed, as is if it is a
    /// format-2 value), never larger than any batch the writer makes.
    pub fn plain(stored: &[u8]) -> Result<std::borrow::Cow<'_, [u8]>, BatchError> {
        let Some(rest) = stored.strip_prefix(&COMPRESSED) else {
            return Ok(std::borrow::Cow::Borrowed(stored));
        };
        match rest.split_first() {
            Some((&ZSTD, frame)) => {
                // One decompression context per thread, and an output sized from the frame's
                // header (the writer records it) rather than the largest batch allowed.
                thread_local! {
                    static DECOMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
                        const { std::cell::RefCell::new(None) };
                }
                let capacity = zstd::zstd_safe::get_frame_content_size(frame)
                    .ok()
                    .flatten()
                    .and_then(|n| usize::try_from(n).ok())
                    .map_or(MAX_DECODED_BYTES, |n| n.min(MAX_DECODED_BYTES));
                DECOMPRESSOR
                    .with(|cell| {
                        let mut slot = cell.borrow_mut();
                        let decompressor = match slot.as_mut() {
                            Some(d) => d,
                            None => slot.insert(zstd::bulk::Decompressor::new()?),
                        };
                        decompressor.decompress(frame, capacity)
                    })
                    .map(std::borrow::Cow::Owned)
                    .map_err(|e| BatchError::Codec(e.to_string()))
            }
            Some((&other, _)) => Err(BatchError::Codec(format!("unknown codec {other}"))),
            None => Err(BatchError::CutShort),
        }
    }

    /// Decodes a stored batch value (compressed or plain), naming what is wrong.
    pub fn decode(stored: &[u8]) -> Result<Batch, BatchError> {
        Batch::decode_plain(&Batch::plain(stored)?)
    }

    /// Decodes a plain encoding, naming what is wrong with a malformed one.
    pub fn decode_plain(bytes: &[u8]) -> Result<Batch, BatchError> {
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

    /// The `i`-th record of a plain encoding, without decoding the others' bytes into vectors.
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

    /// The number of records in a plain encoding.
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
    /// The compressed value does not decompress (or uses a codec this version does not know).
    #[error("the batch does not decompress: {0}")]
    Codec(String),
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
        let mut huge = bytes.clone();
        huge[0..3].copy_from_slice(&[0xff; 3]);
        assert!(Batch::decode(&huge).is_err());

        // Stored compressed, the same batch comes back; damage to the frame is an error.
        let stored = Batch::compress(&bytes).unwrap();
        assert_eq!(&stored[..5], &[0xff, 0xff, 0xff, 0xff, 1]);
        assert_eq!(Batch::decode(&stored).unwrap(), batch);
        assert_eq!(Batch::plain(&stored).unwrap().as_ref(), bytes.as_slice());
        for cut in 0..stored.len() {
            assert!(Batch::decode(&stored[..cut]).is_err(), "compressed cut at {cut}");
        }
        let mut other_codec = stored.clone();
        other_codec[4] = 9;
        assert!(matches!(Batch::decode(&other_codec).unwrap_err(), BatchError::Codec(_)));
    }
}
