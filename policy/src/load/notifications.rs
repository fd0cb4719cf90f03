//! The `notifications:` section: when to notify, and each channel (webhook, Slack, email)
//! with the references to its URL, secret and credentials.

use faramesh_proto::is_identifier;
use serde_json::{Map, Value, json};

use super::{Loader, PolicyError, parse_duration};
use crate::model::{Channel, ChannelKind, Email, EmailTls, Notifications, SecretRef};
use crate::yaml::{Node, Pos};

impl Loader<'_> {
    /// A list of channel names (each must be defined in `channels`, checked by the caller).
    pub(super) fn channel_names(&self, node: &Node, what: &str) -> Result<Vec<(String, Pos)>, PolicyError> {
        let mut out = Vec::new();
        for item in self.seq(node, what)? {
            out.push((self.string(item, &format!("a channel name in {what}"))?, item.pos));
        }
        Ok(out)
    }

    pub(super) fn notifications(&self, node: &Node) -> Result<(Notifications, Value), PolicyError> {
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

    pub(super) fn channel(&self, name: &str, node: &Node) -> Result<(Channel, Value), PolicyError> {
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
}

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
