//! Building decisions: the DENY skeleton, DENY and DEFER with their reasons and what the agent
//! can do, and a rule's decision (a PERMIT only through [`Permit::rule`]).

use faramesh_proto::{Decision, Effect, ReasonCode, Resolution, RiskLevel, StructuredDenial};

use crate::model::{Policy, Profile, Rule};
use crate::permit::{FullyRead, NoPermit, Permit};

/// The decision skeleton: DENY until something says otherwise.
pub(super) fn base(policy: &Policy) -> Decision {
    Decision {
        effect: Effect::Deny,
        reason_code: ReasonCode::InternalError,
        reason: String::new(),
        rule_id: None,
        rule_ref: None,
        risk_level: RiskLevel::Low,
        request_hash: String::new(),
        policy_hash: policy.hash.clone(),
        structured_denial: None,
        provenance: None,
        params_hash: String::new(),
        shadow: None,
        findings: Vec::new(),
    }
}

/// Turns `d` into a DENY with `code`, naming the rule and what the agent can do about it.
pub fn deny_decision(
    mut d: Decision,
    code: ReasonCode,
    reason: String,
    rule_id: Option<String>,
    rule_ref: Option<String>,
    resolution: Option<Resolution>,
) -> Decision {
    d.effect = Effect::Deny;
    d.reason_code = code;
    d.structured_denial = Some(StructuredDenial {
        code,
        rule_id: rule_id.clone(),
        rule_ref: rule_ref.clone(),
        human_message: reason.clone(),
        resolution,
    });
    d.reason = reason;
    d.rule_id = rule_id;
    d.rule_ref = rule_ref;
    d
}

pub(super) fn profile_denial(d: Decision, profile: &Profile, tool: &str) -> Decision {
    let rule_id = format!("agents.{}.tools", profile.name);
    deny_decision(
        d,
        ReasonCode::ProfileDisallowsTool,
        format!("agent `{}` may not call tool `{tool}`", profile.name),
        Some(rule_id.clone()),
        Some(profile.tools_ref.clone()),
        Some(Resolution::RuleBlock { rule_id: Some(rule_id) }),
    )
}

pub(super) fn from_rule(
    mut d: Decision,
    rule: &Rule,
    computed_risk: RiskLevel,
    risk_rule: Option<&str>,
    read: Result<FullyRead, NoPermit>,
) -> Decision {
    let risk = rule.risk.unwrap_or(computed_risk);
    d.risk_level = risk;
    d.rule_id = Some(rule.id.clone());
    d.rule_ref = Some(rule.rule_ref.clone());
    let described = |fallback: String| rule.description.clone().unwrap_or(fallback);
    match rule.effect {
        Effect::Permit if rule.risk.is_none() && computed_risk == RiskLevel::High => {
            let reason = format!(
                "high-risk call (risk rule `{}`) needs approval although rule `{}` allows it",
                risk_rule.unwrap_or("?"),
                rule.id
            );
            defer_decision(d, ReasonCode::RiskUpgrade, reason)
        }
        Effect::Permit => match read {
            Ok(read) => {
                Permit::rule(&rule.id, described(format!("allowed by rule `{}`", rule.id)), read).apply(d)
            }
            Err(part) => {
                let reason = format!(
                    "rule `{}` allows this call, but its command line cannot be read with certainty ({part}): \
                     a person must approve it",
                    rule.id
                );
                defer_decision(d, ReasonCode::CommandUnresolved, reason)
            }
        },
        Effect::Deny => {
            let reason = described(format!("denied by rule `{}`", rule.id));
            let rule_id = Some(rule.id.clone());
            deny_decision(
                d,
                ReasonCode::PolicyDeny,
                reason,
                rule_id.clone(),
                Some(rule.rule_ref.clone()),
                Some(Resolution::RuleBlock { rule_id }),
            )
        }
        Effect::Defer => {
            let reason = described(format!("rule `{}` requires approval", rule.id));
            defer_decision(d, ReasonCode::PolicyDefer, reason)
        }
    }
}

/// Turns `d` into a DEFER with `code`, pending an approval the daemon fills in.
pub fn defer_decision(mut d: Decision, code: ReasonCode, reason: String) -> Decision {
    d.effect = Effect::Defer;
    d.reason_code = code;
    d.structured_denial = Some(StructuredDenial {
        code,
        rule_id: d.rule_id.clone(),
        rule_ref: d.rule_ref.clone(),
        human_message: reason.clone(),
        // The daemon fills in the approval id when it creates the pending approval.
        resolution: Some(Resolution::PendingApproval { approval_id: None }),
    });
    d.reason = reason;
    d
}
