//! Canonical JSON and `request_hash`, byte-for-byte what the published Python SDK
//! (`faramesh.canonicalization`) computes, so agents and the daemon agree on a call's identity.
//!
//! Rules: object keys sorted by code point, no whitespace, UTF-8 text unescaped except
//! `\" \\ \b \f \n \r \t` and `\u00XX` for other control characters, integers with all their
//! digits, floats without exponent or trailing zeros (`1.0` → `1`, `1e3` → `1000`, `-0.0` → `0`),
//! NaN and infinities refused.

use serde_json::{Map, Number, Value};
use sha2::{Digest, Sha256};

/// Why a value has no canonical form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CanonicalError {
    /// A number that is not finite once read as a float (NaN, `1e400`).
    #[error("number `{0}` is not finite: NaN and infinities are not allowed in canonical JSON")]
    NonFinite(String),
    /// A number whose text is not a JSON number at all.
    #[error("number `{0}` is not a valid JSON number")]
    BadNumber(String),
}

/// Writes the canonical JSON text of `value`.
pub fn canonical_json(value: &Value) -> Result<String, CanonicalError> {
    let mut out = String::with_capacity(64);
    write_value(&mut out, value)?;
    Ok(out)
}

/// Canonical text of a JSON number given as its source text (as kept by `arbitrary_precision`).
///
/// A number without fraction or exponent is an integer and keeps every digit (`-0` is `0`, as
/// Python's `int` reads it); anything else is read as an IEEE double, like Python's `float`.
pub fn canonical_number(text: &str) -> Result<String, CanonicalError> {
    let is_integer = !text.contains(['.', 'e', 'E']);
    if is_integer {
        let digits = text.strip_prefix('-').unwrap_or(text);
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(CanonicalError::BadNumber(text.to_owned()));
        }
        let trimmed = digits.trim_start_matches('0');
        if trimmed.is_empty() {
            return Ok("0".to_owned());
        }
        let negative = text.starts_with('-');
        return Ok(if negative { format!("-{trimmed}") } else { trimmed.to_owned() });
    }
    let float: f64 = text.parse().map_err(|_| CanonicalError::BadNumber(text.to_owned()))?;
    canonical_float(float).ok_or_else(|| CanonicalError::NonFinite(text.to_owned()))
}

/// Canonical text of a double: shortest round-trip digits, positional notation, no trailing
/// zeros, `0` for both zeros. `None` for NaN and infinities.
pub fn canonical_float(value: f64) -> Option<String> {
    if !value.is_finite() {
        return None;
    }
    if value == 0.0 {
        return Some("0".to_owned());
    }
    // Python's `repr` gives the shortest digits that round-trip and, when two candidates are
    // equally close, the even one (`1926941492282018.25` → `…018.2`). Ryu makes the same choice;
    // Rust's own `Display` rounds such ties up. Ryu's text is re-rendered positionally.
    let mut buffer = ryu::Buffer::new();
    Some(positional(buffer.format_finite(value)))
}

/// Renders Ryu's `[-]digits[.digits][e[-]exp]` without exponent or trailing zeros.
fn positional(ryu_text: &str) -> String {
    let (negative, body) = match ryu_text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, ryu_text),
    };
    let (mantissa, exp) = match body.split_once('e') {
        Some((m, e)) => (m, e.parse::<i64>().unwrap_or(0)),
        None => (body, 0),
    };
    let (int_part, frac_part) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let mut digits: String = format!("{int_part}{frac_part}");
    // Position of the decimal point, counted in digits from the left.
    let mut point = i64::try_from(int_part.len()).unwrap_or(0) + exp;
    let leading = digits.len() - digits.trim_start_matches('0').len();
    digits.drain(..leading);
    point -= i64::try_from(leading).unwrap_or(0);
    let kept = digits.trim_end_matches('0').len();
    digits.truncate(kept);
    if digits.is_empty() {
        return "0".to_owned();
    }
    let n_digits = i64::try_from(digits.len()).unwrap_or(0);
    let mut out = String::with_capacity(digits.len() + 8);
    if negative {
        out.push('-');
    }
    if point <= 0 {
        out.push_str("0.");
        out.extend(std::iter::repeat_n('0', usize::try_from(-point).unwrap_or(0)));
        out.push_str(&digits);
    } else if point >= n_digits {
        out.push_str(&digits);
        out.extend(std::iter::repeat_n('0', usize::try_from(point - n_digits).unwrap_or(0)));
    } else {
        let split = usize::try_from(point).unwrap_or(0);
        out.push_str(&digits[..split]);
        out.push('.');
        out.push_str(&digits[split..]);
    }
    out
}

/// Checks that `value` has a canonical form (every number finite) without building the text:
/// the cheap check for request validation.
pub fn check_canonical(value: &Value) -> Result<(), CanonicalError> {
    match value {
        Value::Number(n) => {
            let text = n.to_string();
            if text.contains(['.', 'e', 'E']) {
                let finite =
                    text.parse::<f64>().map_err(|_| CanonicalError::BadNumber(text.clone()))?.is_finite();
                if !finite {
                    return Err(CanonicalError::NonFinite(text));
                }
            }
            Ok(())
        }
        Value::Array(items) => items.iter().try_for_each(check_canonical),
        Value::Object(map) => map.values().try_for_each(check_canonical),
        Value::Null | Value::Bool(_) | Value::String(_) => Ok(()),
    }
}

/// SHA-256 (lower-case hex) of the canonical JSON of
/// `{agent_id, tool, operation, params, context}`: the request's identity.
pub fn request_hash(
    agent_id: &str,
    tool: &str,
    operation: &str,
    params: &Value,
    context: &Value,
) -> Result<String, CanonicalError> {
    request_hashes(agent_id, tool, operation, params, context).map(|h| h.request_hash)
}

/// The two hashes of a call, from one canonical rendering of its params.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHashes {
    /// [`request_hash`].
    pub request_hash: String,
    /// SHA-256 (lower-case hex) of the canonical JSON of `params` alone (the DPR's
    /// `params_hash`).
    pub params_hash: String,
}

/// [`request_hash`] and the params' own hash, canonicalizing the params once.
pub fn request_hashes(
    agent_id: &str,
    tool: &str,
    operation: &str,
    params: &Value,
    context: &Value,
) -> Result<RequestHashes, CanonicalError> {
    let mut out = String::with_capacity(128);
    // Keys in code point order: agent_id, context, operation, params, tool.
    out.push_str("{\"agent_id\":");
    write_string(&mut out, agent_id);
    out.push_str(",\"context\":");
    write_value(&mut out, context)?;
    out.push_str(",\"operation\":");
    write_string(&mut out, operation);
    out.push_str(",\"params\":");
    let start = out.len();
    write_value(&mut out, params)?;
    let params_hash = sha256_hex(&out.as_bytes()[start..]);
    out.push_str(",\"tool\":");
    write_string(&mut out, tool);
    out.push('}');
    Ok(RequestHashes { request_hash: sha256_hex(out.as_bytes()), params_hash })
}

/// SHA-256 of `bytes` as lower-case hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    to_hex(&Sha256::digest(bytes))
}

/// Lower-case hex of `bytes`.
pub fn to_hex(bytes: &[u8]) -> String {
    hex::encode(bytes)
}

fn write_value(out: &mut String, value: &Value) -> Result<(), CanonicalError> {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::Number(n) => out.push_str(&number_text(n)?),
        Value::String(s) => write_string(out, s),
        Value::Array(items) => {
            out.push('[');
            for (idx, item) in items.iter().enumerate() {
                if idx > 0 {
                    out.push(',');
                }
                write_value(out, item)?;
            }
            out.push(']');
        }
        Value::Object(map) => write_object(out, map)?,
    }
    Ok(())
}

fn write_object(out: &mut String, map: &Map<String, Value>) -> Result<(), CanonicalError> {
    // Sort explicitly: the map's own order depends on serde_json features chosen elsewhere.
    let mut entries: Vec<(&String, &Value)> = map.iter().collect();
    entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
    out.push('{');
    for (idx, (key, val)) in entries.into_iter().enumerate() {
        if idx > 0 {
            out.push(',');
        }
        write_string(out, key);
        out.push(':');
        write_value(out, val)?;
    }
    out.push('}');
    Ok(())
}

fn number_text(n: &Number) -> Result<String, CanonicalError> {
    canonical_number(&n.to_string())
}

/// Writes `s` as a canonical JSON string literal.
pub fn write_string(out: &mut String, s: &str) {
    out.reserve(s.len() + 2);
    out.push('"');
    // Copy runs that need no escape whole; every escaped character is ASCII, so the cuts fall
    // on character boundaries.
    let mut start = 0;
    for (i, b) in s.bytes().enumerate() {
        let escape = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            0x08 => "\\b",
            0x0c => "\\f",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x00..=0x1f => "",
            _ => continue,
        };
        out.push_str(&s[start..i]);
        if escape.is_empty() {
            out.push_str(&format!("\\u{:04x}", b));
        } else {
            out.push_str(escape);
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash_of(text: &str) -> (String, String) {
        let v: Value = serde_json::from_str(text).unwrap();
        let canon = canonical_json(&v).unwrap();
        let hash = sha256_hex(canon.as_bytes());
        (canon, hash)
    }

    #[test]
    fn vector_small_object() {
        let (canon, hash) = hash_of(r#"{"a":1}"#);
        assert_eq!(canon, r#"{"a":1}"#);
        assert_eq!(hash, "015abd7f5cc57a2dd94b7590f04ad8084273905ee33ec5cebeae62276a97f862");
    }

    #[test]
    fn vector_http_get() {
        let (_, hash) = hash_of(
            r#"{"agent_id":"test","tool":"http","operation":"get","params":{"url":"https://example.com"},"context":{}}"#,
        );
        assert_eq!(hash, "aef18e9d0014c759d9e9b91d6eca27bf34ff52bde361123c64fd17272688b0b5");
        let params: Value = serde_json::from_str(r#"{"url":"https://example.com"}"#).unwrap();
        let direct = request_hash("test", "http", "get", &params, &Value::Object(Map::new())).unwrap();
        assert_eq!(direct, hash);
    }

    #[test]
    fn vector_billing_bot() {
        let (canon, hash) = hash_of(
            r#"{"agent_id":"billing-bot","tool":"refund","operation":"process","params":{"amount":150.0,"customer_id":"cus_9","note":"naïve \"quote\"\n","tags":[true,1,null,1e3,0.1,-0.0]},"context":{"zeta":1,"alpha":{"b":2,"a":1}}}"#,
        );
        assert_eq!(
            canon,
            r#"{"agent_id":"billing-bot","context":{"alpha":{"a":1,"b":2},"zeta":1},"operation":"process","params":{"amount":150,"customer_id":"cus_9","note":"naïve \"quote\"\n","tags":[true,1,null,1000,0.1,0]},"tool":"refund"}"#
        );
        assert_eq!(hash, "96ac9fdcfb8edfdd6e206af32079b4f9ebdbff00a359c9f440bae416daf3132c");
    }

    #[test]
    fn big_integers_keep_every_digit() {
        let (canon, _) = hash_of(r#"[123456789012345678901234567890,-98765432109876543210,-0]"#);
        assert_eq!(canon, "[123456789012345678901234567890,-98765432109876543210,0]");
    }

    #[test]
    fn floats_are_positional_without_trailing_zeros() {
        let (canon, _) = hash_of(r#"[1.5e-7,123456.789,-0.0,1e21,2.50,1E2]"#);
        assert_eq!(canon, "[0.00000015,123456.789,0,1000000000000000000000,2.5,100]");
    }

    #[test]
    fn non_finite_numbers_are_refused() {
        let v: Value = serde_json::from_str(r#"{"x":1e400}"#).unwrap();
        let err = canonical_json(&v).unwrap_err();
        assert_eq!(
            err.to_string(),
            "number `1e+400` is not finite: NaN and infinities are not allowed in canonical JSON"
        );
        assert_eq!(check_canonical(&v), Err(err));
        assert_eq!(check_canonical(&serde_json::json!({"a": [1, 2.5, "x"]})), Ok(()));
        let (params, context) = (serde_json::json!({"b": 1.50, "a": "x"}), serde_json::json!({}));
        let both = request_hashes("a", "t", "o", &params, &context).unwrap();
        assert_eq!(both.request_hash, request_hash("a", "t", "o", &params, &context).unwrap());
        assert_eq!(both.params_hash, sha256_hex(canonical_json(&params).unwrap().as_bytes()));
        assert_eq!(canonical_float(f64::NAN), None);
        assert_eq!(canonical_float(f64::NEG_INFINITY), None);
    }

    #[test]
    fn float_ties_round_to_even_like_python_repr() {
        // Both `.2` and `.3` are 17-digit round-trips of 1926941492282018.25; Python picks `.2`.
        assert_eq!(canonical_float(1926941492282018.2).unwrap(), "1926941492282018.2");
        assert_eq!(canonical_float(882016314189973.2).unwrap(), "882016314189973.2");
        assert_eq!(canonical_float(5e-324).unwrap().len(), 326);
        assert_eq!(canonical_float(-1.25e-10).unwrap(), "-0.000000000125");
        assert_eq!(canonical_float(123.0).unwrap(), "123");
    }

    #[test]
    fn control_characters_are_escaped() {
        let v = Value::String("a\u{1}\u{1f}\u{7f}\u{8}\u{c}\t\r\\".to_owned());
        assert_eq!(canonical_json(&v).unwrap(), "\"a\\u0001\\u001f\u{7f}\\b\\f\\t\\r\\\\\"");
    }
}
