//! Validation and compilation: from YAML text to a [`Policy`], or the first problem found as
//! `path:line:column: message` (with a suggestion when a key looks misspelled).

use std::collections::HashMap;

use faramesh_proto::{Effect, RiskLevel, canonical_json, is_identifier};
use regex::RegexBuilder;
use serde_json::{Map, Value, json};

use super::command::{CommandCond, CommandMatch, Flag};
use super::model::{
    Approvals, Approver, Budget, Channel, ChannelKind, Cmp, Commands, Cond, Email, EmailTls, Index, Mcp,
    NamePat, Notifications, Period, Policy, Profile, RateLimit, RiskRule, Rule, RuleSet, SecretRef,
    Unresolved,
};
use super::yaml::{self, Key, Kind, Node, Pos};

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
];
const COMMANDS_KEYS: &[&str] = &["unresolved"];
const NOTIFICATION_KEYS: &[&str] =
    &["channels", "on_defer", "on_deny", "deny_min_risk", "remind_every", "escalate_after", "escalate_to"];
/// How many times a notification is tried by default, and at most.
pub const DEFAULT_CHANNEL_ATTEMPTS: u32 = 8;
const MAX_CHANNEL_ATTEMPTS: u32 = 20;
const CHANNEL_KEYS: &[&str] = &[
    "type",
    "attempts",
    "url",
    "url_env",
    "url_file",
    "secret_env",
    "secret_file",
    "smtp",
    "tls",
    "from",
    "to",
    "username_env",
    "username_file",
    "password_env",
    "password_file",
];
const RETENTION_KEYS: &[&str] = &["max_age", "archive_dir"];
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
];
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
];
const COMMAND_KEYS: &[&str] = &["program", "flags", "args", "writes"];
const RISK_KEYS: &[&str] = &["rules"];
const RISK_RULE_KEYS: &[&str] = &["name", "when", "risk_level", "description"];
const PROFILE_KEYS: &[&str] = &["tools", "rules", "rate_limit", "budget", "uid", "description"];
const BUDGET_KEYS: &[&str] = &["max_calls", "per", "on_exceed"];
const APPROVAL_KEYS: &[&str] = &["approvers", "expire_after", "allow_same_uid"];
const MCP_KEYS: &[&str] = &["gateways", "quarantine"];

/// Largest compiled regex accepted for `pattern` (bytes of compiled program).
const REGEX_SIZE_LIMIT: usize = 1 << 20;

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
        Ok(Policy {
            uses_commands,
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

    /// The `commands:` section.
    fn commands(&self, node: &Node) -> Result<Commands, PolicyError> {
        let entries = self.map(node, "`commands`")?;
        self.check_keys(entries, COMMANDS_KEYS, "commands")?;
        let mut commands = Commands::default();
        for (key, value) in entries {
            if key.name == "unresolved" {
                let text = self.string(value, "`unresolved`")?;
                commands.unresolved = match text.as_str() {
                    "defer" => Unresolved::Defer,
                    "deny" => Unresolved::Deny,
                    _ => {
                        return Err(self.err(
                            value.pos,
                            format!("unknown `unresolved` `{text}`: expected `defer` or `deny`"),
                        ));
                    }
                };
            }
        }
        Ok(commands)
    }

    /// A list of channel names (each must be defined in `channels`, checked by the caller).
    fn channel_names(&self, node: &Node, what: &str) -> Result<Vec<(String, Pos)>, PolicyError> {
        let mut out = Vec::new();
        for item in self.seq(node, what)? {
            out.push((self.string(item, &format!("a channel name in {what}"))?, item.pos));
        }
        Ok(out)
    }

    fn notifications(&self, node: &Node) -> Result<(Notifications, Value), PolicyError> {
        let entries = self.map(node, "`notifications`")?;
        self.check_keys(entries, NOTIFICATION_KEYS, "notifications")?;
        let mut n = Notifications::default();
        let mut refs: Vec<(String, Pos)> = Vec::new();
        let mut norm_channels = Map::new();
        for (key, value) in entries {
            match key.name.as_str() {
                "channels" => {
                    for (name, def) in self.map(value, "`notifications.channels`")? {
                        if !is_identifier(&name.name) {
                            return Err(self.err(
                                name.pos,
                                format!(
                                    "channel name `{}` must be letters, digits, `_`, `-` or `.`",
                                    name.name
                                ),
                            ));
                        }
                        let (channel, norm) = self.channel(&name.name, def)?;
                        n.channels.insert(name.name.clone(), channel);
                        norm_channels.insert(name.name.clone(), norm);
                    }
                }
                "on_defer" => {
                    let list = self.channel_names(value, "`on_defer`")?;
                    n.on_defer = list.iter().map(|(c, _)| c.clone()).collect();
                    refs.extend(list);
                }
                "on_deny" => {
                    let list = self.channel_names(value, "`on_deny`")?;
                    n.on_deny = list.iter().map(|(c, _)| c.clone()).collect();
                    refs.extend(list);
                }
                "escalate_to" => {
                    let list = self.channel_names(value, "`escalate_to`")?;
                    n.escalate_to = list.iter().map(|(c, _)| c.clone()).collect();
                    refs.extend(list);
                }
                "deny_min_risk" => n.deny_min_risk = self.risk_level(value, "`deny_min_risk`")?,
                "remind_every" | "escalate_after" => {
                    let text = self.string(value, &format!("`{}`", key.name))?;
                    let secs = parse_duration(&text).ok_or_else(|| {
                        self.err(
                            value.pos,
                            format!("`{}` `{text}` must look like `10m` (s, m, h, d)", key.name),
                        )
                    })?;
                    if key.name == "remind_every" {
                        n.remind_every_seconds = Some(secs);
                    } else {
                        n.escalate_after_seconds = Some(secs);
                    }
                }
                _ => {}
            }
        }
        for (name, pos) in &refs {
            if !n.channels.contains_key(name) {
                return Err(
                    self.err(*pos, format!("channel `{name}` is not defined in `notifications.channels`"))
                );
            }
        }
        if n.escalate_after_seconds.is_some() == n.escalate_to.is_empty() {
            return Err(self.err(node.pos, "`escalate_after` and `escalate_to` go together"));
        }
        let norm = json!({
            "channels": norm_channels,
            "on_defer": n.on_defer,
            "on_deny": n.on_deny,
            "deny_min_risk": n.deny_min_risk.as_str(),
            "remind_every": n.remind_every_seconds,
            "escalate_after": n.escalate_after_seconds,
            "escalate_to": n.escalate_to,
        });
        Ok((n, norm))
    }

    fn channel(&self, name: &str, node: &Node) -> Result<(Channel, Value), PolicyError> {
        let entries = self.map(node, &format!("channel `{name}`"))?;
        self.check_keys(entries, CHANNEL_KEYS, "channel")?;
        let mut kind = None;
        let mut url = None;
        let mut secret = None;
        let (mut smtp, mut tls, mut from, mut to, mut username, mut password) =
            (None, None, None, Vec::new(), None, None);
        let mut attempts = DEFAULT_CHANNEL_ATTEMPTS;
        let mut norm = Map::new();
        let secret_ref = |key: &str, text: String| {
            if key.ends_with("_env") { SecretRef::Env(text) } else { SecretRef::File(text) }
        };
        for (key, value) in entries {
            if key.name == "to" {
                for item in self.seq(value, "`to`")? {
                    let addr = self.string(item, "an address in `to`")?;
                    if !addr.contains('@') {
                        return Err(self.err(item.pos, format!("`{addr}` is not an email address")));
                    }
                    to.push(addr);
                }
                norm.insert("to".into(), json!(to));
                continue;
            }
            if key.name == "attempts" {
                let n = self.number(value, "`attempts`")?;
                if n.fract() != 0.0 || !(1.0..=f64::from(MAX_CHANNEL_ATTEMPTS)).contains(&n) {
                    return Err(self.err(
                        value.pos,
                        format!(
                            "`attempts` must be a whole number from 1 to {MAX_CHANNEL_ATTEMPTS}, found {n}"
                        ),
                    ));
                }
                attempts = n as u32;
                norm.insert("attempts".into(), json!(attempts));
                continue;
            }
            let text = self.string(value, &format!("`{}`", key.name))?;
            norm.insert(key.name.clone(), json!(text));
            match key.name.as_str() {
                "type" => {
                    kind = Some(match text.as_str() {
                        "webhook" => ChannelKind::Webhook,
                        "slack" => ChannelKind::Slack,
                        "email" => ChannelKind::Email,
                        _ => {
                            return Err(self.err(
                                value.pos,
                                format!("channel `type` `{text}` must be `webhook`, `slack` or `email`"),
                            ));
                        }
                    });
                }
                "url" | "url_env" | "url_file" => {
                    if url.is_some() {
                        return Err(self.err(key.pos, "give one of `url`, `url_env` or `url_file`"));
                    }
                    if key.name == "url" && !(text.starts_with("http://") || text.starts_with("https://")) {
                        return Err(self
                            .err(value.pos, format!("`url` `{text}` must start with http:// or https://")));
                    }
                    url = Some((key.name.clone(), text, key.pos));
                }
                "secret_env" | "secret_file" => {
                    if secret.is_some() {
                        return Err(self.err(key.pos, "give one of `secret_env` or `secret_file`"));
                    }
                    secret = Some(secret_ref(&key.name, text));
                }
                "smtp" => {
                    let (host, port) = match text.rsplit_once(':') {
                        Some((h, p)) => (h.to_owned(), p.parse::<u16>().ok()),
                        None => (text.clone(), Some(587)),
                    };
                    let Some(port) = port.filter(|_| !host.is_empty()) else {
                        return Err(
                            self.err(value.pos, format!("`smtp` `{text}` must be `host` or `host:port`"))
                        );
                    };
                    smtp = Some((host, port, value.pos));
                }
                "tls" => {
                    tls = Some((
                        match text.as_str() {
                            "starttls" => EmailTls::Starttls,
                            "tls" => EmailTls::Tls,
                            "none" => EmailTls::None,
                            _ => {
                                return Err(self.err(
                                    value.pos,
                                    format!("`tls` `{text}` must be `starttls`, `tls` or `none`"),
                                ));
                            }
                        },
                        value.pos,
                    ));
                }
                "from" => {
                    if !text.contains('@') {
                        return Err(self.err(value.pos, format!("`from` `{text}` is not an email address")));
                    }
                    from = Some(text);
                }
                "username_env" | "username_file" => username = Some(secret_ref(&key.name, text)),
                "password_env" | "password_file" => password = Some(secret_ref(&key.name, text)),
                _ => {}
            }
        }
        let Some(kind) = kind else {
            return Err(self
                .err(node.pos, format!("channel `{name}` needs a `type` (`webhook`, `slack` or `email`)")));
        };
        if kind == ChannelKind::Email {
            let Some((host, port, smtp_pos)) = smtp else {
                return Err(self.err(node.pos, format!("email channel `{name}` needs `smtp` (`host:port`)")));
            };
            let Some(from) = from else {
                return Err(self.err(node.pos, format!("email channel `{name}` needs `from`")));
            };
            if to.is_empty() {
                return Err(
                    self.err(node.pos, format!("email channel `{name}` needs `to` (a list of addresses)"))
                );
            }
            let tls_mode = tls.map_or(EmailTls::Starttls, |(t, _)| t);
            let loopback =
                host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
            if tls_mode == EmailTls::None && !loopback {
                return Err(self.err(
                    tls.map_or(smtp_pos, |(_, p)| p),
                    "`tls: none` is only for a mail server on a loopback address (the message and any password would cross the network in clear)",
                ));
            }
            let email = Email { host, port, tls: tls_mode, from, to, username, password };
            return Ok((
                Channel { kind, url: None, secret: None, email: Some(email), attempts },
                Value::Object(norm),
            ));
        }
        let Some((how, text, pos)) = url else {
            return Err(self.err(node.pos, format!("channel `{name}` needs `url`, `url_env` or `url_file`")));
        };
        let url = match how.as_str() {
            // A Slack webhook URL is itself the secret: never in the policy file.
            "url" if kind == ChannelKind::Slack => {
                return Err(
                    self.err(pos, "a Slack webhook URL is a secret: give `url_env` or `url_file`, not `url`")
                );
            }
            "url" => SecretRef::Literal(text),
            "url_env" => SecretRef::Env(text),
            _ => SecretRef::File(text),
        };
        if kind == ChannelKind::Webhook && secret.is_none() {
            return Err(self.err(
                node.pos,
                format!(
                    "webhook channel `{name}` needs `secret_env` or `secret_file` (its deliveries are signed)"
                ),
            ));
        }
        Ok((Channel { kind, url: Some(url), secret, email: None, attempts }, Value::Object(norm)))
    }

    fn retention(&self, node: &Node) -> Result<(crate::Retention, Value), PolicyError> {
        let entries = self.map(node, "`retention`")?;
        self.check_keys(entries, RETENTION_KEYS, "retention")?;
        let mut max_age = None;
        let mut archive_dir = None;
        for (key, value) in entries {
            match key.name.as_str() {
                "max_age" => {
                    let text = self.string(value, "`max_age`")?;
                    max_age = Some(parse_duration(&text).ok_or_else(|| {
                        self.err(value.pos, format!("`max_age` `{text}` must look like `90d` (s, m, h, d)"))
                    })?);
                }
                "archive_dir" => {
                    let dir = self.string(value, "`archive_dir`")?;
                    if !dir.starts_with('/') {
                        return Err(
                            self.err(value.pos, format!("`archive_dir` `{dir}` must be an absolute path"))
                        );
                    }
                    archive_dir = Some(dir);
                }
                _ => {}
            }
        }
        let Some(max_age_seconds) = max_age else {
            return Err(self.err(node.pos, "`retention` needs `max_age` (for example `max_age: 90d`)"));
        };
        let norm = json!({"max_age": max_age_seconds, "archive_dir": archive_dir});
        Ok((crate::Retention { max_age_seconds, archive_dir }, norm))
    }

    fn rules(&self, node: &Node, what: &str, agent: Option<&str>) -> Result<(RuleSet, Value), PolicyError> {
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

    fn rule(&self, node: &Node, n: usize, agent: Option<&str>) -> Result<(Rule, Value, Pos), PolicyError> {
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
        // Only when set, so policies without it keep their hash.
        if !notify.is_empty()
            && let Value::Object(m) = &mut norm
        {
            m.insert("notify".into(), json!(notify));
        }
        let rule = Rule {
            id,
            rule_ref: self.rule_ref(node.pos),
            conds,
            effect,
            description,
            risk,
            notify,
            tool: tool.unwrap_or(NamePat::Any),
            op: op.unwrap_or(NamePat::Any),
        };
        Ok((rule, norm, id_pos))
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

    /// Parses a `match` / `when` mapping into conditions, in the order written.
    fn conds(&self, node: &Node, what: &str, kind: &str) -> Result<(Vec<Cond>, Value), PolicyError> {
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
                _ => continue, // `value` is read together with `field`
            };
            norm.insert(cond.key().to_owned(), normalized_cond(&cond));
            conds.push(cond);
        }
        Ok((conds, Value::Object(norm)))
    }

    /// `command:`: one matcher (a mapping) or a list of them (any).
    fn command(&self, node: &Node) -> Result<CommandCond, PolicyError> {
        let items: Vec<&Node> = match &node.kind {
            Kind::Seq(items) if !items.is_empty() => items.iter().collect(),
            Kind::Map(_) => vec![node],
            other => {
                return Err(self.err(
                    node.pos,
                    format!(
                        "`command` must be a mapping (`{{ program: rm, flags: [\"-r|-R\"] }}`) or a non-empty list of them, found {}",
                        other.describe()
                    ),
                ));
            }
        };
        let mut matchers = Vec::with_capacity(items.len());
        for item in items {
            let entries = self.map(item, "a `command` matcher")?;
            if entries.is_empty() {
                return Err(
                    self.err(item.pos, "a `command` matcher needs `program`, `flags`, `args` or `writes`")
                );
            }
            self.check_keys(entries, COMMAND_KEYS, "command")?;
            let mut m = CommandMatch {
                programs: Vec::new(),
                flags: Vec::new(),
                args: Vec::new(),
                writes: Vec::new(),
            };
            for (key, value) in entries {
                let names = |what: &str| -> Result<Vec<(String, Pos)>, PolicyError> {
                    match &value.kind {
                        Kind::Str(s) => Ok(vec![(s.clone(), value.pos)]),
                        Kind::Seq(list) if !list.is_empty() => {
                            list.iter().map(|n| Ok((self.string(n, what)?, n.pos))).collect()
                        }
                        other => Err(self.err(
                            value.pos,
                            format!(
                                "{what} must be a string or a non-empty list of strings, found {}",
                                other.describe()
                            ),
                        )),
                    }
                };
                match key.name.as_str() {
                    "program" => {
                        for (name, pos) in names("`program`")? {
                            if name.is_empty()
                                || name.contains('/')
                                || !name.bytes().all(|b| b.is_ascii_graphic())
                            {
                                return Err(self.err(
                                    pos,
                                    format!("`program` `{name}` must be a program's name (its basename, printable ASCII; globs allowed)"),
                                ));
                            }
                            m.programs.push(NamePat::new(&name));
                        }
                    }
                    "flags" => {
                        for (group, pos) in names("`flags`")? {
                            let alternatives: Option<Vec<Flag>> = group.split('|').map(Flag::parse).collect();
                            match alternatives {
                                Some(a) if !a.is_empty() => m.flags.push(a),
                                _ => {
                                    return Err(self.err(
                                        pos,
                                        format!("`flags` entry `{group}` must be flags like `-r`, `--force` or alternatives `-r|-R|--recursive`"),
                                    ));
                                }
                            }
                        }
                    }
                    "writes" => {
                        for (path, pos) in names("`writes`")? {
                            if path.is_empty() {
                                return Err(self.err(
                                    pos,
                                    "`writes` entries must be paths or globs (`/tmp/*`, `*.log`), not empty",
                                ));
                            }
                            m.writes.push(NamePat::new(&path));
                        }
                    }
                    _ => {
                        for (arg, _) in names("`args`")? {
                            m.args.push(NamePat::new(&arg));
                        }
                    }
                }
            }
            matchers.push(m);
        }
        Ok(CommandCond { matchers, all: false })
    }

    /// A YAML value as JSON (for `field`/`value`).
    fn json_value(&self, node: &Node) -> Result<Value, PolicyError> {
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

    fn risk(&self, node: &Node) -> Result<(Vec<RiskRule>, Value), PolicyError> {
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

    fn agents(&self, node: &Node) -> Result<(HashMap<String, Profile>, Value), PolicyError> {
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

    fn rate_limits(&self, node: &Node) -> Result<(Vec<RateLimit>, Value), PolicyError> {
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
            let text = self.string(value, "a `rate_limit` value")?;
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
            norm.insert(key.name.clone(), json!(format!("{count}/{per_seconds}s")));
            out.push(RateLimit {
                key: key.name.clone(),
                tool: NamePat::new(tool_text),
                op: NamePat::new(op_text),
                count,
                per_seconds,
            });
        }
        Ok((out, Value::Object(norm)))
    }

    fn budget(&self, node: &Node) -> Result<(Budget, Value), PolicyError> {
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
        let Some(max_calls) = max_calls else {
            return Err(self.err(node.pos, "`budget` has no `max_calls`"));
        };
        let per_name = match per {
            Period::Session => "session",
            Period::Hour => "hour",
            Period::Day => "day",
            Period::Week => "week",
        };
        let norm = json!({"max_calls": max_calls, "per": per_name, "on_exceed": on_exceed.as_str()});
        Ok((Budget { max_calls, per, on_exceed }, norm))
    }

    fn approvals(&self, node: &Node) -> Result<(Approvals, Value), PolicyError> {
        let entries = self.map(node, "`approvals`")?;
        self.check_keys(entries, APPROVAL_KEYS, "approvals")?;
        let mut approvals = Approvals::default();
        for (key, value) in entries {
            match key.name.as_str() {
                "approvers" => {
                    for item in self.seq(value, "`approvers`")? {
                        approvals.approvers.push(self.principal(item, "approver")?);
                    }
                }
                "expire_after" => {
                    let text = match &value.kind {
                        Kind::Int(i) => format!("{i}s"),
                        _ => self.string(value, "`expire_after`")?,
                    };
                    approvals.expire_after_seconds = parse_duration(&text).ok_or_else(|| {
                        self.err(
                            value.pos,
                            format!("`expire_after` `{text}` must look like `15m` (s, m, h, d)"),
                        )
                    })?;
                }
                "allow_same_uid" => approvals.allow_same_uid = self.flag(value, "`allow_same_uid`")?,
                _ => {}
            }
        }
        let approvers: Vec<String> = approvals.approvers.iter().map(principal_text).collect();
        let mut norm = json!({"approvers": approvers, "expire_after": approvals.expire_after_seconds});
        // Only when set, so policies without it keep their hash.
        if approvals.allow_same_uid
            && let Value::Object(m) = &mut norm
        {
            m.insert("allow_same_uid".into(), Value::Bool(true));
        }
        Ok((approvals, norm))
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

    fn mcp(&self, node: &Node) -> Result<(Mcp, Value), PolicyError> {
        let entries = self.map(node, "`mcp`")?;
        self.check_keys(entries, MCP_KEYS, "mcp")?;
        let mut mcp = Mcp::default();
        let mut norm = Map::new();
        for (key, value) in entries {
            match key.name.as_str() {
                "gateways" => {
                    for item in self.seq(value, "`mcp.gateways`")? {
                        mcp.gateways.push(self.principal(item, "MCP gateway")?);
                    }
                }
                "quarantine" => {
                    let text = self.string(value, "`mcp.quarantine`")?;
                    mcp.quarantine = match text.as_str() {
                        "defer" => Effect::Defer,
                        "deny" => Effect::Deny,
                        _ => {
                            return Err(self.err(
                                value.pos,
                                format!("unknown `mcp.quarantine` `{text}`: expected `defer` or `deny`"),
                            ));
                        }
                    };
                    norm.insert("quarantine".into(), json!(text));
                }
                _ => {}
            }
        }
        let gateways: Vec<String> = mcp.gateways.iter().map(principal_text).collect();
        norm.insert("gateways".into(), json!(gateways));
        Ok((mcp, Value::Object(norm)))
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
    }
}

/// The allowed key closest to `input`, if it is close enough to be a likely typo.
fn suggest<'a>(input: &str, allowed: &[&'a str]) -> Option<&'a str> {
    faramesh_proto::call::suggest(input, allowed)
}
