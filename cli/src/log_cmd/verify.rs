//! `faramesh verify-log`, `verify-proof` and `log proof`: the log's chain and signed
//! checkpoints checked, and a record's receipt written and checked.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow, bail};
use clap::Args;
use faramesh_log::verify::{OfflineError, offline};
use faramesh_log::witness::{Receipt, WitnessPolicy, verify_receipt};
use faramesh_log::{self as log, PublicKey};
use serde_json::json;

use crate::args::{SocketArg, StateDir};

use super::{daemon_holding, file_dir, key_of, offline_error, read_arg_or_file};

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
    // The approvals signed by a person: each statement re-checked against its key and its entry.
    let mut report = report;
    let mut signed = 0;
    if report.ok {
        match recheck_signed(&file, &args.socket, args.file.is_some()) {
            Ok(n) => signed = n,
            Err((seq, why)) => {
                report.ok = false;
                report.first_bad_seq = (seq > 0).then_some(seq);
                report.problem = Some(format!("signed approval: {why}"));
            }
        }
    }
    if json_out {
        let mut out = serde_json::to_value(&report)?;
        out["signed_statements"] = json!(signed);
        println!("{out}");
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
    }
    if report.ok && signed > 0 {
        let s = if signed == 1 { "" } else { "s" };
        println!("signed approvals: {signed} statement{s} re-checked against the approvers' keys");
    }
    if !report.ok {
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

/// The daemon's report, failed unless its newest checkpoint (the one it signed for the head it
/// reported) carries a valid signature by `public`.
pub(super) fn signed_by(
    mut report: log::Report,
    checkpoint: Option<&str>,
    public: &PublicKey,
) -> log::Report {
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
pub(super) fn proof(args: ProofArgs, json_out: bool) -> Result<ExitCode> {
    let dir = args.state.path()?;
    let file = dir.join("log.redb");
    let offline_seq = match (&args.id, args.seq) {
        (_, Some(seq)) => Some(seq),
        (Some(id), None) => match offline::origin(&file) {
            Ok(Some(origin)) => {
                let log_id = origin.trim_start_matches("faramesh/").to_owned();
                let scheme = offline::id_scheme(&file).map_err(offline_error)?;
                faramesh_log::ActionIds::new(&log_id, scheme).seq_of(id)
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
            Err(e) => json!({"ok": false, "problem": e.to_string()}),
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

/// Calls `f` with each complete line written to it.
struct Lines<F: FnMut(&str)> {
    partial: Vec<u8>,
    f: F,
}

impl<F: FnMut(&str)> std::io::Write for Lines<F> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.partial.extend_from_slice(buf);
        while let Some(end) = self.partial.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.partial.drain(..=end).collect();
            (self.f)(&String::from_utf8_lossy(&line));
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Every signed statement the log keeps, re-checked (`signing::recheck`): how many, or the
/// first entry whose statement fails and why. The entries are read from the file, or from the
/// daemon that holds it.
fn recheck_signed(
    file: &std::path::Path,
    socket: &SocketArg,
    given_file: bool,
) -> std::result::Result<usize, (u64, String)> {
    use faramesh_daemon::service::signing::recheck;
    let mut count = 0;
    let mut failed: Option<(u64, String)> = None;
    let mut check = |log_id: &str, e: &serde_json::Value| {
        if failed.is_some() {
            return;
        }
        match recheck(e, log_id) {
            Ok(n) => count += n,
            Err(why) => failed = Some((e["seq"].as_u64().unwrap_or(0), why)),
        }
    };
    match offline::origin(file) {
        Ok(origin) => {
            let log_id = origin.unwrap_or_default().trim_start_matches("faramesh/").to_owned();
            let mut sink = Lines {
                partial: Vec::new(),
                f: |line: &str| {
                    // Only entries that may carry a statement are parsed.
                    if line.contains("\"signed\"")
                        && let Ok(e) = serde_json::from_str::<serde_json::Value>(line)
                    {
                        check(&log_id, &e);
                    }
                },
            };
            offline::export(file, &mut sink, 0).map_err(|e| (0, format!("cannot read the entries: {e}")))?;
        }
        Err(OfflineError::InUse(_)) if !given_file => {
            let fail = |e: anyhow::Error| (0, format!("cannot read the entries from the daemon: {e:#}"));
            let sock = daemon_holding(&file_dir(file), socket).map_err(fail)?;
            let status = crate::client::call(&sock, "status", json!({})).map_err(fail)?;
            let log_id = status["log"]["origin"]
                .as_str()
                .unwrap_or_default()
                .trim_start_matches("faramesh/")
                .to_owned();
            let mut params = json!({"from_seq": 1, "limit": 5000});
            loop {
                let page = crate::client::call(&sock, "log.entries", params.clone()).map_err(fail)?;
                let entries = page["entries"].as_array().cloned().unwrap_or_default();
                for e in &entries {
                    check(&log_id, e);
                }
                match page["next_seq"].as_u64() {
                    Some(n) if !entries.is_empty() => params["from_seq"] = json!(n),
                    _ => break,
                }
            }
        }
        Err(e) => return Err((0, format!("cannot read the entries: {e}"))),
    }
    match failed {
        Some(f) => Err(f),
        None => Ok(count),
    }
}
