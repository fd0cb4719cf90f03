//! Typed requests of the service layer, read once from a JSON object (a JSON-RPC `params`
//! object or an HTTP body): the one parser of each request, shared by every door. Errors name
//! the field.

pub use faramesh_proto::CallRequest;
use faramesh_proto::Effect;
use serde_json::{Map, Value};

use super::ServiceError;

/// A JSON object's fields, with typed getters whose errors name the field.
pub struct Fields<'a>(pub &'a Map<String, Value>);

impl Fields<'_> {
    /// An optional string.
    pub fn string(&self, key: &str) -> Result<Option<String>, ServiceError> {
        Ok(faramesh_proto::call::string(self.0, key)?)
    }

    /// An optional unsigned integer within `range` (the message says the range).
    pub fn uint(&self, key: &str, range: std::ops::RangeInclusive<u64>) -> Result<Option<u64>, ServiceError> {
        match self.0.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => {
                let n = match v {
                    Value::String(s) => s.parse::<u64>().ok(),
                    other => other.as_u64(),
                };
                n.filter(|n| range.contains(n)).map(Some).ok_or_else(|| {
                    ServiceError::invalid(
                        key,
                        format!("`{key}` must be {} to {}", range.start(), range.end()),
                    )
                })
            }
        }
    }

    /// An optional boolean.
    pub fn boolean(&self, key: &str) -> Result<Option<bool>, ServiceError> {
        match self.0.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(ServiceError::invalid(key, format!("`{key}` must be true or false"))),
        }
    }

    /// The action or approval id: `id` or `alt`.
    pub fn id(&self, alt: &str) -> Result<String, ServiceError> {
        self.string("id")?.or(self.string(alt)?).ok_or_else(|| ServiceError::missing("id"))
    }
}

/// Filters of an action listing (`action.list`, `GET /v1/actions`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ListQuery {
    /// At most this many (1–1000).
    pub limit: usize,
    /// Skip this many matches first (paging).
    pub offset: usize,
    /// Only this agent.
    pub agent_id: Option<String>,
    /// Only this tool.
    pub tool: Option<String>,
    /// Only this effect.
    pub effect: Option<Effect>,
    /// Only actions in this state.
    pub status: Option<super::ActionStatus>,
    /// Only decisions at or after this time (ms since the epoch).
    pub since_ms: Option<u64>,
    /// Only decisions before this time (ms since the epoch).
    pub until_ms: Option<u64>,
    /// Only decisions older than this action (its id: the `next_cursor` of the previous page).
    pub cursor: Option<String>,
    /// Only records whose text contains this, ignoring case (the dashboard's search).
    pub text: Option<String>,
}

impl ListQuery {
    /// Reads `limit` (default `default_limit`), `offset`, `agent_id` (or `agent`), `tool`,
    /// `effect`, `status`, `since`, `until`, `cursor`, `q` (text search, at most 200 characters).
    pub fn from_json(map: &Map<String, Value>, default_limit: usize) -> Result<ListQuery, ServiceError> {
        let f = Fields(map);
        let time = |field: &str| -> Result<Option<u64>, ServiceError> {
            match f.string(field)? {
                Some(s) => Ok(Some(crate::log::entry::parse_rfc3339(&s).ok_or_else(|| {
                    ServiceError::invalid(field, format!("`{field}` `{s}` is not RFC 3339"))
                })?)),
                None => Ok(None),
            }
        };
        let since_ms = time("since")?;
        let until_ms = time("until")?;
        let cursor = f.string("cursor")?.filter(|c| !c.is_empty());
        if let Some(c) = &cursor
            && (c.len() != 16 || !c.bytes().all(|b| b.is_ascii_hexdigit()))
        {
            return Err(ServiceError::invalid(
                "cursor",
                format!("`cursor` `{c}` is not an action id (pass the `next_cursor` of the previous page)"),
            ));
        }
        let status = match f.string("status")? {
            None => None,
            Some(s) => Some(super::ActionStatus::parse(&s).ok_or_else(|| {
                ServiceError::invalid(
                    "status",
                    format!("`status` `{s}` must be one of {}", super::ActionStatus::ALL_NAMES.join(", ")),
                )
            })?),
        };
        Ok(ListQuery {
            limit: f.uint("limit", 1..=1000)?.map_or(default_limit, |n| n as usize),
            offset: f.uint("offset", 0..=1_000_000)?.unwrap_or(0) as usize,
            agent_id: f.string("agent_id")?.or(f.string("agent")?),
            tool: f.string("tool")?,
            effect: match f.string("effect")?.map(|e| e.to_ascii_uppercase()) {
                None => None,
                Some(e) => Some(match e.as_str() {
                    "PERMIT" => Effect::Permit,
                    "DENY" => Effect::Deny,
                    "DEFER" => Effect::Defer,
                    _ => {
                        return Err(ServiceError::invalid(
                            "effect",
                            format!("`effect` `{e}` must be PERMIT, DENY or DEFER"),
                        ));
                    }
                }),
            },
            status,
            since_ms,
            until_ms,
            cursor: cursor.map(|c| c.to_ascii_lowercase()),
            text: match f.string("q")? {
                Some(q) if q.chars().count() > 200 => {
                    return Err(ServiceError::invalid("q", "`q` is longer than 200 characters"));
                }
                q => q.filter(|q| !q.is_empty()).map(|q| q.to_lowercase()),
            },
        })
    }
}

/// What an action lifecycle report says.
#[derive(Debug, Clone, PartialEq)]
pub enum Transition {
    /// `action.start`: the tool is about to run.
    Start,
    /// `action.result`: it ran.
    Result {
        /// Whether it succeeded.
        success: bool,
        /// The error message, if it failed.
        error: Option<String>,
        /// What it returned (stored as a hash and a 1 KiB summary).
        result: Option<Value>,
    },
}

impl Transition {
    /// Reads `success`, `error`, `result` of a result report.
    pub fn result_from_json(map: &Map<String, Value>) -> Result<Transition, ServiceError> {
        let f = Fields(map);
        let success = f.boolean("success")?.ok_or_else(|| ServiceError::missing("success"))?;
        Ok(Transition::Result {
            success,
            error: f.string("error")?,
            result: map.get("result").cloned().filter(|v| !v.is_null()),
        })
    }
}

/// A `log.prune` request: `before` (RFC 3339), `keep_last` (entries) or `before_seq` (the
/// first entry to keep, as a dry run planned it), `force`, `dry_run`.
#[derive(Debug, Clone, PartialEq)]
pub struct PruneRequest {
    /// Where to cut.
    pub cut: crate::log::Cut,
    /// Prune entries that were never exported.
    pub force: bool,
    /// Only say what would be pruned.
    pub dry_run: bool,
}

impl PruneRequest {
    /// Reads the request; exactly one of `before`, `keep_last` and `before_seq`.
    pub fn from_json(map: &Map<String, Value>) -> Result<PruneRequest, ServiceError> {
        let f = Fields(map);
        let before = f.string("before")?;
        let keep_last = f.uint("keep_last", 0..=u64::MAX)?;
        let before_seq = f.uint("before_seq", 1..=u64::MAX)?;
        let cut = match (before, keep_last, before_seq) {
            (Some(t), None, None) => {
                crate::log::Cut::Before(crate::log::entry::parse_rfc3339(&t).ok_or_else(|| {
                    ServiceError::invalid(
                        "before",
                        format!("`before` `{t}` is not RFC 3339 (2026-11-01T00:00:00Z)"),
                    )
                })?)
            }
            (None, Some(n), None) => crate::log::Cut::KeepLast(n),
            (None, None, Some(seq)) => crate::log::Cut::BeforeSeq(seq),
            (None, None, None) => return Err(ServiceError::missing("before")),
            _ => {
                return Err(ServiceError::invalid(
                    "keep_last",
                    "give one of `before`, `keep_last` and `before_seq`, not several",
                ));
            }
        };
        Ok(PruneRequest {
            cut,
            force: f.boolean("force")?.unwrap_or(false),
            dry_run: f.boolean("dry_run")?.unwrap_or(false),
        })
    }
}
