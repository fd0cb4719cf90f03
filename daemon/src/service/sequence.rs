//! What each session (and each agent) did before: the permitted calls `after:` conditions read
//! (`docs/policy.md#sequences-after`). Kept in memory with bounds: per session the last
//! [`PER_KEY`] permitted calls, none older than the policy's longest `within` (at most a day),
//! at most [`KEYS`] sessions and agents (the one idle longest is forgotten first). At start the
//! daemon reads them back from the log's decisions of that window.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use faramesh_proto::{Call, Effect};

use crate::log::dpr::DecisionRecord;
use crate::log::{Log, LogError, entry};
use crate::policy::Earlier;

/// Permitted calls remembered per session (and per agent).
pub const PER_KEY: usize = 32;
/// Sessions and agents remembered.
pub const KEYS: usize = 4_096;
/// Most log entries read back at start.
const REBUILD_LIMIT: usize = 200_000;

/// The permitted calls of each session and agent, newest last.
#[derive(Debug, Default)]
pub struct Recent {
    by_key: Mutex<HashMap<String, VecDeque<Earlier>>>,
}

/// The keys a call is remembered under: its agent (every call of it), and its session when it
/// has one. A call with a session reads its session's; one without reads its agent's.
fn keys(agent_id: &str, session_id: Option<&str>) -> (String, Option<String>) {
    (format!("a\u{0}{agent_id}"), session_id.map(|s| format!("s\u{0}{agent_id}\u{0}{s}")))
}

impl Recent {
    /// Remembers that `call` was permitted at `now_ms`, forgetting what is older than
    /// `keep_ms` (the policy's longest `within`).
    pub fn remember(&self, call: &Call, now_ms: u64, keep_ms: u64) {
        self.push(&call.agent_id, call.session_id.as_deref(), &call.tool, &call.operation, now_ms, keep_ms);
    }

    fn push(
        &self,
        agent: &str,
        session: Option<&str>,
        tool: &str,
        operation: &str,
        at_ms: u64,
        keep_ms: u64,
    ) {
        let Ok(mut map) = self.by_key.lock() else { return };
        let (agent_key, session_key) = keys(agent, session);
        for key in std::iter::once(agent_key).chain(session_key) {
            if !map.contains_key(&key) && map.len() >= KEYS {
                // Forget the session or agent idle longest.
                let idle =
                    map.iter().min_by_key(|(_, v)| v.back().map_or(0, |e| e.at_ms)).map(|(k, _)| k.clone());
                if let Some(idle) = idle {
                    map.remove(&idle);
                }
            }
            let list = map.entry(key).or_default();
            list.push_back(Earlier { tool: tool.to_owned(), operation: operation.to_owned(), at_ms });
            while list.len() > PER_KEY
                || list.front().is_some_and(|e| at_ms.saturating_sub(e.at_ms) > keep_ms)
            {
                list.pop_front();
            }
        }
    }

    /// What `call`'s session did before (its agent's, for a call without a session).
    pub fn of(&self, call: &Call) -> Vec<Earlier> {
        let (agent_key, session_key) = keys(&call.agent_id, call.session_id.as_deref());
        let key = session_key.unwrap_or(agent_key);
        self.by_key
            .lock()
            .ok()
            .and_then(|m| m.get(&key).map(|l| l.iter().cloned().collect()))
            .unwrap_or_default()
    }

    /// How many calls are remembered, over how many sessions and agents (`status`).
    pub fn size(&self) -> (usize, usize) {
        self.by_key.lock().map(|m| (m.values().map(VecDeque::len).sum(), m.len())).unwrap_or((0, 0))
    }

    /// Reads back the permitted calls of the last `keep_ms` from `log` (none when 0).
    pub fn rebuild(log: &Log, now_ms: u64, keep_ms: u64) -> Result<Recent, LogError> {
        let recent = Recent::default();
        if keep_ms == 0 {
            return Ok(recent);
        }
        let from = log.first_seq_at_or_after(now_ms.saturating_sub(keep_ms))?.max(log.first_seq()?);
        for record in log.entries_from(from, REBUILD_LIMIT)? {
            let Some(d) = DecisionRecord::parse(&record) else { continue };
            if d.effect != Effect::Permit {
                continue;
            }
            let Some(at_ms) = entry::parse_rfc3339(&d.ts) else { continue };
            if now_ms.saturating_sub(at_ms) <= keep_ms {
                recent.push(&d.agent_id, d.session_id.as_deref(), &d.tool, &d.operation, at_ms, keep_ms);
            }
        }
        Ok(recent)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(agent: &str, session: Option<&str>, tool: &str) -> Call {
        let mut c = Call::new(agent, tool, "read");
        c.session_id = session.map(str::to_owned);
        c
    }

    #[test]
    fn sessions_and_agents_are_kept_apart_and_bounded() {
        let r = Recent::default();
        r.remember(&call("bot", Some("s1"), "secrets"), 1_000, 60_000);
        assert_eq!(r.of(&call("bot", Some("s1"), "http")).len(), 1);
        assert!(r.of(&call("bot", Some("s2"), "http")).is_empty(), "another session");
        assert_eq!(r.of(&call("bot", None, "http")).len(), 1, "the agent's calls include its sessions'");
        assert!(r.of(&call("other", None, "http")).is_empty(), "another agent");
        for i in 0..100 {
            r.remember(&call("bot", Some("s1"), "files"), 2_000 + i, 60_000);
        }
        assert_eq!(r.of(&call("bot", Some("s1"), "http")).len(), PER_KEY);
        // Older than the longest window: forgotten at the next call.
        r.remember(&call("bot", Some("s1"), "files"), 200_000, 60_000);
        assert_eq!(r.of(&call("bot", Some("s1"), "http")).len(), 1);
        for i in 0..(KEYS + 10) {
            r.remember(&call(&format!("a{i}"), None, "x"), 300_000 + i as u64, 60_000);
        }
        assert!(r.size().1 <= KEYS, "{:?}", r.size());
    }
}
