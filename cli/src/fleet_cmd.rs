//! `faramesh verify-export`: a destination's copy of the log, checked against the host's chain.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow, bail};
use clap::Args;
use faramesh_daemon::service::fleet::{compare, otlp_file_records};
use serde_json::{Value, json};

use crate::args::SocketArg;
use crate::client;

#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  faramesh verify-export otlp --file /var/lib/otelcol/faramesh.jsonl\n  faramesh verify-export otlp --file copy.jsonl --rewind   # and send what is missing again"
)]
pub struct VerifyExportArgs {
    /// The destination (`otlp`).
    destination: String,
    /// The copy: the JSON-lines file an OpenTelemetry Collector's file exporter wrote.
    #[arg(long, value_name = "FILE")]
    file: Option<PathBuf>,
    /// Check entries up to this one (default: what the destination acknowledged, else the log's head).
    #[arg(long, value_name = "SEQ")]
    through: Option<u64>,
    /// When entries are missing or altered, rewind the destination's cursor so the daemon sends
    /// them (and what follows) again.
    #[arg(long)]
    rewind: bool,
    #[command(flatten)]
    socket: SocketArg,
}

pub fn verify_export(args: VerifyExportArgs, json_out: bool) -> Result<ExitCode> {
    let socket = args.socket.path();
    let status = client::call(&socket, "status", json!({}))?;
    let log_id =
        status["log"]["origin"].as_str().unwrap_or_default().trim_start_matches("faramesh/").to_owned();
    let head = status["log"]["size"].as_u64().unwrap_or(0);
    let first = status["log"]["first_seq"].as_u64().unwrap_or(1).max(1);
    let cursor = status["export"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|d| d["name"] == args.destination.as_str())
        .and_then(|d| d["cursor"].as_u64());
    let through = args.through.or(cursor).unwrap_or(head).min(head);
    let copies = match args.destination.as_str() {
        "otlp" => {
            let file = args.file.as_ref().ok_or_else(|| {
                anyhow!("`verify-export otlp` needs `--file` (the Collector's file exporter output)")
            })?;
            let text =
                std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
            otlp_file_records(&text, &log_id).map_err(|e| anyhow!("{}: {e}", file.display()))?
        }
        other => bail!("no export destination kind `{other}` (otlp)"),
    };
    // The host's chain: seq -> entry_hash, read over the socket.
    let mut host = BTreeMap::new();
    let mut next = first;
    while next <= through {
        let page = client::call(&socket, "log.entries", json!({"from_seq": next, "limit": 5000}))?;
        let entries = page["entries"].as_array().cloned().unwrap_or_default();
        for e in &entries {
            if let (Some(seq), Some(hash)) = (e["seq"].as_u64(), e["entry_hash"].as_str())
                && seq <= through
            {
                host.insert(seq, hash.to_owned());
            }
        }
        let n = page["next_seq"].as_u64().unwrap_or(through + 1);
        if n <= next || entries.is_empty() {
            break;
        }
        next = n;
    }
    let c = compare(&copies, &host, first, through);
    let mut rewound = Value::Null;
    if args.rewind
        && let Some(from) = c.resend_from()
    {
        rewound =
            client::call(&socket, "export.rewind", json!({"name": args.destination, "to_seq": from - 1}))?;
    }
    if json_out {
        let mut out = serde_json::to_value(&c)?;
        out["ok"] = json!(c.ok());
        out["log_id"] = json!(log_id);
        out["rewound"] = rewound;
        println!("{out}");
    } else if c.ok() {
        println!(
            "ok: entries {first} to {through} of log {log_id} are in the {} copy and equal to the chain ({} duplicates)",
            args.destination, c.duplicates
        );
    } else {
        println!("NOT OK: the {} copy of log {log_id}, entries {first} to {through}:", args.destination);
        for (a, b) in &c.missing {
            if a == b {
                println!("  missing: entry {a}");
            } else {
                println!("  missing: entries {a} to {b}");
            }
        }
        for (seq, why) in &c.altered {
            println!("  altered: entry {seq}: {why}");
        }
        match (&rewound, c.resend_from()) {
            (Value::Object(r), _) => println!(
                "  rewound: the daemon sends entries after {} again",
                r.get("cursor").unwrap_or(&Value::Null)
            ),
            (_, Some(from)) => println!(
                "  resend them: faramesh verify-export {} --file … --rewind (entries from {from} on)",
                args.destination
            ),
            _ => {}
        }
    }
    Ok(if c.ok() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}
