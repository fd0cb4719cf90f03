//! GitHub Copilot CLI's hook contract: `preToolUse` and `postToolUse` in the repository's
//! `.github/hooks/faramesh.json` (Copilot CLI reads every file there: this one is ours alone);
//! the answer is `permissionDecision` (`allow` or `deny`; it cannot ask its user), and a
//! refusal is its deny answer with exit 0 (the form its documentation gives for blocking a
//! call).

use super::Unreadable;
use serde_json::{Map, Value, json};

use super::call::{
    Incoming, Mapped, Outcome, by_name, keep, object_input, one_path, patch_paths, pattern_path, plain,
};
use super::{Answer, Contract};

/// GitHub Copilot CLI.
pub(crate) struct CopilotCli;

impl Contract for CopilotCli {
    fn events(&self) -> &'static [&'static str] {
        &["preToolUse", "postToolUse"]
    }

    fn settings(&self) -> &'static str {
        ".github/hooks/faramesh.json"
    }

    fn can_ask(&self, _event: &str) -> bool {
        false
    }

    /// A command entry naming the shell.
    fn entry(&self, command: &str) -> Value {
        json!({"type": "command", "bash": command, "timeoutSec": 600})
    }

    fn flat_entries(&self) -> bool {
        true
    }

    fn command_key(&self) -> &'static str {
        "bash"
    }

    fn read(&self, payload: &Map<String, Value>) -> Result<Incoming, Unreadable> {
        let text = |k: &str| payload.get(k).and_then(Value::as_str);
        let mut context = Map::new();
        // Copilot CLI names no event: a payload with the tool's result is `postToolUse`.
        let tool_name = text("toolName").ok_or("the hook payload has no `toolName`")?;
        let input = match (object_input(payload.get("toolArgs"), "toolArgs"), payload.get("toolArgs")) {
            (Ok(input), _) => input,
            // `apply_patch` is a free-form tool: its arguments may be the patch itself.
            (Err(_), Some(Value::String(patch))) if tool_name == "apply_patch" => {
                let mut input = Map::new();
                input.insert("input".into(), json!(patch));
                input
            }
            (Err(why), _) => return Err(why),
        };
        keep(&mut context, "cwd", payload.get("cwd"));
        let outcome = payload.get("toolResult").map(|r| {
            let kind = r.get("resultType").and_then(Value::as_str).unwrap_or("failure");
            let text = r.get("textResultForLlm").cloned().unwrap_or(Value::Null);
            let success = kind == "success";
            Outcome { success, error: (!success).then(|| json!(format!("{kind}: {text}"))), result: text }
        });
        let event = if outcome.is_some() { "postToolUse" } else { "preToolUse" };
        let mapped = copilot_call(tool_name, &input);
        Ok(Incoming {
            event: event.into(),
            host_tool: tool_name.into(),
            mapped,
            call_id: None,
            context,
            outcome,
        })
    }

    fn answer(&self, answer: Answer, reason: &str) -> Value {
        json!({"permissionDecision": answer.as_str(), "permissionDecisionReason": reason})
    }

    fn refusal(&self, reason: &str) -> Option<Value> {
        Some(self.answer(Answer::Deny, reason))
    }

    fn refusal_exit(&self) -> u8 {
        0
    }
}

/// The call GitHub Copilot CLI's tool becomes: `bash` → `shell`/`exec` (the command in
/// `command`), `view` → `file`/`read`, `create` → `file`/`write`, `edit` and `apply_patch` →
/// `file`/`edit`, `glob`, `grep` and `rg` → `file`/`search` (each with its paths, read as
/// Copilot CLI opens them), `web_fetch` → `http`/`get` (`url`), `mcp__server__tool` →
/// `server`/`tool`, any other tool → its own name, `invoke`.
pub(crate) fn copilot_call(tool_name: &str, input: &Map<String, Value>) -> Mapped {
    match tool_name {
        "bash" => plain("shell", "exec", input),
        "view" => one_path("file", "read", input, &["file_path"], false),
        "create" => one_path("file", "write", input, &["file_path"], false),
        "edit" => one_path("file", "edit", input, &["file_path"], false),
        "apply_patch" => patch_paths("file", "edit", input, "input"),
        "glob" => pattern_path("file", "search", input, "pattern", &[]),
        "grep" | "rg" => one_path("file", "search", input, &[], true),
        "web_fetch" => plain("http", "get", input),
        other => Ok(by_name(other, input)),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Map, json};

    use super::copilot_call;
    use crate::hooks::call::Files;
    use crate::hooks::call::object_input;
    use crate::hooks::call::test_support::{input, one, seen};
    use crate::hooks::cursor::cursor_mcp_call;
    use crate::hooks::opencode::opencode_call;

    #[test]
    fn cursor_and_copilot_tools_map_to_policy_tools() {
        assert_eq!(cursor_mcp_call("MCP:github:create_issue", Map::new()).tool, "github");
        assert_eq!(cursor_mcp_call("MCP:github:create_issue", Map::new()).op, "create_issue");
        assert_eq!(cursor_mcp_call("query", Map::new()).tool, "mcp");
        let c = copilot_call("bash", &input(json!({"command": "ls", "description": "x"}))).unwrap();
        assert_eq!(seen(&c, "command"), ("shell".into(), "exec".into(), json!("ls")));
        let c = copilot_call("create", &input(json!({"path": "/a", "file_text": "x"}))).unwrap();
        assert_eq!((c.tool.as_str(), c.op.as_str(), &c.files), ("file", "write", &one("/a")));
        let patch = "*** Begin Patch\n*** Update File: a\n*** Add File: b\n*** End Patch";
        let c = copilot_call("apply_patch", &input(json!({"input": patch}))).unwrap();
        assert_eq!((c.op.as_str(), &c.files), ("edit", &Files::Patch(vec!["a".into(), "b".into()])));
        assert!(copilot_call("apply_patch", &input(json!({"input": "x"}))).unwrap_err().contains("no file"));
        let c = copilot_call("web_fetch", &input(json!({"url": "https://x"}))).unwrap();
        assert_eq!((c.tool.as_str(), c.op.as_str()), ("http", "get"));
        assert_eq!(copilot_call("report_intent", &Map::new()).unwrap().op, "invoke");
        let c = opencode_call("edit", &input(json!({"filePath": "/a", "oldString": "x"}))).unwrap();
        assert_eq!((c.tool.as_str(), c.op.as_str(), &c.files), ("file", "edit", &one("/a")));
        let c = opencode_call("patch", &input(json!({"patchText": patch}))).unwrap();
        assert_eq!(c.files, Files::Patch(vec!["a".into(), "b".into()]));
        assert_eq!(opencode_call("list", &Map::new()).unwrap().files, Files::One(None));
        let c = opencode_call("bash", &input(json!({"command": "ls"}))).unwrap();
        assert_eq!(seen(&c, "command"), ("shell".into(), "exec".into(), json!("ls")));
        assert_eq!(opencode_call("webfetch", &Map::new()).unwrap().tool, "http");
        // Inputs written as JSON text are read strictly.
        assert_eq!(object_input(Some(&json!("{\"a\":1}")), "toolArgs").unwrap()["a"], 1);
        assert!(
            object_input(Some(&json!("{\"a\":1,\"a\":2}")), "toolArgs").unwrap_err().contains("duplicate")
        );
        assert!(object_input(Some(&json!("[1]")), "toolArgs").unwrap_err().contains("not a JSON object"));
        assert!(object_input(Some(&json!(5)), "tool_input").is_err());
        assert!(object_input(None, "tool_input").unwrap().is_empty());
    }
}
