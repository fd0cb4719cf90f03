//! `faramesh hook install HOST`: the hook written into (or removed from) a host's settings,
//! other hooks and settings kept; and for `faramesh doctor`, which hosts run it.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow, bail};
use serde_json::{Map, Value, json};

use super::{HOSTS, Host};

/// The OpenCode plugin `hook install opencode` writes (its command filled in).
const OPENCODE_PLUGIN: &str = include_str!("../../../integrations/opencode/faramesh.js");
/// The line that marks the plugin file as ours.
const OPENCODE_MARKER: &str = "// Faramesh for OpenCode:";

/// Where `hook install` writes the hook, and whether it removes it.
#[derive(Debug, Clone)]
pub struct InstallOptions {
    /// The host.
    pub host: Host,
    /// The user's settings instead of the project's.
    pub user: bool,
    /// Remove the hook instead.
    pub uninstall: bool,
    /// The settings file to edit (instead of the host's default).
    pub settings: Option<PathBuf>,
}

/// For `faramesh doctor`: which hosts' settings run this hook (the project's and the user's).
pub fn wired_hosts() -> String {
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let mut wired = Vec::new();
    for host in HOSTS {
        let mut files = vec![PathBuf::from(host.contract().settings())];
        files.extend(home.as_ref().map(|h| h.join(host.contract().settings())));
        let first = format!("/hooks/{}", host.contract().events()[0]);
        if host == Host::Opencode {
            let config = std::env::var_os("XDG_CONFIG_HOME").filter(|d| !d.is_empty()).map(PathBuf::from);
            let config = config.or_else(|| home.as_ref().map(|h| h.join(".config")));
            files.truncate(1);
            files.extend(config.map(|c| c.join("opencode/plugins/faramesh.js")));
        }
        for f in files {
            if host == Host::Opencode {
                if std::fs::read_to_string(&f).is_ok_and(|t| t.starts_with(OPENCODE_MARKER)) {
                    wired.push(format!("{} ({})", host.name(), f.display()));
                }
                continue;
            }
            let runs = std::fs::read_to_string(&f)
                .ok()
                .and_then(|t| serde_json::from_str::<Value>(&t).ok())
                .is_some_and(|v| {
                    v.pointer(&first).and_then(Value::as_array).is_some_and(|l| runs_ours(host, l))
                });
            if runs {
                wired.push(format!("{} ({})", host.name(), f.display()));
            }
        }
    }
    // OpenClaw loads the @faramesh/openclaw plugin (docs/hooks.md#openclaw).
    let openclaw =
        std::env::var_os("OPENCLAW_CONFIG_PATH").filter(|p| !p.is_empty()).map(PathBuf::from).or_else(|| {
            let state = std::env::var_os("OPENCLAW_STATE_DIR").filter(|d| !d.is_empty()).map(PathBuf::from);
            state.or_else(|| home.as_ref().map(|h| h.join(".openclaw"))).map(|d| d.join("openclaw.json"))
        });
    if let Some(f) = openclaw
        && std::fs::read_to_string(&f)
            .ok()
            .and_then(|t| serde_json::from_str::<Value>(&t).ok())
            .is_some_and(|v| v.pointer("/plugins/entries/faramesh/enabled") == Some(&Value::Bool(true)))
    {
        wired.push(format!("openclaw (the faramesh plugin, {})", f.display()));
    }
    if wired.is_empty() {
        "no coding agent runs the faramesh hook here (`faramesh hook install claude-code|gemini-cli|cursor|copilot-cli|opencode`)".into()
    } else {
        format!("the faramesh hook is wired into {}", wired.join(", "))
    }
}

/// Installs or removes the hook.
pub fn install(args: &InstallOptions) -> Result<ExitCode> {
    if args.host == Host::Opencode {
        return install_opencode(args);
    }
    if args.user && args.host == Host::CopilotCli && args.settings.is_none() {
        bail!(
            "GitHub Copilot CLI reads hooks from the repository's `.github/hooks/` folder: run `faramesh hook install copilot-cli` in the repository (or pass --settings FILE)"
        );
    }
    let path = match (&args.settings, args.user) {
        (Some(p), _) => p.clone(),
        (None, true) => PathBuf::from(
            std::env::var_os("HOME").ok_or_else(|| anyhow!("HOME is not set: pass --settings FILE"))?,
        )
        .join(args.host.contract().settings()),
        (None, false) => PathBuf::from(args.host.contract().settings()),
    };
    let mut settings: Map<String, Value> = match std::fs::read_to_string(&path) {
        Ok(text) if text.trim().is_empty() => Map::new(),
        Ok(text) => match faramesh_proto::parse_strict(text.as_bytes()) {
            Ok(Value::Object(m)) => m,
            _ => bail!("`{}` is not a JSON object: fix it or pass --settings FILE", path.display()),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Map::new(),
        Err(e) => return Err(e).with_context(|| format!("cannot read `{}`", path.display())),
    };
    let command = hook_command(args.host)?;
    let changed = if args.uninstall {
        remove_hooks(args.host, &mut settings)
    } else {
        add_hooks(args.host, &mut settings, &command)?
    };
    // Copilot CLI's hook file is ours alone: with our hooks gone, nothing is left to keep.
    let ours_alone = args.host == Host::CopilotCli && args.settings.is_none();
    if changed && args.uninstall && ours_alone && settings.keys().all(|k| k == "version") {
        std::fs::remove_file(&path).with_context(|| format!("cannot remove `{}`", path.display()))?;
    } else if changed {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("cannot create `{}`", dir.display()))?;
        }
        let text = serde_json::to_string_pretty(&Value::Object(settings))? + "\n";
        std::fs::write(&path, text).with_context(|| format!("cannot write `{}`", path.display()))?;
    }
    let what = match (args.uninstall, changed) {
        (false, true) => format!("installed `{command}` for {}", args.host.contract().events().join(", ")),
        (false, false) => "already installed".to_owned(),
        (true, true) => "removed the faramesh hooks".to_owned(),
        (true, false) => "no faramesh hook to remove".to_owned(),
    };
    println!("{}: {what}", path.display());
    Ok(ExitCode::SUCCESS)
}

/// The command the host runs: `faramesh hook HOST`, with the socket when `FARAMESH_SOCKET` is
/// set (the host may not pass the environment on), and this binary's path when `faramesh` on
/// PATH is another one.
fn hook_command(host: Host) -> Result<String> {
    Ok(hook_argv(host)?.iter().map(|a| shell_quote(a)).collect::<Vec<_>>().join(" "))
}

/// [`hook_command`] as an argument list.
fn hook_argv(host: Host) -> Result<Vec<String>> {
    let exe = std::env::current_exe().context("cannot find this faramesh binary")?;
    let on_path = std::env::var_os("PATH")
        .and_then(|paths| std::env::split_paths(&paths).map(|d| d.join("faramesh")).find(|p| p.is_file()));
    let same = on_path.and_then(|p| std::fs::canonicalize(p).ok()) == std::fs::canonicalize(&exe).ok();
    let program = if same { "faramesh".to_owned() } else { exe.display().to_string() };
    let mut argv = vec![program, "hook".to_owned(), host.name().to_owned()];
    if let Some(socket) = std::env::var_os("FARAMESH_SOCKET").filter(|s| !s.is_empty()) {
        argv.push("--socket".to_owned());
        argv.push(PathBuf::from(socket).display().to_string());
    }
    Ok(argv)
}

/// `hook install opencode`: writes the plugin file (its command filled in) where OpenCode loads
/// plugins from, or removes it; a file there that is not ours is left alone.
fn install_opencode(args: &InstallOptions) -> Result<ExitCode> {
    let path = match (&args.settings, args.user) {
        (Some(p), _) => p.clone(),
        (None, true) => {
            let config = std::env::var_os("XDG_CONFIG_HOME")
                .filter(|d| !d.is_empty())
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
                .ok_or_else(|| anyhow!("HOME is not set: pass --settings FILE"))?;
            config.join("opencode/plugins/faramesh.js")
        }
        (None, false) => PathBuf::from(Host::Opencode.contract().settings()),
    };
    let existing = match std::fs::read_to_string(&path) {
        Ok(text) => Some(text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e).with_context(|| format!("cannot read `{}`", path.display())),
    };
    if existing.as_deref().is_some_and(|t| !t.starts_with(OPENCODE_MARKER)) {
        bail!(
            "`{}` exists and is not the Faramesh plugin: move it away or pass --settings FILE",
            path.display()
        );
    }
    let what = if args.uninstall {
        if existing.is_some() {
            std::fs::remove_file(&path).with_context(|| format!("cannot remove `{}`", path.display()))?;
            "removed the faramesh plugin"
        } else {
            "no faramesh plugin to remove"
        }
    } else {
        let argv = serde_json::to_string(&hook_argv(Host::Opencode)?)?;
        let default = r#"/* faramesh:command */ ["faramesh", "hook", "opencode"]"#;
        let text = OPENCODE_PLUGIN.replacen(default, &format!("/* faramesh:command */ {argv}"), 1);
        if existing.as_deref() == Some(text.as_str()) {
            "already installed"
        } else {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).with_context(|| format!("cannot create `{}`", dir.display()))?;
            }
            std::fs::write(&path, text).with_context(|| format!("cannot write `{}`", path.display()))?;
            "installed the faramesh plugin (tool.execute.before, tool.execute.after)"
        }
    };
    println!("{}: {what}", path.display());
    Ok(ExitCode::SUCCESS)
}

fn shell_quote(s: &str) -> String {
    if s.chars().all(|c| c.is_ascii_alphanumeric() || "/._-+:@".contains(c)) {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// Whether one of an event's entries runs our hook for `host`.
fn runs_ours(host: Host, list: &[Value]) -> bool {
    if host.contract().flat_entries() {
        return list.iter().any(|h| is_ours(host, h));
    }
    list.iter().any(|m| {
        m.get("hooks").and_then(Value::as_array).is_some_and(|hs| hs.iter().any(|h| is_ours(host, h)))
    })
}

/// Whether a hook entry (`{"type": "command", "command": …}`; Copilot CLI's `bash`) is ours
/// for `host`.
fn is_ours(host: Host, hook: &Value) -> bool {
    let key = host.contract().command_key();
    hook.get(key).and_then(Value::as_str).is_some_and(|c| c.contains(&format!(" hook {}", host.name())))
}

fn add_hooks(host: Host, settings: &mut Map<String, Value>, command: &str) -> Result<bool> {
    if host.contract().flat_entries() {
        // Cursor's hooks.json and Copilot CLI's hook files carry a format version.
        settings.entry("version").or_insert_with(|| json!(1));
    }
    let hooks = settings.entry("hooks").or_insert_with(|| json!({}));
    let Some(hooks) = hooks.as_object_mut() else { bail!("`hooks` in the settings is not an object") };
    let mut changed = false;
    for &event in host.contract().events() {
        let list = hooks.entry(event).or_insert_with(|| json!([]));
        let Some(list) = list.as_array_mut() else { bail!("`hooks.{event}` in the settings is not a list") };
        if !runs_ours(host, list) {
            list.push(host.contract().entry(command));
            changed = true;
        }
    }
    Ok(changed)
}

fn remove_hooks(host: Host, settings: &mut Map<String, Value>) -> bool {
    let Some(hooks) = settings.get_mut("hooks").and_then(Value::as_object_mut) else { return false };
    let mut changed = false;
    for &event in host.contract().events() {
        let Some(list) = hooks.get_mut(event).and_then(Value::as_array_mut) else { continue };
        if host.contract().flat_entries() {
            let before = list.len();
            list.retain(|h| !is_ours(host, h));
            changed |= list.len() != before;
        }
        for matcher in list.iter_mut().filter(|_| !host.contract().flat_entries()) {
            if let Some(hs) = matcher.get_mut("hooks").and_then(Value::as_array_mut) {
                let before = hs.len();
                hs.retain(|h| !is_ours(host, h));
                changed |= hs.len() != before;
            }
        }
        list.retain(|m| m.get("hooks").and_then(Value::as_array).is_none_or(|hs| !hs.is_empty()));
        if list.is_empty() {
            hooks.remove(event);
        }
    }
    if hooks.is_empty() {
        settings.remove("hooks");
    }
    changed
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::{add_hooks, remove_hooks};
    use crate::hooks::Host;

    #[test]
    fn install_is_idempotent_keeps_other_hooks_and_uninstall_restores() {
        let original = json!({
            "model": "x",
            "hooks": {"PreToolUse": [{"matcher": "Bash", "hooks": [{"type": "command", "command": "lint.sh"}]}]}
        });
        let mut s = original.as_object().cloned().unwrap();
        assert!(add_hooks(Host::ClaudeCode, &mut s, "faramesh hook claude-code").unwrap());
        let again = add_hooks(Host::ClaudeCode, &mut s, "faramesh hook claude-code").unwrap();
        assert!(!again, "a second install changes nothing");
        assert_eq!(s["hooks"]["PreToolUse"].as_array().unwrap().len(), 2);
        assert_eq!(s["hooks"]["PostToolUse"][0]["hooks"][0]["command"], "faramesh hook claude-code");
        assert!(remove_hooks(Host::ClaudeCode, &mut s));
        assert_eq!(Value::Object(s), original);

        let original = json!({"general": {"vimMode": true}});
        let mut s = original.as_object().cloned().unwrap();
        assert!(add_hooks(Host::GeminiCli, &mut s, "faramesh hook gemini-cli").unwrap());
        let entry = &s["hooks"]["BeforeTool"][0]["hooks"][0];
        assert_eq!((&entry["name"], &entry["timeout"]), (&json!("faramesh"), &json!(600_000)));
        assert!(s["hooks"]["AfterTool"].is_array() && s["hooks"].get("PreToolUse").is_none());
        assert!(remove_hooks(Host::GeminiCli, &mut s));
        assert_eq!(Value::Object(s), original);

        let original = json!({"version": 1, "hooks": {"beforeShellExecution": [{"command": "./audit.sh"}]}});
        let mut s = original.as_object().cloned().unwrap();
        assert!(add_hooks(Host::Cursor, &mut s, "faramesh hook cursor").unwrap());
        assert!(!add_hooks(Host::Cursor, &mut s, "faramesh hook cursor").unwrap());
        assert_eq!(s["hooks"]["beforeShellExecution"].as_array().unwrap().len(), 2);
        assert_eq!(
            s["hooks"]["beforeReadFile"][0],
            json!({"command": "faramesh hook cursor", "failClosed": true})
        );
        assert!(remove_hooks(Host::Cursor, &mut s));
        assert_eq!(Value::Object(s), original);
    }
}
