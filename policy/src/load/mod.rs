//! Validation and compilation: from YAML text to a [`Policy`], or the first problem found as
//! `path:line:column: message` (with a suggestion when a key looks misspelled).

mod agents;
mod approvals;
mod commands;
mod mcp;
mod notifications;
mod results;
mod retention;
mod risk;
mod rules;

use std::collections::HashMap;

use faramesh_proto::{RiskLevel, canonical_json, is_identifier};
use serde_json::{Map, Value, json};

use super::model::{
    Approvals, Approver, Commands, Cond, Mcp, NamePat, Notifications, Policy, RuleSet, Unresolved,
};
use super::yaml::{self, Key, Kind, Node, Pos};

pub use notifications::DEFAULT_CHANNEL_ATTEMPTS;

/// A policy that cannot be loaded, and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}:{line}:{col}: {message}")]
pub struct PolicyError {
    /// The policy's path as given.
    pub path: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub col: usize,
    /// What is wrong, one lowercase line.
    pub message: String,
}

const TOP_KEYS: &[&str] = &[
    "version",
    "description",
    "rules",
    "risk",
    "agents",
    "approvals",
    "retention",
    "notifications",
    "commands",
    "mcp",
    "results",
];

/// Compiles policy `text` read from `path` (shown in errors and `rule_ref`).
pub fn compile(path: &str, text: &str) -> Result<Policy, PolicyError> {
    let loader = Loader { path, notify_refs: std::cell::RefCell::default() };
    let root = yaml::parse(text).map_err(|e| loader.err(e.pos, e.message))?;
    loader.policy(&root)
}

struct Loader<'a> {
    path: &'a str,
    /// Channel names rules refer to with `notify:`, checked once `notifications:` is read.
    notify_refs: std::cell::RefCell<Vec<(String, Pos)>>,
}

type Entries = [(Key, Node)];

impl Loader<'_> {
    fn err(&self, pos: Pos, message: impl Into<String>) -> PolicyError {
        PolicyError { path: self.path.to_owned(), line: pos.line, col: pos.col, message: message.into() }
    }

    fn rule_ref(&self, pos: Pos) -> String {
        format!("{}:{}", self.path, pos.line)
    }

    fn map<'n>(&self, node: &'n Node, what: &str) -> Result<&'n Entries, PolicyError> {
        match &node.kind {
            Kind::Map(entries) => Ok(entries),
            other => Err(self.err(node.pos, format!("{what} must be a mapping, found {}", other.describe()))),
        }
    }

    fn seq<'n>(&self, node: &'n Node, what: &str) -> Result<&'n [Node], PolicyError> {
        match &node.kind {
            Kind::Seq(items) => Ok(items),
            other => Err(self.err(node.pos, format!("{what} must be a list, found {}", other.describe()))),
        }
    }

    fn string(&self, node: &Node, what: &str) -> Result<String, PolicyError> {
        match &node.kind {
            Kind::Str(s) => Ok(s.clone()),
            other => Err(self.err(node.pos, format!("{what} must be a string, found {}", other.describe()))),
        }
    }

    fn number(&self, node: &Node, what: &str) -> Result<f64, PolicyError> {
        let value = match &node.kind {
            Kind::Int(i) => *i as f64,
            Kind::Float(f) => *f,
            other => {
                return Err(
                    self.err(node.pos, format!("{what} must be a number, found {}", other.describe()))
                );
            }
        };
        if !value.is_finite() {
            return Err(self.err(node.pos, format!("{what} must be a finite number")));
        }
        Ok(value)
    }

    fn flag(&self, node: &Node, what: &str) -> Result<bool, PolicyError> {
        match &node.kind {
            Kind::Bool(b) => Ok(*b),
            other => {
                Err(self
                    .err(node.pos, format!("{what} must be `true` or `false`, found {}", other.describe())))
            }
        }
    }

    fn check_keys(&self, entries: &Entries, allowed: &[&str], what: &str) -> Result<(), PolicyError> {
        for (key, _) in entries {
            if !allowed.contains(&key.name.as_str()) {
                let mut message = format!("unknown {what} key `{}`", key.name);
                if let Some(best) = suggest(&key.name, allowed) {
                    message.push_str(&format!(", did you mean `{best}`?"));
                } else {
                    message.push_str(&format!(" (expected one of: {})", allowed.join(", ")));
                }
                return Err(self.err(key.pos, message));
            }
        }
        Ok(())
    }

    fn policy(&self, root: &Node) -> Result<Policy, PolicyError> {
        let entries: &Entries = match &root.kind {
            Kind::Null => &[],
            _ => self.map(root, "the policy")?,
        };
        self.check_keys(entries, TOP_KEYS, "top-level")?;
        let mut normalized = Map::new();
        normalized.insert("version".into(), json!(1));
        let mut rules = RuleSet::default();
        let mut risk_rules = Vec::new();
        let mut agents = HashMap::new();
        let mut approvals = Approvals::default();
        let mut retention = None;
        let mut notifications = Notifications::default();
        let mut mcp = Mcp::default();
        let mut commands = Commands::default();
        let mut results = Vec::new();
        for (key, value) in entries {
            match key.name.as_str() {
                "version" => match value.kind {
                    Kind::Int(1) => {}
                    _ => return Err(self.err(value.pos, "unsupported policy `version`: expected 1")),
                },
                "description" => {
                    normalized.insert("description".into(), json!(self.string(value, "`description`")?));
                }
                "rules" => {
                    let (set, norm) = self.rules(value, "`rules`", None)?;
                    rules = set;
                    normalized.insert("rules".into(), norm);
                }
                "risk" => {
                    let (list, norm) = self.risk(value)?;
                    risk_rules = list;
                    normalized.insert("risk".into(), norm);
                }
                "agents" => {
                    let (map, norm) = self.agents(value)?;
                    agents = map;
                    normalized.insert("agents".into(), norm);
                }
                "approvals" => {
                    let (a, norm) = self.approvals(value)?;
                    approvals = a;
                    normalized.insert("approvals".into(), norm);
                }
                "retention" => {
                    let (r, norm) = self.retention(value)?;
                    retention = Some(r);
                    normalized.insert("retention".into(), norm);
                }
                "notifications" => {
                    let (n, norm) = self.notifications(value)?;
                    notifications = n;
                    normalized.insert("notifications".into(), norm);
                }
                "mcp" => {
                    let (m, norm) = self.mcp(value)?;
                    mcp = m;
                    normalized.insert("mcp".into(), norm);
                }
                "results" => {
                    let (list, norm) = self.results(value)?;
                    results = list;
                    normalized.insert("results".into(), norm);
                }
                "commands" => {
                    commands = self.commands(value)?;
                    // Only when it changes something, so policies without it keep their hash.
                    if commands.unresolved == Unresolved::Deny {
                        normalized.insert("commands".into(), json!({"unresolved": "deny"}));
                    }
                }
                _ => {}
            }
        }
        for (name, pos) in self.notify_refs.borrow().iter() {
            if !notifications.channels.contains_key(name) {
                return Err(self.err(
                    *pos,
                    format!(
                        "`notify` names channel `{name}`, which `notifications.channels` does not define"
                    ),
                ));
            }
        }
        let normalized_text =
            canonical_json(&Value::Object(normalized)).map_err(|e| self.err(root.pos, e.to_string()))?;
        let has_command = |conds: &[Cond]| conds.iter().any(|c| matches!(c, Cond::Command(_)));
        let uses_commands = rules.rules.iter().any(|r| has_command(&r.conds))
            || agents.values().any(|p| p.rules.rules.iter().any(|r| has_command(&r.conds)))
            || risk_rules.iter().any(|r| has_command(&r.conds));
        let after_ms = |conds: &[Cond]| {
            conds
                .iter()
                .filter_map(|c| if let Cond::After(a) = c { Some(a.within_ms) } else { None })
                .max()
                .unwrap_or(0)
        };
        let longest_after_ms = rules
            .rules
            .iter()
            .chain(agents.values().flat_map(|p| p.rules.rules.iter()))
            .map(|r| after_ms(&r.conds))
            .chain(risk_rules.iter().map(|r| after_ms(&r.conds)))
            .max()
            .unwrap_or(0);
        let mut detectors = crate::detect::DetectSet::NONE;
        let all_conds = rules
            .rules
            .iter()
            .chain(agents.values().flat_map(|p| p.rules.rules.iter()))
            .flat_map(|r| r.conds.iter())
            .chain(risk_rules.iter().flat_map(|r| r.conds.iter()));
        for c in all_conds {
            if let Cond::Detect(set, _) = c {
                detectors |= *set;
            }
        }
        Ok(Policy {
            results,
            detectors,
            uses_commands,
            longest_after_ms,
            commands,
            source: self.path.to_owned(),
            hash: faramesh_proto::canonical::sha256_hex(normalized_text.as_bytes()),
            normalized: normalized_text,
            rules,
            agents,
            risk_rules,
            approvals,
            retention,
            notifications,
            mcp,
        })
    }

    fn risk_level(&self, node: &Node, what: &str) -> Result<RiskLevel, PolicyError> {
        let text = self.string(node, what)?;
        match text.as_str() {
            "low" => Ok(RiskLevel::Low),
            "medium" => Ok(RiskLevel::Medium),
            "high" => Ok(RiskLevel::High),
            _ => {
                Err(self
                    .err(node.pos, format!("unknown {what} `{text}`: expected `low`, `medium` or `high`")))
            }
        }
    }

    fn name_pat(&self, node: &Node, what: &str) -> Result<NamePat, PolicyError> {
        let text = self.string(node, what)?;
        let stripped: String = text.chars().filter(|c| *c != '*' && *c != '?').collect();
        if text.is_empty() || (!stripped.is_empty() && !is_identifier(&stripped)) || text.len() > 128 {
            return Err(self.err(
                node.pos,
                format!("{what} `{text}` is not a name: use letters, digits, `_.:/-`, or a glob with `*`"),
            ));
        }
        Ok(NamePat::new(&text))
    }

    /// A socket peer named as `uid:N`, `gid:N`, `user:NAME` or `group:NAME` (`what`: "approver").
    fn principal(&self, item: &Node, what: &str) -> Result<Approver, PolicyError> {
        let text = self.string(item, &format!("an {what}"))?;
        let principal = match text.split_once(':') {
            Some(("uid", n)) => n.parse().ok().map(Approver::Uid),
            Some(("gid", n)) => n.parse().ok().map(Approver::Gid),
            Some(("user", n)) if !n.is_empty() => Some(Approver::User(n.to_owned())),
            Some(("group", n)) if !n.is_empty() => Some(Approver::Group(n.to_owned())),
            _ => None,
        };
        principal.ok_or_else(|| {
            self.err(
                item.pos,
                format!("{what} `{text}` must be `uid:N`, `gid:N`, `user:NAME` or `group:NAME`"),
            )
        })
    }
}

/// A principal as the policy writes it.
fn principal_text(p: &Approver) -> String {
    match p {
        Approver::Uid(n) => format!("uid:{n}"),
        Approver::Gid(n) => format!("gid:{n}"),
        Approver::User(n) => format!("user:{n}"),
        Approver::Group(n) => format!("group:{n}"),
    }
}

/// Parses `90s`, `15m`, `2h`, `1d` into seconds (must be positive).
pub fn parse_duration(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit())?;
    let (digits, unit) = text.split_at(split);
    let n: u64 = digits.parse().ok().filter(|n| *n > 0)?;
    let mult = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        _ => return None,
    };
    n.checked_mul(mult)
}

/// The allowed key closest to `input`, if it is close enough to be a likely typo.
fn suggest<'a>(input: &str, allowed: &[&'a str]) -> Option<&'a str> {
    faramesh_proto::call::suggest(input, allowed)
}
