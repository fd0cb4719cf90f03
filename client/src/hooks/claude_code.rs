//! Claude Code's hook contract: `PreToolUse`, `PostToolUse` and `PostToolUseFailure` command
//! hooks in `.claude/settings.json`; the answer is `hookSpecificOutput.permissionDecision`
//! (`allow`, `deny` or `ask`).

use super::Unreadable;
use serde_json::{Map, Value, json};

use super::call::{self, Incoming, Mapped, by_name, one_path, pattern_path, plain};
use super::{Answer, Contract, Host};

/// Claude Code.
pub(crate) struct ClaudeCode;

impl Contract for ClaudeCode {
    fn events(&self) -> &'static [&'static str] {
        &["PreToolUse", "PostToolUse", "PostToolUseFailure"]
    }

    fn settings(&self) -> &'static str {
        ".claude/settings.json"
    }

    /// Claude Code asks its user about any call.
    fn can_ask(&self, _event: &str) -> bool {
        true
    }

    /// A matcher for every tool running `command` (its timeout in seconds).
    fn entry(&self, command: &str) -> Value {
        json!({"matcher": "*", "hooks": [{"type": "command", "command": command, "timeout": 600}]})
    }

    fn read(&self, payload: &Map<String, Value>) -> Result<Incoming, Unreadable> {
        call::read_tool_event(Host::ClaudeCode.name(), self.events(), payload, claude_code_call)
    }

    fn answer(&self, answer: Answer, reason: &str) -> Value {
        json!({"hookSpecificOutput": {
            "hookEventName": "PreToolUse",
            "permissionDecision": answer.as_str(),
            "permissionDecisionReason": reason,
        }})
    }

    /// `PostToolUse` may block: Claude is shown the reason instead of acting on the result.
    fn after_block(&self, reason: &str) -> Option<Value> {
        Some(json!({"decision": "block", "reason": reason}))
    }
}

/// The call the policy sees for a Claude Code tool: `Bash` → `shell`/`exec` (the command in
/// `command`), `Read` → `file`/`read`, `Write` → `file`/`write`, `Edit`, `MultiEdit` and
/// `NotebookEdit` → `file`/`edit`, `Glob` and `Grep` → `file`/`search` (each with `path`, read
/// as Claude Code opens it), `WebFetch` → `http`/`get` (with `url`), `mcp__server__tool` →
/// `server`/`tool` (as `faramesh mcp --tool-prefix server` names it), any other tool → its own
/// name, `invoke`.
pub(crate) fn claude_code_call(tool_name: &str, input: &Map<String, Value>) -> Mapped {
    match tool_name {
        "Bash" => plain("shell", "exec", input),
        "Read" => one_path("file", "read", input, &["file_path"], false),
        "Write" => one_path("file", "write", input, &["file_path"], false),
        "Edit" | "MultiEdit" => one_path("file", "edit", input, &["file_path"], false),
        "NotebookEdit" => one_path("file", "edit", input, &["notebook_path"], false),
        "Glob" => pattern_path("file", "search", input, "pattern", &[]),
        "Grep" => one_path("file", "search", input, &[], true),
        "WebFetch" => plain("http", "get", input),
        other => Ok(by_name(other, input)),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Map, json};

    use super::claude_code_call;
    use crate::hooks::call::Files;
    use crate::hooks::call::test_support::{input, one, seen};

    #[test]
    fn claude_code_tools_map_to_policy_tools() {
        let c = claude_code_call("Bash", &input(json!({"command": "rm -rf /", "description": "x"}))).unwrap();
        assert_eq!(seen(&c, "command"), ("shell".into(), "exec".into(), json!("rm -rf /")));
        assert_eq!(c.files, Files::None);
        let c =
            claude_code_call("Edit", &input(json!({"file_path": "/etc/hosts", "old_string": "a"}))).unwrap();
        assert_eq!((c.tool.as_str(), c.op.as_str(), &c.files), ("file", "edit", &one("/etc/hosts")));
        let c = claude_code_call("Glob", &input(json!({"pattern": "../*.pem"}))).unwrap();
        assert_eq!(c.files, Files::Pattern { dir: None, pattern: "../*.pem".into() });
        assert_eq!(
            claude_code_call("Grep", &input(json!({"pattern": "x"}))).unwrap().files,
            Files::One(None)
        );
        let c = claude_code_call("WebFetch", &input(json!({"url": "https://example.com"}))).unwrap();
        assert_eq!((c.tool.as_str(), c.op.as_str()), ("http", "get"));
        let c = claude_code_call("mcp__github__create_issue", &Map::new()).unwrap();
        assert_eq!((c.tool.as_str(), c.op.as_str()), ("github", "create_issue"));
        let c = claude_code_call("Task", &Map::new()).unwrap();
        assert_eq!((c.tool.as_str(), c.op.as_str()), ("Task", "invoke"));
        let two = input(json!({"file_path": "/etc/hosts", "path": "/tmp/x"}));
        assert!(claude_code_call("Edit", &two).is_err(), "the hook cannot tell which file Edit writes");
        assert!(claude_code_call("Read", &Map::new()).unwrap_err().contains("names no path"));
        assert!(
            claude_code_call("Read", &input(json!({"file_path": 7}))).unwrap_err().contains("not a string")
        );
    }
}
