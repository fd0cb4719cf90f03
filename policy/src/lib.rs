//! `faramesh-policy`: the policy engine. Parse and validate YAML, compile it into an indexed
//! decision table, decide and explain calls; [`permit`] is the one place a PERMIT is made.
//!
//! Pure: no IO, no clock, no environment. It depends on `faramesh-proto` and pure crates only
//! (its Cargo.toml has no runtime, storage or filesystem crate). What a policy names but does
//! not hold (a [`SecretRef`]) is resolved by the daemon, not here.

pub mod cases;
pub mod command;
pub mod detect;
mod eval;
mod load;
mod model;
pub mod permit;
pub mod results;
pub mod sshsig;
pub mod yaml;

pub use eval::{
    Explanation, Scope, Shadowed, Step, decide, decide_linear, decide_request, decide_request_with,
    defer_decision, deny_decision, explain, explain_request, shadowed_rules, validate_call,
};
pub use load::{DEFAULT_CHANNEL_ATTEMPTS, PolicyError, compile, parse_duration};
pub use model::{
    After, Approvals, Approver, ApproverKey, Budget, Channel, ChannelKind, Cmp, Commands, Cond, Earlier,
    Email, EmailTls, History, LimitScope, MAX_AFTER_WITHIN_MS, Mcp, NamePat, Notifications, Passkey, Period,
    Policy, Profile, RateLimit, ResultCheck, ResultEffect, ResultRule, Retention, RiskRule, Rule, RuleSet,
    SecretRef, Unresolved,
};
