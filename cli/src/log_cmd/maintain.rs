//! `faramesh log backup`, `log prune` and `export`: the decision log copied, pruned and
//! written out as JSON lines.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow, bail};
use clap::Args;
use faramesh_log as log;
use faramesh_log::verify::{OfflineError, offline};
use serde_json::json;

use crate::args::{SocketArg, StateDir};

use super::{daemon_holding, key_of, offline_error};

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

/// `faramesh log backup FILE`: the file itself while no daemon holds it, else a copy the daemon
/// writes into its state dir, moved to FILE.
pub(super) fn backup(args: BackupArgs, json_out: bool) -> Result<ExitCode> {
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
                    let log = faramesh_daemon::service::retention::open_log(&file, key)?;
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
pub(super) enum Target {
    Daemon(PathBuf),
    File(Box<faramesh_log::Log>, tokio::runtime::Runtime),
}

impl Target {
    fn open(dir: &Path, socket: &SocketArg) -> Result<Target> {
        // Another user's state dir (a system daemon's): only the daemon can prune it.
        let Ok(key) = key_of(dir) else { return Ok(Target::Daemon(daemon_holding(dir, socket)?)) };
        match faramesh_daemon::service::retention::open_log(&dir.join("log.redb"), key) {
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

pub(super) fn prune(args: PruneArgs, json_out: bool) -> Result<ExitCode> {
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
