//! Cursor's hook contract: `beforeShellExecution`, `beforeMCPExecution`, `beforeReadFile`,
//! `afterShellExecution` and `afterMCPExecution` in `.cursor/hooks.json`; the answer is
//! `permission` (`allow`, `deny`, or `ask` for shell commands and MCP tools), and every event
//! is answered.

use super::{Unreadable, refuse};
use serde_json::{Map, Value, json};

use super::call::{Call, Files, Incoming, Outcome, keep, object_input, one_path, plain};
use super::{Answer, Contract};

/// Cursor.
pub(crate) struct Cursor;

impl Contract for Cursor {
    fn events(&self) -> &'static [&'static str] {
        &[
            "beforeShellExecution",
            "beforeMCPExecution",
            "beforeReadFile",
            "afterShellExecution",
            "afterMCPExecution",
        ]
    }

    fn settings(&self) -> &'static str {
        ".cursor/hooks.json"
    }

    /// Cursor asks its user about shell commands and MCP tools.
    fn can_ask(&self, event: &str) -> bool {
        event != "beforeReadFile"
    }

    /// A bare command, told to block the call when the hook fails.
    fn entry(&self, command: &str) -> Value {
        json!({"command": command, "failClosed": true})
    }

    fn flat_entries(&self) -> bool {
        true
    }

    fn read(&self, payload: &Map<String, Value>) -> Result<Incoming, Unreadable> {
        let text = |k: &str| payload.get(k).and_then(Value::as_str);
        let mut context = Map::new();
        let event = text("hook_event_name").ok_or("the hook payload has no `hook_event_name`")?;
        keep(&mut context, "session_id", payload.get("conversation_id"));
        keep(
            &mut context,
            "cwd",
            payload.get("cwd").or_else(|| payload.get("workspace_roots").and_then(|r| r.get(0))),
        );
        let (host_tool, mapped) = match event {
            "beforeShellExecution" | "afterShellExecution" => {
                let command = text("command").ok_or("the hook payload has no `command`")?;
                let mut args = Map::new();
                args.insert("command".into(), json!(command));
                ("Shell".to_owned(), plain("shell", "exec", &args))
            }
            "beforeMCPExecution" | "afterMCPExecution" => {
                let name = text("tool_name").ok_or("the hook payload has no `tool_name`")?;
                let input = object_input(payload.get("tool_input"), "tool_input")?;
                keep(&mut context, "mcp_server", payload.get("url").or_else(|| payload.get("command")));
                (name.to_owned(), Ok(cursor_mcp_call(name, input)))
            }
            "beforeReadFile" => {
                // The file's content (and attachments) are not part of the call.
                let path = text("file_path").ok_or("the hook payload has no `file_path`")?;
                let mut args = Map::new();
                args.insert("path".into(), json!(path));
                ("Read".to_owned(), one_path("file", "read", &args, &[], false))
            }
            other => {
                return refuse(format!(
                    "`faramesh hook cursor` answers {}, not `{other}`",
                    self.events().join(", ")
                ));
            }
        };
        let outcome = event.starts_with("after").then(|| {
            let failed = payload.get("exit_code").and_then(Value::as_i64).is_some_and(|c| c != 0);
            let result =
                payload.get("output").or_else(|| payload.get("result_json")).cloned().unwrap_or(Value::Null);
            let error = failed.then(|| json!(format!("exit code {}", payload["exit_code"])));
            Outcome { success: !failed, result, error }
        });
        Ok(Incoming { event: event.into(), host_tool, mapped, call_id: None, context, outcome })
    }

    fn answer(&self, answer: Answer, reason: &str) -> Value {
        json!({"permission": answer.as_str(), "user_message": reason, "agent_message": reason})
    }

    /// Cursor also reads the deny answer of a refusal.
    fn refusal(&self, reason: &str) -> Option<Value> {
        Some(self.answer(Answer::Deny, reason))
    }

    /// Cursor reads an answer to every event: an empty object changes nothing.
    fn answers_after(&self) -> bool {
        true
    }
}

/// Cursor's MCP tool: `MCP:server:tool` → `server`/`tool`, `mcp__server__tool` likewise, a bare
/// tool name → `mcp`/`tool` (as `faramesh mcp` names tools in HTTP mode).
pub(crate) fn cursor_mcp_call(name: &str, input: Map<String, Value>) -> Call {
    let (tool, op) = match name.strip_prefix("MCP:").and_then(|rest| rest.split_once(':')) {
        Some((server, tool)) => (server, tool),
        None => match name.strip_prefix("mcp__").and_then(|rest| rest.split_once("__")) {
            Some((server, tool)) => (server, tool),
            None => ("mcp", name),
        },
    };
    Call { tool: tool.to_owned(), op: op.to_owned(), args: input, files: Files::None }
}
