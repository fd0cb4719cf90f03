//! The paths hooks decide: `..`, symlinks, globs, several files per call.

#[allow(unused_imports)]
use super::*;

/// A home with a project and an SSH key beside it (real directories: the hook reads the file
/// system as the host will), and the example policy of docs/hooks.md for that project.
pub(crate) struct Project {
    _dir: tempfile::TempDir,
    home: PathBuf,
    project: PathBuf,
    key: PathBuf,
}

impl Project {
    fn new() -> Project {
        let dir = tempfile::tempdir().unwrap();
        let home = std::fs::canonicalize(dir.path()).unwrap().join("home/me");
        let project = home.join("demo");
        std::fs::create_dir_all(project.join("src")).unwrap();
        std::fs::create_dir_all(home.join(".ssh")).unwrap();
        std::fs::write(project.join("README.md"), "# demo\n").unwrap();
        std::fs::write(project.join("src/main.rs"), "fn main() {}\n").unwrap();
        let key = home.join(".ssh/id_ed25519");
        std::fs::write(&key, "-----BEGIN OPENSSH PRIVATE KEY-----\n").unwrap();
        Project { _dir: dir, home, project, key }
    }

    fn p(&self, rel: &str) -> String {
        format!("{}/{rel}", self.project.display())
    }

    /// The policy example of docs/hooks.md, its project this one.
    fn example_policy(&self) -> String {
        let doc = std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/hooks.md"))
            .unwrap();
        let yaml = doc.split("```yaml\n").nth(1).unwrap().split("```").next().unwrap();
        assert!(yaml.contains("path_starts_with: /home/me/project/"), "{yaml}");
        format!("version: 1\n{}", yaml.replace("/home/me/project/", &format!("{}/", self.project.display())))
    }
}

/// The hosts whose hooks read a file, and a `PreToolUse`-like payload of each reading `path`
/// with `cwd` as the host's working directory.
pub(crate) const READING_HOSTS: [&str; 5] =
    ["claude-code", "cursor", "gemini-cli", "copilot-cli", "opencode"];

pub(crate) fn read_payload(host: &str, path: &str, cwd: &str) -> String {
    match host {
        "claude-code" => json!({"session_id": "s1", "cwd": cwd, "hook_event_name": "PreToolUse",
            "tool_name": "Read", "tool_input": {"file_path": path}, "tool_use_id": "toolu_paths"}),
        "cursor" => {
            json!({"hook_event_name": "beforeReadFile", "conversation_id": "c1", "generation_id": "g1",
            "workspace_roots": [cwd], "file_path": path, "content": "", "attachments": []})
        }
        "gemini-cli" => json!({"session_id": "s1", "cwd": cwd, "hook_event_name": "BeforeTool",
            "tool_name": "read_file", "tool_input": {"absolute_path": path}}),
        "copilot-cli" => json!({"timestamp": 1, "cwd": cwd, "toolName": "view",
            "toolArgs": json!({"path": path}).to_string()}),
        "opencode" => json!({"hook_event_name": "tool.execute.before", "tool": "read", "sessionID": "s1",
            "callID": "call1", "args": {"filePath": path}, "directory": cwd}),
        _ => unreachable!(),
    }
    .to_string()
}

/// What the host was told: `allow`, `deny` or `ask` from its answer, or `blocked` (exit 2 with
/// no answer), with the reason.
pub(crate) fn host_answer(host: &str, out: &std::process::Output) -> (String, String) {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let Ok(v) = serde_json::from_slice::<Value>(&out.stdout) else {
        assert_eq!(out.status.code(), Some(2), "{host}: neither an answer nor a block: {out:?}");
        return ("blocked".into(), stderr);
    };
    let (d, why) = match host {
        "claude-code" => (
            &v["hookSpecificOutput"]["permissionDecision"],
            &v["hookSpecificOutput"]["permissionDecisionReason"],
        ),
        "cursor" => (&v["permission"], &v["agent_message"]),
        "gemini-cli" | "opencode" => (&v["decision"], &v["reason"]),
        "copilot-cli" => (&v["permissionDecision"], &v["permissionDecisionReason"]),
        _ => unreachable!(),
    };
    (d.as_str().unwrap().to_owned(), format!("{} {stderr}", why.as_str().unwrap_or_default()))
}

pub(crate) fn ask_hook(host: &str, daemon: &Daemon, payload: &[u8]) -> (String, String) {
    let runtime = daemon.dir.join("xdg");
    let _ = std::fs::create_dir(&runtime);
    let mut child = Command::new(bin())
        .args(["hook", host, "--socket"])
        .arg(&daemon.socket)
        .env("XDG_RUNTIME_DIR", &runtime)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(payload).unwrap();
    host_answer(host, &child.wait_with_output().unwrap())
}

/// The newest recorded call of the given tool (`file`), as the daemon holds it.
pub(crate) fn last_file_call(daemon: &Daemon) -> Value {
    let mut c = daemon.client();
    let listed = c.result("action.list", json!({"limit": 1, "tool": "file"}));
    let id = listed["actions"][0]["id"].clone();
    assert!(id.is_string(), "no file call recorded: {listed}");
    c.result("action.get", json!({"id": id}))
}

/// A read of `<project>/../.ssh/id_ed25519` was PERMITted by a `path_starts_with` rule for the
/// project: the path is now read as the host opens it (absolute against the hook's `cwd`, `.`
/// and `..` resolved), in every host.
#[test]
fn dotdot_escape_from_project_is_resolved() {
    let pr = Project::new();
    let daemon = Daemon::start(&pr.example_policy());
    let key = pr.key.display().to_string();
    let cwd = pr.project.display().to_string();
    for host in READING_HOSTS {
        for path in
            [pr.p("../.ssh/id_ed25519"), pr.p("src/../../.ssh/./id_ed25519"), "../.ssh/id_ed25519".into()]
        {
            let (d, why) = ask_hook(host, &daemon, read_payload(host, &path, &cwd).as_bytes());
            assert_ne!(d, "allow", "{host}: `{path}` is {key}: {why}");
            let rec = last_file_call(&daemon);
            assert_eq!(rec["params"]["path"], key, "{host}: {rec}");
            assert_eq!(rec["context"]["host"], host, "{rec}");
        }
        // The project's own files, however spelled, are still read.
        for path in [pr.p("README.md"), pr.p("src/../README.md"), "./README.md".into()] {
            let (d, why) = ask_hook(host, &daemon, read_payload(host, &path, &cwd).as_bytes());
            assert_eq!(d, "allow", "{host}: `{path}`: {why}");
            assert_eq!(last_file_call(&daemon)["params"]["path"], pr.p("README.md"), "{host}");
        }
    }
}

/// A symlink in the project to the SSH directory (or to the key itself) was read as a project
/// file: the hook follows symlinks where the file exists.
#[test]
fn symlink_into_secret_dir_is_followed() {
    let pr = Project::new();
    std::os::unix::fs::symlink(pr.home.join(".ssh"), pr.project.join("keys")).unwrap();
    std::os::unix::fs::symlink(&pr.key, pr.project.join("notes.txt")).unwrap();
    let daemon = Daemon::start(&pr.example_policy());
    let key = pr.key.display().to_string();
    let cwd = pr.project.display().to_string();
    for host in READING_HOSTS {
        for path in [pr.p("keys/id_ed25519"), pr.p("notes.txt"), "keys/../notes.txt".into()] {
            let (d, why) = ask_hook(host, &daemon, read_payload(host, &path, &cwd).as_bytes());
            assert_ne!(d, "allow", "{host}: `{path}` is {key}: {why}");
            assert_eq!(last_file_call(&daemon)["params"]["path"], key, "{host}: {path}");
        }
        // A file not there yet under a followed directory: the directory's real path, then the rest.
        let (d, _) = ask_hook(host, &daemon, read_payload(host, &pr.p("keys/new/x"), &cwd).as_bytes());
        assert_ne!(d, "allow", "{host}");
        assert_eq!(last_file_call(&daemon)["params"]["path"], format!("{}/.ssh/new/x", pr.home.display()));
    }
}

/// The example policy of docs/hooks.md for `pr`, with `op` (besides reads) allowed in the
/// project too.
pub(crate) fn example_policy_also_allowing(pr: &Project, op: &str) -> String {
    let rule = format!(
        "  - id: {op}-in-the-project\n    match: {{ tool: file, op: {op}, path_starts_with: {}/ }}\n    allow: true\n  - id: everything-else-asks",
        pr.project.display()
    );
    let policy = pr.example_policy().replacen("  - id: everything-else-asks", &rule, 1);
    assert!(policy.contains(&format!("{op}-in-the-project")), "{policy}");
    policy
}

/// The hosts whose hooks write a file, and a payload of each writing `path` in `cwd`.
pub(crate) const WRITING_HOSTS: [&str; 4] = ["claude-code", "gemini-cli", "copilot-cli", "opencode"];

pub(crate) fn write_payload(host: &str, path: &str, cwd: &str) -> String {
    match host {
        "claude-code" => json!({"session_id": "s1", "cwd": cwd, "hook_event_name": "PreToolUse",
            "tool_name": "Write", "tool_input": {"file_path": path, "content": "x"}, "tool_use_id": "toolu_w"}),
        "gemini-cli" => json!({"session_id": "s1", "cwd": cwd, "hook_event_name": "BeforeTool",
            "tool_name": "write_file", "tool_input": {"file_path": path, "content": "x"}}),
        "copilot-cli" => json!({"timestamp": 1, "cwd": cwd, "toolName": "create",
            "toolArgs": json!({"path": path, "file_text": "x"}).to_string()}),
        "opencode" => json!({"hook_event_name": "tool.execute.before", "tool": "write", "sessionID": "s1",
            "callID": "call1", "args": {"filePath": path, "content": "x"}, "directory": cwd}),
        _ => unreachable!(),
    }
    .to_string()
}

/// The paths a recorded call was decided on (`paths` when there are several, else `path`).
pub(crate) fn decided_paths(rec: &Value) -> Vec<String> {
    match rec["params"]["paths"].as_array() {
        Some(list) => list.iter().map(|p| p.as_str().unwrap().to_owned()).collect(),
        None => vec![rec["params"]["path"].as_str().unwrap_or_default().to_owned()],
    }
}

/// A write to a symlink whose target does not exist creates the target (the kernel follows the
/// link for `O_CREAT`): it was decided on the link's name in the project and allowed. The link
/// is now followed through its target text (relative to its directory, link after link), so
/// the file decided on is the one that would be created; a loop is refused by the hook.
#[test]
fn write_through_dangling_symlink_decides_the_target() {
    let pr = Project::new();
    let newfile = pr.home.join(".ssh/newfile");
    std::os::unix::fs::symlink(&newfile, pr.project.join("dangling")).unwrap();
    // Relative, and through a second link: `rel` → `../hop` → `.ssh/authorized_keys` (missing).
    std::os::unix::fs::symlink(".ssh/authorized_keys", pr.home.join("hop")).unwrap();
    std::os::unix::fs::symlink("../hop", pr.project.join("rel")).unwrap();
    // A missing directory: what is written under it is decided under its target.
    std::os::unix::fs::symlink(pr.home.join(".ssh/newdir"), pr.project.join("gone-dir")).unwrap();
    std::os::unix::fs::symlink("loop-b", pr.project.join("loop-a")).unwrap();
    std::os::unix::fs::symlink("loop-a", pr.project.join("loop-b")).unwrap();
    let daemon = Daemon::start(&example_policy_also_allowing(&pr, "write"));
    let cwd = pr.project.display().to_string();
    let ssh = |rel: &str| format!("{}/.ssh/{rel}", pr.home.display());
    for host in WRITING_HOSTS {
        for (path, target) in [
            (pr.p("dangling"), ssh("newfile")),
            ("rel".to_owned(), ssh("authorized_keys")),
            (pr.p("gone-dir/x"), ssh("newdir/x")),
        ] {
            let (d, why) = ask_hook(host, &daemon, write_payload(host, &path, &cwd).as_bytes());
            assert_ne!(d, "allow", "{host}: writing `{path}` creates {target}: {why}");
            let rec = last_file_call(&daemon);
            assert_eq!(rec["params"]["path"], json!(target), "{host}: `{path}`: {rec}");
            let note = rec["context"]["path_note"].as_str().unwrap_or_default();
            assert!(note.contains("does not exist"), "{host}: `{path}`: the note says why: {rec}");
        }
        let (d, why) = ask_hook(host, &daemon, write_payload(host, &pr.p("loop-a"), &cwd).as_bytes());
        assert!(d == "deny" || d == "blocked", "{host}: {d}: {why}");
        assert!(why.contains("symlinks"), "{host}: a loop is refused with the reason: {why}");
        // A new file in the project is still written.
        let (d, why) = ask_hook(host, &daemon, write_payload(host, &pr.p("src/new.rs"), &cwd).as_bytes());
        assert_eq!(d, "allow", "{host}: {why}");
    }
    // Reads through the dangling link are decided on the target too.
    for host in READING_HOSTS {
        let (d, why) = ask_hook(host, &daemon, read_payload(host, &pr.p("dangling"), &cwd).as_bytes());
        assert_ne!(d, "allow", "{host}: {why}");
        assert_eq!(last_file_call(&daemon)["params"]["path"], json!(ssh("newfile")), "{host}");
    }
}

/// `keys/../.ssh/id_ed25519`, where `keys` links to `~/.ssh`, was resolved as text to
/// `<project>/.ssh/id_ed25519` and allowed, but the kernel applies `..` to the directory the
/// link leads to: `~/.ssh/../.ssh/id_ed25519`, the key. The path is now walked as the kernel
/// walks it; where a host resolving `..` as text first would open another file, both are decided.
#[test]
fn dotdot_after_symlink_resolves_like_the_kernel() {
    let pr = Project::new();
    std::os::unix::fs::symlink(pr.home.join(".ssh"), pr.project.join("keys")).unwrap();
    std::fs::create_dir_all(pr.project.join("src/a")).unwrap();
    std::os::unix::fs::symlink(pr.project.join("src/a"), pr.project.join("inner")).unwrap();
    let daemon = Daemon::start(&pr.example_policy());
    let key = pr.key.display().to_string();
    let cwd = pr.project.display().to_string();
    for host in READING_HOSTS {
        for path in [
            pr.p("keys/../.ssh/id_ed25519"),
            "keys/../.ssh/id_ed25519".into(),
            pr.p("keys/./../.ssh/id_ed25519"),
        ] {
            let (d, why) = ask_hook(host, &daemon, read_payload(host, &path, &cwd).as_bytes());
            assert_ne!(d, "allow", "{host}: `{path}` opens {key}: {why}");
            let rec = last_file_call(&daemon);
            assert!(decided_paths(&rec).contains(&key), "{host}: `{path}`: {rec}");
        }
        // Read as text, `inner/../../.ssh/…` is the key; the kernel reads `<project>/.ssh/…`:
        // both are decided, so the key is.
        let path = pr.p("inner/../../.ssh/id_ed25519");
        let (d, why) = ask_hook(host, &daemon, read_payload(host, &path, &cwd).as_bytes());
        assert_ne!(d, "allow", "{host}: `{path}`: {why}");
        let rec = last_file_call(&daemon);
        let paths = decided_paths(&rec);
        assert!(paths.contains(&key) && paths.contains(&pr.p(".ssh/id_ed25519")), "{host}: {rec}");
        // Both readings in the project: a project read.
        let (d, why) =
            ask_hook(host, &daemon, read_payload(host, &pr.p("inner/../main.rs"), &cwd).as_bytes());
        assert_eq!(d, "allow", "{host}: {why}");
        assert_eq!(decided_paths(&last_file_call(&daemon)), [pr.p("src/main.rs"), pr.p("main.rs")], "{host}");
    }
}

/// A wildcard before a symlinked directory (`k*/id_ed25519`, `*/id_ed25519`, `**/id_ed25519`)
/// reached the key through the link, but was decided on the project directory and allowed. A
/// pattern is now decided on what it can reach: every symlink its wildcards meet that leads out
/// of its directory adds the link's target (with the rest of the pattern) to the paths decided.
#[test]
fn glob_through_symlinked_dir_is_decided_on_what_it_reaches() {
    let pr = Project::new();
    std::os::unix::fs::symlink(pr.home.join(".ssh"), pr.project.join("keys")).unwrap();
    // A link that stays in the project leads nowhere new.
    std::os::unix::fs::symlink("src", pr.project.join("source")).unwrap();
    let daemon = Daemon::start(&example_policy_also_allowing(&pr, "search"));
    let cwd = pr.project.display().to_string();
    let ssh = format!("{}/.ssh/", pr.home.display());
    let gemini = |input: Value| {
        let payload = json!({"session_id": "g1", "cwd": cwd, "hook_event_name": "BeforeTool",
            "tool_name": "read_many_files", "tool_input": input});
        ask_hook("gemini-cli", &daemon, payload.to_string().as_bytes())
    };
    for input in [
        json!({"paths": ["k*/id_ed25519"]}),
        json!({"include": ["*/id_ed25519"]}),
        json!({"paths": ["**/id_ed25519"]}),
        json!({"paths": ["README.md", "{src,k?ys}/*"]}),
        json!({"paths": ["."]}),
    ] {
        let (d, why) = gemini(input.clone());
        assert_ne!(d, "allow", "{input}: {why}");
        let rec = last_file_call(&daemon);
        assert!(rec["params"]["path"].as_str().unwrap().starts_with(&ssh), "{input}: {rec}");
        assert!(rec["context"]["path_note"].as_str().unwrap_or_default().contains("keys"), "{input}: {rec}");
    }
    assert_eq!(
        last_file_call(&daemon)["params"]["path"],
        json!(format!("{ssh}**")),
        "`.` reads all under it"
    );
    let (_, _) = gemini(json!({"paths": ["k*/id_ed25519"]}));
    assert_eq!(last_file_call(&daemon)["params"]["path"], json!(pr.key.display().to_string()));
    // The same in the hosts' glob tools.
    let glob = |host: &str, pattern: &str| {
        let payload = match host {
            "claude-code" => json!({"session_id": "s1", "cwd": cwd, "hook_event_name": "PreToolUse",
                "tool_name": "Glob", "tool_input": {"pattern": pattern}, "tool_use_id": "toolu_g"}),
            "gemini-cli" => json!({"session_id": "s1", "cwd": cwd, "hook_event_name": "BeforeTool",
                "tool_name": "glob", "tool_input": {"pattern": pattern}}),
            "copilot-cli" => json!({"timestamp": 1, "cwd": cwd, "toolName": "glob",
                "toolArgs": json!({"pattern": pattern}).to_string()}),
            _ => json!({"hook_event_name": "tool.execute.before", "tool": "glob", "sessionID": "s1",
                "callID": "call1", "args": {"pattern": pattern}, "directory": cwd}),
        };
        ask_hook(host, &daemon, payload.to_string().as_bytes())
    };
    for host in ["claude-code", "gemini-cli", "copilot-cli", "opencode"] {
        for pattern in ["k*/id_ed25519", "*/id_ed25519", "**/id_ed25519"] {
            let (d, why) = glob(host, pattern);
            assert_ne!(d, "allow", "{host}: `{pattern}`: {why}");
            let rec = last_file_call(&daemon);
            assert!(decided_paths(&rec).iter().any(|p| p.starts_with(&ssh)), "{host}: `{pattern}`: {rec}");
        }
        // In the project, through a link that stays in it: allowed.
        for pattern in ["src/*.rs", "s*/*.rs", "{src,source}/**/*.rs"] {
            let (d, why) = glob(host, pattern);
            assert_eq!(d, "allow", "{host}: `{pattern}`: {why}");
        }
    }
}

/// A grant made when a hook call is approved is meant to cover that agent session only, but
/// the hook put the host's session id only in the call's `context`, so the grant covered every
/// session of the uid. The call's `session_id` now carries it (the context keeps it too).
#[test]
fn hook_calls_carry_the_session_id() {
    let daemon = Daemon::start(HOOK_POLICY);
    let shell = |host: &str, session: &str, command: &str| {
        let payload = match host {
            "claude-code" => json!({"session_id": session, "cwd": "/tmp", "hook_event_name": "PreToolUse",
                "tool_name": "Bash", "tool_input": {"command": command}, "tool_use_id": "toolu_s"}),
            "gemini-cli" => json!({"session_id": session, "cwd": "/tmp", "hook_event_name": "BeforeTool",
                "tool_name": "run_shell_command", "tool_input": {"command": command}}),
            "cursor" => json!({"hook_event_name": "beforeShellExecution", "conversation_id": session,
                "generation_id": "g1", "command": command, "cwd": "/tmp", "workspace_roots": ["/tmp"]}),
            _ => json!({"hook_event_name": "tool.execute.before", "tool": "bash", "sessionID": session,
                "callID": "call1", "args": {"command": command}, "directory": "/tmp"}),
        };
        ask_hook(host, &daemon, payload.to_string().as_bytes())
    };
    let mut c = daemon.client();
    for host in ["claude-code", "gemini-cli", "cursor", "opencode"] {
        let (d, why) = shell(host, "sess-a", "ls");
        assert!(d == "ask" || d == "deny", "{host}: a shell command waits for a person: {d}: {why}");
        let listed = c.result("action.list", json!({"limit": 1, "tool": "shell"}));
        let id = listed["actions"][0]["id"].as_str().unwrap().to_owned();
        let rec = c.result("action.get", json!({"id": id}));
        assert_eq!(rec["session_id"], "sess-a", "{host}: {rec}");
        assert_eq!(rec["context"]["session_id"], "sess-a", "{host}: {rec}");
        let out = Command::new(bin())
            .args(["approve", &id, "--grant", "30m", "--socket"])
            .arg(&daemon.socket)
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{host}: {said} {}", String::from_utf8_lossy(&out.stderr));
        assert!(said.contains("sess-a"), "{host}: the grant names the session: {said}");
        let (d, why) = shell(host, "sess-a", "ls -la");
        assert_eq!(d, "allow", "{host}: the same session is granted: {why}");
        let (d, why) = shell(host, "sess-b", "ls -la");
        assert_ne!(d, "allow", "{host}: another session is not: {why}");
    }
}

/// Paths the hook cannot read with certainty are refused by the hook itself, with the reason,
/// and never sent: a symlink to a name that is not UTF-8 (it was decided on the link's name in
/// the project), a NUL, and bytes that are not UTF-8 in the payload.
#[test]
fn non_utf8_path_is_denied() {
    use std::os::unix::ffi::OsStrExt;
    let pr = Project::new();
    let odd = pr.home.join(std::ffi::OsStr::from_bytes(b"secret-\xff"));
    std::fs::write(&odd, "x").unwrap();
    std::os::unix::fs::symlink(&odd, pr.project.join("odd.txt")).unwrap();
    let daemon = Daemon::start(&pr.example_policy());
    let cwd = pr.project.display().to_string();
    for host in READING_HOSTS {
        let (d, why) = ask_hook(host, &daemon, read_payload(host, &pr.p("odd.txt"), &cwd).as_bytes());
        assert!(d == "deny" || d == "blocked", "{host}: {d}: {why}");
        assert!(why.contains("not valid UTF-8"), "{host}: {why}");
        let (d, why) = ask_hook(host, &daemon, read_payload(host, &pr.p("README.md\0"), &cwd).as_bytes());
        assert!(d == "deny" || d == "blocked", "{host}: {d}: {why}");
        assert!(why.contains("NUL"), "{host}: {why}");
        let raw = read_payload(host, &pr.p("README-@@.md"), &cwd).replace("@@", "\u{1}").into_bytes();
        let raw: Vec<u8> = raw.into_iter().map(|b| if b == 1 { 0xff } else { b }).collect();
        let (d, why) = ask_hook(host, &daemon, &raw);
        assert!(d == "deny" || d == "blocked", "{host}: {d}: {why}");
    }
    let mut c = daemon.client();
    let listed = c.result("action.list", json!({"limit": 10}));
    assert_eq!(listed["actions"], json!([]), "nothing was sent: {listed}");
}

/// A relative path with no absolute working directory to read it against, and a path starting
/// with `~` (which some hosts expand), are refused by the hook: it cannot tell which file the
/// host opens.
#[test]
fn path_that_cannot_be_made_absolute_is_denied() {
    let pr = Project::new();
    let daemon = Daemon::start(&pr.example_policy());
    for host in READING_HOSTS {
        let (d, why) = ask_hook(host, &daemon, read_payload(host, "README.md", "demo").as_bytes());
        assert!(d == "deny" || d == "blocked", "{host}: {d}: {why}");
        assert!(why.contains("not absolute"), "{host}: {why}");
        let cwd = pr.project.display().to_string();
        let (d, why) = ask_hook(host, &daemon, read_payload(host, "~/.ssh/id_ed25519", &cwd).as_bytes());
        assert!(d == "deny" || d == "blocked", "{host}: {d}: {why}");
        assert!(why.contains('~'), "{host}: {why}");
    }
    let mut c = daemon.client();
    assert_eq!(c.result("action.list", json!({"limit": 10}))["actions"], json!([]));
}

/// Gemini CLI's `read_many_files` carried no `path`, so a rule on paths never saw what it reads.
/// Every entry of `paths` and `include` is now resolved into `paths`, and the call is decided
/// once per path: denied if any is denied, held if any waits for a person, allowed only if all
/// are; a list it cannot read is refused.
#[test]
fn read_many_files_carries_every_path() {
    let pr = Project::new();
    let policy = format!(
        "version: 1\napprovals:\n  allow_same_uid: true\nrules:\n\
         \x20 - id: no-keys\n    match: {{ tool: file, path_contains: /.ssh/ }}\n    deny: true\n\
         \x20 - id: reads-in-the-project\n    match: {{ tool: file, op: read, path_starts_with: {}/ }}\n    allow: true\n\
         \x20 - id: everything-else-asks\n    match: {{ tool: \"*\" }}\n    require_approval: true\n",
        pr.project.display()
    );
    let daemon = Daemon::start(&policy);
    let cwd = pr.project.display().to_string();
    let many = |input: Value| {
        let payload = json!({"session_id": "g1", "cwd": cwd, "hook_event_name": "BeforeTool",
            "tool_name": "read_many_files", "tool_input": input});
        ask_hook("gemini-cli", &daemon, payload.to_string().as_bytes())
    };
    let mut c = daemon.client();
    let recorded = |c: &mut Client, n: usize| -> Vec<Value> {
        let listed = c.result("action.list", json!({"limit": n, "tool": "file"}));
        let ids: Vec<Value> = listed["actions"].as_array().unwrap().iter().map(|a| a["id"].clone()).collect();
        let mut recs: Vec<Value> =
            ids.into_iter().map(|id| c.result("action.get", json!({"id": id}))).collect();
        recs.reverse();
        recs
    };

    // Every path in the project: allowed, one decision per path, each carrying them all.
    let input = json!({"paths": ["README.md", "src/*.rs"], "include": ["./docs/"]});
    let (d, why) = many(input.clone());
    assert_eq!(d, "allow", "{why}");
    let all = json!([pr.p("README.md"), pr.p("src/*.rs"), pr.p("docs")]);
    let recs = recorded(&mut c, 3);
    for (rec, path) in recs.iter().zip(all.as_array().unwrap()) {
        assert_eq!(
            (&rec["effect"], &rec["params"]["path"], &rec["params"]["paths"]),
            (&json!("PERMIT"), path, &all),
            "{rec}"
        );
    }
    // AfterTool records the outcome of each.
    let after = json!({"session_id": "g1", "cwd": cwd, "hook_event_name": "AfterTool", "tool_name": "read_many_files",
        "tool_input": input, "tool_response": {"llmContent": "…", "returnDisplay": "Read 3 files", "error": null}});
    let runtime = daemon.dir.join("xdg");
    let out = run_hook("gemini-cli", &runtime, &daemon.socket, &after.to_string());
    assert!(out.status.success(), "{out:?}");
    for rec in recorded(&mut c, 3) {
        assert_eq!(rec["status"], "succeeded", "{rec}");
    }

    // One path to the keys: denied, whatever the others are.
    for input in [
        json!({"paths": ["README.md", "../.ssh/id_ed25519"]}),
        json!({"include": ["README.md", "../../me/.ssh/*"]}),
        json!({"paths": ["/etc/hostname", "keys/../../.ssh/"]}),
    ] {
        let (d, why) = many(input.clone());
        assert_eq!(d, "deny", "{input}: {why}");
        assert!(why.contains("no-keys"), "{input}: {why}");
    }
    assert_eq!(recorded(&mut c, 1)[0]["params"]["path"], format!("{}/.ssh/", pr.home.display()));

    // One path outside the project and not denied: held for a person; approved, the retry runs.
    let input = json!({"paths": ["README.md", "/etc/hostname"]});
    let (d, why) = many(input.clone());
    assert_eq!(d, "deny", "Gemini CLI cannot ask: {why}");
    assert!(why.contains("/etc/hostname") && why.contains("faramesh approve "), "{why}");
    let approval = why.split("faramesh approve ").nth(1).and_then(|r| r.split('`').next()).unwrap();
    let ok =
        Command::new(bin()).args(["approve", approval, "--socket"]).arg(&daemon.socket).output().unwrap();
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    let (d, why) = many(input);
    assert_eq!(d, "allow", "the retry after approval runs: {why}");

    // No list, a list of something else, or an empty one: refused, never sent.
    let before = c.result("action.list", json!({"limit": 100}))["actions"].as_array().unwrap().len();
    for input in
        [json!({}), json!({"paths": "README.md"}), json!({"paths": [1]}), json!({"paths": [], "include": []})]
    {
        let (d, why) = many(input.clone());
        assert!(d == "deny" || d == "blocked", "{input}: {d}: {why}");
        assert!(why.contains("`paths`"), "{input}: {why}");
    }
    assert_eq!(c.result("action.list", json!({"limit": 100}))["actions"].as_array().unwrap().len(), before);
}

/// Patches that touch several files (Copilot CLI's `apply_patch`, OpenCode's `patch`) are
/// decided on every file they name, as `read_many_files` is.
#[test]
fn patch_tools_carry_every_file() {
    let pr = Project::new();
    let daemon = Daemon::start(&format!(
        "version: 1\nrules:\n  - id: edits-in-the-project\n    match: {{ tool: file, op: edit, path_starts_with: {}/ }}\n    allow: true\n",
        pr.project.display()
    ));
    let cwd = pr.project.display().to_string();
    let patch = |files: &[&str]| {
        let mut p = String::from("*** Begin Patch\n");
        for f in files {
            p += &format!("*** Update File: {f}\n@@\n-a\n+b\n");
        }
        p + "*** End Patch\n"
    };
    let copilot = |text: &str| json!({"timestamp": 1, "cwd": cwd, "toolName": "apply_patch", "toolArgs": json!({"input": text}).to_string()});
    let opencode = |text: &str| {
        json!({"hook_event_name": "tool.execute.before", "tool": "patch", "sessionID": "s", "callID": "c",
            "args": {"patchText": text}, "directory": cwd})
    };
    type Payload<'a> = &'a dyn Fn(&str) -> Value;
    let hosts: [(&str, Payload); 2] = [("copilot-cli", &copilot), ("opencode", &opencode)];
    for (host, payload) in hosts {
        let (d, why) =
            ask_hook(host, &daemon, payload(&patch(&["README.md", "src/main.rs"])).to_string().as_bytes());
        assert_eq!(d, "allow", "{host}: {why}");
        let rec = last_file_call(&daemon);
        assert_eq!(rec["params"]["paths"], json!([pr.p("README.md"), pr.p("src/main.rs")]), "{host}: {rec}");
        let (d, why) = ask_hook(
            host,
            &daemon,
            payload(&patch(&["README.md", "../.ssh/authorized_keys"])).to_string().as_bytes(),
        );
        assert_eq!(d, "deny", "{host}: {why}");
        assert_eq!(
            last_file_call(&daemon)["params"]["path"],
            format!("{}/.ssh/authorized_keys", pr.home.display())
        );
        let (d, why) = ask_hook(host, &daemon, payload("not a patch").to_string().as_bytes());
        assert!(d == "deny" || d == "blocked", "{host}: {d}: {why}");
    }
}

/// `hook install` for Cursor (`.cursor/hooks.json`, flat entries told to block on failure) and
/// Copilot CLI (`.github/hooks/faramesh.json`, a file of its own) round-trips.
#[test]
fn cursor_and_copilot_hook_install_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let run_in = |args: &[&str]| {
        let out = Command::new(bin())
            .args(args)
            .current_dir(dir.path())
            .env_remove("FARAMESH_SOCKET")
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let cursor = dir.path().join(".cursor/hooks.json");
    std::fs::create_dir_all(cursor.parent().unwrap()).unwrap();
    let original = json!({"version": 1, "hooks": {"afterFileEdit": [{"command": "./format.sh"}]}});
    std::fs::write(&cursor, original.to_string()).unwrap();
    let (code, out, err) = run_in(&["hook", "install", "cursor"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("installed"), "{out}");
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&cursor).unwrap()).unwrap();
    let entry = &v["hooks"]["beforeShellExecution"][0];
    assert!(entry["command"].as_str().unwrap().ends_with("hook cursor"), "{v}");
    assert_eq!(entry["failClosed"], true);
    assert_eq!(v["hooks"]["afterFileEdit"], original["hooks"]["afterFileEdit"]);
    assert!(run_in(&["hook", "install", "cursor"]).1.contains("already installed"));
    let (_, doctor, _) = run_in(&["doctor"]);
    assert!(doctor.contains("cursor (.cursor/hooks.json)"), "{doctor}");
    run_in(&["hook", "install", "cursor", "--uninstall"]);
    let back: Value = serde_json::from_str(&std::fs::read_to_string(&cursor).unwrap()).unwrap();
    assert_eq!(back, original);

    let (code, _, err) = run_in(&["hook", "install", "copilot-cli"]);
    assert_eq!(code, Some(0), "{err}");
    let file = dir.path().join(".github/hooks/faramesh.json");
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(v["version"], 1);
    assert!(v["hooks"]["preToolUse"][0]["bash"].as_str().unwrap().ends_with("hook copilot-cli"), "{v}");
    assert!(v["hooks"]["postToolUse"].is_array(), "{v}");
    run_in(&["hook", "install", "copilot-cli", "--uninstall"]);
    assert!(!file.exists(), "the file was ours alone");
    let (code, _, err) = run_in(&["hook", "install", "copilot-cli", "--user"]);
    assert_ne!(code, Some(0));
    assert!(err.contains(".github/hooks"), "{err}");

    // OpenCode: a plugin file of ours, listed by doctor, removed by --uninstall; a file of
    // someone else's at that path is left alone.
    let plugin = dir.path().join(".opencode/plugins/faramesh.js");
    let (code, out, err) = run_in(&["hook", "install", "opencode"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("installed"), "{out}");
    let text = std::fs::read_to_string(&plugin).unwrap();
    assert!(text.contains("tool.execute.before") && text.contains("\"hook\",\"opencode\""), "{text}");
    assert!(run_in(&["hook", "install", "opencode"]).1.contains("already installed"));
    assert!(run_in(&["doctor"]).1.contains("opencode (.opencode/plugins/faramesh.js)"));
    run_in(&["hook", "install", "opencode", "--uninstall"]);
    assert!(!plugin.exists());
    std::fs::write(&plugin, "export const Mine = async () => ({});\n").unwrap();
    let (code, _, err) = run_in(&["hook", "install", "opencode"]);
    assert_ne!(code, Some(0));
    assert!(err.contains("not the Faramesh plugin"), "{err}");
}

/// A webhook receiver on loopback: records each request (headers lower-cased, body) and answers
/// 503 while `failing` is set, 200 otherwise.
/// Requests received: headers and body.
pub(crate) type Received = Arc<Mutex<Vec<(HashMap<String, String>, String)>>>;
