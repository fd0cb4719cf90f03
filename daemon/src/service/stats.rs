//! The dashboard's overview: decisions over time by effect, the busiest agents and tools, and
//! how often each rule of the policy in force decided (rules that never did stand out).

use std::collections::{BTreeMap, HashMap};

use faramesh_proto::Effect;
use serde_json::{Value, json};

use super::{Identity, Service, ServiceError};
use crate::log::dpr::DecisionRecord;
use crate::log::entry;

/// The most decisions an overview reads (the newest ones in its window).
pub const STATS_SCAN_LIMIT: usize = 200_000;

/// An overview window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    /// The last hour, by minute.
    Hour,
    /// The last day, by 15 minutes.
    Day,
}

impl Window {
    /// `hour` or `day`.
    pub fn parse(text: &str) -> Option<Window> {
        match text {
            "hour" => Some(Window::Hour),
            "day" => Some(Window::Day),
            _ => None,
        }
    }

    fn span_ms(self) -> u64 {
        match self {
            Window::Hour => 3_600_000,
            Window::Day => 86_400_000,
        }
    }

    fn bucket_ms(self) -> u64 {
        match self {
            Window::Hour => 60_000,
            Window::Day => 900_000,
        }
    }
}

impl Service {
    /// Decisions in `window` (to those who read everything): `{window, bucket_seconds, buckets:
    /// [{start, PERMIT, DENY, DEFER}], agents: [{name, count}], tools: [...], rules: [{id,
    /// rule_ref, effect, hits, shadow, shadow_hits}], decisions, truncated}` (`shadow_hits`: the
    /// calls a rule in shadow mode would have decided otherwise).
    pub fn stats(&self, window: Window, who: &Identity) -> Result<Value, ServiceError> {
        if !self.reads_everything(who) {
            return Err(ServiceError::not_authorized(format!(
                "not authorized: {} may not read the overview",
                who.describe()
            )));
        }
        let log = &self.state.log;
        let now = self.clock.now_ms();
        let bucket = window.bucket_ms();
        let start = (now.saturating_sub(window.span_ms()) / bucket + 1) * bucket;
        let n_buckets = usize::try_from(now.saturating_sub(start) / bucket + 1).unwrap_or(1);
        let lo = log.first_seq_at_or_after(start)?.max(log.first_seq()?);
        let (hi, _) = log.head();
        let mut counts = vec![[0u64; 3]; n_buckets];
        let mut agents: HashMap<String, u64> = HashMap::new();
        let mut tools: HashMap<String, u64> = HashMap::new();
        let mut rules: HashMap<String, u64> = HashMap::new();
        let mut shadow_hits: HashMap<String, u64> = HashMap::new();
        let (mut seen, mut truncated) = (0usize, false);
        log.scan_newest(None, lo, hi, |_, record| {
            if let Some(d) = DecisionRecord::parse(record) {
                let ts = entry::parse_rfc3339(&d.ts).unwrap_or(now);
                if ts >= start {
                    let i = usize::try_from(ts.saturating_sub(start) / bucket)
                        .unwrap_or(0)
                        .min(n_buckets.saturating_sub(1));
                    let e = match d.effect {
                        Effect::Permit => 0,
                        Effect::Deny => 1,
                        Effect::Defer => 2,
                    };
                    counts[i][e] += 1;
                    *agents.entry(d.agent_id).or_default() += 1;
                    *tools.entry(format!("{}/{}", d.tool, d.operation)).or_default() += 1;
                    if let Some(r) = d.rule_id {
                        *rules.entry(r).or_default() += 1;
                    }
                    if let Some(s) = d.shadow {
                        *shadow_hits.entry(s.rule_id).or_default() += 1;
                    }
                }
                seen += 1;
            }
            truncated = seen >= STATS_SCAN_LIMIT;
            !truncated
        })?;
        let top = |m: HashMap<String, u64>| -> Vec<Value> {
            let mut v: Vec<(String, u64)> = m.into_iter().collect();
            v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            v.into_iter().take(8).map(|(name, count)| json!({"name": name, "count": count})).collect()
        };
        // Every rule of the policy in force, in policy order, with its hits in the window.
        let loaded = self.state.policy.load();
        let policy = &loaded.policy;
        let mut listed: BTreeMap<usize, Value> = BTreeMap::new();
        let all_rules =
            policy.rules.rules.iter().chain(policy.agents.values().flat_map(|p| p.rules.rules.iter()));
        for (i, r) in all_rules.enumerate() {
            listed.insert(
                i,
                json!({
                    "id": r.id,
                    "rule_ref": r.rule_ref,
                    "effect": r.effect.as_str(),
                    "hits": rules.get(&r.id).copied().unwrap_or(0),
                    "shadow": r.shadow,
                    "shadow_hits": shadow_hits.get(&r.id).copied().unwrap_or(0),
                }),
            );
        }
        let buckets: Vec<Value> = counts
            .iter()
            .enumerate()
            .map(|(i, c)| {
                json!({"start": entry::rfc3339(start + i as u64 * bucket), "PERMIT": c[0], "DENY": c[1], "DEFER": c[2]})
            })
            .collect();
        Ok(json!({
            "window": match window { Window::Hour => "hour", Window::Day => "day" },
            "bucket_seconds": bucket / 1000,
            "buckets": buckets,
            "agents": top(agents),
            "tools": top(tools),
            "rules": listed.into_values().collect::<Vec<_>>(),
            "decisions": seen,
            "truncated": truncated,
        }))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::Window;
    use crate::log::dpr::PeerCred;
    use crate::service::tests::service;
    use crate::service::{CallRequest, Identity, Peer};

    /// The rule table counts, beside each rule's own hits, the calls a rule in shadow mode would
    /// have decided otherwise.
    #[tokio::test]
    async fn the_rule_table_counts_shadow_hits() {
        let dir = tempfile::tempdir().unwrap();
        let policy = "version: 1\nrules:\n  - id: no-big\n    mode: shadow\n    match: { tool: pay, amount_gt: 100 }\n    deny: true\n  - id: pay-ok\n    match: { tool: pay }\n    allow: true\n";
        let s = service(dir.path(), policy);
        let agent = Identity::Peer(Peer::new(PeerCred { uid: 1000, gid: 1000, pid: 1 }));
        for amount in [5, 500, 700] {
            let call = json!({"agent_id": "bot", "tool": "pay", "operation": "refund", "params": {"amount": amount}});
            s.govern(CallRequest::from_value(&call).unwrap(), &agent).await.unwrap();
        }
        let root = Identity::Peer(Peer::new(PeerCred { uid: 0, gid: 0, pid: 1 }));
        let stats = s.stats(Window::Hour, &root).unwrap();
        let rules = stats["rules"].as_array().unwrap();
        let row = |id: &str| rules.iter().find(|r| r["id"] == id).unwrap().clone();
        assert_eq!(
            (&row("no-big")["shadow"], &row("no-big")["shadow_hits"], &row("no-big")["hits"]),
            (&json!(true), &json!(2), &json!(0))
        );
        assert_eq!((&row("pay-ok")["shadow"], &row("pay-ok")["hits"]), (&json!(false), &json!(3)));
    }

    /// Regression: an agent reading its own action (`action.get`, `action.list`, `log.entries`)
    /// saw which shadow-mode rule it was tried against; only the operators see that.
    #[tokio::test]
    async fn agents_do_not_see_the_shadow_rules_they_were_tried_against() {
        let dir = tempfile::tempdir().unwrap();
        let policy = "version: 1\nrules:\n  - id: no-big\n    mode: shadow\n    match: { tool: pay, amount_gt: 100 }\n    deny: true\n  - id: pay-ok\n    match: { tool: pay }\n    allow: true\n";
        let s = service(dir.path(), policy);
        let agent = Identity::Peer(Peer::new(PeerCred { uid: 1000, gid: 1000, pid: 1 }));
        let root = Identity::Peer(Peer::new(PeerCred { uid: 0, gid: 0, pid: 1 }));
        let call =
            json!({"agent_id": "bot", "tool": "pay", "operation": "refund", "params": {"amount": 500}});
        let reply = s.govern(CallRequest::from_value(&call).unwrap(), &agent).await.unwrap();
        let id = reply.action_id.clone().unwrap();
        assert!(s.find_action(&id, &root).unwrap().record.shadow.is_some(), "the operators see it");
        assert!(s.find_action(&id, &agent).unwrap().record.shadow.is_none());
        let q = crate::service::ListQuery::from_json(&serde_json::Map::new(), 50).unwrap();
        assert!(s.action_list(&q, &agent).unwrap().iter().all(|v| v.record.shadow.is_none()));
        let searched =
            crate::service::ListQuery::from_json(json!({"q": "no-big"}).as_object().unwrap(), 50).unwrap();
        assert!(s.action_list(&searched, &agent).unwrap().is_empty(), "no search reveals it");
        let (entries, _) = s.entries(Some(1), None, 100, &agent).unwrap();
        assert!(!entries.is_empty() && entries.iter().all(|e| e.get("shadow").is_none()));
        let (entries, _) = s.entries(Some(1), None, 100, &root).unwrap();
        assert!(entries.iter().any(|e| e.get("shadow").is_some()));
    }
}
