//! `faramesh policy shadow`: what each rule in shadow mode (`mode: shadow`) would have
//! changed on live traffic, read from the decision log.

use std::collections::BTreeMap;
use std::process::ExitCode;

use anyhow::{Result, anyhow};
use clap::Args;
use serde_json::{Value, json};

use crate::args::SocketArg;
use crate::client;
use crate::term::safe;

#[derive(Args, Debug)]
#[command(after_help = "Examples:\n  faramesh policy shadow\n  faramesh policy shadow --since 7d --json")]
pub struct ShadowArgs {
    /// How far back to look (30m, 24h, 7d).
    #[arg(long, default_value = "24h", value_name = "AGE")]
    since: String,
    /// How many example actions to name per rule.
    #[arg(long, default_value_t = 5)]
    examples: usize,
    #[command(flatten)]
    socket: SocketArg,
}

/// One rule in shadow mode and the calls it would have decided otherwise.
#[derive(Default)]
struct Tally {
    rule_ref: String,
    would: String,
    calls: u64,
    by_effect: BTreeMap<String, u64>,
    last: String,
    examples: Vec<Value>,
}

/// Most entries read per request.
const PAGE: usize = 5_000;

/// `faramesh policy shadow [--since AGE]`.
pub fn shadow(args: ShadowArgs, json_out: bool) -> Result<ExitCode> {
    let age = faramesh_daemon::service::retention::parse_age(&args.since)
        .ok_or_else(|| anyhow!("`--since` `{}` is not an age such as 30m, 24h or 7d", args.since))?;
    let now = faramesh_log::entry::now_ms();
    let since =
        faramesh_log::entry::rfc3339(now.saturating_sub(u64::try_from(age.as_millis()).unwrap_or(u64::MAX)));
    let path = args.socket.path();
    let mut tallies: BTreeMap<String, Tally> = BTreeMap::new();
    let mut decisions = 0u64;
    let mut page = client::call(&path, "log.entries", json!({"since": since, "limit": PAGE}))?;
    loop {
        let entries = page["entries"].as_array().cloned().unwrap_or_default();
        for e in &entries {
            if e["kind"] != "decision" {
                continue;
            }
            decisions += 1;
            let Some(hit) = e.get("shadow").filter(|s| s.is_object()) else { continue };
            let id = hit["rule_id"].as_str().unwrap_or("?").to_owned();
            let t = tallies.entry(id).or_default();
            t.rule_ref = hit["rule_ref"].as_str().unwrap_or("").to_owned();
            t.would = hit["effect"].as_str().unwrap_or("").to_owned();
            t.calls += 1;
            *t.by_effect.entry(e["effect"].as_str().unwrap_or("?").to_owned()).or_default() += 1;
            t.last = e["ts"].as_str().unwrap_or("").to_owned();
            if t.examples.len() < args.examples {
                t.examples.push(json!({
                    "id": e["id"], "ts": e["ts"], "agent_id": e["agent_id"], "tool": e["tool"],
                    "operation": e["operation"], "effect": e["effect"], "rule_id": e["rule_id"],
                }));
            }
        }
        if entries.len() < PAGE {
            break;
        }
        let next = page["next_seq"].clone();
        page = client::call(&path, "log.entries", json!({"from_seq": next, "limit": PAGE}))?;
    }
    if json_out {
        let rules: Vec<Value> = tallies
            .iter()
            .map(|(id, t)| {
                json!({"rule_id": id, "rule_ref": t.rule_ref, "would": t.would, "calls": t.calls,
                       "instead_of": t.by_effect, "last": t.last, "examples": t.examples})
            })
            .collect();
        println!("{}", json!({"since": since, "decisions": decisions, "rules": rules}));
        return Ok(ExitCode::SUCCESS);
    }
    println!("since {since}: {decisions} decisions read");
    if tallies.is_empty() {
        println!("no rule in shadow mode would have changed any of them (`mode: shadow` on a rule tries it)");
        return Ok(ExitCode::SUCCESS);
    }
    for (id, t) in &tallies {
        let instead: Vec<String> = t.by_effect.iter().map(|(e, n)| format!("{n} {e}")).collect();
        println!();
        println!(
            "{} ({}): would have {} {} {}, instead of {}",
            safe(id),
            safe(&t.rule_ref),
            match t.would.as_str() {
                "DENY" => "denied",
                "DEFER" => "deferred",
                _ => "permitted",
            },
            t.calls,
            if t.calls == 1 { "call" } else { "calls" },
            instead.join(", ")
        );
        for x in &t.examples {
            println!(
                "  {}  {}  {} {}/{}  {} ({})",
                x["ts"].as_str().unwrap_or(""),
                x["id"].as_str().unwrap_or(""),
                safe(x["agent_id"].as_str().unwrap_or("")),
                safe(x["tool"].as_str().unwrap_or("")),
                safe(x["operation"].as_str().unwrap_or("")),
                x["effect"].as_str().unwrap_or(""),
                safe(x["rule_id"].as_str().unwrap_or("no rule"))
            );
        }
    }
    println!();
    println!("to make one real: remove its `mode: shadow` and `faramesh apply` the policy");
    Ok(ExitCode::SUCCESS)
}
