//! `faramesh verify-log`, `faramesh log pubkey|checkpoint`, `faramesh export`: the decision log
//! read straight from its file (while the daemon is stopped, or on a copy).
//! `verify` checks the log and its receipts, `maintain` backs it up, prunes and exports it.

mod maintain;
mod verify;

pub use maintain::{ExportArgs, export};
pub use verify::{VerifyArgs, VerifyProofArgs, verify, verify_proof};

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, Subcommand};
use faramesh_log::LogKey;
use faramesh_log::verify::{OfflineError, offline};
use serde_json::json;

use crate::args::{SocketArg, StateDir};
use maintain::{BackupArgs, PruneArgs, backup, prune};
use verify::{ProofArgs, proof};

#[derive(Subcommand, Debug)]
pub enum LogCommand {
    /// Print the public key that verifies this host's log.
    #[command(after_help = "Example:\n  faramesh log pubkey > faramesh.pub")]
    Pubkey(LogDaemonArgs),
    /// Write an offline receipt for one entry: the record, its inclusion proof and the newest
    /// checkpoint witnesses cosigned (C2SP tlog-proof); `faramesh verify-proof` checks it.
    #[command(
        after_help = "Without cosigned checkpoints yet, the receipt carries the log's latest checkpoint (signed by the\nhost only) and says so.\n\nExamples:\n  faramesh log proof --seq 1042 > 1042.tlog-proof\n  faramesh log proof --id 3f9c2a1b -o decision.tlog-proof"
    )]
    Proof(ProofArgs),
    /// Print the latest signed checkpoint (save it to check later that nothing was cut off).
    #[command(after_help = "Example:\n  faramesh log checkpoint > $(date +%F).checkpoint")]
    Checkpoint(LogDaemonArgs),
    /// Remove old entries (whole commits) that were exported or archived, recording the cut.
    #[command(
        after_help = "The cut is recorded in the log as a signed `prune` entry naming the first kept entry and the\nhash chained before it; `verify-log` checks the pruned log from there. Entries that were never\nexported (`faramesh export`) or archived (`--archive`) are kept unless you pass --force.\n\nExamples:\n  faramesh log prune --before 2026-09-01T00:00:00Z --archive /var/backups/faramesh-2026-08.jsonl\n  faramesh export > all.jsonl && faramesh log prune --keep-last 1000000\n  faramesh log prune --keep-last 100000 --dry-run"
    )]
    Prune(PruneArgs),
    /// Write a consistent copy of the log file (through the daemon while it runs).
    #[command(
        after_help = "A file copied with `cp` while the daemon writes it can be torn; this copy is the log as of one\ncommit, and verifies like the original.\n\nExample:\n  faramesh log backup /var/backups/faramesh.redb && faramesh verify-log --file /var/backups/faramesh.redb --pubkey \"$(faramesh log pubkey)\""
    )]
    Backup(BackupArgs),
}

/// The state dir to read offline, and the daemon to ask when it holds the log.
#[derive(Args, Debug)]
pub struct LogDaemonArgs {
    #[command(flatten)]
    state: StateDir,
    #[command(flatten)]
    socket: SocketArg,
}

pub(super) fn read_arg_or_file(value: &str) -> Result<String> {
    if value == "-" {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s).context("cannot read stdin")?;
        return Ok(s);
    }
    let path = Path::new(value);
    if path.exists() {
        return std::fs::read_to_string(path).with_context(|| format!("cannot read `{value}`"));
    }
    Ok(value.to_owned())
}

/// An offline read's error for a person: when a daemon holds the file, how to proceed.
pub(crate) fn offline_error(e: OfflineError) -> anyhow::Error {
    match e {
        OfflineError::InUse(_) => anyhow!(
            "{e}: stop it (`faramesh stop`), ask it (`faramesh status`, or pass its `--socket`), or work on a copy"
        ),
        other => anyhow!(other),
    }
}

/// The socket of the daemon that holds the log in `dir`: the daemon `--socket` (or the default
/// socket) names, once it says it serves that state dir. Another daemon's log is never read in
/// its place.
pub(crate) fn daemon_holding(dir: &Path, socket: &SocketArg) -> Result<PathBuf> {
    let path = socket.path();
    let status = crate::client::call(&path, "status", json!({})).map_err(|e| {
        anyhow!(
            "the log in `{}` is in use by another process and the daemon at `{}` does not answer ({e:#}): \
             pass the `--socket` of the daemon started with `--state-dir {}`, or stop it to read the file",
            dir.display(),
            path.display(),
            dir.display()
        )
    })?;
    let ours = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_owned());
    match status["log"]["state_dir"].as_str() {
        Some(theirs) if std::fs::canonicalize(theirs).unwrap_or_else(|_| PathBuf::from(theirs)) == ours => {
            Ok(path)
        }
        theirs => bail!(
            "the log in `{}` is in use, but the daemon at `{}` serves {}: pass the `--socket` of the daemon \
             started with `--state-dir {}` (`faramesh status --socket …` says which state dir a daemon serves), \
             or stop it to read the file",
            dir.display(),
            path.display(),
            theirs.map_or_else(|| "another state dir".to_owned(), |t| format!("`{t}`")),
            dir.display()
        ),
    }
}

pub(super) fn key_of(dir: &Path) -> Result<LogKey> {
    let path = dir.join("log.key");
    if !path.exists() {
        bail!("no log key at `{}`: has the daemon run with this state dir?", path.display());
    }
    Ok(LogKey::load_or_create(&path)?)
}

/// The state dir a log file is in.
pub(super) fn file_dir(file: &Path) -> PathBuf {
    file.parent().map_or_else(|| PathBuf::from("."), Path::to_owned)
}

pub fn run_log(cmd: LogCommand, json_out: bool) -> Result<ExitCode> {
    match cmd {
        LogCommand::Proof(a) => return proof(a, json_out),
        LogCommand::Prune(a) => return prune(a, json_out),
        LogCommand::Backup(a) => return backup(a, json_out),
        LogCommand::Pubkey(a) => {
            let dir = a.state.path()?;
            // `--socket` without `--state-dir` asks that daemon; otherwise the state dir's key, or
            // the daemon holding that state dir when its key is not ours to read.
            let from_daemon = |socket: PathBuf| -> Result<String> {
                let r = crate::client::call(&socket, "log.checkpoint", json!({}))?;
                r["pubkey"]
                    .as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| anyhow!("the daemon sent no public key"))
            };
            // The key is named after the log's origin (C2SP `tlog-checkpoint`), which the log
            // file holds.
            let key = if a.socket.socket.is_some() && a.state.state_dir.is_none() {
                from_daemon(a.socket.path())?
            } else {
                match key_of(&dir) {
                    Ok(k) => match offline::origin(&dir.join("log.redb")) {
                        Ok(Some(origin)) => k.named(&origin).public().to_text(),
                        Ok(None) => {
                            bail!("the log in `{}` has no id yet: start the daemon once", dir.display())
                        }
                        Err(OfflineError::InUse(_)) => from_daemon(daemon_holding(&dir, &a.socket)?)?,
                        Err(e) => return Err(offline_error(e)),
                    },
                    Err(_) if a.socket.socket.is_some() => from_daemon(daemon_holding(&dir, &a.socket)?)?,
                    Err(e) => return Err(e),
                }
            };
            if json_out {
                println!("{}", json!({ "pubkey": key }));
            } else {
                println!("{key}");
            }
        }
        LogCommand::Checkpoint(a) => {
            let file = a.state.path()?.join("log.redb");
            let cp = match offline::latest_checkpoint(&file) {
                Err(OfflineError::InUse(_)) => {
                    let socket = daemon_holding(&a.state.path()?, &a.socket)?;
                    crate::client::call(&socket, "log.checkpoint", json!({}))?["checkpoint"]
                        .as_str()
                        .map(str::to_owned)
                }
                other => other.map_err(offline_error)?,
            };
            let Some(cp) = cp else { bail!("the log at `{}` has no checkpoint yet", file.display()) };
            if json_out {
                println!("{}", json!({ "checkpoint": cp }));
            } else {
                print!("{cp}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
