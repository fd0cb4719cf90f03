//! Gemini CLI's hook contract: `BeforeTool` and `AfterTool` command hooks in
//! `.gemini/settings.json`; the answer is `decision` (`allow` or `deny`; it cannot ask its
//! user), and every event's stdout is read as JSON.

use super::{Unreadable, refuse};
use serde_json::{Map, Value, json};

use super::call::{self, Incoming, Mapped, by_name, one_path, path_lists, pattern_path, plain};
use super::{Answer, Contract, Host};

/// Gemini CLI.
pub(crate) struct GeminiCli;

impl Contract for GeminiCli {
    fn events(&self) -> &'static [&'static str] {
        &["BeforeTool", "AfterTool"]
    }

    fn settings(&self) -> &'static str {
        ".gemini/settings.json"
    }

    fn can_ask(&self, _event: &str) -> bool {
        false
    }

    /// A matcher for every tool running `command` (its timeout in milliseconds).
    fn entry(&self, command: &str) -> Value {
        json!({"matcher": "*", "hooks": [
            {"name": "faramesh", "type": "command", "command": command, "timeout": 600_000}
        ]})
    }

    fn read(&self, payload: &Map<String, Value>) -> Result<Incoming, Unreadable> {
        call::read_tool_event(Host::GeminiCli.name(), self.events(), payload, gemini_call)
    }

    fn answer(&self, answer: Answer, reason: &str) -> Value {
        json!({"decision": if answer == Answer::Allow { "allow" } else { "deny" }, "reason": reason})
    }

    /// Gemini CLI parses stdout as JSON: an empty object changes nothing.
    fn answers_after(&self) -> bool {
        true
    }
}

/// The call Gemini CLI's tool becomes: `run_shell_command` → `shell`/`exec` (the command in
/// `command`), `read_file` and `read_many_files` → `file`/`read`, `write_file` → `file`/`write`,
/// `replace` → `file`/`edit`, `list_directory`, `glob` and `search_file_content` →
/// `file`/`search` (each with its paths, read as Gemini CLI opens them), `web_fetch` →
/// `http`/`get` (`url`: the URL in its prompt), `mcp__server__tool` → `server`/`tool`, any
/// other tool → its own name, `invoke`.
pub(crate) fn gemini_call(tool_name: &str, input: &Map<String, Value>) -> Mapped {
    match tool_name {
        "run_shell_command" => plain("shell", "exec", input),
        "read_file" => one_path("file", "read", input, &["absolute_path", "file_path"], false),
        "read_many_files" => path_lists("file", "read", input, &["paths", "include"]),
        "write_file" => one_path("file", "write", input, &["file_path", "absolute_path"], false),
        "replace" => one_path("file", "edit", input, &["file_path", "absolute_path"], false),
        "list_directory" => one_path("file", "search", input, &["dir_path"], false),
        "glob" => pattern_path("file", "search", input, "pattern", &["dir_path"]),
        "search_file_content" => one_path("file", "search", input, &["dir_path"], true),
        "web_fetch" => {
            // web_fetch fetches every URL in its prompt: one call is decided on one URL.
            let prompt = input.get("prompt").and_then(Value::as_str).unwrap_or_default();
            let mut urls: Vec<&str> = prompt
                .split_whitespace()
                .filter(|w| w.starts_with("https://") || w.starts_with("http://"))
                .map(|u| u.trim_end_matches(['.', ',', ')', '"', '\'']))
                .collect();
            urls.dedup();
            let mut args = input.clone();
            match urls.as_slice() {
                [] => {}
                [url] => {
                    args.insert("url".into(), json!(url));
                }
                _ => {
                    return refuse(format!(
                        "`web_fetch` asks for {} URLs in one call: Faramesh decides one URL per call",
                        urls.len()
                    ));
                }
            }
            plain("http", "get", &args)
        }
        other => Ok(by_name(other, input)),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Map, json};

    use super::gemini_call;
    use crate::hooks::call::Files;
    use crate::hooks::call::test_support::{input, one, seen};

    #[test]
    fn gemini_cli_tools_map_to_policy_tools() {
        let c = gemini_call("run_shell_command", &input(json!({"command": "rm -rf /"}))).unwrap();
        assert_eq!(seen(&c, "command"), ("shell".into(), "exec".into(), json!("rm -rf /")));
        let c = gemini_call("read_file", &input(json!({"absolute_path": "/etc/passwd"}))).unwrap();
        assert_eq!((c.tool.as_str(), c.op.as_str(), &c.files), ("file", "read", &one("/etc/passwd")));
        let c = gemini_call("replace", &input(json!({"file_path": "/a", "old_string": "x"}))).unwrap();
        assert_eq!((c.tool.as_str(), c.op.as_str(), &c.files), ("file", "edit", &one("/a")));
        let c =
            gemini_call("read_many_files", &input(json!({"paths": ["a", "b/*"], "include": ["c"]}))).unwrap();
        assert_eq!(c.files, Files::Patterns(vec!["a".into(), "b/*".into(), "c".into()]));
        for bad in [json!({}), json!({"paths": "a"}), json!({"paths": [1]}), json!({"include": []})] {
            assert!(
                gemini_call("read_many_files", &input(bad.clone())).unwrap_err().contains("`paths`"),
                "{bad}"
            );
        }
        let c = gemini_call("glob", &input(json!({"pattern": "*.rs", "dir_path": "src"}))).unwrap();
        assert_eq!(c.files, Files::Pattern { dir: Some("src".into()), pattern: "*.rs".into() });
        let c =
            gemini_call("web_fetch", &input(json!({"prompt": "Summarize https://example.com/a."}))).unwrap();
        assert_eq!(seen(&c, "url"), ("http".into(), "get".into(), json!("https://example.com/a")));
        let c = gemini_call("mcp__github__create_issue", &Map::new()).unwrap();
        assert_eq!((c.tool.as_str(), c.op.as_str()), ("github", "create_issue"));
        // The policy decides on the file the tool uses: two different paths are refused.
        let two = input(json!({"absolute_path": "/etc/shadow", "file_path": "/home/me/ok"}));
        assert!(gemini_call("read_file", &two).unwrap_err().contains("more than one path"));
        let same = input(json!({"absolute_path": "/a", "path": "/a"}));
        assert_eq!(gemini_call("read_file", &same).unwrap().files, one("/a"));
        let urls = input(json!({"prompt": "Compare https://a.example/x and https://b.example/y"}));
        assert!(gemini_call("web_fetch", &urls).unwrap_err().contains("2 URLs"));
    }
}
