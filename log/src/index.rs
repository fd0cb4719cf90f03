//! The query index: which entries hold a decision of an agent, a tool or an effect, and which
//! entries are events about an action, so the dashboard and `action.list` answer from an index
//! however long the log is.
//!
//! Rows are kept in memory as entries commit ([`Pending`]) and written to the index tables
//! with the commit that reaches [`FLUSH_ROWS`] of them, in the same transaction (so the tables
//! never run ahead of the log), together with `meta.indexed_through`. Appending to each term's
//! range a thousand rows at a time keeps the cost of the index to a few pages per flush. After
//! a crash, the rows after `indexed_through` are rebuilt from the batches on open; a log of an
//! earlier format is indexed whole on open.
//!
//! Tables: `terms` (term text → term number; terms are `a:<agent_id>`, `t:<tool>`,
//! `e:<effect>`), `postings` (`term number << 64 | seq`), `action_events`
//! (`seq of the decision << 64 | seq of the event`).

use std::collections::HashMap;

use redb::{ReadableTable, WriteTransaction};
use serde_json::{Map, Value};

use super::LogError;
use super::ids::ActionIds;
use super::tables::{ACTION_EVENTS, BATCHES, Batch, META, POSTINGS, TERMS};

fn storage(e: impl Into<redb::Error>) -> LogError {
    LogError::storage(e)
}

/// Rows kept in memory before they are written with a commit.
pub const FLUSH_ROWS: usize = 1024;

/// The `meta` key holding the last seq whose rows are in the tables.
pub const INDEXED_THROUGH: &str = "indexed_through";
const NEXT_TERM: &str = "next_term";

/// A term: what an index lookup asks for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Term {
    /// Decisions of this agent.
    Agent(String),
    /// Decisions on this tool.
    Tool(String),
    /// Decisions with this effect.
    Effect(String),
}

impl Term {
    /// The stored text of the term.
    pub fn key(&self) -> String {
        match self {
            Term::Agent(a) => format!("a:{a}"),
            Term::Tool(t) => format!("t:{t}"),
            Term::Effect(e) => format!("e:{e}"),
        }
    }
}

/// What one entry adds to the index.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Indexed {
    /// The entry.
    pub seq: u64,
    /// Its terms (decisions: agent, tool, effect).
    pub terms: Vec<String>,
    /// The decision an event is about (its seq).
    pub about: Option<u64>,
}

impl Indexed {
    fn is_empty(&self) -> bool {
        self.terms.is_empty() && self.about.is_none()
    }
}

/// What an entry's body will add to the index, before it has a seq: the terms of a decision,
/// the action id an event names.
#[derive(Debug, Clone, Default)]
pub struct Keys {
    terms: Vec<String>,
    about: Option<String>,
}

impl Keys {
    /// The keys of a body (`kind: decision` → agent, tool, effect; any other entry naming an
    /// `action_id` → that action).
    pub fn of(body: &Map<String, Value>) -> Keys {
        let text = |k: &str| body.get(k).and_then(Value::as_str);
        if text("kind") == Some("decision") {
            let mut terms = Vec::with_capacity(3);
            if let Some(a) = text("agent_id") {
                terms.push(Term::Agent(a.to_owned()).key());
            }
            if let Some(t) = text("tool") {
                terms.push(Term::Tool(t.to_owned()).key());
            }
            if let Some(e) = text("effect") {
                terms.push(Term::Effect(e.to_owned()).key());
            }
            Keys { terms, about: None }
        } else {
            Keys { terms: Vec::new(), about: text("action_id").map(str::to_owned) }
        }
    }

    /// The row for entry `seq`, if it adds any.
    pub fn row(self, seq: u64, ids: &ActionIds) -> Option<Indexed> {
        let about = self.about.and_then(|id| ids.seq_of(&id)).filter(|&s| s < seq);
        let row = Indexed { seq, terms: self.terms, about };
        (!row.is_empty()).then_some(row)
    }
}

/// Rows of committed entries not yet in the tables (all newer than `indexed_through`).
#[derive(Debug, Default)]
pub struct Pending {
    /// In seq order.
    pub rows: Vec<Indexed>,
}

impl Pending {
    /// Seqs of pending rows with `term`, in `lo..=hi`, newest first.
    pub fn seqs_with(&self, term: &str, lo: u64, hi: u64) -> Vec<u64> {
        self.rows
            .iter()
            .rev()
            .filter(|r| (lo..=hi).contains(&r.seq) && r.terms.iter().any(|t| t == term))
            .map(|r| r.seq)
            .collect()
    }

    /// Seqs of pending events about entry `about`, oldest first.
    pub fn events_of(&self, about: u64) -> Vec<u64> {
        self.rows.iter().filter(|r| r.about == Some(about)).map(|r| r.seq).collect()
    }
}

fn meta_u64(t: &impl ReadableTable<&'static str, &'static str>, key: &str) -> Result<u64, LogError> {
    Ok(t.get(key).map_err(storage)?.and_then(|v| v.value().parse().ok()).unwrap_or(0))
}

/// `meta.indexed_through` as seen by a read transaction.
pub fn indexed_through(txn: &redb::ReadTransaction) -> Result<u64, LogError> {
    let meta = txn.open_table(META).map_err(storage)?;
    meta_u64(&meta, INDEXED_THROUGH)
}

/// Writes `rows` into the index tables in `txn` and sets `indexed_through` to `through`.
pub fn write_rows(txn: &WriteTransaction, rows: &[Indexed], through: u64) -> Result<(), LogError> {
    let mut meta = txn.open_table(META).map_err(storage)?;
    let mut terms = txn.open_table(TERMS).map_err(storage)?;
    let mut postings = txn.open_table(POSTINGS).map_err(storage)?;
    let mut events = txn.open_table(ACTION_EVENTS).map_err(storage)?;
    let mut next_term = meta_u64(&meta, NEXT_TERM)?.max(1);
    let mut numbers: HashMap<&str, u64> = HashMap::new();
    for row in rows {
        for term in &row.terms {
            let number = match numbers.get(term.as_str()) {
                Some(&n) => n,
                None => {
                    let known = terms.get(term.as_str()).map_err(storage)?.map(|v| v.value());
                    let n = match known {
                        Some(n) => n,
                        None => {
                            let n = next_term;
                            next_term += 1;
                            terms.insert(term.as_str(), n).map_err(storage)?;
                            n
                        }
                    };
                    numbers.insert(term, n);
                    n
                }
            };
            postings.insert((u128::from(number) << 64) | u128::from(row.seq), ()).map_err(storage)?;
        }
        if let Some(about) = row.about {
            events.insert((u128::from(about) << 64) | u128::from(row.seq), ()).map_err(storage)?;
        }
    }
    meta.insert(NEXT_TERM, next_term.to_string().as_str()).map_err(storage)?;
    meta.insert(INDEXED_THROUGH, through.to_string().as_str()).map_err(storage)?;
    Ok(())
}

/// Indexes every entry after `indexed_through` (a crash's last rows, or a whole log of an
/// earlier format), a chunk per transaction.
pub fn catch_up(db: &redb::Database, ids: &ActionIds) -> Result<u64, LogError> {
    const CHUNK: usize = 50_000;
    let mut done = 0u64;
    loop {
        let txn = db.begin_write().map_err(storage)?;
        let from = {
            let meta = txn.open_table(META).map_err(storage)?;
            meta_u64(&meta, INDEXED_THROUGH)?
        };
        let mut rows = Vec::new();
        let mut through = from;
        {
            let batches = txn.open_table(BATCHES).map_err(storage)?;
            for item in batches.range(from + 1..).map_err(storage)? {
                let (k, v) = item.map_err(storage)?;
                let last = k.value();
                let batch = Batch::decode(v.value())
                    .map_err(|e| LogError::Corrupt { seq: last, source: e.into() })?;
                let first = (last + 1).saturating_sub(batch.records.len() as u64);
                for (seq, record) in (first..).zip(&batch.records) {
                    if seq <= from {
                        continue;
                    }
                    let Ok(Value::Object(body)) = serde_json::from_slice::<Value>(record) else { continue };
                    if let Some(row) = Keys::of(&body).row(seq, ids) {
                        rows.push(row);
                    }
                }
                through = last;
                if rows.len() >= CHUNK {
                    break;
                }
            }
        }
        if through == from {
            txn.abort().map_err(storage)?;
            return Ok(done);
        }
        write_rows(&txn, &rows, through)?;
        txn.commit().map_err(storage)?;
        done += through - from;
    }
}

/// Seqs in the tables with `term` in `lo..=hi`, newest first, calling `f` until it returns
/// `false`.
pub fn table_seqs(
    txn: &redb::ReadTransaction,
    term: &str,
    lo: u64,
    hi: u64,
    mut f: impl FnMut(u64) -> Result<bool, LogError>,
) -> Result<(), LogError> {
    if lo > hi {
        return Ok(());
    }
    let terms = txn.open_table(TERMS).map_err(storage)?;
    let Some(number) = terms.get(term).map_err(storage)?.map(|v| v.value()) else { return Ok(()) };
    let postings = txn.open_table(POSTINGS).map_err(storage)?;
    let base = u128::from(number) << 64;
    for item in postings.range(base | u128::from(lo)..=base | u128::from(hi)).map_err(storage)?.rev() {
        let (k, _) = item.map_err(storage)?;
        if !f(k.value() as u64)? {
            break;
        }
    }
    Ok(())
}

/// Seqs of events about entry `about` in the tables, oldest first.
pub fn table_events(txn: &redb::ReadTransaction, about: u64) -> Result<Vec<u64>, LogError> {
    let events = txn.open_table(ACTION_EVENTS).map_err(storage)?;
    let base = u128::from(about) << 64;
    let mut out = Vec::new();
    for item in events.range(base..=base | u128::from(u64::MAX)).map_err(storage)? {
        out.push(item.map_err(storage)?.0.value() as u64);
    }
    Ok(out)
}
