//! `faramesh hook HOST` and `faramesh hook install HOST`: the command line of a coding agent's
//! tool-call hook (`docs/hooks.md`); the hook itself is [`crate::hooks`].

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Args, Subcommand};

use crate::args::SocketArg;
use crate::hooks::{self, HookOptions, Host, InstallOptions};

pub(crate) use crate::hooks::EXIT_BLOCK;

/// Whether these command-line arguments run a hook (`faramesh [FLAGS] hook …`, not `hook install`).
pub(crate) fn is_hook_run(args: impl Iterator<Item = String>) -> bool {
    let mut rest = args.skip(1).skip_while(|a| a.starts_with('-'));
    rest.next().as_deref() == Some("hook") && rest.next().as_deref() != Some("install")
}

#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct HookArgs {
    #[command(subcommand)]
    command: Option<HookCommand>,
    /// The host whose hook payload is on stdin.
    #[arg(value_enum)]
    host: Option<Host>,
    /// The agent id calls are decided for (default: the host's name).
    #[arg(long)]
    agent_id: Option<String>,
    /// DEFER: `ask` (the host asks its user where it can, Claude Code; elsewhere the call is
    /// refused with how to approve it, and the same call retried after approval runs) or
    /// `wait[=SECONDS]` (hold the call until a person decides in Faramesh; default 120 s).
    #[arg(long, default_value = "ask")]
    defer: String,
    #[command(flatten)]
    socket: SocketArg,
}

#[derive(Subcommand, Debug)]
enum HookCommand {
    /// Write the hook into the host's settings (idempotent; other hooks and settings are kept).
    Install(InstallArgs),
}

#[derive(Args, Debug)]
struct InstallArgs {
    #[arg(value_enum)]
    host: Host,
    /// The user's settings (`~/.claude/settings.json`, `~/.gemini/settings.json`,
    /// `~/.cursor/hooks.json`) instead of the project's (the same paths in the current
    /// directory; Copilot CLI: `.github/hooks/faramesh.json`, project only).
    #[arg(long)]
    user: bool,
    /// The project's settings (the default).
    #[arg(long, conflicts_with = "user")]
    project: bool,
    /// Remove the hook instead.
    #[arg(long)]
    uninstall: bool,
    /// The settings file to edit (instead of the host's default).
    #[arg(long, value_name = "FILE")]
    settings: Option<PathBuf>,
}

pub fn hook(args: HookArgs) -> Result<ExitCode> {
    if let Some(HookCommand::Install(a)) = args.command {
        let options =
            InstallOptions { host: a.host, user: a.user, uninstall: a.uninstall, settings: a.settings };
        return hooks::install(&options);
    }
    let socket = args.socket.path();
    Ok(hooks::hook(HookOptions { host: args.host, agent_id: args.agent_id, defer: args.defer, socket }))
}

#[cfg(test)]
mod tests {
    use super::is_hook_run;

    #[test]
    fn a_hook_run_is_told_from_its_arguments() {
        let args = |a: &[&str]| a.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>().into_iter();
        assert!(is_hook_run(args(&["faramesh", "hook", "claude-code"])));
        assert!(is_hook_run(args(&["faramesh", "--json", "hook", "cursor"])));
        assert!(!is_hook_run(args(&["faramesh", "hook", "install", "claude-code"])));
        assert!(!is_hook_run(args(&["faramesh", "list"])));
    }
}
