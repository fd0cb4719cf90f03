//! The OTLP/HTTP request body for a batch of entries (`docs/fleet.md`): an
//! `ExportLogsServiceRequest` with one resource (the configured attributes, `host.name`,
//! `faramesh.log_id`), one scope (`faramesh`) and one log record per entry.
//!
//! The resource and scope are built with the `opentelemetry-proto` types; the log records,
//! thousands a second under load, are written straight to the wire with `prost`'s encoding
//! functions, with no message value, string copy or length pass per attribute in between
//! (that was most of the exporter's CPU). The tests decode the bytes with the
//! `opentelemetry-proto` types.

use std::sync::Arc;

use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::SeverityNumber;
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;
use prost::encoding::{WireType, encode_key, encode_varint, encoded_len_varint};

use super::Otlp;
use crate::log::entry;

/// The request body for `records` (`(seq, record)`, in order) of log `log_id`.
pub fn otlp_body(o: &Otlp, log_id: &str, host: &str, records: &[(u64, Arc<str>)]) -> Vec<u8> {
    let now_ns = entry::now_ms().saturating_mul(1_000_000);
    let text = |s: &str| Some(AnyValue { value: Some(any_value::Value::StringValue(s.to_owned())) });
    let kv = |k: &str, v: &str| KeyValue { key: k.to_owned(), value: text(v), ..Default::default() };
    let mut attributes: Vec<KeyValue> = o.resource.iter().map(|(k, v)| kv(k, v)).collect();
    if !o.resource.iter().any(|(k, _)| k == "host.name") {
        attributes.push(kv("host.name", host));
    }
    attributes.push(kv("faramesh.log_id", log_id));
    let resource = Resource { attributes, ..Default::default() }.encode_to_vec();
    let scope = InstrumentationScope {
        name: "faramesh".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        ..Default::default()
    }
    .encode_to_vec();

    // ScopeLogs.log_records (2), one after another.
    let mut logs = Vec::with_capacity(records.iter().map(|(_, r)| r.len() + 512).sum());
    let mut one = Vec::with_capacity(4096);
    for (seq, record) in records {
        one.clear();
        log_record(&mut one, *seq, record, now_ns);
        put_bytes(&mut logs, 2, &one);
    }
    // ExportLogsServiceRequest { resource_logs (1): ResourceLogs { resource (1), scope_logs (2):
    // ScopeLogs { scope (1), log_records (2)… } } }
    let scope_logs = field_len(scope.len()) + logs.len();
    let resource_logs = field_len(resource.len()) + field_len(scope_logs);
    let mut out = Vec::with_capacity(field_len(resource_logs));
    put_len(&mut out, 1, resource_logs);
    put_bytes(&mut out, 1, &resource);
    put_len(&mut out, 2, scope_logs);
    put_bytes(&mut out, 1, &scope);
    out.extend_from_slice(&logs);
    out
}

/// The length of a length-delimited field of `n` bytes with a one-byte key (fields 1–15).
fn field_len(n: usize) -> usize {
    1 + encoded_len_varint(n as u64) + n
}

/// The key and length of a length-delimited field whose `n` bytes follow.
fn put_len(buf: &mut Vec<u8>, field: u32, n: usize) {
    encode_key(field, WireType::LengthDelimited, buf);
    encode_varint(n as u64, buf);
}

fn put_bytes(buf: &mut Vec<u8>, field: u32, bytes: &[u8]) {
    put_len(buf, field, bytes.len());
    buf.extend_from_slice(bytes);
}

fn put_fixed64(buf: &mut Vec<u8>, field: u32, v: u64) {
    if v != 0 {
        encode_key(field, WireType::SixtyFourBit, buf);
        buf.extend_from_slice(&v.to_le_bytes());
    }
}

/// `LogRecord.attributes` (6): a `KeyValue` whose value is an `AnyValue` string.
fn attr_text(buf: &mut Vec<u8>, key: &str, value: &str) {
    let any = field_len(value.len());
    put_len(buf, 6, field_len(key.len()) + field_len(any));
    put_bytes(buf, 1, key.as_bytes());
    put_len(buf, 2, any);
    put_bytes(buf, 1, value.as_bytes());
}

/// `LogRecord.attributes` (6): a `KeyValue` whose value is an `AnyValue` int.
fn attr_int(buf: &mut Vec<u8>, key: &str, value: i64) {
    let any = 1 + encoded_len_varint(value as u64);
    put_len(buf, 6, field_len(key.len()) + 1 + encoded_len_varint(any as u64) + any);
    put_bytes(buf, 1, key.as_bytes());
    put_len(buf, 2, any);
    encode_key(3, WireType::Varint, buf);
    encode_varint(value as u64, buf);
}

/// The fields of a stored record a log record carries, read without building the whole value
/// (params and context are skipped, not copied).
#[derive(serde::Deserialize, Default)]
struct Head<'a> {
    #[serde(borrow, default)]
    kind: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    ts: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    entry_hash: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    traceparent: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    agent_id: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    tool: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    operation: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    effect: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    reason_code: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    rule_id: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    risk_level: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    id: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    request_hash: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    policy_hash: Option<std::borrow::Cow<'a, str>>,
}

/// One `LogRecord`'s fields: the body is the exact stored record; the attributes are
/// `faramesh.seq`, `faramesh.entry_hash`, `faramesh.kind`, and for a decision the agent, tool,
/// operation, effect, reason code, rule, risk, action id, request hash and policy hash; the
/// trace context is the entry's `traceparent`.
fn log_record(buf: &mut Vec<u8>, seq: u64, record: &str, now_ns: u64) {
    let h: Head<'_> = serde_json::from_str(record).unwrap_or_default();
    let kind = h.kind.as_deref().unwrap_or_default();
    let decision = kind == "decision";
    let effect = h.effect.as_deref().unwrap_or_default();
    let (severity, severity_text) = match (decision, effect) {
        (true, "DENY") => (SeverityNumber::Warn, effect),
        (true, _) => (SeverityNumber::Info, effect),
        (false, _) => (SeverityNumber::Info, kind),
    };
    let ts_ns = h.ts.as_deref().and_then(entry::parse_rfc3339).map_or(0, |ms| ms.saturating_mul(1_000_000));
    put_fixed64(buf, 1, ts_ns);
    encode_key(2, WireType::Varint, buf);
    encode_varint(severity as u64, buf);
    if !severity_text.is_empty() {
        put_bytes(buf, 3, severity_text.as_bytes());
    }
    // body (5): AnyValue { string_value (1) }
    put_len(buf, 5, field_len(record.len()));
    put_bytes(buf, 1, record.as_bytes());
    attr_int(buf, "faramesh.seq", i64::try_from(seq).unwrap_or(i64::MAX));
    attr_text(buf, "faramesh.entry_hash", h.entry_hash.as_deref().unwrap_or_default());
    attr_text(buf, "faramesh.kind", kind);
    if decision {
        for (attr, value) in [
            ("faramesh.agent_id", &h.agent_id),
            ("faramesh.tool", &h.tool),
            ("faramesh.operation", &h.operation),
            ("faramesh.effect", &h.effect),
            ("faramesh.reason_code", &h.reason_code),
            ("faramesh.rule_id", &h.rule_id),
            ("faramesh.risk_level", &h.risk_level),
            ("faramesh.action_id", &h.id),
            ("faramesh.request_hash", &h.request_hash),
            ("faramesh.policy_hash", &h.policy_hash),
        ] {
            if let Some(value) = value.as_deref() {
                attr_text(buf, attr, value);
            }
        }
    }
    if let Some((trace_id, span_id, flags)) = h.traceparent.as_deref().and_then(trace_parts) {
        if flags != 0 {
            encode_key(8, WireType::ThirtyTwoBit, buf);
            buf.extend_from_slice(&flags.to_le_bytes());
        }
        put_bytes(buf, 9, &trace_id);
        put_bytes(buf, 10, &span_id);
    }
    put_fixed64(buf, 11, now_ns);
    let event = ["faramesh.", kind].concat();
    put_bytes(buf, 12, event.as_bytes());
}

/// A traceparent's trace id (16 bytes), span id (8 bytes) and flags.
fn trace_parts(t: &str) -> Option<([u8; 16], [u8; 8], u32)> {
    if !faramesh_proto::call::is_traceparent(t) {
        return None;
    }
    let mut parts = t.split('-').skip(1);
    let (mut trace, mut span) = ([0u8; 16], [0u8; 8]);
    hex::decode_to_slice(parts.next()?, &mut trace).ok()?;
    hex::decode_to_slice(parts.next()?, &mut span).ok()?;
    let flags = u32::from_str_radix(parts.next()?, 16).ok()?;
    Some((trace, span, flags))
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
    use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};

    fn kv(k: &str, v: any_value::Value) -> KeyValue {
        KeyValue { key: k.into(), value: Some(AnyValue { value: Some(v) }), ..Default::default() }
    }

    fn text(s: &str) -> any_value::Value {
        any_value::Value::StringValue(s.into())
    }

    #[test]
    fn the_body_decodes_as_the_official_message() {
        let decision = r#"{"agent_id":"bot","effect":"DENY","entry_hash":"ab","id":"a1","kind":"decision","params":{"cmd":"rm -rf /"},"reason_code":"POLICY_DENY","seq":7,"tool":"shell","operation":"exec","traceparent":"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01","ts":"2026-12-02T10:00:00.000Z"}"#;
        let event = r#"{"entry_hash":"cd","kind":"daemon_start","seq":8,"ts":"2026-12-02T10:00:01.000Z"}"#;
        let o = Otlp {
            endpoint: "http://x/v1/logs".into(),
            headers: vec![],
            resource: vec![("service.name".into(), "faramesh".into())],
            ..Default::default()
        };
        let records = [(7, Arc::from(decision)), (8, Arc::from(event)), (9, Arc::from("not json"))];
        let bytes = otlp_body(&o, "logid", "h1", &records);
        let back = ExportLogsServiceRequest::decode(bytes.as_slice()).unwrap();
        let observed = back.resource_logs[0].scope_logs[0].log_records[0].observed_time_unix_nano;
        assert!(observed > 0);
        let ms = |ts: &str| entry::parse_rfc3339(ts).unwrap() * 1_000_000;
        let expected = ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                resource: Some(Resource {
                    attributes: vec![
                        kv("service.name", text("faramesh")),
                        kv("host.name", text("h1")),
                        kv("faramesh.log_id", text("logid")),
                    ],
                    ..Default::default()
                }),
                scope_logs: vec![ScopeLogs {
                    scope: Some(InstrumentationScope {
                        name: "faramesh".into(),
                        version: env!("CARGO_PKG_VERSION").into(),
                        ..Default::default()
                    }),
                    log_records: vec![
                        LogRecord {
                            time_unix_nano: ms("2026-12-02T10:00:00.000Z"),
                            observed_time_unix_nano: observed,
                            severity_number: SeverityNumber::Warn as i32,
                            severity_text: "DENY".into(),
                            body: Some(AnyValue { value: Some(text(decision)) }),
                            attributes: vec![
                                kv("faramesh.seq", any_value::Value::IntValue(7)),
                                kv("faramesh.entry_hash", text("ab")),
                                kv("faramesh.kind", text("decision")),
                                kv("faramesh.agent_id", text("bot")),
                                kv("faramesh.tool", text("shell")),
                                kv("faramesh.operation", text("exec")),
                                kv("faramesh.effect", text("DENY")),
                                kv("faramesh.reason_code", text("POLICY_DENY")),
                                kv("faramesh.action_id", text("a1")),
                            ],
                            flags: 1,
                            trace_id: hex::decode("4bf92f3577b34da6a3ce929d0e0e4736").unwrap(),
                            span_id: hex::decode("00f067aa0ba902b7").unwrap(),
                            event_name: "faramesh.decision".into(),
                            ..Default::default()
                        },
                        LogRecord {
                            time_unix_nano: ms("2026-12-02T10:00:01.000Z"),
                            observed_time_unix_nano: observed,
                            severity_number: SeverityNumber::Info as i32,
                            severity_text: "daemon_start".into(),
                            body: Some(AnyValue { value: Some(text(event)) }),
                            attributes: vec![
                                kv("faramesh.seq", any_value::Value::IntValue(8)),
                                kv("faramesh.entry_hash", text("cd")),
                                kv("faramesh.kind", text("daemon_start")),
                            ],
                            event_name: "faramesh.daemon_start".into(),
                            ..Default::default()
                        },
                        // A record that is not JSON still travels, as its exact text.
                        LogRecord {
                            observed_time_unix_nano: observed,
                            severity_number: SeverityNumber::Info as i32,
                            body: Some(AnyValue { value: Some(text("not json")) }),
                            attributes: vec![
                                kv("faramesh.seq", any_value::Value::IntValue(9)),
                                kv("faramesh.entry_hash", text("")),
                                kv("faramesh.kind", text("")),
                            ],
                            event_name: "faramesh.".into(),
                            ..Default::default()
                        },
                    ],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        assert_eq!(back, expected);
        // Byte for byte what prost writes for the same message.
        assert_eq!(bytes, expected.encode_to_vec());
    }

    #[test]
    fn large_values_and_seqs_keep_their_lengths() {
        let big =
            format!(r#"{{"kind":"decision","effect":"PERMIT","tool":"{}","seq":1}}"#, "t".repeat(70_000));
        let o = Otlp { resource: vec![("host.name".into(), "x".into())], ..Default::default() };
        let bytes = otlp_body(&o, "l", "ignored", &[(u64::MAX, Arc::from(big.as_str()))]);
        let back = ExportLogsServiceRequest::decode(bytes.as_slice()).unwrap();
        let r = &back.resource_logs[0].scope_logs[0].log_records[0];
        assert!(r.body == Some(AnyValue { value: Some(text(&big)) }), "the long body");
        assert_eq!(r.attributes[0], kv("faramesh.seq", any_value::Value::IntValue(i64::MAX)));
        assert!(r.attributes[3] == kv("faramesh.tool", text(&"t".repeat(70_000))), "the long tool attribute");
        let resource = back.resource_logs[0].resource.as_ref().unwrap();
        assert_eq!(resource.attributes.len(), 2, "host.name given once, not added");
        assert_eq!(bytes, back.encode_to_vec());
    }
}
