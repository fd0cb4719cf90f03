//! The redb tables of the decision log (see `docs/decision-log.md`).

use redb::TableDefinition;

/// `seq → record` (canonical JSON bytes).
pub const ENTRIES: TableDefinition<u64, &[u8]> = TableDefinition::new("entries");
/// `size → signed checkpoint note`, one per commit.
pub const CHECKPOINTS: TableDefinition<u64, &str> = TableDefinition::new("checkpoints");
/// `(agent_id, seq) → ()`.
pub const BY_AGENT: TableDefinition<(&str, u64), ()> = TableDefinition::new("by_agent");
/// `log_id`, `format`.
pub const META: TableDefinition<&str, &str> = TableDefinition::new("meta");
/// Daemon state kept with the log, written in the same transaction as the entry that changes
/// it: `approval/<id>` (JSON), `action/<id>` (JSON), `budget/<agent>/<period>` (JSON count).
pub const STATE: TableDefinition<&str, &[u8]> = TableDefinition::new("state");
