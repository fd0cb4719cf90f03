//! A host's tool call read as the call the policy sees: the tool, operation and arguments, and
//! the paths a file tool acts on, read as the host opens them ([`super::paths`]).

use super::{Unreadable, refuse};
use std::path::PathBuf;

use serde_json::{Map, Value, json};

use super::{glob, paths};

/// A host tool read as a policy call (its paths as the host gave them), or why it cannot be
/// decided on.
pub(crate) type Mapped = Result<Call, Unreadable>;

/// A host tool read as a policy call.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Call {
    pub(crate) tool: String,
    pub(crate) op: String,
    pub(crate) args: Map<String, Value>,
    /// The paths the tool acts on, as the host gave them.
    pub(crate) files: Files,
}

/// Where a file tool acts, as the host gave it (read as the host opens it by
/// [`resolve_call`]).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Files {
    /// Not a file tool.
    None,
    /// One path; `None`: the working directory (the tool's default).
    One(Option<String>),
    /// A glob pattern, under a directory (`None`: the working directory).
    Pattern { dir: Option<String>, pattern: String },
    /// Several paths or glob patterns (Gemini CLI's `read_many_files`).
    Patterns(Vec<String>),
    /// The files a patch names.
    Patch(Vec<String>),
}

/// A call acting on no file, with the host's arguments.
pub(crate) fn plain(tool: &str, op: &str, input: &Map<String, Value>) -> Mapped {
    Ok(Call { tool: tool.into(), op: op.into(), args: input.clone(), files: Files::None })
}

/// A tool with no policy name of its own: an MCP tool (`mcp__server__tool` → `server`/`tool`,
/// as `faramesh mcp --tool-prefix server` names it), else its own name, `invoke`. Its arguments
/// are passed as the host gave them.
pub(crate) fn by_name(name: &str, input: &Map<String, Value>) -> Call {
    let (tool, op) = match name.strip_prefix("mcp__").and_then(|rest| rest.split_once("__")) {
        Some((server, tool)) => (server.to_owned(), tool.to_owned()),
        None => (name.to_owned(), "invoke".to_owned()),
    };
    Call { tool, op, args: input.clone(), files: Files::None }
}

/// The one path named by `keys` (or `path`), as a string; `None` when none is given. Two
/// different paths in one input are refused: the policy must decide on the file the tool will
/// use, and the hook cannot know which one that is.
pub(crate) fn named_path(
    tool: &str,
    input: &Map<String, Value>,
    keys: &[&str],
) -> Result<Option<String>, Unreadable> {
    let mut found: Vec<(&str, &str)> = Vec::new();
    for key in keys.iter().chain(["path"].iter()) {
        match input.get(*key) {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) => found.push((key, s)),
            Some(_) => return refuse(format!("`{key}` in the `{tool}` input is not a string")),
        }
    }
    found.dedup_by(|a, b| a.1 == b.1);
    match found.as_slice() {
        [] => Ok(None),
        [(_, one)] => Ok(Some((*one).to_owned())),
        _ => refuse(format!(
            "`{tool}` input names more than one path ({}): the hook cannot tell which file the tool uses",
            found.iter().map(|(k, _)| *k).collect::<Vec<_>>().join(", ")
        )),
    }
}

/// A tool acting on the one path under `keys` (or `path`); without one, on the working
/// directory when `default_cwd` (search tools), else refused.
pub(crate) fn one_path(
    tool: &str,
    op: &str,
    input: &Map<String, Value>,
    keys: &[&str],
    default_cwd: bool,
) -> Mapped {
    let path = named_path(tool, input, keys)?;
    if path.is_none() && !default_cwd {
        let keys: Vec<&str> = keys.iter().chain(["path"].iter()).copied().collect();
        return refuse(format!("the `{tool}` input names no path (`{}`)", keys.join("`, `")));
    }
    Ok(Call { tool: tool.into(), op: op.into(), args: input.clone(), files: Files::One(path) })
}

/// A tool matching the glob pattern under `pattern_key`, under the directory under `dir_keys`
/// (or `path`; else the working directory).
pub(crate) fn pattern_path(
    tool: &str,
    op: &str,
    input: &Map<String, Value>,
    pattern_key: &str,
    dir_keys: &[&str],
) -> Mapped {
    let dir = named_path(tool, input, dir_keys)?;
    let Some(Value::String(pattern)) = input.get(pattern_key) else {
        return refuse(format!("the `{tool}` input names no `{pattern_key}` (a string)"));
    };
    let files = Files::Pattern { dir, pattern: pattern.clone() };
    Ok(Call { tool: tool.into(), op: op.into(), args: input.clone(), files })
}

/// A tool reading every path or glob pattern of the lists under `keys` (Gemini CLI's
/// `read_many_files`: `paths` and `include`); a list it cannot read, or none, is refused.
pub(crate) fn path_lists(tool: &str, op: &str, input: &Map<String, Value>, keys: &[&str]) -> Mapped {
    let mut all = Vec::new();
    for key in keys {
        match input.get(*key) {
            None | Some(Value::Null) => {}
            Some(Value::Array(items)) => {
                for item in items {
                    let Some(s) = item.as_str() else {
                        return refuse(format!("`{key}` is not a list of paths (it holds {item})"));
                    };
                    all.push(s.to_owned());
                }
            }
            Some(other) => return refuse(format!("`{key}` is not a list of paths (it is {other})")),
        }
    }
    let names = keys.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(" and ");
    if all.is_empty() {
        return refuse(format!("the input names no path to read ({names} are missing or empty)"));
    }
    if all.len() > paths::MAX_PATHS {
        return refuse(format!(
            "{names} name {} paths, more than the {} one call may",
            all.len(),
            paths::MAX_PATHS
        ));
    }
    Ok(Call { tool: tool.into(), op: op.into(), args: input.clone(), files: Files::Patterns(all) })
}

/// A tool applying the patch under `key`: every file its headers name (`*** Update File: …`);
/// a patch naming none is refused.
pub(crate) fn patch_paths(tool: &str, op: &str, input: &Map<String, Value>, key: &str) -> Mapped {
    let Some(Value::String(text)) = input.get(key) else {
        return refuse(format!("the input has no patch text in `{key}`"));
    };
    let files = paths::patch_files(text);
    if files.is_empty() {
        return Err(
            "the patch names no file (`*** Add File:`, `*** Update File:`, `*** Delete File:`)".into()
        );
    }
    if files.len() > paths::MAX_PATHS {
        return refuse(format!(
            "the patch names {} files, more than the {} one call may",
            files.len(),
            paths::MAX_PATHS
        ));
    }
    Ok(Call { tool: tool.into(), op: op.into(), args: input.clone(), files: Files::Patch(files) })
}

/// A call with its paths read as the host opens them ([`paths`]): `path` set in its
/// arguments for a tool acting on one path, `paths` (and `path` when there is exactly one) for
/// a tool acting on several, or a path read two ways, or a pattern reaching out of its
/// directory through symlinks.
pub(crate) struct Resolved {
    pub(crate) tool: String,
    pub(crate) op: String,
    pub(crate) args: Map<String, Value>,
    /// Every path the call acts on (decided one by one when there are several).
    pub(crate) paths: Vec<String>,
    /// What the path reader met: a symlink whose target is missing, a `..` after a symlink, a
    /// symlink a pattern reaches out of its directory through.
    pub(crate) notes: Vec<String>,
}

/// Reads the paths of `call` against the working directory `cwd`: the call the policy sees, or
/// why the hook refuses it.
pub(crate) fn resolve_call(call: Call, cwd: &Result<PathBuf, Unreadable>) -> Result<Resolved, Unreadable> {
    let Call { tool, op, mut args, files } = call;
    let (found, several): (Vec<paths::Resolved>, bool) = match &files {
        Files::None => (Vec::new(), false),
        Files::One(Some(raw)) => (vec![paths::resolve(raw, cwd)?], false),
        Files::One(None) => (vec![paths::resolve(".", cwd)?], false),
        Files::Pattern { dir, pattern } => {
            (vec![glob::resolve_pattern(pattern, dir.as_deref(), cwd, false)?], false)
        }
        Files::Patterns(list) => {
            // `read_many_files` reads every file under a directory it is given.
            let found =
                list.iter().map(|p| glob::resolve_pattern(p, None, cwd, true)).collect::<Result<_, _>>()?;
            (found, true)
        }
        Files::Patch(list) => (list.iter().map(|p| paths::resolve(p, cwd)).collect::<Result<_, _>>()?, true),
    };
    let mut paths: Vec<String> = Vec::new();
    let mut notes: Vec<String> = Vec::new();
    for r in found {
        for path in r.paths {
            if !paths.contains(&path) {
                paths.push(path);
            }
        }
        for note in r.notes {
            if !notes.contains(&note) {
                notes.push(note);
            }
        }
    }
    if files == Files::None {
        return Ok(Resolved { tool, op, args, paths, notes });
    }
    if several || paths.len() > 1 {
        args.insert("paths".into(), json!(paths));
    }
    if let [one] = paths.as_slice() {
        args.insert("path".into(), json!(one));
    } else {
        args.remove("path");
    }
    Ok(Resolved { tool, op, args, paths, notes })
}

/// A hook payload, read: the call the policy sees, and what the host said about it.
pub(crate) struct Incoming {
    /// The host's event name.
    pub(crate) event: String,
    /// The host's name for the tool.
    pub(crate) host_tool: String,
    /// The policy's call, or why the payload cannot be decided on.
    pub(crate) mapped: Mapped,
    /// The host's id for this one tool call (Claude Code's `tool_use_id`), when it gives one.
    pub(crate) call_id: Option<String>,
    /// What the call's context records besides the host: session and working directory (and
    /// for Cursor's MCP calls, the server).
    pub(crate) context: Map<String, Value>,
    /// For an event after the tool ran: how it went.
    pub(crate) outcome: Option<Outcome>,
}

/// How a tool call went, as the host reported it.
pub(crate) struct Outcome {
    pub(crate) success: bool,
    pub(crate) result: Value,
    pub(crate) error: Option<Value>,
}

/// A tool's input: an object, absent, or (Cursor's MCP and Copilot CLI's calls) an object
/// written as a JSON string, read strictly.
pub(crate) fn object_input(v: Option<&Value>, key: &str) -> Result<Map<String, Value>, Unreadable> {
    match v {
        Some(Value::Object(m)) => Ok(m.clone()),
        None | Some(Value::Null) => Ok(Map::new()),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(Map::new()),
        Some(Value::String(s)) => match faramesh_proto::parse_strict(s.as_bytes()) {
            Ok(Value::Object(m)) => Ok(m),
            Ok(_) => refuse(format!("`{key}` is not a JSON object")),
            Err(e) => refuse(format!("`{key}` is not JSON ({e})")),
        },
        Some(_) => refuse(format!("`{key}` is not an object")),
    }
}

/// Keeps the payload's `v`, when it is a string, in the call's context under `key`.
pub(crate) fn keep(context: &mut Map<String, Value>, key: &str, v: Option<&Value>) {
    if let Some(v) = v.filter(|v| v.is_string()) {
        context.insert(key.into(), v.clone());
    }
}

/// Reads a payload naming its event (`hook_event_name`), the tool (`tool_name`) and its input
/// (`tool_input`), as Claude Code and Gemini CLI send them: `events` are the host's, the one
/// before the tool runs first; `map` reads the host's tool into a policy call.
pub(crate) fn read_tool_event(
    host: &str,
    events: &[&str],
    payload: &Map<String, Value>,
    map: fn(&str, &Map<String, Value>) -> Mapped,
) -> Result<Incoming, Unreadable> {
    let text = |k: &str| payload.get(k).and_then(Value::as_str);
    let mut context = Map::new();
    let event = text("hook_event_name").ok_or("the hook payload has no `hook_event_name`")?;
    if !events.contains(&event) {
        return refuse(format!("`faramesh hook {host}` answers {}, not `{event}`", events.join(", ")));
    }
    let tool_name = text("tool_name").ok_or("the hook payload has no `tool_name`")?;
    let input = object_input(payload.get("tool_input"), "tool_input")?;
    keep(&mut context, "session_id", payload.get("session_id"));
    keep(&mut context, "cwd", payload.get("cwd"));
    let mapped = map(tool_name, &input);
    let outcome = (event != events[0]).then(|| {
        let response = payload.get("tool_response").cloned().unwrap_or(Value::Null);
        let failed = event == "PostToolUseFailure" || response.get("error").is_some_and(|e| !e.is_null());
        let error = failed.then(|| payload.get("error").cloned().unwrap_or_else(|| json!("the tool failed")));
        Outcome { success: !failed, result: response, error }
    });
    let call_id = text("tool_use_id").map(str::to_owned);
    Ok(Incoming { event: event.into(), host_tool: tool_name.into(), mapped, call_id, context, outcome })
}

#[cfg(test)]
pub(crate) mod test_support {
    use serde_json::{Map, Value};

    use super::{Call, Files};

    pub(crate) fn input(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    /// `(tool, op, args[key])` of a mapped call.
    pub(crate) fn seen(call: &Call, key: &str) -> (String, String, Value) {
        (call.tool.clone(), call.op.clone(), call.args.get(key).cloned().unwrap_or(Value::Null))
    }

    pub(crate) fn one(p: &str) -> Files {
        Files::One(Some(p.into()))
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use serde_json::json;

    use super::resolve_call;
    use super::test_support::input;
    use crate::hooks::claude_code::claude_code_call;
    use crate::hooks::gemini_cli::gemini_call;

    #[test]
    fn resolved_calls_carry_path_and_paths() {
        let cwd = Ok(PathBuf::from("/nonexistent-fm/p"));
        let r = resolve_call(claude_code_call("Read", &input(json!({"file_path": "../x"}))).unwrap(), &cwd)
            .unwrap();
        assert_eq!(
            (&r.args["path"], &r.args["file_path"], r.args.get("paths")),
            (&json!("/nonexistent-fm/x"), &json!("../x"), None)
        );
        let many = gemini_call("read_many_files", &input(json!({"paths": ["a", "./a", "b"]}))).unwrap();
        let r = resolve_call(many, &cwd).unwrap();
        assert_eq!(
            r.args["paths"],
            json!(["/nonexistent-fm/p/a", "/nonexistent-fm/p/b"]),
            "one decision per path"
        );
        assert!(r.args.get("path").is_none());
        let single = gemini_call("read_many_files", &input(json!({"include": ["a"]}))).unwrap();
        let r = resolve_call(single, &cwd).unwrap();
        assert_eq!(
            (&r.args["path"], &r.args["paths"]),
            (&json!("/nonexistent-fm/p/a"), &json!(["/nonexistent-fm/p/a"]))
        );
        // Tools that are not file tools keep their arguments as given.
        let mcp = claude_code_call("mcp__fs__read", &input(json!({"path": "../x"}))).unwrap();
        assert_eq!(resolve_call(mcp, &cwd).unwrap().args["path"], "../x");
    }
}
