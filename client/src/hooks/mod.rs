//! `faramesh hook HOST`: a coding agent's tool-call hook, answered by the daemon (`docs/hooks.md`).
//!
//! The host runs the hook as a process per tool call with the call as JSON on stdin; the hook
//! asks the daemon (`govern`, recorded like every call) and answers in the host's own format.
//! Anything it cannot read, and a daemon it cannot reach, is a refusal (exit 2, the reason on
//! stderr), never an exit the host could read as "allow".
//!
//! Each host's contract is a module implementing `Contract` (`claude_code`, `gemini_cli`,
//! `cursor`, `copilot_cli`, `opencode`): how its payload is read into an `Incoming`
//! call, and how an answer is written in its format. `run` is what every host shares (asking
//! the daemon, DEFER, outcomes), `call` and `paths`/`glob` how a tool's paths are read as the
//! host opens them, `install` the settings files.

mod call;
mod claude_code;
mod copilot_cli;
mod cursor;
mod gemini_cli;
mod glob;
mod install;
mod opencode;
mod paths;
mod run;

use serde_json::{Map, Value};

pub use install::{InstallOptions, install, wired_hosts};
pub use run::{HookOptions, hook};

/// What a hook could not read with certainty (a payload field, a path, a glob), in words: the
/// call is refused with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreadable(String);

impl Unreadable {
    /// The words.
    pub fn into_message(self) -> String {
        self.0
    }
}

impl From<String> for Unreadable {
    fn from(why: String) -> Unreadable {
        Unreadable(why)
    }
}

impl From<&str> for Unreadable {
    fn from(why: &str) -> Unreadable {
        Unreadable(why.to_owned())
    }
}

impl std::ops::Deref for Unreadable {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Unreadable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A refusal with these words.
pub(crate) fn refuse<T>(why: impl Into<Unreadable>) -> Result<T, Unreadable> {
    Err(why.into())
}

/// The exit code Claude Code and Gemini CLI read as "block this call" (the reason on stderr).
pub const EXIT_BLOCK: u8 = 2;

/// A coding agent whose tool-call hook `faramesh hook` answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum Host {
    /// Claude Code (`PreToolUse`, `PostToolUse`, `PostToolUseFailure` command hooks).
    ClaudeCode,
    /// Gemini CLI (`BeforeTool`, `AfterTool` command hooks).
    GeminiCli,
    /// Cursor (`beforeShellExecution`, `beforeMCPExecution`, `beforeReadFile`,
    /// `afterShellExecution`, `afterMCPExecution`).
    Cursor,
    /// GitHub Copilot CLI (`preToolUse`, `postToolUse`).
    CopilotCli,
    /// OpenCode (its `tool.execute.before` and `tool.execute.after` plugin hooks, through the
    /// plugin `hook install opencode` writes).
    Opencode,
}

/// Every host, for `doctor`.
const HOSTS: [Host; 5] = [Host::ClaudeCode, Host::GeminiCli, Host::Cursor, Host::CopilotCli, Host::Opencode];

impl Host {
    /// The name the host is given on the command line (`faramesh hook NAME`).
    pub fn name(self) -> &'static str {
        match self {
            Host::ClaudeCode => "claude-code",
            Host::GeminiCli => "gemini-cli",
            Host::Cursor => "cursor",
            Host::CopilotCli => "copilot-cli",
            Host::Opencode => "opencode",
        }
    }

    /// The host's hook contract.
    fn contract(self) -> &'static dyn Contract {
        match self {
            Host::ClaudeCode => &claude_code::ClaudeCode,
            Host::GeminiCli => &gemini_cli::GeminiCli,
            Host::Cursor => &cursor::Cursor,
            Host::CopilotCli => &copilot_cli::CopilotCli,
            Host::Opencode => &opencode::Opencode,
        }
    }
}

/// What the hook answers a call before it runs, in the host's terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    Allow,
    Deny,
    /// The host asks its user.
    Ask,
}

impl Answer {
    fn as_str(self) -> &'static str {
        match self {
            Answer::Allow => "allow",
            Answer::Deny => "deny",
            Answer::Ask => "ask",
        }
    }
}

/// One coding agent's hook contract: the events it sends and the settings that wire them, how
/// its payload is read into a call, and how an answer is written in its format.
trait Contract: Sync {
    /// The events `install` wires; those before the tool runs come first.
    fn events(&self) -> &'static [&'static str];

    /// The settings file, relative to the project or the home directory.
    fn settings(&self) -> &'static str;

    /// Whether the host can ask its user about a call at `event`.
    fn can_ask(&self, event: &str) -> bool;

    /// One hook entry running `command` in the host's settings.
    fn entry(&self, command: &str) -> serde_json::Value;

    /// Whether the host's hook entries are flat (`[{command}]`) rather than matchers holding
    /// `hooks` lists.
    fn flat_entries(&self) -> bool {
        false
    }

    /// The key of a hook entry holding its command.
    fn command_key(&self) -> &'static str {
        "command"
    }

    /// Reads the host's hook payload: the call, or why it cannot be decided on.
    fn read(&self, payload: &Map<String, Value>) -> Result<call::Incoming, Unreadable>;

    /// The answer to a call before it runs, on stdout.
    fn answer(&self, answer: Answer, reason: &str) -> Value;

    /// What a refusal prints on stdout besides the reason on stderr (nothing by default).
    fn refusal(&self, _reason: &str) -> Option<Value> {
        None
    }

    /// The exit code of a refusal.
    fn refusal_exit(&self) -> u8 {
        EXIT_BLOCK
    }

    /// Whether the host reads an answer (an empty object) to the events after a tool ran.
    fn answers_after(&self) -> bool {
        false
    }

    /// The answer that blocks a tool's result from the model after it ran, where the host lets
    /// a hook do that (`None`: it cannot; the verdict is only recorded).
    fn after_block(&self, _reason: &str) -> Option<Value> {
        None
    }
}
