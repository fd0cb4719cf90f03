//! The decision log: every decision and event as a hash-chained record in redb, a signed
//! checkpoint after every commit, group commit, and offline verification.
//! See `docs/decision-log.md` for the exact format.

pub mod backup;
pub mod dpr;
pub mod entry;
mod file;
pub mod ids;
pub mod index;
pub mod keys;
pub mod merkle;
pub mod prune;
mod store;
pub mod tables;
pub mod verify;
pub mod witness;

pub use file::{
    DEFAULT_CACHE_BYTES, RANDOM_SOURCE, ZERO_AHEAD, ZeroFilledFile, create_private, create_private_dir,
    open_db, open_db_with_cache, random_bytes, random_hex,
};
pub use ids::ActionIds;
pub use keys::{Checkpoint, CheckpointError, Cosignature, LogKey, PublicKey, WitnessKey};
pub use store::{
    Appended, COSIGNED, CommitObserver, Cut, Log, LogOptions, Opener, PruneOutcome, PrunePlan, PruneStats,
    StateWrites,
};
pub use verify::{Report, verify_file};

use std::path::PathBuf;
use std::sync::Arc;

/// What can go wrong with the log. Cloneable (sources are shared): one failed commit answers
/// every caller in it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LogError {
    /// The database could not be opened. [`LogError::in_use`] tells a lock held by another
    /// process (a running daemon) apart.
    #[error("cannot open the decision log: {0}")]
    Open(#[source] Arc<redb::DatabaseError>),
    /// The file was written by a version with another record format.
    #[error("the decision log is in format {found}, this version reads formats {}", tables::READS_FORMATS.join(", "))]
    Format {
        /// The format the file declares (`(none)` when it declares none).
        found: String,
    },
    /// A stored batch does not decode, or does not fit its place.
    #[error("the batch stored under entry {seq} is corrupt: {source}")]
    Corrupt {
        /// The key the batch is stored under (the seq of its last entry).
        seq: u64,
        /// What is wrong.
        #[source]
        source: Corruption,
    },
    /// A read or a commit failed (disk full, I/O error).
    #[error("decision log storage error: {0}")]
    Storage(#[source] Arc<redb::Error>),
    /// The writer dropped the database after an I/O error and has not reopened it yet.
    #[error("the decision log is reopening after an I/O error")]
    Reopening,
    /// A file operation on the log's files (key, random source, export output) failed.
    #[error("cannot {action} `{}`: {source}", .path.display())]
    Io {
        /// What was being done: `read`, `create`, `write`, `stat`.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The system's error.
        #[source]
        source: Arc<std::io::Error>,
    },
    /// The signing key file is readable by others than its owner.
    #[error("log key `{}` has mode {mode:03o}: it must be readable by its owner only (chmod 600)", .path.display())]
    KeyMode {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The signing key file is not a 32-byte seed.
    #[error("log key `{}` is not a 32-byte ed25519 seed", .0.display())]
    KeyNotSeed(PathBuf),
    /// A verifier key's text does not parse.
    #[error("public key `{text}`: {why}")]
    PublicKey {
        /// The text given.
        text: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// The entry cannot be stored.
    #[error("invalid log entry: {0}")]
    Invalid(#[source] entry::EntryError),
    /// The entry is over the byte limit of one log entry.
    #[error("invalid log entry: the entry takes {size} bytes, over the {limit}-byte limit of one log entry")]
    TooLarge {
        /// The entry's size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The log is shut down.
    #[error("the decision log is closed")]
    Closed,
    /// A node of the Merkle tree cannot be had (pruned, past the end, unreadable).
    #[error("the log's Merkle tree: {0}")]
    Tree(#[source] merkle::TreeError),
    /// A log pruned before it kept a Merkle tree: the tree over its first entries cannot be
    /// built, so no checkpoint over the tree can be signed.
    #[error(
        "entries 1 to {pruned_through} were pruned before this log kept a Merkle tree, so the tree over them cannot be built: keep this file (it still verifies) and start a new log in another state dir"
    )]
    Unconvertible {
        /// The last pruned entry.
        pruned_through: u64,
    },
    /// Another prune is being recorded or carried out.
    #[error("a prune of the decision log is already running")]
    PruneRunning,
    /// A prune would remove entries that were never exported or archived.
    #[error(
        "entries up to {last_pruned} would be removed, but the log was exported or archived only through entry {exported_through}: export or archive them first, or force the prune"
    )]
    NotExported {
        /// The last entry the prune would remove.
        last_pruned: u64,
        /// How far the log was exported or archived.
        exported_through: u64,
    },
}

/// What is wrong with a stored batch.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Corruption {
    /// The batch value does not decode.
    #[error(transparent)]
    Batch(#[from] tables::BatchError),
    /// A record in it does not check out.
    #[error(transparent)]
    Entry(#[from] entry::EntryError),
    /// The batch holds no records.
    #[error("the batch holds no entries")]
    Empty,
    /// The batch's last record has another seq than its key.
    #[error("it ends with entry {0}")]
    Misfiled(u64),
}

impl LogError {
    /// The file is locked by another process: a running daemon holds it.
    pub fn in_use(&self) -> bool {
        matches!(self, LogError::Open(e) if matches!(**e, redb::DatabaseError::DatabaseAlreadyOpen))
    }

    pub(crate) fn storage(e: impl Into<redb::Error>) -> LogError {
        LogError::Storage(Arc::new(e.into()))
    }

    pub(crate) fn io(action: &'static str, path: &std::path::Path, source: std::io::Error) -> LogError {
        LogError::Io { action, path: path.to_owned(), source: Arc::new(source) }
    }
}
