//! `faramesh kill`: the kill switch (`docs/operations.md#the-kill-switch`).

use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use serde_json::json;

use crate::args::SocketArg;
use crate::client;
use crate::term::safe;

#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  faramesh kill --reason \"agents are deleting files\"\n  faramesh kill --agent ops-bot\n  faramesh kill --lift\n  faramesh kill --lift --agent ops-bot"
)]
pub struct KillArgs {
    /// Stop this agent only (default: every agent).
    #[arg(long = "agent", value_name = "ID")]
    agent_id: Option<String>,
    /// Why (recorded, and sent to the notification channels).
    #[arg(long)]
    reason: Option<String>,
    /// Lift the switch instead (for `--agent ID`, or the one for every agent).
    #[arg(long, conflicts_with = "reason")]
    lift: bool,
    #[command(flatten)]
    socket: SocketArg,
}

/// `faramesh kill [--agent ID] [--reason TEXT] [--lift]`.
pub fn kill(args: KillArgs, json_out: bool) -> Result<ExitCode> {
    let path = args.socket.path();
    let whom = match &args.agent_id {
        Some(a) => format!("agent {}", safe(a)),
        None => "every agent".to_owned(),
    };
    if args.lift {
        let r = client::call(&path, "kill.lift", json!({"agent_id": args.agent_id}))?;
        if json_out {
            println!("{r}");
        } else {
            println!("kill switch lifted for {whom}: calls are decided by the policy again");
            if r["kill_file_present"] == true {
                println!("the kill file is still present: every call stays denied until it is removed");
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    let r = client::call(&path, "kill.engage", json!({"agent_id": args.agent_id, "reason": args.reason}))?;
    if json_out {
        println!("{r}");
        return Ok(ExitCode::SUCCESS);
    }
    let denied = r["denied_approvals"].as_array().map_or(0, Vec::len);
    println!("kill switch engaged for {whom}: every call is denied (KILL_SWITCH)");
    if denied > 0 {
        println!("{denied} pending approval(s) denied");
    }
    println!(
        "lift it with: faramesh kill --lift{}",
        args.agent_id.as_ref().map(|a| format!(" --agent {}", safe(a))).unwrap_or_default()
    );
    Ok(ExitCode::SUCCESS)
}
