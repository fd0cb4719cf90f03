//! MCP tools that cannot change behind the operator's back (`docs/mcp.md#pinned-tools`).
//!
//! `faramesh mcp` reports every `tools/list` result it relays (`mcp.tools`). The first listing
//! of a server pins each tool's definition (the SHA-256 of the canonical JSON of its name,
//! description and input schema) as trusted; afterwards a tool whose definition changed, a tool
//! the server did not list before (a new or renamed one) and any tool whose description holds
//! text aimed at the model is **quarantined**: `govern` answers its calls DEFER (or DENY, as the
//! proxy asks) `MCP_TOOL_QUARANTINED` until an operator trusts it (`mcp.trust`, `faramesh mcp
//! trust`). A server name already bound to another server (two servers behind the same tool
//! prefix) is refused. Pins are `mcp_pin/<server>/<tool>` and `mcp_server/<server>` state rows,
//! changed only with an `mcp_tools` or `mcp_trust` entry in the log.

use std::collections::HashMap;
use std::sync::RwLock;

use serde::{Deserialize, Serialize};

use super::*;

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
/// "reason": "…"|null, "deny": false, "description": "…"}`.
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
    /// Quarantined calls are denied rather than deferred (the proxy's `--quarantine deny`).
    #[serde(default)]
    pub deny: bool,
    /// The description last listed (its first 200 characters), for the operator.
    #[serde(default)]
    pub description: String,
}

/// The pins, kept in memory (loaded from the state rows at start).
#[derive(Debug, Default)]
pub struct Pins {
    tools: RwLock<HashMap<String, Pin>>,
    servers: RwLock<HashMap<String, String>>,
}

fn key(server: &str, tool: &str) -> String {
    format!("{server}/{tool}")
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
        let tools = self.tools.read().ok()?;
        if tools.is_empty() {
            return None;
        }
        tools.get(&key(server, tool)).filter(|p| p.status == PinStatus::Quarantined).cloned()
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

/// The hash a tool's definition is pinned by: SHA-256 of the canonical JSON of
/// `{name, description, inputSchema}` (absent ones as `null`).
pub fn definition_hash(tool: &Map<String, Value>) -> String {
    let def = json!({
        "name": tool.get("name"),
        "description": tool.get("description"),
        "inputSchema": tool.get("inputSchema"),
    });
    canonical_json(&def).map(|c| faramesh_proto::canonical::sha256_hex(c.as_bytes())).unwrap_or_default()
}

/// Why a tool's description (or its schema's descriptions) looks aimed at the model rather
/// than at describing the tool: invisible or direction-changing characters, or phrases that
/// address the model's instructions.
pub fn suspicious(tool: &Map<String, Value>) -> Option<String> {
    let mut texts = Vec::new();
    collect_text(&Value::Object(tool.clone()), &mut texts);
    for text in &texts {
        if let Some(c) = text.chars().find(|c| hidden_char(*c)) {
            return Some(format!("its description holds an invisible character (U+{:04X})", u32::from(c)));
        }
        let lower = text.to_lowercase();
        const PHRASES: &[&str] = &[
            "ignore previous",
            "ignore all previous",
            "ignore the previous",
            "ignore prior",
            "ignore the above",
            "disregard previous",
            "disregard all previous",
            "do not tell the user",
            "don't tell the user",
            "without telling the user",
            "system prompt",
            "<important>",
        ];
        if let Some(p) = PHRASES.iter().find(|p| lower.contains(**p)) {
            return Some(format!("its description holds text aimed at the model (\"{p}\")"));
        }
    }
    None
}

/// Every string under a `description` or `title` key, at any depth.
fn collect_text(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                match (k.as_str(), v) {
                    ("description" | "title", Value::String(s)) => out.push(s.clone()),
                    _ => collect_text(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|i| collect_text(i, out)),
        _ => {}
    }
}

/// Zero-width, direction-override and tag characters: text a person does not see.
fn hidden_char(c: char) -> bool {
    matches!(u32::from(c),
        0x200B..=0x200F | 0x202A..=0x202E | 0x2060..=0x2064 | 0x2066..=0x2069 | 0xFEFF | 0xE0000..=0xE007F)
}

/// The state row of a pin.
fn pin_row(name: &str, pin: &Pin) -> (String, Option<Vec<u8>>) {
    (format!("mcp_pin/{name}"), serde_json::to_vec(pin).ok())
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

impl Service {
    /// The decision for a call of a quarantined MCP tool (`None` when it is not one): DEFER, or
    /// DENY when the proxy asked for it. A DENY from the policy stays as it is.
    pub(super) fn quarantine(&self, call: &Call, decision: &Decision) -> Option<Decision> {
        if decision.effect == Effect::Deny {
            return None;
        }
        let pin = self.state.mcp_pins.quarantined(&call.tool, &call.operation)?;
        let why = pin.reason.unwrap_or_else(|| "its definition is not trusted".into());
        let reason = format!(
            "MCP tool `{}/{}` is quarantined: {why}; an operator trusts it with `faramesh mcp trust --server {} --tool {}`",
            call.tool, call.operation, call.tool, call.operation
        );
        let rule_id = Some(format!("mcp.{}.{}", call.tool, call.operation));
        Some(if pin.deny {
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
    pub async fn mcp_tools(
        &self,
        server: &str,
        server_name: Option<&str>,
        tools: &[Value],
        deny: bool,
        who: &Identity,
    ) -> Result<Vec<ToolStatus>, ServiceError> {
        if matches!(who, Identity::Unknown | Identity::Anonymous) {
            return Err(ServiceError::not_authorized("not authorized: report MCP tools over the socket"));
        }
        if !faramesh_proto::is_identifier(server) {
            return Err(ServiceError::invalid("server", format!("`server` `{server}` is not a tool name")));
        }
        let pins = &self.state.mcp_pins;
        let mut writes: Vec<(String, Option<Vec<u8>>)> = Vec::new();
        let mut changes = Vec::new();
        if let Some(name) = server_name {
            let bound = pins.servers.read().ok().and_then(|s| s.get(server).cloned());
            match bound {
                Some(b) if b != name => {
                    return Err(ServiceError::conflict(format!(
                        "tool prefix `{server}` is already used by MCP server `{b}`, not `{name}`: two servers cannot expose the same prefixed tools (give this one another `--tool-prefix`, or `faramesh mcp trust --server {server} --rebind` if the server was renamed)"
                    )));
                }
                Some(_) => {}
                None => {
                    writes.push((format!("mcp_server/{server}"), Some(name.as_bytes().to_vec())));
                    changes.push(json!({"server_name": name}));
                }
            }
        }
        let known = pins
            .tools
            .read()
            .map(|t| t.keys().any(|k| k.starts_with(&format!("{server}/"))))
            .unwrap_or(false);
        let mut out = Vec::new();
        let mut updated: Vec<(String, Pin)> = Vec::new();
        for t in tools {
            let Some(tool) = t.as_object() else { continue };
            let Some(name) = tool.get("name").and_then(Value::as_str) else { continue };
            let hash = definition_hash(tool);
            let flagged = suspicious(tool);
            let description: String = tool
                .get("description")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .chars()
                .take(200)
                .collect();
            let k = key(server, name);
            let current = pins.tools.read().ok().and_then(|t| t.get(&k).cloned());
            let next = match (&current, &flagged) {
                (_, Some(why)) => Pin {
                    status: PinStatus::Quarantined,
                    trusted_hash: current.as_ref().and_then(|p| p.trusted_hash.clone()),
                    seen_hash: hash.clone(),
                    reason: Some(why.clone()),
                    deny,
                    description,
                },
                (Some(p), None) if p.trusted_hash.as_deref() == Some(hash.as_str()) => Pin {
                    status: PinStatus::Trusted,
                    seen_hash: hash.clone(),
                    reason: None,
                    deny,
                    description,
                    ..p.clone()
                },
                (Some(p), None) => Pin {
                    status: PinStatus::Quarantined,
                    trusted_hash: p.trusted_hash.clone(),
                    seen_hash: hash.clone(),
                    reason: Some(if p.trusted_hash.is_some() {
                        "its definition changed since it was trusted".into()
                    } else {
                        p.reason.clone().unwrap_or_else(|| "it is not trusted yet".into())
                    }),
                    deny,
                    description,
                },
                (None, None) if !known => Pin {
                    status: PinStatus::Trusted,
                    trusted_hash: Some(hash.clone()),
                    seen_hash: hash.clone(),
                    reason: None,
                    deny,
                    description,
                },
                (None, None) => Pin {
                    status: PinStatus::Quarantined,
                    trusted_hash: None,
                    seen_hash: hash.clone(),
                    reason: Some(
                        "the server did not list this tool when it was first trusted (a new or renamed tool)"
                            .into(),
                    ),
                    deny,
                    description,
                },
            };
            out.push(ToolStatus { name: name.to_owned(), status: next.status, reason: next.reason.clone() });
            if current.as_ref() != Some(&next) {
                changes
                    .push(json!({"tool": name, "status": next.status, "reason": next.reason, "hash": hash}));
                writes.push(pin_row(&k, &next));
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
        let pins = &self.state.mcp_pins;
        let prefix = format!("{server}/");
        let mut trusted: Vec<(String, Pin)> = pins
            .all()
            .into_iter()
            .filter(|(k, p)| {
                k.starts_with(&prefix)
                    && p.status == PinStatus::Quarantined
                    && tool.is_none_or(|t| k[prefix.len()..] == *t)
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
            writes.push(pin_row(k, p));
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
