//! The `risk:` section: risk rules and the levels they assign.

use serde_json::{Value, json};

use super::{Loader, PolicyError};
use crate::model::RiskRule;
use crate::yaml::{Kind, Node};

impl Loader<'_> {
    pub(super) fn risk(&self, node: &Node) -> Result<(Vec<RiskRule>, Value), PolicyError> {
        let entries = self.map(node, "`risk`")?;
        self.check_keys(entries, RISK_KEYS, "risk")?;
        let mut out = Vec::new();
        let mut norms = Vec::new();
        for (_, value) in entries {
            let items: &[Node] = match &value.kind {
                Kind::Null => &[],
                _ => self.seq(value, "`risk.rules`")?,
            };
            for (n, item) in items.iter().enumerate() {
                let rule_entries = self.map(item, "a risk rule")?;
                self.check_keys(rule_entries, RISK_RULE_KEYS, "risk rule")?;
                let mut name = format!("risk-{}", n + 1);
                let mut conds = None;
                let mut level = None;
                let mut when_norm = Value::Null;
                for (key, v) in rule_entries {
                    match key.name.as_str() {
                        "name" => name = self.string(v, "`name`")?,
                        "when" => {
                            let (c, norm) = self.conds(v, "`when`", "when")?;
                            conds = Some(c);
                            when_norm = norm;
                        }
                        "risk_level" => level = Some(self.risk_level(v, "`risk_level`")?),
                        _ => {}
                    }
                }
                let Some(conds) = conds else {
                    return Err(self.err(item.pos, "risk rule has no `when`"));
                };
                let Some(level) = level else {
                    return Err(self.err(item.pos, "risk rule has no `risk_level`"));
                };
                norms.push(json!({"name": name, "when": when_norm, "risk_level": level.as_str()}));
                out.push(RiskRule { name, rule_ref: self.rule_ref(item.pos), conds, level });
            }
        }
        Ok((out, json!({ "rules": norms })))
    }
}

const RISK_KEYS: &[&str] = &["rules"];

const RISK_RULE_KEYS: &[&str] = &["name", "when", "risk_level", "description"];
