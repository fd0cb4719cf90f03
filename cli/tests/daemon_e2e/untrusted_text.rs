//! What agents and MCP servers write reaches the operator's terminal only escaped: an agent id,
//! an argument or a tool name holding an escape sequence or a line break cannot clear the
//! screen, recolour it or add a line that looks like the CLI's own, in any table or text
//! output. `--json` output stays JSON (which escapes them itself).

use super::*;

/// Clears the screen, then starts a line of its own.
const FORGED: &str = "\x1b[2J\nAPPROVAL  forged";

/// What a command printed on stdout (it must have succeeded).
fn stdout(what: &str, out: &std::process::Output) -> String {
    assert!(out.status.success(), "{what}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `text` must hold no raw escape, carriage return or other control character but the line
/// breaks of the CLI's own lines (`lines` of them at most), and must show `FORGED` escaped.
fn assert_escaped(what: &str, text: &str, lines: usize) {
    assert!(
        !text.chars().any(|c| c.is_control() && c != '\n'),
        "{what}: a raw control character in {text:?}"
    );
    assert!(text.contains("\\x1b[2J\\nAPPROVAL  forged"), "{what}: {text:?}");
    assert!(!text.lines().any(|l| l.starts_with("APPROVAL  forged")), "{what}: a forged line: {text:?}");
    assert!(text.lines().count() <= lines, "{what}: {} lines: {text:?}", text.lines().count());
}

/// Regression: `faramesh list`, `get`, `tail`, `explain`, `pending`'s neighbours `grants`, and
/// `mcp pins` printed agent ids, arguments and MCP tool names as they came, so an agent (or an
/// MCP server) could clear the operator's screen and print lines of its own.
#[test]
fn agent_text_cannot_forge_terminal_output() {
    let daemon = Daemon::start(APPROVAL_POLICY);
    let sock = daemon.socket.to_str().unwrap().to_owned();
    let cli = |args: &[&str]| Command::new(bin()).args(args).env("FARAMESH_SOCKET", &sock).output().unwrap();
    let mut c = daemon.client();
    // An agent id the daemon refuses (DENY INVALID_REQUEST) is still recorded as sent.
    let refused =
        c.result("govern", json!({"agent_id": format!("bot{FORGED}"), "tool": "http", "operation": "get"}));
    assert_eq!(refused["reason_code"], "INVALID_REQUEST", "{refused}");
    let refused_id = refused["action_id"].as_str().unwrap().to_owned();
    // A deferred call whose argument carries the same, approved with a grant for these
    // arguments (the grant's summary quotes them).
    let deferred = c.result("govern", shell_call(&format!("ls{FORGED}")));
    let approval = deferred["approval_id"].as_str().unwrap().to_owned();
    // An MCP server's tool name.
    c.result("mcp.tools", json!({"server": "files", "tools": [{"name": format!("read{FORGED}")}]}));

    assert_escaped("list", &stdout("list", &cli(&["list"])), 4);
    assert_escaped("get", &stdout("get", &cli(&["get", &refused_id])), 17);
    assert_escaped("explain", &stdout("explain", &cli(&["explain", &refused_id])), 12);
    assert_escaped("mcp pins", &stdout("mcp pins", &cli(&["mcp", "pins"])), 1);
    let approved = cli(&["approve", &approval, "--grant", "30m", "--same-args"]);
    let text = stdout("approve", &approved);
    assert!(!text.chars().any(|c| c.is_control() && c != '\n') && text.lines().count() == 2, "{text:?}");
    assert_escaped("grants", &stdout("grants", &cli(&["grants"])), 2);
    // `tail` shows the last entries, then follows: stopped once it printed them.
    let tail = Command::new(bin())
        .args(["tail", "-n", "20"])
        .env("FARAMESH_SOCKET", &sock)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(tail.id() as i32), nix::sys::signal::Signal::SIGTERM)
        .unwrap();
    let out = tail.wait_with_output().unwrap();
    assert_escaped("tail", &String::from_utf8_lossy(&out.stdout), 20);
    // `--json` is JSON, as sent.
    let json = cli(&["--json", "list"]);
    let v: Value = serde_json::from_slice(&json.stdout).unwrap();
    assert!(v["actions"].as_array().unwrap().iter().any(|a| a["agent_id"] == format!("bot{FORGED}")), "{v}");
}
