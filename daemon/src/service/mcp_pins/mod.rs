//! MCP tools that cannot change behind the operator's back (`docs/mcp.md#pinned-tools`).
//!
//! `faramesh mcp` reports every `tools/list` result it relays (`mcp.tools`, accepted only from
//! the peers [`Service::may_report_mcp_tools`] allows). The first listing of a server pins each
//! tool's whole definition (the SHA-256 of the canonical JSON of every field the server sent for
//! it) as trusted; afterwards a tool whose definition changed in any field, a tool the server did
//! not list before (a new or renamed one) and any tool with text aimed at the model in any of its
//! strings is **quarantined**: `govern` answers its calls DEFER (or DENY, as the policy's
//! `mcp.quarantine` says: never the reporter) `MCP_TOOL_QUARANTINED`. A quarantined pin is trusted again only by an approver (`mcp.trust`,
//! `faramesh mcp trust`), never by a later listing, whatever it holds. A server name already
//! bound to another server (two servers behind the same tool prefix) is refused. Pins are
//! `mcp_pin/<server>/<tool>` and `mcp_server/<server>` state rows, changed only with an
//! `mcp_tools` or `mcp_trust` entry in the log.

mod definition;

use std::collections::HashMap;
use std::sync::RwLock;

use serde::{Deserialize, Serialize};

use faramesh_proto::{Call, Decision, Effect, ReasonCode};
use serde_json::{Map, Value, json};

use super::{Identity, Service, ServiceError, govern, state_row};
use crate::log::{StateWrites, dpr};
use crate::policy;

use definition::legacy_hash;
pub use definition::{definition_hash, suspicious};

/// What a pinned tool's calls get.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PinStatus {
    /// Its definition is the one trusted: the policy decides its calls.
    Trusted,
    /// Its calls DEFER (or DENY) until an operator trusts the definition seen.
    Quarantined,
}

/// One tool's pin (a state row).
///
/// JSON: `{"status": "trusted"|"quarantined", "trusted_hash": "…"|null, "seen_hash": "…",
/// "reason": "…"|null, "description": "…", "hashes": 2}`. (Rows written by earlier versions may
/// hold a `deny` the reporting proxy asked for: it is ignored, what a quarantine does is the
/// policy's.)
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pin {
    /// Trusted or quarantined.
    pub status: PinStatus,
    /// The definition hash an operator (or the first listing) trusted.
    pub trusted_hash: Option<String>,
    /// The definition hash last listed.
    pub seen_hash: String,
    /// Why it is quarantined.
    pub reason: Option<String>,
    /// The description last listed (its first 200 characters), for the operator.
    #[serde(default)]
    pub description: String,
    /// What the hashes cover: 2, the whole definition; 1 (pins written before), only its
    /// name, description and input schema.
    #[serde(default = "legacy_hashes")]
    pub hashes: u8,
}

/// Pins written before every field of a definition was pinned.
fn legacy_hashes() -> u8 {
    1
}

/// The hashes of pins written now: the whole definition.
const WHOLE_DEFINITION: u8 = 2;

/// Why a tool's calls are held back from the policy's decision.
#[derive(Debug, Clone, PartialEq)]
pub enum Held {
    /// Its pin is quarantined.
    Quarantined(Pin),
    /// Its server's listings never showed it.
    Unlisted,
}

/// The pins, kept in memory (loaded from the state rows at start).
#[derive(Debug, Default)]
pub struct Pins {
    tools: RwLock<HashMap<String, Pin>>,
    servers: RwLock<HashMap<String, String>>,
}

/// A pin's key: `server/tool`. A server (tool prefix) never holds `/` ([`is_server_prefix`]),
/// so the first `/` ends it whatever the tool's name holds: no two pins share a key.
fn key(server: &str, tool: &str) -> String {
    format!("{server}/{tool}")
}

/// The server and the tool of a pin's key: split at the first `/`.
pub fn split_key(key: &str) -> (&str, &str) {
    key.split_once('/').unwrap_or((key, ""))
}

pub use faramesh_proto::is_server_prefix;

/// The refusal of a server prefix that is not one.
fn not_a_prefix(server: &str) -> ServiceError {
    let why = if faramesh_proto::is_identifier(server) {
        format!(
            "`server` `{server}` holds `/`: an MCP server's tool prefix is a tool name without `/` (pins are \
             keyed `server/tool`, and tool names may hold `/`); give the server a `--tool-prefix` without one"
        )
    } else {
        format!("`server` {} is not a tool name", shown(server))
    };
    ServiceError::invalid("server", why)
}

impl Pins {
    /// The pins the log's state rows hold.
    pub fn load(log: &crate::log::Log) -> Result<Pins, crate::log::LogError> {
        let mut tools = HashMap::new();
        for (k, v) in log.state_scan("mcp_pin/")? {
            if let (Some(rest), Ok(pin)) = (k.strip_prefix("mcp_pin/"), serde_json::from_slice::<Pin>(&v)) {
                tools.insert(rest.to_owned(), pin);
            }
        }
        let mut servers = HashMap::new();
        for (k, v) in log.state_scan("mcp_server/")? {
            if let Some(rest) = k.strip_prefix("mcp_server/") {
                servers.insert(rest.to_owned(), String::from_utf8_lossy(&v).into_owned());
            }
        }
        Ok(Pins { tools: RwLock::new(tools), servers: RwLock::new(servers) })
    }

    /// The quarantine of `server`/`tool`, if it is quarantined (the check `govern` makes).
    pub fn quarantined(&self, server: &str, tool: &str) -> Option<Pin> {
        match self.held(server, tool)? {
            Held::Quarantined(pin) => Some(pin),
            Held::Unlisted => None,
        }
    }

    /// Why calls of `server`/`tool` are held, if they are: its pin is quarantined, or `server`
    /// is an MCP server whose listings pinned tools and never this one (a tool the server did
    /// not show is one nobody could review).
    pub fn held(&self, server: &str, tool: &str) -> Option<Held> {
        let tools = self.tools.read().ok()?;
        // A tool holding `/` is no MCP server's prefix: `a/b` + `c` is not server `a`'s `b/c`.
        if tools.is_empty() || server.contains('/') {
            return None;
        }
        match tools.get(&key(server, tool)) {
            Some(p) if p.status == PinStatus::Quarantined => Some(Held::Quarantined(p.clone())),
            Some(_) => None,
            None if tools.keys().any(|k| split_key(k).0 == server) => Some(Held::Unlisted),
            None => None,
        }
    }

    /// Every pin, by `server/tool`, sorted.
    pub fn all(&self) -> Vec<(String, Pin)> {
        let mut out: Vec<(String, Pin)> = self
            .tools
            .read()
            .map(|t| t.iter().map(|(k, p)| (k.clone(), p.clone())).collect())
            .unwrap_or_default();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }
}

/// The state row of a pin.
fn pin_row(name: &str, pin: &Pin) -> Result<(String, Option<Vec<u8>>), ServiceError> {
    state_row(format!("mcp_pin/{name}"), pin)
}

/// One tool as `mcp.tools` answers it.
#[derive(Debug, Clone, Serialize)]
pub struct ToolStatus {
    /// The tool's name.
    pub name: String,
    /// Trusted or quarantined.
    pub status: PinStatus,
    /// Why it is quarantined.
    pub reason: Option<String>,
}

/// A name a server gave, as the daemon's messages quote it: the refusal reaches the model (the
/// gateway answers calls with it), so a name that is not a plain name is not quoted.
fn shown(name: &str) -> String {
    if faramesh_proto::is_identifier(name) && name.len() <= 64 {
        format!("`{name}`")
    } else {
        "(a name that is not a plain name)".to_owned()
    }
}

/// A pin written before whole definitions were pinned, read against a listed definition: when
/// its trusted hash is the old hash of this definition, it trusts this definition (every field
/// the old hash did not cover is taken as it is now, as on a first listing); any other trusted
/// hash can match no listing any more, so the tool is treated as changed.
fn upgrade(mut pin: Pin, tool: &Map<String, Value>, hash: &str) -> Pin {
    if pin.hashes < WHOLE_DEFINITION {
        if pin.trusted_hash.is_some() && pin.trusted_hash == legacy_hash(tool) {
            pin.trusted_hash = Some(hash.to_owned());
        }
        pin.hashes = WHOLE_DEFINITION;
    }
    pin
}

/// A tool's pin after a listing with definition `hash` (`flagged`: why its text cannot be
/// trusted). A listing quarantines; it never lifts a quarantine: only `mcp.trust` does.
fn next_pin(
    current: Option<&Pin>,
    server_known: bool,
    hash: &str,
    flagged: Option<String>,
    description: String,
) -> Pin {
    let quarantined = |trusted_hash: Option<String>, reason: String| Pin {
        status: PinStatus::Quarantined,
        trusted_hash,
        seen_hash: hash.to_owned(),
        reason: Some(reason),
        description: description.clone(),
        hashes: WHOLE_DEFINITION,
    };
    match current {
        // The first listing of a server is trusted as it is (trust on first use).
        None if !server_known => match flagged {
            Some(why) => quarantined(None, why),
            None => Pin {
                status: PinStatus::Trusted,
                trusted_hash: Some(hash.to_owned()),
                seen_hash: hash.to_owned(),
                reason: None,
                description,
                hashes: WHOLE_DEFINITION,
            },
        },
        None => quarantined(
            None,
            flagged.unwrap_or_else(|| {
                "the server did not list this tool when it was first trusted (a new or renamed tool)".into()
            }),
        ),
        Some(p) => {
            let same = p.trusted_hash.as_deref() == Some(hash);
            match (p.status, flagged) {
                (PinStatus::Trusted, None) if same => Pin {
                    status: PinStatus::Trusted,
                    seen_hash: hash.to_owned(),
                    reason: None,
                    description,
                    ..p.clone()
                },
                (_, Some(why)) => quarantined(p.trusted_hash.clone(), why),
                (PinStatus::Trusted, None) => {
                    quarantined(p.trusted_hash.clone(), "its definition changed since it was trusted".into())
                }
                // Quarantined: the definition trusted before, listed again, does not lift it.
                (PinStatus::Quarantined, None) => {
                    let reason = match (&p.reason, &p.trusted_hash) {
                        (Some(r), _) if same => r.clone(),
                        (_, Some(_)) => "its definition changed since it was trusted".into(),
                        (Some(r), None) => r.clone(),
                        (None, None) => "it is not trusted yet".into(),
                    };
                    quarantined(p.trusted_hash.clone(), reason)
                }
            }
        }
    }
}

impl Service {
    /// The decision for a call of a quarantined MCP tool (`None` when it is not one): DEFER, or
    /// DENY when the policy says `mcp: { quarantine: deny }`. A DENY from the policy stays as it
    /// is.
    pub(super) fn quarantine(
        &self,
        policy: &policy::Policy,
        call: &Call,
        decision: &Decision,
    ) -> Option<Decision> {
        if decision.effect == Effect::Deny {
            return None;
        }
        let reason = match self.state.mcp_pins.held(&call.tool, &call.operation)? {
            Held::Quarantined(pin) => {
                let why = pin.reason.unwrap_or_else(|| "its definition is not trusted".into());
                format!(
                    "MCP tool `{}/{}` is quarantined: {why}; an operator trusts it with `faramesh mcp trust --server {} --tool {}`",
                    call.tool, call.operation, call.tool, call.operation
                )
            }
            Held::Unlisted => format!(
                "MCP tool `{}/{}` is not in any listing of server `{}`: a tool whose definition nobody saw is held like a quarantined one",
                call.tool, call.operation, call.tool
            ),
        };
        let rule_id = Some(format!("mcp.{}.{}", call.tool, call.operation));
        Some(if policy.mcp.quarantine == Effect::Deny {
            govern::deny_with(decision.clone(), ReasonCode::McpToolQuarantined, reason, rule_id, None)
        } else {
            let mut d = policy::defer_decision(decision.clone(), ReasonCode::McpToolQuarantined, reason);
            d.rule_id = rule_id;
            if let Some(s) = d.structured_denial.as_mut() {
                s.rule_id.clone_from(&d.rule_id);
            }
            d
        })
    }

    /// `mcp.tools`: a server's `tools/list` result as the proxy relayed it. Pins what is new,
    /// quarantines what changed, and answers each tool's status. `server` is the tool name the
    /// policy sees for this server, `server_name` the name the server gave in its handshake.
    /// Only from the peers [`Service::may_report_mcp_tools`] allows; a listing with a tool that
    /// is not an object with a string `name`, or with two tools of one name, is refused whole.
    /// What a quarantine does is the policy's (`mcp.quarantine`), not the reporter's.
    pub async fn mcp_tools(
        &self,
        server: &str,
        server_name: Option<&str>,
        tools: &[Value],
        who: &Identity,
    ) -> Result<Vec<ToolStatus>, ServiceError> {
        self.may_report_mcp_tools(who)?;
        if !is_server_prefix(server) {
            return Err(not_a_prefix(server));
        }
        let mut listed: Vec<(&str, &Map<String, Value>)> = Vec::with_capacity(tools.len());
        for (i, t) in tools.iter().enumerate() {
            let Some((name, tool)) = t.as_object().and_then(|tool| Some((tool.get("name")?.as_str()?, tool)))
            else {
                return Err(ServiceError::invalid(
                    "tools",
                    format!("`tools[{i}]` is not a tool definition (an object with a string `name`)"),
                ));
            };
            if let Some(first) = listed.iter().position(|(n, _)| *n == name) {
                return Err(ServiceError::invalid(
                    "tools",
                    format!(
                        "`tools[{i}]` has the same `name` as `tools[{first}]`: a listing names each tool once"
                    ),
                ));
            }
            listed.push((name, tool));
        }
        let pins = &self.state.mcp_pins;
        let mut writes: Vec<(String, Option<Vec<u8>>)> = Vec::new();
        let mut changes = Vec::new();
        if let Some(name) = server_name {
            let bound = pins.servers.read().ok().and_then(|s| s.get(server).cloned());
            match bound {
                Some(b) if b != name => {
                    return Err(ServiceError::conflict(format!(
                        "tool prefix `{server}` is already used by MCP server {}, not {}: two servers cannot expose the same prefixed tools (give this one another `--tool-prefix`, or `faramesh mcp trust --server {server} --rebind` if the server was renamed)",
                        shown(&b),
                        shown(name)
                    )));
                }
                Some(_) => {}
                None => {
                    writes.push((format!("mcp_server/{server}"), Some(name.as_bytes().to_vec())));
                    changes.push(json!({"server_name": name}));
                }
            }
        }
        let known = pins.tools.read().map(|t| t.keys().any(|k| split_key(k).0 == server)).unwrap_or(false);
        let mut out = Vec::new();
        let mut updated: Vec<(String, Pin)> = Vec::new();
        for (name, tool) in listed {
            let (hash, unpinnable) = match definition_hash(tool) {
                Ok(h) => (h, None),
                Err((h, why)) => (h, Some(why)),
            };
            let flagged = unpinnable.or_else(|| suspicious(tool));
            let description: String = tool
                .get("description")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .chars()
                .take(200)
                .collect();
            let k = key(server, name);
            let stored = pins.tools.read().ok().and_then(|t| t.get(&k).cloned());
            let current = stored.clone().map(|p| upgrade(p, tool, &hash));
            let next = next_pin(current.as_ref(), known, &hash, flagged, description);
            out.push(ToolStatus { name: name.to_owned(), status: next.status, reason: next.reason.clone() });
            if stored.as_ref() != Some(&next) {
                changes
                    .push(json!({"tool": name, "status": next.status, "reason": next.reason, "hash": hash}));
                writes.push(pin_row(&k, &next)?);
                updated.push((k, next));
            }
        }
        if !changes.is_empty() {
            let body = dpr::event_entry(
                "mcp_tools",
                json!({"server": server, "server_name": server_name, "changes": changes, "by": who.caller()}),
            );
            let rows: StateWrites = Box::new(move |_, _| writes);
            self.commit(body, Some(rows)).await?;
            if let Ok(mut t) = pins.tools.write() {
                t.extend(updated);
            }
            if let (Some(name), Ok(mut s)) = (server_name, pins.servers.write()) {
                s.entry(server.to_owned()).or_insert_with(|| name.to_owned());
            }
        }
        Ok(out)
    }

    /// `mcp.trust`: trusts the definition last listed of `server`'s quarantined tools (or of
    /// `tool` only); `rebind` also forgets which server the name belongs to. Approvers only.
    pub async fn mcp_trust(
        &self,
        server: &str,
        tool: Option<&str>,
        rebind: bool,
        who: &Identity,
    ) -> Result<Vec<String>, ServiceError> {
        if !self.may_approve(who) {
            return Err(ServiceError::not_authorized(format!(
                "not authorized: {} may not trust MCP tools (root, the daemon's uid or an approver may)",
                who.describe()
            )));
        }
        if !is_server_prefix(server) {
            return Err(not_a_prefix(server));
        }
        let pins = &self.state.mcp_pins;
        let mut trusted: Vec<(String, Pin)> = pins
            .all()
            .into_iter()
            .filter(|(k, p)| {
                let (s, t) = split_key(k);
                s == server && p.status == PinStatus::Quarantined && tool.is_none_or(|tool| t == tool)
            })
            .collect();
        if tool.is_some() && trusted.is_empty() {
            return Err(ServiceError::not_found(format!(
                "no quarantined MCP tool `{server}/{}`",
                tool.unwrap_or_default()
            )));
        }
        let mut writes: Vec<(String, Option<Vec<u8>>)> = Vec::new();
        for (k, p) in &mut trusted {
            p.status = PinStatus::Trusted;
            p.trusted_hash = Some(p.seen_hash.clone());
            p.reason = None;
            writes.push(pin_row(k, p)?);
        }
        if rebind {
            writes.push((format!("mcp_server/{server}"), None));
        }
        let names: Vec<String> = trusted.iter().map(|(k, _)| k.clone()).collect();
        if names.is_empty() && !rebind {
            return Ok(names);
        }
        let body = dpr::event_entry(
            "mcp_trust",
            json!({"server": server, "tools": names, "rebind": rebind, "by": who.caller()}),
        );
        let rows: StateWrites = Box::new(move |_, _| writes);
        self.commit(body, Some(rows)).await?;
        if let Ok(mut t) = pins.tools.write() {
            t.extend(trusted);
        }
        if rebind && let Ok(mut s) = pins.servers.write() {
            s.remove(server);
        }
        Ok(names)
    }
}

#[cfg(test)]
mod tests;
