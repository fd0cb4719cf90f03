//! Rules (global and per agent): their `match` conditions, effect, risk and notifications.

use std::collections::HashMap;

use faramesh_proto::{Effect, RiskLevel};
use regex::RegexBuilder;
use serde_json::{Map, Value, json};

use super::{Loader, PolicyError};
use crate::command::CommandMatch;
use crate::detect::DetectSet;
use crate::model::{After, Cmp, Cond, Index, MAX_AFTER_WITHIN_MS, NamePat, Rule, RuleSet};
use crate::yaml::{Key, Kind, Node, Pos};

impl Loader<'_> {
    pub(super) fn rules(
        &self,
        node: &Node,
        what: &str,
        agent: Option<&str>,
    ) -> Result<(RuleSet, Value), PolicyError> {
        let items: &[Node] = match &node.kind {
            Kind::Null => &[],
            _ => self.seq(node, what)?,
        };
        let mut rules = Vec::with_capacity(items.len());
        let mut norms = Vec::with_capacity(items.len());
        let mut seen_ids: HashMap<String, Pos> = HashMap::new();
        for (n, item) in items.iter().enumerate() {
            let (rule, norm, id_pos) = self.rule(item, n + 1, agent)?;
            if let Some(first) = seen_ids.get(&rule.id) {
                return Err(self.err(
                    id_pos,
                    format!("duplicate rule id `{}` (first used at line {})", rule.id, first.line),
                ));
            }
            seen_ids.insert(rule.id.clone(), id_pos);
            rules.push(rule);
            norms.push(norm);
        }
        let index = Index::build(&rules);
        Ok((RuleSet { rules, index }, Value::Array(norms)))
    }

    pub(super) fn rule(
        &self,
        node: &Node,
        n: usize,
        agent: Option<&str>,
    ) -> Result<(Rule, Value, Pos), PolicyError> {
        let entries = self.map(node, "a rule")?;
        self.check_keys(entries, RULE_KEYS, "rule")?;
        let mut id = None;
        let mut id_pos = node.pos;
        let mut conds = None;
        let mut match_norm = Value::Null;
        let mut effect: Option<(Effect, &Key)> = None;
        let mut description = None;
        let mut risk = None;
        let mut notify = Vec::new();
        let mut shadow = false;
        let mut approvals_required: Option<(u32, Pos)> = None;
        for (key, value) in entries {
            let this_effect = match key.name.as_str() {
                "notify" => {
                    let list = self.channel_names(value, "`notify`")?;
                    notify = list.iter().map(|(c, _)| c.clone()).collect();
                    self.notify_refs.borrow_mut().extend(list);
                    None
                }
                "id" => {
                    let text = self.string(value, "`id`")?;
                    if text.trim().is_empty() || text.len() > 128 {
                        return Err(self.err(value.pos, "`id` must be 1 to 128 characters"));
                    }
                    id = Some(text);
                    id_pos = value.pos;
                    None
                }
                "match" => {
                    let (c, norm) = self.conds(value, "`match`", "match")?;
                    conds = Some(c);
                    match_norm = norm;
                    None
                }
                "allow" | "deny" | "require_approval" => {
                    let what = format!("`{}`", key.name);
                    if !self.flag(value, &what)? {
                        return Err(self.err(
                            value.pos,
                            format!("{what} must be `true` when present (remove the key instead)"),
                        ));
                    }
                    Some(match key.name.as_str() {
                        "allow" => Effect::Permit,
                        "deny" => Effect::Deny,
                        _ => Effect::Defer,
                    })
                }
                "effect" => {
                    let text = self.string(value, "`effect`")?;
                    Some(match text.to_ascii_lowercase().as_str() {
                        "permit" | "allow" => Effect::Permit,
                        "deny" => Effect::Deny,
                        "defer" | "require_approval" => Effect::Defer,
                        _ => {
                            return Err(self.err(
                                value.pos,
                                format!("unknown `effect` `{text}`: expected `permit`, `deny` or `defer`"),
                            ));
                        }
                    })
                }
                // `reason` is the upstream Faramesh documentation's name for the same text (govern-your-own-tool).
                "description" | "reason" => {
                    if description.is_some() {
                        return Err(self.err(key.pos, "give `description` or `reason`, not both".to_owned()));
                    }
                    description = Some(self.string(value, &format!("`{}`", key.name))?);
                    None
                }
                "risk" => {
                    risk = Some(self.risk_level(value, "`risk`")?);
                    None
                }
                "approvals_required" => {
                    let n = match &value.kind {
                        Kind::Int(n) if (1..=MAX_APPROVALS_REQUIRED).contains(n) => *n as u32,
                        _ => {
                            return Err(self.err(
                                value.pos,
                                format!(
                                    "`approvals_required` must be a whole number from 1 to {MAX_APPROVALS_REQUIRED}"
                                ),
                            ));
                        }
                    };
                    approvals_required = Some((n, value.pos));
                    None
                }
                "mode" => {
                    let text = self.string(value, "`mode`")?;
                    shadow = match text.as_str() {
                        "shadow" => true,
                        "enforce" => false,
                        _ => {
                            return Err(self.err(
                                value.pos,
                                format!(
                                    "unknown `mode` `{text}`: expected `enforce` (the default) or `shadow`"
                                ),
                            ));
                        }
                    };
                    None
                }
                _ => None,
            };
            if let Some(e) = this_effect {
                if let Some((_, first)) = effect {
                    return Err(self.err(
                        key.pos,
                        format!(
                            "rule has two effects (`{}` and `{}`): keep exactly one",
                            first.name, key.name
                        ),
                    ));
                }
                effect = Some((e, key));
            }
        }
        let Some(mut conds) = conds else {
            return Err(self.err(node.pos, "rule has no `match`: say which calls it applies to"));
        };
        let Some((effect, _)) = effect else {
            return Err(self.err(
                node.pos,
                "rule has no effect: set one of `allow`, `deny` or `require_approval` to true (or `effect`)",
            ));
        };
        if let Some((n, pos)) = approvals_required
            && n > 1
            && effect != Effect::Defer
        {
            return Err(self.err(
                pos,
                "`approvals_required` goes with `require_approval: true` (it says how many approvers sign)",
            ));
        }
        let approvals_required = approvals_required.map_or(1, |(n, _)| n);
        // A `command:` that allows holds only when every command of the call matches.
        for c in &mut conds {
            if let Cond::Command(cc) = c {
                cc.all = effect == Effect::Permit;
            }
        }
        let id = id.unwrap_or_else(|| match agent {
            Some(a) => format!("{a}/rule-{n}"),
            None => format!("rule-{n}"),
        });
        let tool = conds.iter().find_map(|c| match c {
            Cond::Tool(p) => Some(p.clone()),
            _ => None,
        });
        let op = conds.iter().find_map(|c| match c {
            Cond::Op(p) => Some(p.clone()),
            _ => None,
        });
        let mut norm = json!({
            "id": id,
            "match": match_norm,
            "effect": effect.as_str(),
            "description": description,
            "risk": risk.map(RiskLevel::as_str),
        });
        // Only when set, so policies without them keep their hash.
        if !notify.is_empty()
            && let Value::Object(m) = &mut norm
        {
            m.insert("notify".into(), json!(notify));
        }
        if shadow && let Value::Object(m) = &mut norm {
            m.insert("mode".into(), json!("shadow"));
        }
        if approvals_required > 1
            && let Value::Object(m) = &mut norm
        {
            m.insert("approvals_required".into(), json!(approvals_required));
        }
        let rule = Rule {
            id,
            rule_ref: self.rule_ref(node.pos),
            conds,
            effect,
            description,
            risk,
            notify,
            shadow,
            approvals_required,
            tool: tool.unwrap_or(NamePat::Any),
            op: op.unwrap_or(NamePat::Any),
        };
        Ok((rule, norm, id_pos))
    }

    /// Parses a `match` / `when` mapping into conditions, in the order written.
    pub(super) fn conds(
        &self,
        node: &Node,
        what: &str,
        kind: &str,
    ) -> Result<(Vec<Cond>, Value), PolicyError> {
        let entries = self.map(node, what)?;
        if entries.is_empty() {
            return Err(self.err(
                node.pos,
                format!("{what} is empty: say what it applies to (use `tool: \"*\"` for every call)"),
            ));
        }
        self.check_keys(entries, MATCH_KEYS, kind)?;
        let has = |name: &str| entries.iter().find(|(k, _)| k.name == name);
        if let (Some(_), Some((k, _))) = (has("op"), has("operation")) {
            return Err(self.err(k.pos, "`op` and `operation` are the same key: keep one"));
        }
        match (has("field"), has("value")) {
            (Some(_), None) => {
                return Err(self.err(node.pos, format!("{what} has `field` without `value`")));
            }
            (None, Some((k, _))) => {
                return Err(self.err(k.pos, format!("{what} has `value` without `field`")));
            }
            _ => {}
        }
        let mut conds = Vec::with_capacity(entries.len());
        let mut norm = Map::new();
        for (key, value) in entries {
            let what = format!("`{}`", key.name);
            let cond = match key.name.as_str() {
                "tool" => Cond::Tool(self.name_pat(value, &what)?),
                "op" | "operation" => Cond::Op(self.name_pat(value, &what)?),
                "agent_id" => {
                    let text = self.string(value, &what)?;
                    Cond::AgentId(NamePat::new(&text))
                }
                "contains" => Cond::Contains(self.string(value, &what)?),
                "pattern" => {
                    let text = self.string(value, &what)?;
                    let regex =
                        RegexBuilder::new(&text).size_limit(REGEX_SIZE_LIMIT).build().map_err(|e| {
                            let detail = e.to_string();
                            let last = detail.lines().last().unwrap_or("").trim();
                            let last = last.strip_prefix("error: ").unwrap_or(last);
                            self.err(value.pos, format!("invalid `pattern` `{text}`: {last}"))
                        })?;
                    Cond::Pattern(regex)
                }
                "amount_gt" => Cond::Amount(Cmp::Gt, self.number(value, &what)?),
                "amount_lt" => Cond::Amount(Cmp::Lt, self.number(value, &what)?),
                "amount_gte" => Cond::Amount(Cmp::Gte, self.number(value, &what)?),
                "amount_lte" => Cond::Amount(Cmp::Lte, self.number(value, &what)?),
                "path_contains" => Cond::PathContains(self.string(value, &what)?),
                "path_starts_with" => Cond::PathStartsWith(self.string(value, &what)?),
                "path_ends_with" => Cond::PathEndsWith(self.string(value, &what)?),
                "method" => Cond::Method(self.string(value, &what)?.to_lowercase()),
                "branch" => Cond::Branch(self.string(value, &what)?),
                "field" => {
                    let path = self.string(value, &what)?;
                    if path.is_empty() || path.split('.').any(str::is_empty) {
                        return Err(self.err(
                            value.pos,
                            format!("`field` `{path}` is not a dotted path like `customer.tier`"),
                        ));
                    }
                    let expected = match has("value") {
                        Some((_, v)) => self.json_value(v)?,
                        None => Value::Null,
                    };
                    Cond::Field(path.split('.').map(str::to_owned).collect(), expected)
                }
                "command" => Cond::Command(self.command(value)?),
                "after" => Cond::After(self.after(value)?),
                "detect" => self.detect(value)?,
                _ => continue, // `value` is read together with `field`
            };
            norm.insert(cond.key().to_owned(), normalized_cond(&cond));
            conds.push(cond);
        }
        Ok((conds, Value::Object(norm)))
    }

    /// An `after:` mapping: `{tool, op?, within}`.
    fn after(&self, node: &Node) -> Result<After, PolicyError> {
        let entries = self.map(node, "`after`")?;
        self.check_keys(entries, &["tool", "op", "operation", "within"], "after")?;
        let get = |name: &str| entries.iter().find(|(k, _)| k.name == name).map(|(_, v)| v);
        let tool = match get("tool") {
            Some(v) => self.name_pat(v, "`after.tool`")?,
            None => return Err(self.err(node.pos, "`after` needs `tool`: the earlier call's tool")),
        };
        let op = match get("op").or_else(|| get("operation")) {
            Some(v) => self.name_pat(v, "`after.op`")?,
            None => NamePat::Any,
        };
        let Some(within) = get("within") else {
            return Err(
                self.err(node.pos, "`after` needs `within`: how recent the earlier call must be (10m, 1h)")
            );
        };
        let text = self.string(within, "`after.within`")?;
        let secs = super::parse_duration(&text).filter(|s| *s > 0).ok_or_else(|| {
            self.err(within.pos, format!("`after.within` `{text}` is not a duration such as 10m or 1h"))
        })?;
        let within_ms = secs.saturating_mul(1000);
        if within_ms > MAX_AFTER_WITHIN_MS {
            return Err(self.err(
                within.pos,
                format!("`after.within` `{text}` is over 24h, the longest the daemon remembers"),
            ));
        }
        Ok(After { tool, op, within_ms })
    }

    /// `detect: secrets`, `detect: [pii, aws_access_key]`: detector groups or names.
    pub(super) fn detect(&self, value: &Node) -> Result<Cond, PolicyError> {
        let items: Vec<&Node> = match &value.kind {
            Kind::Seq(items) if !items.is_empty() => items.iter().collect(),
            Kind::Seq(_) => {
                return Err(self.err(value.pos, "`detect` is empty: name `secrets`, `pii` or detectors"));
            }
            _ => vec![value],
        };
        let mut set = DetectSet::NONE;
        let mut names = Vec::with_capacity(items.len());
        for item in items {
            let name = self.string(item, "a `detect` name")?;
            let Some(named) = DetectSet::named(&name) else {
                let known = DetectSet::names();
                let hint = faramesh_proto::call::suggest(&name, &known)
                    .map(|s| format!(" (did you mean `{s}`?)"))
                    .unwrap_or_default();
                return Err(self.err(
                    item.pos,
                    format!(
                        "unknown detector `{name}` in `detect`{hint}: expected one of {}",
                        known.join(", ")
                    ),
                ));
            };
            set |= named;
            names.push(name);
        }
        names.sort();
        names.dedup();
        Ok(Cond::Detect(set, names))
    }

    /// A YAML value as JSON (for `field`/`value`).
    pub(super) fn json_value(&self, node: &Node) -> Result<Value, PolicyError> {
        Ok(match &node.kind {
            Kind::Null => Value::Null,
            Kind::Bool(b) => Value::Bool(*b),
            Kind::Int(i) => json!(i),
            Kind::Float(f) => {
                let n = serde_json::Number::from_f64(*f)
                    .ok_or_else(|| self.err(node.pos, "`value` must be a finite number"))?;
                Value::Number(n)
            }
            Kind::Str(s) => Value::String(s.clone()),
            Kind::Seq(items) => {
                Value::Array(items.iter().map(|n| self.json_value(n)).collect::<Result<_, _>>()?)
            }
            Kind::Map(entries) => Value::Object(
                entries
                    .iter()
                    .map(|(k, v)| Ok((k.name.clone(), self.json_value(v)?)))
                    .collect::<Result<_, PolicyError>>()?,
            ),
        })
    }
}

const RULE_KEYS: &[&str] = &[
    "id",
    "match",
    "allow",
    "deny",
    "require_approval",
    "effect",
    "description",
    "reason",
    "risk",
    "notify",
    "mode",
    "approvals_required",
];

/// The most signed approvers a rule may ask for.
pub const MAX_APPROVALS_REQUIRED: i64 = 10;

const MATCH_KEYS: &[&str] = &[
    "tool",
    "op",
    "operation",
    "agent_id",
    "contains",
    "pattern",
    "amount_gt",
    "amount_lt",
    "amount_gte",
    "amount_lte",
    "path_contains",
    "path_starts_with",
    "path_ends_with",
    "method",
    "branch",
    "field",
    "value",
    "command",
    "after",
    "detect",
];

/// Largest compiled regex accepted for `pattern` (bytes of compiled program).
const REGEX_SIZE_LIMIT: usize = 1 << 20;

fn normalized_cond(cond: &Cond) -> Value {
    match cond {
        Cond::Tool(p) | Cond::Op(p) | Cond::AgentId(p) => json!(p.as_str()),
        Cond::Contains(s)
        | Cond::PathContains(s)
        | Cond::PathStartsWith(s)
        | Cond::PathEndsWith(s)
        | Cond::Method(s)
        | Cond::Branch(s) => json!(s),
        Cond::Pattern(r) => json!(r.as_str()),
        Cond::Amount(_, bound) => serde_json::Number::from_f64(*bound).map_or(Value::Null, Value::Number),
        Cond::Field(path, value) => json!({"path": path.join("."), "value": value}),
        Cond::Command(c) => Value::Array(c.matchers.iter().map(CommandMatch::to_json).collect()),
        Cond::After(a) => json!({"tool": a.tool.as_str(), "op": a.op.as_str(), "within": a.within_ms / 1000}),
        Cond::Detect(_, names) => json!(names),
    }
}
