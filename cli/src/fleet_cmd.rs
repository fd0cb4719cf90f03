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
    /// Approve waiting calls on any host, signed with your SSH key (the host's policy lists it
    /// under your name in `approvals.approvers`).
    #[command(
        after_help = "Examples:\n  faramesh fleet pending\n  faramesh fleet approve 3f2a9c1e --sign --as alice\n  faramesh fleet approve 3f2a9c1e 77b0d2aa --sign --key ~/.ssh/id_ed25519"
    )]
    Approve(FleetDecide),
    /// Deny waiting calls on any host, signed with your SSH key.
    #[command(after_help = "Example:\n  faramesh fleet deny 3f2a9c1e --sign --as alice")]
    Deny(FleetDecide),
    /// Every host: its last export, the policy bundle it runs, when it last fetched, any refusal.
    Hosts(FleetDb),
    /// A page on this machine listing every host's waiting calls, to approve or deny them one or
    /// many at a time, each signed with your SSH key.
    #[command(
        after_help = "Example:\n  faramesh fleet serve --as alice          # then open the link it prints"
    )]
    Serve(crate::fleet_page::ServeArgs),
}

#[derive(Args, Debug)]
pub struct PublishArgs {
    /// The policy file.
    file: std::path::PathBuf,
    #[command(flatten)]
    db: FleetDb,
    /// Sign with your SSH key (required: hosts take only bundles a key they pin signed).
    #[arg(long)]
    sign: bool,
    /// The key to sign with (a private key, or a public key whose private half is in ssh-agent;
    /// default: the first Ed25519 key in ssh-agent).
    #[arg(long, value_name = "FILE")]
    key: Option<std::path::PathBuf>,
    /// Your name as publisher (default: `$USER`).
    #[arg(long = "as", value_name = "NAME")]
    as_name: Option<String>,
    /// The bundle's serial (default: one more than the newest in the database).
    #[arg(long, value_name = "N")]
    serial: Option<u64>,
    /// How long hosts may run it without a newer bundle (`30d`, `12h`).
    #[arg(long, default_value = "30d", value_name = "DURATION")]
    expires: String,
    /// Only hosts with one of these labels take it (`canary`; default: every host).
    #[arg(long, value_name = "LABELS", default_value = "")]
    labels: String,
}

#[derive(Args, Debug)]
pub struct FleetDecide {
    /// The approvals (ids, or prefixes of 8 or more characters, as `fleet pending` shows them;
    /// action ids also work).
    #[arg(required = true)]
    ids: Vec<String>,
    #[command(flatten)]
    db: FleetDb,
    /// Sign with your SSH key (required: the database carries only what an approver signed).
    #[arg(long)]
    sign: bool,
    /// The key to sign with (a private key, or a public key whose private half is in ssh-agent;
    /// default: the first Ed25519 key in ssh-agent).
    #[arg(long, value_name = "FILE")]
    key: Option<std::path::PathBuf>,
    /// Your approver name as the host's policy lists it (default: `$USER`).
    #[arg(long = "as", value_name = "NAME")]
    as_name: Option<String>,
    /// How long the statement may be used (at most 1h).
    #[arg(long, default_value = "15m", value_name = "DURATION")]
    valid: String,
    /// How long to wait for each host to apply it (`0`: do not wait).
    #[arg(long, default_value = "30s", value_name = "DURATION")]
    wait: String,
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
    let cmd = match cmd {
        FleetCommand::Serve(args) => return crate::fleet_page::serve(args),
        other => other,
    };
    runtime()?.block_on(async move {
        let url = match &cmd {
            FleetCommand::InitDb(db) | FleetCommand::Get { db, .. } => db.url.clone(),
            FleetCommand::List(l) | FleetCommand::Pending(l) => l.db.url.clone(),
            FleetCommand::Approve(d) | FleetCommand::Deny(d) => d.db.url.clone(),
            FleetCommand::Hosts(db) => db.url.clone(),
            FleetCommand::Serve(_) => return Ok(ExitCode::SUCCESS),
        };
        let mut client = fleet_pg::connect(&url).await.map_err(|e| anyhow!(e))?;
        match cmd {
            FleetCommand::Approve(d) => return fleet_decide(&mut client, d, true, json_out).await,
            FleetCommand::Deny(d) => return fleet_decide(&mut client, d, false, json_out).await,
            FleetCommand::Hosts(_) => return fleet_hosts(&client, json_out).await,
            _ => {}
        }
        let filter = |l: &FleetList, pending: bool| fleet_pg::FleetFilter {
            host: l.host.clone(),
            agent_id: l.agent.clone(),
            tool: l.tool.clone(),
            effect: l.effect.clone(),
            action_id: None,
            approval_id: None,
            pending,
            limit: l.limit,
        };
        let rows = match &cmd {
            FleetCommand::InitDb(_) => {
                client.batch_execute(fleet_pg::SCHEMA).await.map_err(|e| anyhow!("{e}"))?;
                println!(
                    "ok: the fleet's tables are there (faramesh_hosts, faramesh_entries, faramesh_checkpoints, \
                     faramesh_approval_decisions, faramesh_policy_bundles, faramesh_host_policy, faramesh_fleet_counters)"
                );
                return Ok(ExitCode::SUCCESS);
            }
            FleetCommand::List(l) => fleet_pg::decisions(&client, &filter(l, false)).await,
            FleetCommand::Pending(l) => fleet_pg::decisions(&client, &filter(l, true)).await,
            FleetCommand::Approve(_) | FleetCommand::Deny(_) | FleetCommand::Hosts(_) | FleetCommand::Serve(_) => {
                return Ok(ExitCode::SUCCESS);
            }
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
        if matches!(cmd, FleetCommand::Pending(_)) {
            let now = now_ms();
            let table: Vec<Vec<String>> = rows
                .iter()
                .map(|r| {
                    let age = r["ts"]
                        .as_str()
                        .and_then(faramesh_log::entry::parse_rfc3339)
                        .map_or_else(|| "-".to_owned(), |t| age_text(now.saturating_sub(t) / 1000));
                    vec![
                        s(r, "host"),
                        s(r, "approval_id").chars().take(12).collect(),
                        age,
                        s(r, "agent_id"),
                        format!("{}/{}", s(r, "tool"), s(r, "operation")),
                        s(r, "rule_id"),
                        s(r, "risk_level"),
                    ]
                })
                .collect();
            crate::ops_cmd::table(&["HOST", "APPROVAL", "AGE", "AGENT", "CALL", "RULE", "RISK"], &table);
            println!("approve one: faramesh fleet approve APPROVAL --sign --as YOUR_NAME");
            return Ok(ExitCode::SUCCESS);
        }
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

/// The one pending DEFER `id` names in the fleet database (an approval id or an action id, or
/// a prefix of either).
pub(crate) async fn pending_call(client: &fleet_pg::Client, id: &str) -> Result<Value> {
    if id.len() < 8 {
        bail!("give 8 or more characters of the approval id (`faramesh fleet pending` shows them)");
    }
    let by_approval =
        fleet_pg::FleetFilter { approval_id: Some(id.to_owned()), limit: 100, ..Default::default() };
    let mut rows = fleet_pg::decisions(client, &by_approval).await.map_err(|e| anyhow!(e))?;
    if rows.is_empty() {
        let by_action =
            fleet_pg::FleetFilter { action_id: Some(id.to_owned()), limit: 2, ..Default::default() };
        rows = fleet_pg::decisions(client, &by_action).await.map_err(|e| anyhow!(e))?;
    }
    // A call resumed while its approval waits is recorded again with the same approval: the
    // approval is the oldest of its records (they come newest first).
    rows.reverse();
    let mut seen = std::collections::HashSet::new();
    rows.retain(|r| {
        r["approval_id"].as_str().is_none_or(|a| seen.insert((r["log_id"].to_string(), a.to_owned())))
    });
    let one = match rows.as_slice() {
        [one] => one.clone(),
        [] => bail!("no call `{id}` in the fleet database (`faramesh fleet pending` lists the waiting ones)"),
        _ => bail!("`{id}` is ambiguous: give more characters"),
    };
    if one["effect"] != "DEFER" || !one["approval_id"].is_string() {
        bail!("`{id}` is a {} decision: it awaits no approval", one["effect"].as_str().unwrap_or("finished"));
    }
    let still = fleet_pg::FleetFilter {
        approval_id: one["approval_id"].as_str().map(str::to_owned),
        pending: true,
        limit: 1,
        ..Default::default()
    };
    if fleet_pg::decisions(client, &still).await.map_err(|e| anyhow!(e))?.is_empty() {
        bail!(
            "the call `{id}` on {} is no longer waiting (approved, denied or expired)",
            one["host"].as_str().unwrap_or("its host")
        );
    }
    // What is signed is the request hash; what a person reads is the record in the database,
    // which anyone with write access could have edited. Sign only when the call shown is the
    // call the hash names.
    let shown = faramesh_proto::canonical::request_hash(
        one["agent_id"].as_str().unwrap_or_default(),
        one["tool"].as_str().unwrap_or_default(),
        one["operation"].as_str().unwrap_or_default(),
        &one["params"],
        &one["context"],
    )
    .ok();
    if shown.as_deref() != one["request_hash"].as_str() {
        bail!(
            "refusing to sign `{id}`: the call the fleet database shows is not the call its request hash names \
             (its arguments were redacted when it was recorded, or the record was altered since); approve it on its \
             host, which reads the call from its own log (`faramesh approve ID --sign`)"
        );
    }
    Ok(one)
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// `faramesh fleet approve|deny`: a signed statement per call, put in the fleet queue for its
/// host, then each host's outcome as it notes it.
async fn fleet_decide(
    client: &mut fleet_pg::Client,
    args: FleetDecide,
    approve: bool,
    json_out: bool,
) -> Result<ExitCode> {
    let verb = if approve { "approve" } else { "deny" };
    if !args.sign {
        bail!(
            "a decision through the fleet database is signed: add `--sign` (your SSH key, listed under your name \
             in the host's `approvals.approvers`)"
        );
    }
    let approver = crate::ops_cmd::signer_name(args.as_name.as_deref())?;
    let valid_ms = crate::ops_cmd::statement_validity(&args.valid)?;
    let wait_ms = if args.wait == "0" {
        0
    } else {
        faramesh_policy::parse_duration(&args.wait)
            .map(|s| s * 1000)
            .ok_or_else(|| anyhow!("`--wait` `{}` must be a duration (`30s`, `2m`) or 0", args.wait))?
    };
    let mut sent = Vec::new();
    for id in &args.ids {
        let call = pending_call(client, id).await?;
        let st = statement_for(&call, approve, &approver, valid_ms);
        let text = st.text();
        if !json_out {
            eprintln!(
                "{verb} on {}: {}/{} by agent {} (rule {})",
                crate::term::safe(call["host"].as_str().unwrap_or("-")),
                crate::term::safe(call["tool"].as_str().unwrap_or("-")),
                crate::term::safe(call["operation"].as_str().unwrap_or("-")),
                crate::term::safe(call["agent_id"].as_str().unwrap_or("-")),
                crate::term::safe(call["rule_id"].as_str().unwrap_or("-")),
            );
            let args: String = one_line(&call["params"]).chars().take(400).collect();
            eprintln!("  arguments: {}", crate::term::safe(&args));
            eprint!("signing as {approver}:\n{}", crate::term::safe(&text));
        }
        let signature = crate::ops_cmd::ssh_sign(&text, args.key.as_deref())?;
        let row = fleet_pg::submit_decision(client, &st.host, &st.approval, &text, &signature)
            .await
            .map_err(|e| anyhow!(e))?;
        sent.push((call, st, row));
    }
    // Each host applies what is addressed to it and notes the outcome on the row.
    let rows: Vec<i64> = sent.iter().map(|(_, _, row)| *row).collect();
    let outcomes = wait_outcomes(client, &rows, wait_ms).await?;
    let mut refused = false;
    let mut shown = Vec::new();
    for ((call, st, row), out) in sent.iter().zip(&outcomes) {
        let host = call["host"].as_str().unwrap_or("-");
        refused |= out.as_deref().is_some_and(|o| o.starts_with("refused"));
        if json_out {
            shown.push(json!({
                "host": host,
                "log_id": st.host,
                "approval_id": st.approval,
                "action_id": st.action,
                "row": row,
                "outcome": out,
            }));
            continue;
        }
        let line = match out {
            Some(o) => format!("{} on {host}: {o}", st.approval),
            None => format!(
                "{} on {host}: queued (row {row}); the host applies it when it next reads the fleet database",
                st.approval
            ),
        };
        println!("{}", crate::term::safe(&line));
    }
    if json_out {
        println!("{}", json!({"decisions": shown}));
    }
    Ok(if refused { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

/// `42s`, `5m`, `3h`, `2d`.
fn age_text(secs: u64) -> String {
    match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m", s / 60),
        s if s < 86_400 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

/// `faramesh policy publish`: the policy checked, made a bundle, signed, written to the fleet
/// database and announced.
pub fn publish(args: PublishArgs, json_out: bool) -> Result<ExitCode> {
    use faramesh_daemon::service::bundle::{self, Bundle};
    if !args.sign {
        bail!("a bundle is signed: add `--sign` (your SSH key, which the hosts pin with `--policy-key`)");
    }
    let policy = std::fs::read_to_string(&args.file)
        .with_context(|| format!("cannot read `{}`", args.file.display()))?;
    if let Err(e) = faramesh_policy::compile(&args.file.display().to_string(), &policy) {
        eprintln!("error: {e}");
        return Ok(ExitCode::from(crate::args::EXIT_INVALID_POLICY));
    }
    if policy.len() > bundle::MAX_POLICY_BYTES {
        bail!(
            "the policy is {} bytes, over the {}-byte limit of a bundle",
            policy.len(),
            bundle::MAX_POLICY_BYTES
        );
    }
    let publisher = crate::ops_cmd::signer_name(args.as_name.as_deref())?;
    let labels = bundle::parse_labels(&args.labels).map_err(|e| anyhow!("`--labels`: {e}"))?;
    let valid_ms = faramesh_policy::parse_duration(&args.expires)
        .map(|s| s * 1000)
        .filter(|ms| *ms >= 60_000)
        .ok_or_else(|| {
            anyhow!("`--expires` `{}` must be a duration of a minute or more (`30d`, `12h`)", args.expires)
        })?;
    runtime()?.block_on(async move {
        let mut client = fleet_pg::connect(&args.db.url).await.map_err(|e| anyhow!(e))?;
        client.batch_execute(fleet_pg::SCHEMA).await.map_err(|e| anyhow!("{e}"))?;
        let newest = fleet_pg::newest_bundle_serial(&client).await.map_err(|e| anyhow!(e))?;
        let serial = match args.serial {
            Some(s) if s <= newest => bail!("serial {s} is not above {newest}, the newest in the fleet database"),
            Some(s) => s,
            None => newest + 1,
        };
        let b = Bundle { serial, expires_ms: now_ms() + valid_ms, labels, publisher: publisher.clone(), policy };
        let text = b.text();
        let digest = bundle::hex_sha256(text.as_bytes());
        if !json_out {
            eprintln!(
                "publishing `{}` as bundle {serial} for {} until {} (sha256 {digest}), signed as {publisher}",
                args.file.display(),
                if b.labels.is_empty() { "every host".to_owned() } else { format!("hosts labelled {}", b.labels.join(", ")) },
                faramesh_log::entry::rfc3339(b.expires_ms),
            );
        }
        let signature = crate::ops_cmd::ssh_sign_in(bundle::NAMESPACE, &text, args.key.as_deref())?;
        fleet_pg::publish_bundle(&mut client, &b, &text, &digest, &signature).await.map_err(|e| anyhow!(e))?;
        if json_out {
            println!("{}", json!({"serial": serial, "digest": digest, "labels": b.labels, "expires_at": faramesh_log::entry::rfc3339(b.expires_ms)}));
        } else {
            println!("published bundle {serial} ({digest}); `faramesh fleet hosts` shows which hosts run it");
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// `faramesh fleet hosts`.
async fn fleet_hosts(client: &fleet_pg::Client, json_out: bool) -> Result<ExitCode> {
    let hosts = fleet_pg::hosts(client).await.map_err(|e| anyhow!(e))?;
    if json_out {
        println!("{}", json!({"hosts": hosts}));
        return Ok(ExitCode::SUCCESS);
    }
    if hosts.is_empty() {
        println!("no hosts in the fleet database yet");
        return Ok(ExitCode::SUCCESS);
    }
    let s = |v: &Value, k: &str| v[k].as_str().map_or_else(|| "-".to_owned(), str::to_owned);
    let now = now_ms();
    let ago = |v: &Value, k: &str| {
        v[k].as_str()
            .and_then(faramesh_log::entry::parse_rfc3339)
            .map_or_else(|| "-".to_owned(), |t| format!("{} ago", age_text(now.saturating_sub(t) / 1000)))
    };
    let rows: Vec<Vec<String>> = hosts
        .iter()
        .map(|h| {
            let stale = h["expires_at"]
                .as_str()
                .and_then(faramesh_log::entry::parse_rfc3339)
                .is_some_and(|t| t < now);
            vec![
                s(h, "host"),
                s(h, "log_id").chars().take(8).collect(),
                ago(h, "last_seen"),
                h["serial"].as_i64().map_or_else(
                    || "-".to_owned(),
                    |n| format!("{n}{}", if stale { " (STALE)" } else { "" }),
                ),
                s(h, "digest").chars().take(12).collect(),
                h["labels"].as_array().map_or_else(String::new, |l| {
                    l.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(",")
                }),
                ago(h, "fetched_at"),
                h["refusal"].as_str().and_then(|r| serde_json::from_str::<Value>(r).ok()).map_or_else(
                    || "-".to_owned(),
                    |r| format!("bundle {}: {}", r["serial"], r["error"].as_str().unwrap_or("-")),
                ),
            ]
        })
        .collect();
    crate::ops_cmd::table(
        &["HOST", "LOG", "EXPORTED", "BUNDLE", "DIGEST", "LABELS", "FETCHED", "LAST REFUSAL"],
        &rows,
    );
    Ok(ExitCode::SUCCESS)
}

/// The statement approving (or denying) the pending call `call` (its DEFER record from the fleet
/// database) as `approver`, valid for `valid_ms` from now.
pub(crate) fn statement_for(
    call: &Value,
    approve: bool,
    approver: &str,
    valid_ms: u64,
) -> faramesh_daemon::service::signing::Statement {
    let now = now_ms();
    faramesh_daemon::service::signing::Statement {
        host: call["log_id"].as_str().unwrap_or_default().to_owned(),
        approval: call["approval_id"].as_str().unwrap_or_default().to_owned(),
        action: call["id"].as_str().unwrap_or_default().to_owned(),
        request: call["request_hash"].as_str().unwrap_or_default().to_owned(),
        approve,
        approver: approver.to_owned(),
        signed_ms: now,
        expires_ms: now + valid_ms,
    }
}

/// What each host noted on the queued rows, waiting up to `wait_ms` for all of them.
pub(crate) async fn wait_outcomes(
    client: &fleet_pg::Client,
    rows: &[i64],
    wait_ms: u64,
) -> Result<Vec<Option<String>>> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_millis(wait_ms);
    let mut outcomes: Vec<Option<String>> = vec![None; rows.len()];
    loop {
        for (row, out) in rows.iter().zip(outcomes.iter_mut()) {
            if out.is_none() {
                *out = fleet_pg::decision_outcome(client, *row).await.map_err(|e| anyhow!(e))?;
            }
        }
        if outcomes.iter().all(Option::is_some) || std::time::Instant::now() >= deadline {
            return Ok(outcomes);
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// A JSON value on one line.
fn one_line(v: &Value) -> String {
    serde_json::to_string(v).unwrap_or_default()
}
