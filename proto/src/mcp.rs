//! The MCP gateway's (`faramesh mcp`) one rule for reading and writing messages, shared by the
//! stdio and HTTP modes: a message is relayed only as the proxy itself re-serializes what it
//! parsed strictly, never as the bytes it received. Whatever another parser could read differently (a carriage
//! return or other separator inside a line, a duplicate key, a batch, invalid UTF-8, a number
//! serde cannot hold, nesting deeper than 128 levels) is refused before any decision.
//!
//! Framing (stdio): a message is one line ended by `\n` (an optional `\r` before it is the line
//! ending too). Inside a line every control character but the tab is refused: raw control
//! characters are never valid inside JSON strings, so in a valid message they could only be
//! whitespace that another reader might take for a line break. Output is ASCII only (every
//! other character written as a `\u` escape), so no reader can find a separator in it either.

use serde_json::{Map, Value};

/// JSON-RPC: the text is not JSON.
pub const PARSE_ERROR: i32 = -32700;
/// JSON-RPC: not a request the proxy relays (batch, id-less call, not an object).
pub const INVALID_REQUEST: i32 = -32600;
/// JSON-RPC: a `tools/call` whose params are malformed.
pub const INVALID_PARAMS: i32 = -32602;

/// Why a message was refused: the JSON-RPC error to answer with (to `id`, `null` when unknown).
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    /// The request id the error answers, when the message had a usable one.
    pub id: Value,
    /// The JSON-RPC error code.
    pub code: i32,
    /// For a person.
    pub message: String,
}

impl Refusal {
    fn new(id: Value, code: i32, message: impl Into<String>) -> Refusal {
        Refusal { id, code, message: message.into() }
    }

    /// The JSON-RPC error response.
    pub fn to_json(&self) -> Value {
        serde_json::json!({
            "jsonrpc": "2.0",
            "id": self.id,
            "error": {"code": self.code, "message": self.message},
        })
    }
}

/// A message the proxy may relay, as parsed.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// A `tools/call` request: decided before it goes anywhere.
    ToolsCall {
        /// Its id (a string or a number).
        id: Value,
        /// The tool's name.
        name: String,
        /// Its arguments (an object; `{}` when absent).
        arguments: Map<String, Value>,
        /// The whole message.
        msg: Map<String, Value>,
    },
    /// A `tools/list` request (its result may be filtered).
    ToolsList {
        /// Its id.
        id: Value,
        /// The whole message.
        msg: Map<String, Value>,
    },
    /// Anything else: a request, notification or response relayed as re-serialized.
    Other(Map<String, Value>),
}

impl Message {
    /// The message as parsed.
    pub fn body(&self) -> &Map<String, Value> {
        match self {
            Message::ToolsCall { msg, .. } | Message::ToolsList { msg, .. } | Message::Other(msg) => msg,
        }
    }
}

/// Checks a line's bytes (without its `\n`) against the framing rule and returns the text.
pub fn frame(line: &[u8]) -> Result<&str, Refusal> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if let Some(at) = line.iter().position(|b| *b < 0x20 && *b != b'\t') {
        return Err(Refusal::new(
            Value::Null,
            INVALID_REQUEST,
            format!(
                "control character 0x{:02x} at byte {at} inside a message: messages are one line ended by \\n and are not relayed with other separators",
                line[at]
            ),
        ));
    }
    std::str::from_utf8(line).map_err(|e| {
        Refusal::new(Value::Null, PARSE_ERROR, format!("parse error: the message is not UTF-8 ({e})"))
    })
}

/// Parses one message strictly: JSON with no duplicate key, a single object (no batch).
pub fn parse(text: &str) -> Result<Message, Refusal> {
    let value = crate::parse_strict(text.as_bytes())
        .map_err(|e| Refusal::new(Value::Null, PARSE_ERROR, format!("parse error: {e}")))?;
    let msg = match value {
        Value::Object(m) => m,
        Value::Array(_) => {
            return Err(Refusal::new(
                Value::Null,
                INVALID_REQUEST,
                "JSON-RPC batches are not relayed: send each message on its own line",
            ));
        }
        _ => return Err(Refusal::new(Value::Null, INVALID_REQUEST, "a message must be a JSON object")),
    };
    let id = match msg.get("id") {
        None => None,
        Some(id @ (Value::String(_) | Value::Number(_))) => Some(id.clone()),
        Some(Value::Null) => Some(Value::Null),
        Some(_) => {
            return Err(Refusal::new(Value::Null, INVALID_REQUEST, "`id` must be a string or a number"));
        }
    };
    let method = match msg.get("method") {
        None => return Ok(Message::Other(msg)),
        Some(Value::String(m)) => m.as_str(),
        Some(_) => {
            return Err(Refusal::new(
                id.unwrap_or(Value::Null),
                INVALID_REQUEST,
                "`method` must be a string",
            ));
        }
    };
    match method {
        "tools/call" => {
            let id = match id {
                Some(id) if !id.is_null() => id,
                _ => {
                    return Err(Refusal::new(
                        Value::Null,
                        INVALID_REQUEST,
                        "a `tools/call` without an `id` is not relayed: every call is decided and answered",
                    ));
                }
            };
            let params = match msg.get("params") {
                Some(Value::Object(p)) => p,
                _ => {
                    return Err(Refusal::new(
                        id,
                        INVALID_PARAMS,
                        "`params` of `tools/call` must be an object",
                    ));
                }
            };
            let name = match params.get("name") {
                Some(Value::String(n)) => n.clone(),
                _ => {
                    return Err(Refusal::new(
                        id,
                        INVALID_PARAMS,
                        "`params.name` of `tools/call` must be a string",
                    ));
                }
            };
            let arguments = match params.get("arguments") {
                None | Some(Value::Null) => Map::new(),
                Some(Value::Object(a)) => a.clone(),
                Some(_) => {
                    return Err(Refusal::new(
                        id,
                        INVALID_PARAMS,
                        "`params.arguments` of `tools/call` must be an object",
                    ));
                }
            };
            Ok(Message::ToolsCall { id, name, arguments, msg })
        }
        "tools/list" => match id {
            Some(id) if !id.is_null() => Ok(Message::ToolsList { id, msg }),
            _ => Ok(Message::Other(msg)),
        },
        _ => Ok(Message::Other(msg)),
    }
}

/// Frames and parses one line.
pub fn read(line: &[u8]) -> Result<Message, Refusal> {
    parse(frame(line)?)
}

/// Parses an HTTP request body (framed by its length, so JSON whitespace, line breaks
/// included, is only whitespace).
pub fn read_body(body: &[u8]) -> Result<Message, Refusal> {
    let text = std::str::from_utf8(body).map_err(|e| {
        Refusal::new(Value::Null, PARSE_ERROR, format!("parse error: the body is not UTF-8 ({e})"))
    })?;
    parse(text)
}

/// Writes a value as JSON on one line of ASCII (every non-ASCII character escaped).
pub fn encode(value: &Value) -> String {
    let mut out = Vec::with_capacity(128);
    let mut ser = serde_json::Serializer::with_formatter(&mut out, Ascii);
    // Serializing a `Value` into a Vec fails only for a non-string map key, which a Value
    // cannot hold.
    if serde::Serialize::serialize(value, &mut ser).is_err() {
        return "null".to_owned();
    }
    // Only ASCII was written.
    String::from_utf8(out).unwrap_or_default()
}

/// Encodes an object.
pub fn encode_map(map: &Map<String, Value>) -> String {
    encode(&Value::Object(map.clone()))
}

/// serde_json's compact formatter, escaping every character outside ASCII.
struct Ascii;

impl serde_json::ser::Formatter for Ascii {
    fn write_string_fragment<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> std::io::Result<()> {
        let mut start = 0;
        for (i, c) in fragment.char_indices() {
            if c.is_ascii() {
                continue;
            }
            writer.write_all(&fragment.as_bytes()[start..i])?;
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                write!(writer, "\\u{unit:04x}")?;
            }
            start = i + c.len_utf8();
        }
        writer.write_all(&fragment.as_bytes()[start..])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_call_hidden_behind_a_carriage_return_is_refused() {
        // Regression: one JSON object (a ping) to us, two lines to a reader that splits at \r.
        let line = b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\",\"x\":\r{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"tools/call\",\"params\":{\"name\":\"delete_file\",\"arguments\":{\"path\":\"/\"}}}\r}";
        let e = read(line).unwrap_err();
        assert_eq!(e.code, INVALID_REQUEST);
        assert!(e.message.contains("0x0d"), "{}", e.message);
        for sep in [b'\0', 0x0b, 0x0c, 0x1c, 0x1e] {
            let line = format!("{{\"method\":\"ping\",\"id\":1{}}}", sep as char);
            assert!(read(line.as_bytes()).is_err(), "separator 0x{sep:02x} let through");
        }
        // A CRLF line ending is the line ending; a tab is whitespace.
        assert!(matches!(read(b"{\"method\":\"ping\",\t\"id\":1}\r"), Ok(Message::Other(_))));
    }

    #[test]
    fn batches_id_less_calls_and_odd_arguments_are_refused() {
        let batch = br#"[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"delete_file"}}]"#;
        assert!(read(batch).unwrap_err().message.contains("batches"));
        let no_id = br#"{"jsonrpc":"2.0","method":"tools/call","params":{"name":"delete_file"}}"#;
        assert!(read(no_id).unwrap_err().message.contains("without an `id`"));
        let null_id = br#"{"jsonrpc":"2.0","id":null,"method":"tools/call","params":{"name":"x"}}"#;
        assert!(read(null_id).is_err());
        let array_args =
            br#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"x","arguments":["x"]}}"#;
        let e = read(array_args).unwrap_err();
        assert_eq!((e.id.clone(), e.code), (json!(7), INVALID_PARAMS));
        let no_name = br#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"arguments":{}}}"#;
        assert!(read(no_name).is_err());
        let dup = br#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"read_file","name":"delete_file"}}"#;
        assert_eq!(read(dup).unwrap_err().code, PARSE_ERROR);
        assert!(read(br#"{"method":"tools/call","id":{"a":1},"params":{"name":"x"}}"#).is_err());
        assert!(read(br#"{"method":7,"id":1}"#).is_err());
        assert!(read(b"\"just a string\"").is_err());
    }

    #[test]
    fn what_other_parsers_accept_and_serde_does_not_is_refused() {
        // NaN, lone surrogates and deep nesting: Python's json reads all three.
        let nan =
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","_meta":{"n":NaN}}}"#;
        assert_eq!(read(nan).unwrap_err().code, PARSE_ERROR);
        let surrogate = br#"{"jsonrpc":"2.0","id":1,"method":"ping","x":"\ud800"}"#;
        assert_eq!(read(surrogate).unwrap_err().code, PARSE_ERROR);
        let deep = format!(
            "{{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{{\"name\":\"x\",\"_meta\":{}{}}}}}",
            "[".repeat(200),
            "]".repeat(200)
        );
        assert_eq!(read(deep.as_bytes()).unwrap_err().code, PARSE_ERROR);
        assert!(read(b"\xff{}").is_err());
    }

    #[test]
    fn a_call_is_read_and_written_back_as_ascii() {
        let line = "{\"jsonrpc\":\"2.0\",\"id\":\"a\",\"method\":\"tools/call\",\"params\":{\"name\":\"read_file\",\"arguments\":{\"path\":\"/tmp/\u{2028}é😀\",\"n\":1.50}}}";
        let Message::ToolsCall { id, name, arguments, msg } = read(line.as_bytes()).unwrap() else {
            panic!("not a call")
        };
        assert_eq!((id, name.as_str()), (json!("a"), "read_file"));
        assert_eq!(arguments["path"], json!("/tmp/\u{2028}é😀"));
        let out = encode_map(&msg);
        assert!(out.is_ascii() && !out.contains('\n'));
        assert!(out.contains(r"\u2028\u00e9\ud83d\ude00"), "{out}");
        // Numbers keep their text; the written message reads back to the same value.
        assert!(out.contains("1.50"));
        assert_eq!(read(out.as_bytes()).unwrap().body(), &msg);
        let list = read(br#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#).unwrap();
        assert!(matches!(list, Message::ToolsList { .. }));
    }
}
