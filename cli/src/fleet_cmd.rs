//! `faramesh verify-export`: a destination's copy of the log, checked against the host's chain.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow, bail};
use clap::Args;
use faramesh_adapters::export::postgres as fleet_pg;
use faramesh_adapters::export::{compare, otlp_file_records};
use serde_json::{Value, json};

use crate::args::SocketArg;
use crate::client;

#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  faramesh verify-export otlp --file /var/lib/otelcol/faramesh.jsonl\n  faramesh verify-export otlp --file copy.jsonl --rewind   # and send what is missing again"
)]
pub struct VerifyExportArgs {
    /// The destination (`otlp` or `postgres`).
    destination: String,
    /// The copy: the JSON-lines file an OpenTelemetry Collector's file exporter wrote (otlp).
    #[arg(long, value_name = "FILE")]
    file: Option<PathBuf>,
    /// The fleet database (postgres).
    #[arg(long, env = "FARAMESH_POSTGRES_URL", value_name = "URL", hide_env_values = true)]
    url: Option<String>,
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
    let mut flagged = BTreeMap::new();
    let mut problems = Vec::new();
    let copies = match args.destination.as_str() {
        "otlp" => {
            let file = args.file.as_ref().ok_or_else(|| {
                anyhow!("`verify-export otlp` needs `--file` (the Collector's file exporter output)")
            })?;
            let text =
                std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
            otlp_file_records(&text, &log_id).map_err(|e| anyhow!("{}: {e}", file.display()))?
        }
        "postgres" => {
            let url = args.url.as_deref().ok_or_else(|| {
                anyhow!("`verify-export postgres` needs `--url` (or FARAMESH_POSTGRES_URL)")
            })?;
            let (rows, host_row) = runtime()?.block_on(async {
                let client = fleet_pg::connect(url).await.map_err(|e| anyhow!(e))?;
                let rows = fleet_pg::rows(&client, &log_id, first, through).await.map_err(|e| anyhow!(e))?;
                let host_row = fleet_pg::host_row(&client, &log_id).await.map_err(|e| anyhow!(e))?;
                anyhow::Ok((rows, host_row))
            })?;
            // Every column beside a record must be what the record says.
            for row in &rows {
                let wrong = fleet_pg::Columns::of(&row.record).differences(&row.columns);
                if !wrong.is_empty() {
                    flagged.insert(row.seq, format!("column {}", wrong.join(", column ")));
                }
            }
            // The host row: this host's name and the log's public key.
            let name = status["host"].as_str().unwrap_or_default();
            let key = client::call(&socket, "log.checkpoint", json!({}))?["pubkey"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            match host_row {
                None if !rows.is_empty() => problems.push(format!("no faramesh_hosts row for log {log_id}")),
                None => {}
                Some((host, public_key)) => {
                    if host != name {
                        problems
                            .push(format!("faramesh_hosts: `host` is `{host}` where this host is `{name}`"));
                    }
                    if public_key != key {
                        problems.push(format!(
                            "faramesh_hosts: `public_key` is `{public_key}` where the log's key is `{key}`"
                        ));
                    }
                }
            }
            rows.into_iter().map(|r| (r.seq, r.record)).collect()
        }
        other => bail!("no export destination kind `{other}` (otlp, postgres)"),
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
    let mut c = compare(&copies, &flagged, &host, first, through);
    c.problems = problems;
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
        // What was altered may quote the copy's columns: text others could write.
        for (seq, why) in &c.altered {
            println!("  altered: entry {seq}: {}", crate::term::safe(why));
        }
        for why in &c.problems {
            println!("  altered: {}", crate::term::safe(why));
        }
        let copy = if args.destination == "postgres" { "--url …" } else { "--file …" };
        match (&rewound, c.resend_from()) {
            (Value::Object(r), _) => println!(
                "  rewound: the daemon sends entries after {} again",
                r.get("cursor").unwrap_or(&Value::Null)
            ),
            (_, Some(from)) => println!(
                "  resend them: faramesh verify-export {} {copy} --rewind (entries from {from} on)",
                args.destination
            ),
            _ => {}
        }
        if args.destination == "postgres" && !c.altered.is_empty() {
            println!(
                "  PostgreSQL keeps a row it has: delete the altered rows (faramesh_entries, this log id and seq) \
                 before they are sent again"
            );
        }
    }
    Ok(if c.ok() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread().enable_all().build().context("cannot start the runtime")
}

#[derive(clap::Subcommand, Debug)]
pub enum FleetCommand {
    /// Create the tables (the daemon also creates them when it first connects).
    #[command(
        name = "init-db",
        after_help = "Example:\n  faramesh fleet init-db --url postgres://faramesh@db/fleet"
    )]
    InitDb(FleetDb),
    /// Decisions of every host, newest first.
    #[command(after_help = "Example:\n  faramesh fleet list --effect deny --limit 20")]
    List(FleetList),
    /// DEFERs of every host still waiting for a person.
    Pending(FleetList),
    /// One decision (an action id or a prefix of 8 or more characters), from whichever host made it.
    Get {
        /// The action id.
        id: String,
        #[command(flatten)]
        db: FleetDb,
    },
}

#[derive(Args, Debug)]
pub struct FleetDb {
    /// The fleet database.
    #[arg(long, env = "FARAMESH_POSTGRES_URL", value_name = "URL", hide_env_values = true)]
    url: String,
}

#[derive(Args, Debug)]
pub struct FleetList {
    #[command(flatten)]
    db: FleetDb,
    /// One host's decisions (its host name).
    #[arg(long)]
    host: Option<String>,
    /// One agent's.
    #[arg(long)]
    agent: Option<String>,
    /// One tool's.
    #[arg(long)]
    tool: Option<String>,
    /// permit, deny or defer.
    #[arg(long)]
    effect: Option<String>,
    /// At most this many.
    #[arg(long, default_value_t = 50)]
    limit: i64,
}

pub fn fleet(cmd: FleetCommand, json_out: bool) -> Result<ExitCode> {
    runtime()?.block_on(async move {
        let url = match &cmd {
            FleetCommand::InitDb(db) | FleetCommand::Get { db, .. } => db.url.clone(),
            FleetCommand::List(l) | FleetCommand::Pending(l) => l.db.url.clone(),
        };
        let client = fleet_pg::connect(&url).await.map_err(|e| anyhow!(e))?;
        let filter = |l: &FleetList, pending: bool| fleet_pg::FleetFilter {
            host: l.host.clone(),
            agent_id: l.agent.clone(),
            tool: l.tool.clone(),
            effect: l.effect.clone(),
            action_id: None,
            pending,
            limit: l.limit,
        };
        let rows = match &cmd {
            FleetCommand::InitDb(_) => {
                client.batch_execute(fleet_pg::SCHEMA).await.map_err(|e| anyhow!("{e}"))?;
                println!(
                    "ok: the faramesh_hosts, faramesh_entries and faramesh_checkpoints tables are there"
                );
                return Ok(ExitCode::SUCCESS);
            }
            FleetCommand::List(l) => fleet_pg::decisions(&client, &filter(l, false)).await,
            FleetCommand::Pending(l) => fleet_pg::decisions(&client, &filter(l, true)).await,
            FleetCommand::Get { id, .. } => {
                if id.len() < 8 {
                    bail!("give 8 or more characters of the action id");
                }
                let f = fleet_pg::FleetFilter { action_id: Some(id.clone()), limit: 2, ..Default::default() };
                fleet_pg::decisions(&client, &f).await
            }
        }
        .map_err(|e| anyhow!(e))?;
        if let FleetCommand::Get { id, .. } = &cmd {
            match rows.as_slice() {
                [one] => println!(
                    "{}",
                    if json_out {
                        one.to_string()
                    } else {
                        crate::term::safe_lines(&serde_json::to_string_pretty(one)?)
                    }
                ),
                [] => bail!("no decision `{id}` in the fleet database"),
                _ => bail!("action id prefix `{id}` is ambiguous: give more characters"),
            }
            return Ok(ExitCode::SUCCESS);
        }
        if json_out {
            println!("{}", json!({"actions": rows}));
            return Ok(ExitCode::SUCCESS);
        }
        if rows.is_empty() {
            println!("no decisions match");
            return Ok(ExitCode::SUCCESS);
        }
        let s = |v: &Value, k: &str| v[k].as_str().unwrap_or("-").to_owned();
        let table: Vec<Vec<String>> = rows
            .iter()
            .map(|r| {
                vec![
                    s(r, "host"),
                    s(r, "log_id").chars().take(8).collect(),
                    s(r, "id").chars().take(16).collect(),
                    s(r, "ts"),
                    s(r, "effect"),
                    s(r, "agent_id"),
                    format!("{}/{}", s(r, "tool"), s(r, "operation")),
                    s(r, "reason_code"),
                ]
            })
            .collect();
        crate::ops_cmd::table(&["HOST", "LOG", "ID", "TIME", "EFFECT", "AGENT", "TOOL", "REASON"], &table);
        Ok(ExitCode::SUCCESS)
    })
}
