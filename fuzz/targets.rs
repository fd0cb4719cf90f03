// The fuzz targets' bodies: each takes any bytes and must neither panic nor break the property
// it asserts. Included by `fuzz/fuzz_targets/*.rs` (libFuzzer, `cargo fuzz run NAME`) and by
// `daemon/tests/fuzz_corpus.rs`, which replays the committed corpora in every test run.

/// The bundled default policy, compiled once.
fn default_policy() -> &'static faramesh_policy::Policy {
    static POLICY: std::sync::OnceLock<faramesh_policy::Policy> = std::sync::OnceLock::new();
    POLICY.get_or_init(|| {
        faramesh_policy::compile("default.yaml", include_str!("../policies/default.yaml"))
            .unwrap_or_else(|e| panic!("the default policy does not compile: {e}"))
    })
}

/// The socket's frame reader and strict parser, then the decision: one request per `\n`-ended
/// line; what parses strictly reads back as the same value; a refused request is never PERMIT.
pub fn socket_line(data: &[u8]) {
    for line in data.split(|b| *b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Ok(value) = faramesh_proto::parse_strict(line) else { continue };
        let again = faramesh_proto::parse_strict(value.to_string().as_bytes());
        assert_eq!(again.as_ref().ok(), Some(&value), "a strictly parsed value reads back differently");
        let Some(params) = value.get("params").and_then(serde_json::Value::as_object) else { continue };
        let Ok(req) = faramesh_proto::CallRequest::from_json(params) else { continue };
        let decision = faramesh_policy::decide_request(default_policy(), &req);
        if req.refusal().is_some() {
            assert_ne!(decision.effect, faramesh_proto::Effect::Permit, "a refused request was permitted");
        }
    }
}

/// The MCP gateway's framing and parser: what it relays is one ASCII line that reads back as
/// exactly the message it decided on.
pub fn mcp_message(data: &[u8]) {
    use faramesh_proto::mcp;
    for line in data.split(|b| *b == b'\n') {
        let Ok(msg) = mcp::read(line) else { continue };
        let out = mcp::encode_map(msg.body());
        assert!(out.is_ascii() && !out.contains(['\n', '\r']), "relayed line is not one ASCII line: {out}");
        assert_eq!(mcp::read(out.as_bytes()).ok().as_ref(), Some(&msg), "relayed message reads differently");
    }
    let _ = mcp::read_body(data);
}

/// The policy loader: any text loads or fails with an error, and a loaded policy decides a
/// call with a command in it.
pub fn policy_load(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(policy) = faramesh_policy::compile("fuzz.yaml", text) else { return };
    let mut call = faramesh_proto::Call::new("agent", "shell", "exec");
    call.params = serde_json::json!({"cmd": "sudo rm -rf / ; ls", "amount": 5, "path": "/tmp"});
    let _ = faramesh_policy::decide(&policy, &call);
}

/// The log's batch decoder: any stored value decodes or fails with an error, and what decodes
/// encodes back to the same batch.
pub fn log_batch(data: &[u8]) {
    use faramesh_log::tables::Batch;
    let _ = Batch::count(data);
    for i in 0..3 {
        let _ = Batch::record_at(data, i);
    }
    if let Ok(batch) = Batch::decode(data) {
        assert_eq!(Batch::decode(&batch.to_bytes()).ok(), Some(batch), "a decoded batch encodes differently");
    }
}

/// The command reader: any text reads as resolved, unresolved or unreadable without panicking;
/// a resolved line names only ASCII programs; and `bash -c -- '<line>'` reads as `bash` followed by
/// exactly what the line itself reads as (resolved stays resolved, unread stays unread), but
/// where the extra level meets a limit.
pub fn command_line(data: &[u8]) {
    use faramesh_policy::command::{Reading, read_line, read_params};
    let Ok(text) = std::str::from_utf8(data) else { return };
    let direct = read_line(text);
    let _ = read_params(&serde_json::json!({"cmd": text, "command": [text, "-c", text], "args": ["-rf", text]}));
    if let Reading::Resolved(cmds) = &direct {
        for c in cmds {
            assert!(c.program.is_ascii() && !c.program.contains('/'), "program {:?} read from {text:?}", c.program);
        }
    }
    let quoted = format!("bash -c -- '{}'", text.replace('\'', "'\\''"));
    let nested = read_line(&quoted);
    let at_limit = |r: &Reading| matches!(r, Reading::Unreadable(e) if e.contains("nested") || e.contains("more than"));
    match (&direct, &nested) {
        (Reading::Resolved(inner), Reading::Resolved(outer)) => {
            assert_eq!(outer.first().map(|c| c.program.as_str()), Some("bash"), "{text:?}");
            assert_eq!(&outer[1..], &inner[..], "`bash -c` reads {text:?} differently");
        }
        (Reading::Unresolved { part, .. }, Reading::Unresolved { part: p2, .. }) => {
            assert_eq!(part, p2, "`bash -c` leaves another part of {text:?} unread");
        }
        (Reading::Unreadable(_), Reading::Unreadable(_)) => {}
        (Reading::Resolved(_) | Reading::Unresolved { .. }, n) if at_limit(n) => {}
        (d, n) => panic!("{text:?} reads as {d:?} but under `bash -c` as {n:?}"),
    }
}
