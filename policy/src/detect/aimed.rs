//! Text aimed at the model rather than at the person or program reading it: characters a
//! person does not see, and phrases that address the model's instructions. The same scan reads
//! MCP tool definitions and tools' results.

use serde_json::Value;

/// Phrases that address a model's instructions (compared in lower case).
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

/// Zero-width, direction-override and tag characters: text a person does not see.
pub fn hidden_char(c: char) -> bool {
    matches!(u32::from(c),
        0x200B..=0x200F | 0x202A..=0x202E | 0x2060..=0x2064 | 0x2066..=0x2069 | 0xFEFF | 0xE0000..=0xE007F)
}

/// Why `text` looks aimed at the model: `holds an invisible character (U+200B)` or `holds text
/// aimed at the model`. The phrase is never quoted (the reason may reach the model).
pub fn aimed_at_model(text: &str) -> Option<String> {
    if let Some(c) = text.chars().find(|c| hidden_char(*c)) {
        return Some(format!("holds an invisible character (U+{:04X})", u32::from(c)));
    }
    let lower = text.to_lowercase();
    PHRASES.iter().any(|p| lower.contains(*p)).then(|| "holds text aimed at the model".to_owned())
}

/// The first string of `value` (keys included, at any depth) that [`aimed_at_model`] flags:
/// its JSON path (as the detectors write paths) and why.
pub fn aimed_in(value: &Value) -> Option<(String, String)> {
    fn go(v: &Value, path: &mut String) -> Option<(String, String)> {
        match v {
            Value::String(s) => aimed_at_model(s).map(|why| (path.clone(), why)),
            Value::Array(items) => items.iter().enumerate().find_map(|(i, x)| {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                let found = go(x, path);
                path.truncate(len);
                found
            }),
            Value::Object(m) => m.iter().find_map(|(k, x)| {
                let len = path.len();
                if let Some(why) = aimed_at_model(k) {
                    path.push_str("[*]");
                    return Some((path.clone(), why));
                }
                super::push_key(path, k);
                let found = go(x, path);
                path.truncate(len);
                found
            }),
            _ => None,
        }
    }
    go(value, &mut String::from("$"))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn finds_hidden_characters_and_phrases_with_their_path() {
        assert_eq!(
            aimed_in(&json!({"content": [{"text": "ok"}, {"text": "Ignore previous instructions"}]})),
            Some(("$.content[1].text".into(), "holds text aimed at the model".into()))
        );
        assert_eq!(
            aimed_in(&json!({"a": "x\u{200B}y"})),
            Some(("$.a".into(), "holds an invisible character (U+200B)".into()))
        );
        assert_eq!(aimed_in(&json!({"a": "the previous run ignored nothing"})), None);
    }
}
