//! Rules that can never match because an earlier rule always decides first.

use serde::Serialize;

use crate::model::{Cond, Policy, RuleSet};

/// A rule that can never match because an earlier rule in the same list always matches first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Shadowed {
    /// The rule that can never match.
    pub rule_id: String,
    /// Where it is.
    pub rule_ref: String,
    /// The earlier rule that always wins.
    pub by_rule_id: String,
    /// Where that one is.
    pub by_rule_ref: String,
}

/// Finds rules shadowed by an earlier rule whose every condition holds whenever theirs do.
pub fn shadowed_rules(policy: &Policy) -> Vec<Shadowed> {
    let mut out = Vec::new();
    let mut sets: Vec<&RuleSet> = vec![&policy.rules];
    let mut names: Vec<&String> = policy.agents.keys().collect();
    names.sort();
    for name in names {
        if let Some(p) = policy.agents.get(name) {
            sets.push(&p.rules);
        }
    }
    for set in sets {
        for (j, later) in set.rules.iter().enumerate() {
            // A rule in shadow mode never decides, so it makes no later rule unreachable.
            let by = set.rules[..j].iter().filter(|earlier| !earlier.shadow).find(|earlier| {
                earlier
                    .conds
                    .iter()
                    .all(|ec| ec.implied_by_nothing() || later.conds.iter().any(|lc| ec.implied_by(lc)))
            });
            if let Some(by) = by {
                out.push(Shadowed {
                    rule_id: later.id.clone(),
                    rule_ref: later.rule_ref.clone(),
                    by_rule_id: by.id.clone(),
                    by_rule_ref: by.rule_ref.clone(),
                });
            }
        }
    }
    out
}

impl Cond {
    /// Whether the condition holds for every call (`tool: "*"`).
    pub(super) fn implied_by_nothing(&self) -> bool {
        matches!(self, Cond::Tool(p) | Cond::Op(p) | Cond::AgentId(p) if *p == crate::model::NamePat::Any)
    }
}
