//! The decision log: every decision and event as a hash-chained record in redb, a signed
//! checkpoint after every commit, group commit, and offline verification.
//! See `docs/decision-log.md` for the exact format.

pub mod dpr;
pub mod entry;
mod file;
pub mod keys;
mod store;
pub mod tables;
pub mod verify;

pub use file::{ZERO_AHEAD, ZeroFilledFile, create_private, open_db};
pub use keys::{Checkpoint, LogKey, PublicKey};
pub use store::{ActionIds, Appended, CommitObserver, Log, LogOptions, Opener, StateWrites};
pub use verify::{Report, verify_file};

/// What can go wrong with the log. Cloneable: one failed commit answers every caller in it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LogError {
    /// The database could not be opened.
    #[error("cannot open the decision log: {0}")]
    Open(String),
    /// A read or a commit failed (disk full, I/O error).
    #[error("decision log storage error: {0}")]
    Storage(String),
    /// The signing key is missing, unreadable or too widely readable.
    #[error("log key: {0}")]
    Key(String),
    /// The entry cannot be stored (e.g. a number that is not finite).
    #[error("invalid log entry: {0}")]
    Invalid(String),
    /// The log is shut down.
    #[error("the decision log is closed")]
    Closed,
}
