//! The policy engine: parse and validate YAML, compile it into an indexed decision table,
//! decide and explain calls. Pure: this module does no IO.

pub mod cases;
pub mod command;
mod eval;
mod load;
mod model;
pub mod yaml;

pub use eval::{
    Explanation, Scope, Shadowed, Step, decide, decide_linear, decide_request, defer_decision, deny_decision,
    explain, explain_request, shadowed_rules, validate_call,
};
pub use load::{DEFAULT_CHANNEL_ATTEMPTS, PolicyError, compile, parse_duration};
pub use model::{
    Approvals, Approver, Budget, Channel, ChannelKind, Cmp, Commands, Cond, Email, EmailTls, Mcp, NamePat,
    Notifications, Period, Policy, Profile, RateLimit, Retention, RiskRule, Rule, RuleSet, SecretRef,
    Unresolved,
};
