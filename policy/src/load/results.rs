//! The `results:` section: rules over what a tool returned, read before the agent sees it.
//!
//! ```yaml
//! results:
//!   - id: no-secrets-back
//!     match: { tool: "*" }            # tool, op, agent_id
//!     detect: [secrets]               # or `instructions: true`, or `max_bytes: 1048576`
//!     redact: true                    # or `deny: true`, or `flag: true`
//! ```

use serde_json::{Map, Value, json};

use super::{Loader, PolicyError};
use crate::model::{Cond, NamePat, ResultCheck, ResultEffect, ResultRule};
use crate::yaml::Node;

const RESULT_KEYS: &[&str] =
    &["id", "match", "detect", "instructions", "max_bytes", "redact", "deny", "flag", "description"];
const RESULT_MATCH_KEYS: &[&str] = &["tool", "op", "operation", "agent_id"];

impl Loader<'_> {
    pub(super) fn results(&self, node: &Node) -> Result<(Vec<ResultRule>, Value), PolicyError> {
        let mut out = Vec::new();
        let mut norm = Vec::new();
        for (n, item) in self.seq(node, "`results`")?.iter().enumerate() {
            let (rule, v) = self.result_rule(item, n + 1)?;
            if out.iter().any(|r: &ResultRule| r.id == rule.id) {
                return Err(self.err(item.pos, format!("duplicate result rule id `{}`", rule.id)));
            }
            out.push(rule);
            norm.push(v);
        }
        Ok((out, Value::Array(norm)))
    }

    fn result_rule(&self, node: &Node, n: usize) -> Result<(ResultRule, Value), PolicyError> {
        let entries = self.map(node, "a result rule")?;
        self.check_keys(entries, RESULT_KEYS, "result rule")?;
        let mut id = None;
        let mut description = None;
        let (mut tool, mut op, mut agent) = (NamePat::Any, NamePat::Any, NamePat::Any);
        let mut match_norm = Map::new();
        let mut check: Option<(ResultCheck, &str)> = None;
        let mut effect: Option<(ResultEffect, &str)> = None;
        let mut saw_match = false;
        for (key, value) in entries {
            let name = key.name.as_str();
            match name {
                "id" => id = Some(self.string(value, "`id`")?),
                "description" => description = Some(self.string(value, "`description`")?),
                "match" => {
                    saw_match = true;
                    let m = self.map(value, "`match`")?;
                    self.check_keys(m, RESULT_MATCH_KEYS, "result rule `match`")?;
                    for (k, v) in m {
                        let what = format!("`match.{}`", k.name);
                        match k.name.as_str() {
                            "tool" => tool = self.name_pat(v, &what)?,
                            "op" | "operation" => op = self.name_pat(v, &what)?,
                            _ => agent = NamePat::new(&self.string(v, &what)?),
                        }
                    }
                    match_norm.insert("tool".into(), json!(tool.as_str()));
                    match_norm.insert("op".into(), json!(op.as_str()));
                    match_norm.insert("agent_id".into(), json!(agent.as_str()));
                }
                "detect" | "instructions" | "max_bytes" => {
                    let this = match name {
                        "detect" => match self.detect(value)? {
                            Cond::Detect(set, names) => ResultCheck::Detect(set, names),
                            _ => return Err(self.err(value.pos, "`detect` names detectors")),
                        },
                        "instructions" => {
                            if !self.flag(value, "`instructions`")? {
                                return Err(self.err(
                                    value.pos,
                                    "`instructions: false` checks nothing: leave the rule out",
                                ));
                            }
                            ResultCheck::Instructions
                        }
                        _ => {
                            let max = self.number(value, "`max_bytes`")?;
                            if max < 1.0 || max.fract() != 0.0 || max > 1e15 {
                                return Err(self.err(
                                    value.pos,
                                    "`max_bytes` must be a whole number of bytes, at least 1",
                                ));
                            }
                            ResultCheck::MaxBytes(max as u64)
                        }
                    };
                    if let Some((_, first)) = check {
                        return Err(self.err(
                            key.pos,
                            format!(
                                "result rule looks for two things (`{first}` and `{name}`): write two rules"
                            ),
                        ));
                    }
                    check = Some((this, name));
                }
                _ => {
                    // redact / deny / flag
                    if !self.flag(value, &format!("`{name}`"))? {
                        continue;
                    }
                    let this = match name {
                        "redact" => ResultEffect::Redact,
                        "deny" => ResultEffect::Deny,
                        _ => ResultEffect::Flag,
                    };
                    if let Some((_, first)) = effect {
                        return Err(self.err(
                            key.pos,
                            format!("result rule has two effects (`{first}` and `{name}`): keep exactly one"),
                        ));
                    }
                    effect = Some((this, name));
                }
            }
        }
        if !saw_match {
            return Err(self.err(
                node.pos,
                "result rule has no `match`: say which calls' results it reads (`tool: \"*\"` for every call)",
            ));
        }
        let Some((check, _)) = check else {
            return Err(self.err(
                node.pos,
                "result rule looks for nothing: set one of `detect`, `instructions: true` or `max_bytes`",
            ));
        };
        let Some((effect, _)) = effect else {
            return Err(self
                .err(node.pos, "result rule has no effect: set one of `redact`, `deny` or `flag` to true"));
        };
        if effect == ResultEffect::Redact && !matches!(check, ResultCheck::Detect(..)) {
            return Err(self.err(
                node.pos,
                "`redact` replaces what `detect` finds: use it with `detect`, or `deny`/`flag` otherwise",
            ));
        }
        let id = id.unwrap_or_else(|| format!("result-{n}"));
        let check_norm = match &check {
            ResultCheck::Detect(_, names) => json!({"detect": names}),
            ResultCheck::Instructions => json!({"instructions": true}),
            ResultCheck::MaxBytes(b) => json!({"max_bytes": b}),
        };
        let norm = json!({
            "id": id,
            "match": match_norm,
            "check": check_norm,
            "effect": effect.as_str(),
            "description": description,
        });
        let rule =
            ResultRule { id, rule_ref: self.rule_ref(node.pos), tool, op, agent, check, effect, description };
        Ok((rule, norm))
    }
}
