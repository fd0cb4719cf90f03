//! OpenCode's hook contract: its `tool.execute.before` and `tool.execute.after` plugin hooks,
//! through the plugin `hook install opencode` writes (`integrations/opencode/faramesh.js`),
//! which runs this hook and reads its answer: `decision` (`allow` or `deny`; it cannot ask its
//! user).

use super::{Unreadable, refuse};
use serde_json::{Map, Value, json};

use super::call::{
    Incoming, Mapped, Outcome, by_name, keep, object_input, one_path, patch_paths, pattern_path, plain,
};
use super::{Answer, Contract};

/// OpenCode.
pub(crate) struct Opencode;

impl Contract for Opencode {
    fn events(&self) -> &'static [&'static str] {
        &["tool.execute.before", "tool.execute.after"]
    }

    fn settings(&self) -> &'static str {
        ".opencode/plugins/faramesh.js"
    }

    fn can_ask(&self, _event: &str) -> bool {
        false
    }

    fn entry(&self, command: &str) -> Value {
        json!({"command": command})
    }

    fn read(&self, payload: &Map<String, Value>) -> Result<Incoming, Unreadable> {
        let text = |k: &str| payload.get(k).and_then(Value::as_str);
        let mut context = Map::new();
        let event = text("hook_event_name").ok_or("the hook payload has no `hook_event_name`")?;
        if !self.events().contains(&event) {
            return refuse(format!(
                "`faramesh hook opencode` answers {}, not `{event}`",
                self.events().join(", ")
            ));
        }
        let tool_name = text("tool").ok_or("the hook payload has no `tool`")?;
        let input = object_input(payload.get("args"), "args")?;
        keep(&mut context, "session_id", payload.get("sessionID"));
        keep(&mut context, "cwd", payload.get("directory"));
        let outcome = (event == "tool.execute.after").then(|| {
            let error = payload.get("error").filter(|e| !e.is_null()).cloned();
            let result = payload.get("output").cloned().unwrap_or(Value::Null);
            Outcome { success: error.is_none(), result, error }
        });
        let mapped = opencode_call(tool_name, &input);
        let call_id = text("callID").map(str::to_owned);
        Ok(Incoming { event: event.into(), host_tool: tool_name.into(), mapped, call_id, context, outcome })
    }

    fn answer(&self, answer: Answer, reason: &str) -> Value {
        json!({"decision": answer.as_str(), "reason": reason})
    }

    fn refusal(&self, reason: &str) -> Option<Value> {
        Some(self.answer(Answer::Deny, reason))
    }

    /// The plugin reads an answer to every event: an empty object changes nothing.
    fn answers_after(&self) -> bool {
        true
    }
}

/// The call OpenCode's tool becomes: `bash` → `shell`/`exec` (the command in `command`),
/// `read` → `file`/`read`, `write` → `file`/`write`, `edit`, `multiedit` and `patch` →
/// `file`/`edit`, `glob`, `grep` and `list` → `file`/`search` (each with its paths, read as
/// OpenCode opens them), `webfetch` → `http`/`get` (`url`), `mcp__server__tool` →
/// `server`/`tool`, any other tool → its own name, `invoke`.
pub(crate) fn opencode_call(tool_name: &str, input: &Map<String, Value>) -> Mapped {
    match tool_name {
        "bash" => plain("shell", "exec", input),
        "read" => one_path("file", "read", input, &["filePath"], false),
        "write" => one_path("file", "write", input, &["filePath"], false),
        "edit" | "multiedit" => one_path("file", "edit", input, &["filePath"], false),
        "patch" => patch_paths("file", "edit", input, "patchText"),
        "glob" => pattern_path("file", "search", input, "pattern", &[]),
        "grep" | "list" => one_path("file", "search", input, &[], true),
        "webfetch" => plain("http", "get", input),
        other => Ok(by_name(other, input)),
    }
}
