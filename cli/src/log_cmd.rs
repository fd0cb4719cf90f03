//! `faramesh verify-log`, `faramesh log pubkey|checkpoint`, `faramesh export`: the decision log
//! read straight from its file (while the daemon is stopped, or on a copy).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, Subcommand};
use faramesh_daemon::log::verify::{OfflineError, offline};
use faramesh_daemon::log::witness::{Receipt, WitnessPolicy, verify_receipt};
use faramesh_daemon::log::{self, LogKey, PublicKey};
use serde_json::json;

use crate::args::{SocketArg, StateDir};

#[derive(Args, Debug)]
#[command(
    after_help = "Exit codes: 0 intact, 1 tampered or unreadable.\n\nExamples:\n  faramesh verify-log --state-dir /var/lib/faramesh\n  faramesh verify-log --file copy.redb --pubkey \"$(faramesh log pubkey)\" --against saved.checkpoint"
)]
pub struct VerifyArgs {
    #[command(flatten)]
    state: StateDir,
    #[command(flatten)]
    socket: SocketArg,
    /// A log file to verify instead of the state dir's (a copy is fine).
    #[arg(long, requires = "pubkey")]
    file: Option<PathBuf>,
    /// The public key (`faramesh/<log id>+…`, or `faramesh-log+…` as earlier versions printed it),
    /// or a file holding it.
    #[arg(long)]
    pubkey: Option<String>,
    /// A checkpoint saved earlier (a file, `-` for stdin): catches entries cut off the end.
    /// A checkpoint a witness cosigned (from its monitoring endpoint) counts for
    /// `--witness-policy` too.
    #[arg(long)]
    against: Option<String>,
    /// A C2SP tlog-policy file (`witness NAME VKEY [URL]`, `group`, `quorum`): the newest
    /// checkpoint its quorum cosigned must match the recomputed Merkle root; says how many
    /// entries are not witnessed yet. Fails when no checkpoint is cosigned by the quorum.
    #[arg(long, value_name = "FILE")]
    witness_policy: Option<PathBuf>,
}

/// `faramesh verify-proof`.
#[derive(Args, Debug)]
#[command(
    after_help = "Exit codes: 0 proven, 1 not.\n\nExample:\n  faramesh verify-proof 1042.tlog-proof --key \"$(cat faramesh.pub)\" --witness-policy witnesses.policy"
)]
pub struct VerifyProofArgs {
    /// The receipt (`faramesh log proof`), `-` for stdin.
    file: String,
    /// The log's verifier key (`faramesh log pubkey`), or a file holding it.
    #[arg(long)]
    key: String,
    /// A C2SP tlog-policy file: the receipt's checkpoint must be cosigned by its quorum.
    #[arg(long, value_name = "FILE")]
    witness_policy: Option<PathBuf>,
}

/// `faramesh log proof`.
#[derive(Args, Debug)]
#[command(group(clap::ArgGroup::new("which").required(true).args(["seq", "id"])))]
pub struct ProofArgs {
    #[command(flatten)]
    state: StateDir,
    #[command(flatten)]
    socket: SocketArg,
    /// The entry's sequence number.
    #[arg(long, value_name = "N")]
    seq: Option<u64>,
    /// A decision's action id (or a unique prefix of 8+ characters).
    #[arg(long, value_name = "ID")]
    id: Option<String>,
    /// Write the receipt to FILE (default: stdout).
    #[arg(long, short, value_name = "FILE")]
    out: Option<PathBuf>,
}

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

/// `faramesh log backup`.
#[derive(Args, Debug)]
pub struct BackupArgs {
    #[command(flatten)]
    state: StateDir,
    #[command(flatten)]
    socket: SocketArg,
    /// Where to write the copy (must not exist).
    file: PathBuf,
}

/// `faramesh log prune`.
#[derive(Args, Debug)]
#[command(group(clap::ArgGroup::new("cut").required(true).args(["before", "keep_last"])))]
pub struct PruneArgs {
    #[command(flatten)]
    state: StateDir,
    #[command(flatten)]
    socket: SocketArg,
    /// Remove entries recorded before this time (RFC 3339, UTC).
    #[arg(long, value_name = "TIME")]
    before: Option<String>,
    /// Keep only the newest N entries.
    #[arg(long, value_name = "N")]
    keep_last: Option<u64>,
    /// Write the entries to be removed to FILE (JSON lines, like `faramesh export`) first.
    #[arg(long, value_name = "FILE")]
    archive: Option<PathBuf>,
    /// Remove entries even if they were never exported or archived.
    #[arg(long)]
    force: bool,
    /// Only say what would be removed.
    #[arg(long)]
    dry_run: bool,
}

/// The state dir to read offline, and the daemon to ask when it holds the log.
#[derive(Args, Debug)]
pub struct LogDaemonArgs {
    #[command(flatten)]
    state: StateDir,
    #[command(flatten)]
    socket: SocketArg,
}

#[derive(Args, Debug)]
#[command(after_help = "Example:\n  faramesh export --since 2026-11-01T00:00:00Z > decisions.jsonl")]
pub struct ExportArgs {
    #[command(flatten)]
    state: StateDir,
    #[command(flatten)]
    socket: SocketArg,
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
    let policy_text = args
        .witness_policy
        .as_ref()
        .map(|p| std::fs::read_to_string(p).with_context(|| format!("cannot read `{}`", p.display())))
        .transpose()?;
    let policy = policy_text
        .as_deref()
        .map(WitnessPolicy::parse)
        .transpose()
        .map_err(|e| anyhow!("`--witness-policy`: {e}"))?;
    let report = match offline::verify_witnessed(&file, &public, against.as_deref(), policy.as_ref()) {
        Ok(report) => report,
        Err(OfflineError::InUse(_)) if args.file.is_none() => {
            // The running daemon holds the file: it verifies its own log, and its newest signed
            // checkpoint is checked here against the key (a given key is always checked here).
            let socket = daemon_holding(&file_dir(&file), &args.socket)?;
            let r = crate::client::call(
                &socket,
                "log.verify",
                json!({"against": against, "witness_policy": policy_text}),
            )?;
            let report: log::Report = serde_json::from_value(r)?;
            let cp = crate::client::call(&socket, "log.checkpoint", json!({}))?;
            signed_by(report, cp["checkpoint"].as_str(), &public)
        }
        Err(_) if args.file.is_some() => {
            let mut report = offline::verify_witnessed(&file, &public, against.as_deref(), policy.as_ref())
                .unwrap_or_else(|_| log::verify_file(&file, &public, against.as_deref()));
            if !report.ok {
                report.problem = Some(format!(
                    "{}; if this file was copied while a daemon was writing it, the copy is torn, not \
                     tampered: take a consistent copy with `faramesh log backup FILE`",
                    report.problem.unwrap_or_default()
                ));
            }
            report
        }
        Err(_) => log::verify_file(&file, &public, against.as_deref()),
    };
    if json_out {
        println!("{}", serde_json::to_string(&report)?);
        return Ok(if report.ok { ExitCode::SUCCESS } else { ExitCode::from(1) });
    }
    if report.ok
        && let Some(w) = &report.witnessed
    {
        println!(
            "witnessed: entries 1 to {} by {} ({} entries not witnessed yet)",
            w.size,
            w.witnesses.join(", "),
            w.unwitnessed
        );
    }
    if report.ok && report.pruned_entries > 0 {
        println!(
            "ok: entries {} to {} ({} before them pruned, recorded {}), {} signed checkpoints, head {}",
            report.first_seq,
            report.size,
            report.pruned_entries,
            report.pruned_at.as_deref().unwrap_or("?"),
            report.checkpoints,
            report.head_hash
        );
    } else if report.ok {
        println!(
            "ok: {} entries, {} signed checkpoints, head {}",
            report.size, report.checkpoints, report.head_hash
        );
    } else {
        match report.first_bad_seq {
            Some(seq) => {
                println!(
                    "FAILED at entry {seq}: {}",
                    crate::term::safe(report.problem.as_deref().unwrap_or(""))
                )
            }
            None => println!("FAILED: {}", crate::term::safe(report.problem.as_deref().unwrap_or(""))),
        }
    }
    Ok(if report.ok { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// `faramesh log backup FILE`: the file itself while no daemon holds it, else a copy the daemon
/// writes into its state dir, moved to FILE.
fn backup(args: BackupArgs, json_out: bool) -> Result<ExitCode> {
    if args.file.exists() {
        bail!("`{}` exists: a backup is written to a new file", args.file.display());
    }
    let dir = args.state.path()?;
    let batches = match offline::backup(&dir.join("log.redb"), &args.file) {
        Ok(n) => n,
        Err(OfflineError::InUse(_)) => {
            let socket = daemon_holding(&dir, &args.socket)?;
            let stream = crate::client::connect(&socket)?;
            // A large log takes a while to copy.
            stream.set_read_timeout(None)?;
            let r = crate::client::call_on(&stream, "log.backup", json!({}))?;
            let written =
                PathBuf::from(r["path"].as_str().ok_or_else(|| anyhow!("the daemon named no file"))?);
            std::fs::copy(&written, &args.file).with_context(|| {
                format!("cannot copy `{}` to `{}`", written.display(), args.file.display())
            })?;
            std::fs::File::open(&args.file)?.sync_all()?;
            let _ = std::fs::remove_file(&written);
            r["batches"].as_u64().unwrap_or(0)
        }
        Err(e) => return Err(offline_error(e)),
    };
    if json_out {
        println!("{}", json!({"file": args.file.display().to_string(), "batches": batches}));
    } else {
        println!("ok: a consistent copy of the log ({batches} commits) is in `{}`", args.file.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// The state dir a log file is in.
fn file_dir(file: &Path) -> PathBuf {
    file.parent().map_or_else(|| PathBuf::from("."), Path::to_owned)
}

/// The daemon's report, failed unless its newest checkpoint (the one it signed for the head it
/// reported) carries a valid signature by `public`.
fn signed_by(mut report: log::Report, checkpoint: Option<&str>, public: &PublicKey) -> log::Report {
    if !report.ok {
        return report;
    }
    let problem = match checkpoint.map(|cp| public.verify_checkpoint(cp)) {
        None if report.size == 0 => None,
        None => Some("the daemon sent no signed checkpoint".to_owned()),
        Some(Err(e)) => Some(format!("the log is not signed by the given key ({e})")),
        Some(Ok(cp)) if cp.size > report.size => {
            Some(format!("the checkpoint covers {} entries, the report {}", cp.size, report.size))
        }
        Some(Ok(_)) => None,
    };
    if let Some(p) = problem {
        report.ok = false;
        report.problem = Some(p);
    }
    report
}

/// `faramesh log proof`: offline while no daemon holds the file, else from the daemon.
fn proof(args: ProofArgs, json_out: bool) -> Result<ExitCode> {
    let dir = args.state.path()?;
    let file = dir.join("log.redb");
    let offline_seq = match (&args.id, args.seq) {
        (_, Some(seq)) => Some(seq),
        (Some(id), None) => match offline::origin(&file) {
            Ok(Some(origin)) => {
                let log_id = origin.trim_start_matches("faramesh/").to_owned();
                let scheme = offline::id_scheme(&file).map_err(offline_error)?;
                faramesh_daemon::log::ActionIds::new(&log_id, scheme).seq_of(id)
            }
            _ => None,
        },
        (None, None) => None,
    };
    let offline = match offline_seq {
        Some(seq) => match offline::receipt(&file, seq) {
            Err(OfflineError::InUse(_)) => None,
            Err(e) => return Err(offline_error(e)),
            Ok(r) => {
                let r = r?;
                if let Some(id) = &args.id
                    && !String::from_utf8_lossy(&r.0.record).contains(&format!("\"id\":\"{id}\""))
                {
                    bail!("no decision with id `{id}` in `{}`", file.display());
                }
                Some((r, seq))
            }
        },
        None => match offline::origin(&file) {
            Err(OfflineError::InUse(_)) => None,
            Err(e) => return Err(offline_error(e)),
            Ok(_) => bail!("no entry with id `{}` in `{}`", args.id.as_deref().unwrap_or(""), file.display()),
        },
    };
    let (text, seq, size, witnessed) = match offline {
        Some(((receipt, witnessed), seq)) => {
            let size = log::Checkpoint::parse_note(&receipt.checkpoint).map_or(0, |cp| cp.size);
            (receipt.to_text(), seq, size, witnessed)
        }
        None => {
            let socket = daemon_holding(&dir, &args.socket)?;
            let r = crate::client::call(&socket, "log.proof", json!({"seq": args.seq, "id": args.id}))?;
            let text = r["receipt"].as_str().ok_or_else(|| anyhow!("the daemon sent no receipt"))?.to_owned();
            (text, r["seq"].as_u64().unwrap_or(0), r["size"].as_u64().unwrap_or(0), r["witnessed"] == true)
        }
    };
    match &args.out {
        Some(path) => {
            std::fs::write(path, &text).with_context(|| format!("cannot write `{}`", path.display()))?
        }
        None if !json_out => print!("{text}"),
        None => {}
    }
    let note = if witnessed {
        format!("entry {seq} in the checkpoint at size {size}, cosigned by witnesses")
    } else {
        format!(
            "entry {seq} in the checkpoint at size {size}, signed by this host only: no witness has cosigned a checkpoint that covers it yet"
        )
    };
    if json_out {
        println!("{}", json!({"seq": seq, "size": size, "witnessed": witnessed, "receipt": text}));
    } else {
        eprintln!("{note}");
    }
    Ok(ExitCode::SUCCESS)
}

/// `faramesh verify-proof FILE --key VKEY [--witness-policy FILE]`.
pub fn verify_proof(args: VerifyProofArgs, json_out: bool) -> Result<ExitCode> {
    let text = read_arg_or_file(&args.file)?;
    let receipt = Receipt::parse(&text).map_err(|e| anyhow!("`{}`: {e}", args.file))?;
    let key = PublicKey::from_text(&read_arg_or_file(&args.key)?)?;
    let policy = args
        .witness_policy
        .as_ref()
        .map(|p| {
            let text =
                std::fs::read_to_string(p).with_context(|| format!("cannot read `{}`", p.display()))?;
            WitnessPolicy::parse(&text).map_err(|e| anyhow!("`{}`: {e}", p.display()))
        })
        .transpose()?;
    let outcome = verify_receipt(&receipt, &key, policy.as_ref());
    if json_out {
        let v = match &outcome {
            Ok(p) => json!({"ok": true, "proven": p}),
            Err(e) => json!({"ok": false, "problem": e}),
        };
        println!("{v}");
    } else {
        match &outcome {
            Ok(p) => {
                let what = p.record["kind"].as_str().unwrap_or("entry");
                let extra = match (p.record["tool"].as_str(), p.record["effect"].as_str()) {
                    (Some(tool), Some(effect)) => {
                        format!(" ({effect} {tool}/{})", p.record["operation"].as_str().unwrap_or(""))
                    }
                    _ => String::new(),
                };
                let by = if p.witnesses.is_empty() {
                    "signed by the log's key".to_owned()
                } else {
                    format!(
                        "cosigned by {}",
                        p.witnesses
                            .iter()
                            .map(|(n, t)| format!("{n} (at {t})"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                };
                println!(
                    "ok: {what} {}{extra} is entry {} of {}, in its checkpoint at size {}, {by}",
                    p.record["id"].as_str().unwrap_or(""),
                    p.seq,
                    p.origin,
                    p.size
                );
            }
            Err(e) => println!("FAILED: {e}"),
        }
    }
    Ok(if outcome.is_ok() { ExitCode::SUCCESS } else { ExitCode::from(1) })
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

pub fn export(args: ExportArgs) -> Result<ExitCode> {
    let since = match &args.since {
        Some(s) => log::entry::parse_rfc3339(s).ok_or_else(|| {
            anyhow!("`--since` `{s}` is not an RFC 3339 UTC time like 2026-11-01T00:00:00Z")
        })?,
        None => 0,
    };
    let dir = args.state.path()?;
    let file = dir.join("log.redb");
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    match offline::export(&file, &mut out, since) {
        Err(OfflineError::InUse(_)) => {
            // The running daemon holds the file: page through its log over the socket.
            let socket = daemon_holding(&dir, &args.socket)?;
            let stream = crate::client::connect(&socket)?;
            let mut params = json!({"since": args.since, "limit": 5000});
            let (mut first, mut last) = (None, 0);
            loop {
                let r = crate::client::call_on(&stream, "log.entries", params.clone())?;
                let entries = r["entries"].as_array().cloned().unwrap_or_default();
                if entries.is_empty() {
                    break;
                }
                for e in &entries {
                    std::io::Write::write_all(&mut out, format!("{e}\n").as_bytes())?;
                    if let Some(seq) = e["seq"].as_u64() {
                        first.get_or_insert(seq);
                        last = seq;
                    }
                }
                params = json!({"from_seq": r["next_seq"], "limit": 5000});
            }
            std::io::Write::flush(&mut out)?;
            if let Some(first) = first {
                // Recorded so `faramesh log prune` knows these entries are kept elsewhere.
                let marked = crate::client::call_on(
                    &stream,
                    "log.exported",
                    json!({"from_seq": first, "through_seq": last}),
                );
                if let Err(e) = marked {
                    eprintln!("note: the export was not recorded for `faramesh log prune`: {e}");
                }
            }
        }
        Ok(written) => {
            std::io::Write::flush(&mut out)?;
            if let Some(first) = written.first_seq {
                // Recorded (when this user may write the log) for `faramesh log prune`.
                let marked = key_of(&dir).and_then(|key| {
                    let log = log::Log::open(&file, key, log::LogOptions::default())?;
                    Ok(log.mark_exported(first, written.last_seq)?)
                });
                if let Err(e) = marked {
                    eprintln!("note: the export was not recorded for `faramesh log prune`: {e}");
                }
            }
        }
        Err(e) => return Err(offline_error(e)),
    }
    std::io::Write::flush(&mut out)?;
    Ok(ExitCode::SUCCESS)
}

/// Where a prune runs: the daemon holding the log (over the socket), or the file itself.
enum Target {
    Daemon(PathBuf),
    File(Box<faramesh_daemon::log::Log>, tokio::runtime::Runtime),
}

impl Target {
    fn open(dir: &Path, socket: &SocketArg) -> Result<Target> {
        // Another user's state dir (a system daemon's): only the daemon can prune it.
        let Ok(key) = key_of(dir) else { return Ok(Target::Daemon(daemon_holding(dir, socket)?)) };
        match log::Log::open(&dir.join("log.redb"), key, faramesh_daemon::service::retention::log_options()) {
            Ok(log) => {
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
                Ok(Target::File(Box::new(log), rt))
            }
            Err(e) if e.in_use() => Ok(Target::Daemon(daemon_holding(dir, socket)?)),
            Err(e) => Err(e.into()),
        }
    }

    fn prune(&self, params: serde_json::Value) -> Result<serde_json::Value> {
        match self {
            Target::Daemon(socket) => {
                let stream = crate::client::connect(socket)?;
                // Removing a large part of a large log and compacting it can take a while.
                stream.set_read_timeout(None)?;
                crate::client::call_on(&stream, "log.prune", params)
            }
            Target::File(log, rt) => {
                let req = faramesh_daemon::service::PruneRequest::from_json(
                    params.as_object().unwrap_or(&Default::default()),
                )
                .map_err(|e| anyhow!(e.message))?;
                let outcome = if req.dry_run {
                    log.dry_run_prune(req.cut)?
                } else {
                    let by = json!({"uid": nix::unistd::getuid().as_raw(), "offline": true});
                    rt.block_on(log.prune(req.cut, req.force, by))?
                };
                Ok(serde_json::to_value(outcome)?)
            }
        }
    }

    /// Writes entries `from..to` (exclusive) as JSON lines; returns how many.
    fn write_entries(&self, from: u64, to: u64, out: &mut dyn std::io::Write) -> Result<u64> {
        let socket = match self {
            Target::File(log, _) => return Ok(log.export_range(out, from, to)?),
            Target::Daemon(socket) => socket,
        };
        let mut next = from;
        let mut n = 0;
        while next < to {
            let limit = (to - next).min(5000);
            let r = crate::client::call(socket, "log.entries", json!({"from_seq": next, "limit": limit}))?;
            let entries = r["entries"].as_array().cloned().unwrap_or_default();
            if entries.is_empty() {
                break;
            }
            for e in entries.iter().take_while(|e| e["seq"].as_u64().is_some_and(|s| s < to)) {
                writeln!(out, "{e}")?;
                n += 1;
            }
            next = r["next_seq"].as_u64().unwrap_or(to);
        }
        Ok(n)
    }

    fn mark_exported(&self, from: u64, through: u64) -> Result<u64> {
        match self {
            Target::Daemon(socket) => {
                let r = crate::client::call(
                    socket,
                    "log.exported",
                    json!({"from_seq": from, "through_seq": through}),
                )?;
                Ok(r["exported_through"].as_u64().unwrap_or(0))
            }
            Target::File(log, _) => Ok(log.mark_exported(from, through)?),
        }
    }
}

fn prune(args: PruneArgs, json_out: bool) -> Result<ExitCode> {
    if let Some(t) = &args.before
        && log::entry::parse_rfc3339(t).is_none()
    {
        bail!("`--before` `{t}` is not an RFC 3339 UTC time like 2026-11-01T00:00:00Z");
    }
    let dir = args.state.path()?;
    let target = Target::open(&dir, &args.socket)?;
    let cut = match (&args.before, args.keep_last) {
        (Some(t), _) => json!({"before": t}),
        (None, Some(n)) => json!({"keep_last": n}),
        (None, None) => bail!("give --before TIME or --keep-last N"),
    };
    let with = |extra: serde_json::Value| {
        let mut p = cut.clone();
        if let (Some(p), Some(extra)) = (p.as_object_mut(), extra.as_object()) {
            p.extend(extra.clone());
        }
        p
    };
    let planned = target.prune(with(json!({"dry_run": true})))?;
    let plan = &planned["plan"];
    let (first, kept) =
        (plan["first_seq"].as_u64().unwrap_or(1), plan["first_kept_seq"].as_u64().unwrap_or(1));
    let entries = kept.saturating_sub(first);
    if args.dry_run || entries == 0 {
        if json_out {
            println!("{planned}");
        } else if entries == 0 {
            println!("nothing to prune: the log starts at entry {first}, and the cut keeps it");
        } else {
            println!(
                "would prune {entries} entries ({first}–{}), keeping entry {kept} on of {}; exported through entry {}",
                kept - 1,
                plan["size"],
                plan["exported_through"]
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(path) = &args.archive {
        let file = log::create_private(path).with_context(|| {
            format!("cannot create the archive `{}` (it must not exist yet)", path.display())
        })?;
        let mut out = std::io::BufWriter::new(file);
        let written = target.write_entries(first, kept, &mut out)?;
        let file =
            out.into_inner().map_err(|e| anyhow!("cannot write `{}`: {}", path.display(), e.error()))?;
        file.sync_all().with_context(|| format!("cannot sync `{}`", path.display()))?;
        if written != entries {
            bail!("the archive holds {written} entries, not the {entries} to prune: nothing was pruned");
        }
        target.mark_exported(first, kept - 1)?;
        eprintln!("archived entries {first}–{} to {}", kept - 1, path.display());
    }
    // The cut the plan showed (and the archive holds), whatever was appended since.
    let done = target.prune(json!({"before_seq": kept, "force": args.force})).map_err(|e| {
        if e.to_string().contains("exported or archived only through") {
            anyhow!("{e}\nhint: `faramesh export > FILE` first, or pass `--archive FILE` (or `--force` to discard them)")
        } else {
            e
        }
    })?;
    if json_out {
        println!("{done}");
    } else {
        let p = &done["plan"];
        println!(
            "pruned {} entries ({}–{}) in {} commits; the log now starts at entry {}; the cut is recorded as entry {}{}",
            p["entries"],
            p["first_seq"],
            p["first_kept_seq"].as_u64().unwrap_or(1).saturating_sub(1),
            done["batches"],
            p["first_kept_seq"],
            done["entry_seq"],
            if done["compacted"] == true { "; the file was compacted" } else { "" }
        );
    }
    Ok(ExitCode::SUCCESS)
}
