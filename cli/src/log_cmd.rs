//! `faramesh verify-log`, `faramesh log pubkey|checkpoint`, `faramesh export`: the decision log
//! read straight from its file (while the daemon is stopped, or on a copy).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, Subcommand};
use faramesh_daemon::log::verify::{OfflineError, offline};
use faramesh_daemon::log::{self, LogKey, PublicKey};
use serde_json::json;

/// The state directory: `--state-dir`, `FARAMESH_STATE_DIR`, or `~/.faramesh/state`.
#[derive(Args, Debug, Clone)]
pub struct StateDir {
    /// The daemon's state directory (holds `log.redb` and `log.key`).
    #[arg(long, env = "FARAMESH_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
}

impl StateDir {
    /// The directory, defaulting to `~/.faramesh/state`.
    pub fn path(&self) -> Result<PathBuf> {
        match &self.state_dir {
            Some(p) => Ok(p.clone()),
            None => {
                let home =
                    std::env::var_os("HOME").ok_or_else(|| anyhow!("HOME is not set: pass --state-dir"))?;
                Ok(PathBuf::from(home).join(".faramesh/state"))
            }
        }
    }
}

#[derive(Args, Debug)]
#[command(
    after_help = "Exit codes: 0 intact, 1 tampered or unreadable.\n\nExamples:\n  faramesh verify-log --state-dir /var/lib/faramesh\n  faramesh verify-log --file copy.redb --pubkey \"$(faramesh log pubkey)\" --against saved.checkpoint"
)]
pub struct VerifyArgs {
    #[command(flatten)]
    state: StateDir,
    #[command(flatten)]
    socket: crate::daemon_cmd::SocketArg,
    /// A log file to verify instead of the state dir's (a copy is fine).
    #[arg(long, requires = "pubkey")]
    file: Option<PathBuf>,
    /// The public key (`faramesh-log+…`), or a file holding it.
    #[arg(long)]
    pubkey: Option<String>,
    /// A checkpoint saved earlier (a file, `-` for stdin): catches entries cut off the end.
    #[arg(long)]
    against: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum LogCommand {
    /// Print the public key that verifies this host's log.
    #[command(after_help = "Example:\n  faramesh log pubkey > faramesh.pub")]
    Pubkey(LogDaemonArgs),
    /// Print the latest signed checkpoint (save it to check later that nothing was cut off).
    #[command(after_help = "Example:\n  faramesh log checkpoint > $(date +%F).checkpoint")]
    Checkpoint(LogDaemonArgs),
}

/// The state dir to read offline, and the daemon to ask when it holds the log.
#[derive(Args, Debug)]
pub struct LogDaemonArgs {
    #[command(flatten)]
    state: StateDir,
    #[command(flatten)]
    socket: crate::daemon_cmd::SocketArg,
}

#[derive(Args, Debug)]
#[command(after_help = "Example:\n  faramesh export --since 2026-11-01T00:00:00Z > decisions.jsonl")]
pub struct ExportArgs {
    #[command(flatten)]
    state: StateDir,
    #[command(flatten)]
    socket: crate::daemon_cmd::SocketArg,
    /// Only entries at or after this time (RFC 3339, UTC).
    #[arg(long)]
    since: Option<String>,
}

fn read_arg_or_file(value: &str) -> Result<String> {
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

fn key_of(dir: &Path) -> Result<LogKey> {
    let path = dir.join("log.key");
    if !path.exists() {
        bail!("no log key at `{}`: has the daemon run with this state dir?", path.display());
    }
    Ok(LogKey::load_or_create(&path)?)
}

pub fn verify(args: VerifyArgs, json_out: bool) -> Result<ExitCode> {
    let (file, public) = match (&args.file, &args.pubkey) {
        (Some(file), Some(key)) => (file.clone(), PublicKey::from_text(&read_arg_or_file(key)?)?),
        _ => {
            let dir = args.state.path()?;
            let public = match &args.pubkey {
                Some(key) => PublicKey::from_text(&read_arg_or_file(key)?)?,
                None => key_of(&dir)?.public(),
            };
            (dir.join("log.redb"), public)
        }
    };
    let against = args.against.as_deref().map(read_arg_or_file).transpose()?;
    let report = match offline::verify(&file, &public, against.as_deref()) {
        Ok(report) => report,
        Err(OfflineError::InUse(_)) if args.file.is_none() => {
            // The running daemon holds the file: it verifies its own log.
            let r = crate::client::call(&args.socket.path(), "log.verify", json!({"against": against}))?;
            serde_json::from_value(r)?
        }
        Err(_) => log::verify_file(&file, &public, against.as_deref()),
    };
    if json_out {
        println!("{}", serde_json::to_string(&report)?);
    } else if report.ok {
        println!(
            "ok: {} entries, {} signed checkpoints, head {}",
            report.size, report.checkpoints, report.head_hash
        );
    } else {
        match report.first_bad_seq {
            Some(seq) => println!("FAILED at entry {seq}: {}", report.problem.as_deref().unwrap_or("")),
            None => println!("FAILED: {}", report.problem.as_deref().unwrap_or("")),
        }
    }
    Ok(if report.ok { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

pub fn run_log(cmd: LogCommand, json_out: bool) -> Result<ExitCode> {
    match cmd {
        LogCommand::Pubkey(a) => {
            let dir = a.state.path()?;
            let key = match key_of(&dir) {
                Ok(k) => k.public().to_text(),
                // Another user's state dir (a system daemon's): ask the daemon.
                Err(_) if a.socket.socket.is_some() => {
                    let r = crate::client::call(&a.socket.path(), "log.checkpoint", json!({}))?;
                    r["pubkey"]
                        .as_str()
                        .map(str::to_owned)
                        .ok_or_else(|| anyhow!("the daemon sent no public key"))?
                }
                Err(e) => return Err(e),
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
                    crate::client::call(&a.socket.path(), "log.checkpoint", json!({}))?["checkpoint"]
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

pub fn export(args: ExportArgs) -> Result<ExitCode> {
    let since = match &args.since {
        Some(s) => log::entry::parse_rfc3339(s).ok_or_else(|| {
            anyhow!("`--since` `{s}` is not an RFC 3339 UTC time like 2026-11-01T00:00:00Z")
        })?,
        None => 0,
    };
    let file = args.state.path()?.join("log.redb");
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    match offline::export(&file, &mut out, since) {
        Err(OfflineError::InUse(_)) => {
            // The running daemon holds the file: page through its log over the socket.
            let socket = args.socket.path();
            let stream = crate::client::connect(&socket)?;
            let mut params = json!({"since": args.since, "limit": 5000});
            loop {
                let r = crate::client::call_on(&stream, "log.entries", params.clone())?;
                let entries = r["entries"].as_array().cloned().unwrap_or_default();
                if entries.is_empty() {
                    break;
                }
                for e in &entries {
                    std::io::Write::write_all(&mut out, format!("{e}\n").as_bytes())?;
                }
                params = json!({"from_seq": r["next_seq"], "limit": 5000});
            }
        }
        other => {
            other.map_err(offline_error)?;
        }
    }
    std::io::Write::flush(&mut out)?;
    Ok(ExitCode::SUCCESS)
}
