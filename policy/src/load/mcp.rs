//! The `mcp:` section: the MCP gateways and what quarantine does.

use faramesh_proto::Effect;
use serde_json::{Map, Value, json};

use super::{Loader, PolicyError, principal_text};
use crate::model::Mcp;
use crate::yaml::Node;

impl Loader<'_> {
    pub(super) fn mcp(&self, node: &Node) -> Result<(Mcp, Value), PolicyError> {
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

const MCP_KEYS: &[&str] = &["gateways", "quarantine"];
