//! The `agents:` section: per-agent profiles with their tools, rules, rate limits and budget.

use std::collections::HashMap;

use faramesh_proto::{Effect, is_identifier};
use serde_json::{Map, Value, json};

use super::{Entries, Loader, PolicyError};
use crate::model::{Budget, LimitScope, NamePat, Period, Profile, RateLimit, RuleSet};
use crate::yaml::{Kind, Node};

impl Loader<'_> {
    pub(super) fn agents(&self, node: &Node) -> Result<(HashMap<String, Profile>, Value), PolicyError> {
        let entries: &Entries = match &node.kind {
            Kind::Null => &[],
            _ => self.map(node, "`agents`")?,
        };
        let mut out = HashMap::new();
        let mut norm = Map::new();
        for (key, value) in entries {
            let name = key.name.clone();
            let profile_entries: &Entries = match &value.kind {
                Kind::Null => &[],
                _ => self.map(value, &format!("agent profile `{name}`"))?,
            };
            self.check_keys(profile_entries, PROFILE_KEYS, "agent profile")?;
            let mut profile = Profile {
                name: name.clone(),
                tools: None,
                tools_ref: self.rule_ref(value.pos),
                rules: RuleSet::default(),
                rate_limits: Vec::new(),
                budget: None,
                uid: None,
            };
            let mut pnorm = Map::new();
            for (pkey, pvalue) in profile_entries {
                match pkey.name.as_str() {
                    "tools" => {
                        let items = self.seq(pvalue, "`tools`")?;
                        let pats = items
                            .iter()
                            .map(|n| self.name_pat(n, "a `tools` entry"))
                            .collect::<Result<Vec<_>, _>>()?;
                        pnorm.insert(
                            "tools".into(),
                            json!(pats.iter().map(NamePat::as_str).collect::<Vec<_>>()),
                        );
                        profile.tools = Some(pats);
                        profile.tools_ref = self.rule_ref(pkey.pos);
                    }
                    "rules" => {
                        let (set, rnorm) = self.rules(pvalue, "`rules`", Some(&name))?;
                        profile.rules = set;
                        pnorm.insert("rules".into(), rnorm);
                    }
                    "rate_limit" => {
                        let (limits, lnorm) = self.rate_limits(pvalue)?;
                        profile.rate_limits = limits;
                        pnorm.insert("rate_limit".into(), lnorm);
                    }
                    "budget" => {
                        let (budget, bnorm) = self.budget(pvalue)?;
                        profile.budget = Some(budget);
                        pnorm.insert("budget".into(), bnorm);
                    }
                    "uid" => match pvalue.kind {
                        Kind::Int(i) if u32::try_from(i).is_ok() => {
                            profile.uid = u32::try_from(i).ok();
                            pnorm.insert("uid".into(), json!(i));
                        }
                        _ => return Err(self.err(pvalue.pos, "`uid` must be a numeric user id")),
                    },
                    "description" => {
                        pnorm.insert("description".into(), json!(self.string(pvalue, "`description`")?));
                    }
                    _ => {}
                }
            }
            norm.insert(name.clone(), Value::Object(pnorm));
            out.insert(name, profile);
        }
        Ok((out, Value::Object(norm)))
    }

    pub(super) fn rate_limits(&self, node: &Node) -> Result<(Vec<RateLimit>, Value), PolicyError> {
        let entries = self.map(node, "`rate_limit`")?;
        let mut out = Vec::new();
        let mut norm = Map::new();
        for (key, value) in entries {
            let (tool_text, op_text) = key.name.split_once('/').unwrap_or((&key.name, "*"));
            let check = |text: &str| {
                let stripped: String = text.chars().filter(|c| *c != '*' && *c != '?').collect();
                !text.is_empty() && (stripped.is_empty() || is_identifier(&stripped))
            };
            if !check(tool_text) || !check(op_text) {
                return Err(self.err(
                    key.pos,
                    format!("`rate_limit` key `{}` must be `tool/operation` (globs allowed)", key.name),
                ));
            }
            // `"10/minute"`, or `{limit: "10/minute", scope: fleet, on_unavailable: deny, lease: 1}`.
            let (text, scope, scope_norm) = match &value.kind {
                Kind::Map(m) => {
                    self.check_keys(m, &["limit", "scope", "on_unavailable", "lease"], "rate_limit")?;
                    let limit = m.iter().find(|(k, _)| k.name == "limit").ok_or_else(|| {
                        self.err(value.pos, "a `rate_limit` map needs `limit` (`10/minute`)")
                    })?;
                    let (scope, norm) = self.scope(m)?;
                    (self.string(&limit.1, "`limit`")?, scope, norm)
                }
                _ => (self.string(value, "a `rate_limit` value")?, LimitScope::Host, Value::Null),
            };
            let parsed = text.split_once('/').and_then(|(count, unit)| {
                let count: u32 = count.trim().parse().ok().filter(|c| *c > 0)?;
                let per_seconds = match unit.trim() {
                    "s" | "sec" | "second" => 1,
                    "m" | "min" | "minute" => 60,
                    "h" | "hour" => 3_600,
                    "d" | "day" => 86_400,
                    _ => return None,
                };
                Some((count, per_seconds))
            });
            let Some((count, per_seconds)) = parsed else {
                return Err(self.err(
                    value.pos,
                    format!(
                        "`rate_limit` value `{text}` must look like `10/minute` (second, minute, hour, day)"
                    ),
                ));
            };
            let limit_norm = json!(format!("{count}/{per_seconds}s"));
            norm.insert(
                key.name.clone(),
                if scope_norm.is_null() {
                    limit_norm
                } else {
                    json!({"limit": limit_norm, "scope": scope_norm})
                },
            );
            out.push(RateLimit {
                key: key.name.clone(),
                tool: NamePat::new(tool_text),
                op: NamePat::new(op_text),
                count,
                per_seconds,
                scope,
            });
        }
        Ok((out, Value::Object(norm)))
    }

    pub(super) fn budget(&self, node: &Node) -> Result<(Budget, Value), PolicyError> {
        let entries = self.map(node, "`budget`")?;
        self.check_keys(entries, BUDGET_KEYS, "budget")?;
        let mut max_calls = None;
        let mut per = Period::Day;
        let mut on_exceed = Effect::Deny;
        for (key, value) in entries {
            match key.name.as_str() {
                "max_calls" => match value.kind {
                    Kind::Int(i) if i > 0 => max_calls = u64::try_from(i).ok(),
                    _ => return Err(self.err(value.pos, "`max_calls` must be a positive integer")),
                },
                "per" => {
                    let text = self.string(value, "`per`")?;
                    per = match text.as_str() {
                        "session" => Period::Session,
                        "hour" => Period::Hour,
                        "day" => Period::Day,
                        "week" => Period::Week,
                        _ => {
                            return Err(self.err(
                                value.pos,
                                format!(
                                    "unknown `per` `{text}`: expected `session`, `hour`, `day` or `week`"
                                ),
                            ));
                        }
                    };
                }
                "on_exceed" => {
                    let text = self.string(value, "`on_exceed`")?;
                    on_exceed = match text.as_str() {
                        "deny" => Effect::Deny,
                        "defer" => Effect::Defer,
                        _ => {
                            return Err(self.err(
                                value.pos,
                                format!("unknown `on_exceed` `{text}`: expected `deny` or `defer`"),
                            ));
                        }
                    };
                }
                _ => {}
            }
        }
        let (scope, scope_norm) = self.scope(entries)?;
        let Some(max_calls) = max_calls else {
            return Err(self.err(node.pos, "`budget` has no `max_calls`"));
        };
        let per_name = match per {
            Period::Session => "session",
            Period::Hour => "hour",
            Period::Day => "day",
            Period::Week => "week",
        };
        let mut norm = json!({"max_calls": max_calls, "per": per_name, "on_exceed": on_exceed.as_str()});
        if !scope_norm.is_null()
            && let Value::Object(m) = &mut norm
        {
            m.insert("scope".into(), scope_norm);
        }
        Ok((Budget { max_calls, per, on_exceed, scope }, norm))
    }

    /// `scope: host|fleet`, with `on_unavailable: deny|local` and `lease: N` for the fleet.
    fn scope(&self, entries: &Entries) -> Result<(LimitScope, Value), PolicyError> {
        let get = |name: &str| entries.iter().find(|(k, _)| k.name == name);
        let fleet = match get("scope") {
            None => false,
            Some((_, v)) => match self.string(v, "`scope`")?.as_str() {
                "host" => false,
                "fleet" => true,
                other => {
                    return Err(self.err(
                        v.pos,
                        format!("unknown `scope` `{other}`: expected `host` (the default) or `fleet`"),
                    ));
                }
            },
        };
        if !fleet {
            for name in ["on_unavailable", "lease"] {
                if let Some((k, _)) = get(name) {
                    return Err(self.err(k.pos, format!("`{name}` goes with `scope: fleet`")));
                }
            }
            return Ok((LimitScope::Host, Value::Null));
        }
        let local_when_unavailable = match get("on_unavailable") {
            None => false,
            Some((_, v)) => match self.string(v, "`on_unavailable`")?.as_str() {
                "deny" => false,
                "local" => true,
                other => {
                    return Err(self.err(
                        v.pos,
                        format!(
                            "unknown `on_unavailable` `{other}`: expected `deny` (the default) or `local`"
                        ),
                    ));
                }
            },
        };
        let lease = match get("lease") {
            None => 1,
            Some((_, v)) => match &v.kind {
                Kind::Int(n) if (1..=crate::model::MAX_LEASE).contains(n) => *n as u32,
                _ => {
                    return Err(self.err(
                        v.pos,
                        format!("`lease` must be a whole number from 1 to {}", crate::model::MAX_LEASE),
                    ));
                }
            },
        };
        let norm = json!({"scope": "fleet", "on_unavailable": if local_when_unavailable { "local" } else { "deny" }, "lease": lease});
        Ok((LimitScope::Fleet { local_when_unavailable, lease }, norm))
    }
}

const PROFILE_KEYS: &[&str] = &["tools", "rules", "rate_limit", "budget", "uid", "description"];

const BUDGET_KEYS: &[&str] = &["max_calls", "per", "on_exceed", "scope", "on_unavailable", "lease"];
