//! Reading a tool's definition: the hash it is pinned by, and text in it aimed at the model.

use faramesh_proto::canonical_json;
use serde_json::{Map, Value, json};

/// The hash a tool's definition is pinned by: SHA-256 of the canonical JSON of the whole
/// definition, every field the server sent (`name`, `title`, `description`, `inputSchema`,
/// `outputSchema`, `annotations`, `icons`, `_meta` and any other). `Err` (with a hash of the
/// text as sent, so the pin still tells listings apart) when a number in it has no canonical
/// form: such a definition cannot be trusted.
pub fn definition_hash(tool: &Map<String, Value>) -> Result<String, (String, String)> {
    let def = Value::Object(tool.clone());
    match canonical_json(&def) {
        Ok(c) => Ok(faramesh_proto::canonical::sha256_hex(c.as_bytes())),
        Err(e) => Err((
            faramesh_proto::canonical::sha256_hex(format!("non-canonical:{def}").as_bytes()),
            format!("its definition cannot be pinned exactly ({e})"),
        )),
    }
}

/// The hash pins written before covered: `{name, description, inputSchema}`.
pub(super) fn legacy_hash(tool: &Map<String, Value>) -> Option<String> {
    let def = json!({
        "name": tool.get("name"),
        "description": tool.get("description"),
        "inputSchema": tool.get("inputSchema"),
    });
    canonical_json(&def).ok().map(|c| faramesh_proto::canonical::sha256_hex(c.as_bytes()))
}

/// Why a tool's definition looks aimed at the model rather than at describing the tool:
/// invisible or direction-changing characters, or phrases that address the model's
/// instructions, in any string of it (every value and every key, at any depth: title,
/// description, schema descriptions and titles, property names, enum values, annotations,
/// `_meta`).
pub fn suspicious(tool: &Map<String, Value>) -> Option<String> {
    const FIELDS: &[&str] =
        &["name", "title", "description", "inputSchema", "outputSchema", "annotations", "icons", "_meta"];
    for (field, value) in tool {
        // Named only when it is a field of the protocol: the reason reaches the model, in the
        // notice that replaces a quarantined tool's description, so it quotes nothing the
        // server wrote.
        let at = match FIELDS.iter().find(|f| **f == field.as_str()) {
            Some(f) => format!("its `{f}`"),
            None => "a field of its definition".to_owned(),
        };
        let mut texts = vec![field.clone()];
        collect_text(value, &mut texts);
        for text in &texts {
            // The reason reaches the model: it quotes nothing the server wrote.
            if let Some(why) = crate::policy::detect::aimed::aimed_at_model(text) {
                return Some(format!("{at} {why}"));
            }
        }
    }
    None
}

/// Every string of a value, values and keys, at any depth.
fn collect_text(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => out.push(s.clone()),
        Value::Object(m) => {
            for (k, v) in m {
                out.push(k.clone());
                collect_text(v, out);
            }
        }
        Value::Array(items) => items.iter().for_each(|i| collect_text(i, out)),
        _ => {}
    }
}
