//! Choosing the deciding rule: the agent's rules, then the global ones, through the index
//! (or every rule, when explaining or scanning linearly).

use faramesh_proto::{Call, Decision, Effect, ReasonCode, Resolution, RiskLevel, ShadowHit};

use super::conds::CallCtx;
use super::decision::{base, defer_decision, deny_decision, from_rule, profile_denial};
use super::{Explanation, Scope, Step, validate_call};
use crate::command::{Match, Reading};
use crate::model::{History, Policy, Rule, RuleSet, Unresolved, merge_visit};
use crate::permit::FullyRead;

/// Picks the deciding rule, rule by rule in policy order. A command the reader could not
/// fully read (or a rule that would match it only for some value of a word known when it
/// runs) never matches an allow rule: allow rules are passed over, and the call is at least
/// DEFER `COMMAND_UNRESOLVED` when one of them would have matched. Deny rules still decide.
pub(super) struct Chooser<'p> {
    /// Why the command is not read in full, once known.
    unresolved: Option<String>,
    /// The first allow rule passed over.
    skipped_allow: Option<&'p Rule>,
    /// The deciding rule.
    decided: Option<&'p Rule>,
    /// The first rule in shadow mode that matched before any rule decided.
    shadow: Option<&'p Rule>,
}

impl<'p> Chooser<'p> {
    pub(super) fn new(ctx: &CallCtx<'_>) -> Self {
        let unresolved = match ctx.reading() {
            Reading::Unresolved { .. } | Reading::Unreadable(_) => ctx.reading().unresolved_reason(),
            Reading::NoCommand | Reading::Resolved(_) => None,
        };
        Chooser { unresolved, skipped_allow: None, decided: None, shadow: None }
    }

    /// Considers `rule`; `true` once a rule decides.
    pub(super) fn visit(
        &mut self,
        rule: &'p Rule,
        ctx: &CallCtx<'_>,
        steps: Option<&mut Vec<Step>>,
        scope: &Scope,
    ) -> bool {
        if rule.shadow {
            self.try_shadow(rule, ctx, steps, scope);
            return false;
        }
        let status = rule.status(ctx);
        let (matched, failed) = match &status {
            Err(i) => (false, rule.conds.get(*i).and_then(|c| c.why_not(ctx, true))),
            Ok(maybe) => {
                let maybe_reason = maybe.as_ref().map(|w| {
                    format!(
                        "`{w}`: a word only known when the command runs, for which rule `{}` may match",
                        rule.id
                    )
                });
                if rule.effect == Effect::Permit {
                    if self.unresolved.is_none() {
                        self.unresolved = maybe_reason;
                    }
                    match &self.unresolved {
                        Some(why) => {
                            self.skipped_allow.get_or_insert(rule);
                            (
                                false,
                                Some(format!(
                                    "allow rules do not apply to a command not read in full ({why})"
                                )),
                            )
                        }
                        None => (true, None),
                    }
                } else if let Some(why) = maybe_reason {
                    self.unresolved.get_or_insert(why);
                    (
                        false,
                        maybe.as_ref().map(|w| {
                            format!("command: would match only for some value of `{w}`, known when the command runs")
                        }),
                    )
                } else {
                    (true, None)
                }
            }
        };
        if let Some(steps) = steps {
            steps.push(Step {
                rule_id: rule.id.clone(),
                rule_ref: rule.rule_ref.clone(),
                scope: scope.clone(),
                matched,
                failed,
            });
        }
        if matched {
            self.decided = Some(rule);
        }
        matched
    }

    /// A rule in shadow mode: it never decides; the first one that matches (a command read in
    /// full, for an allow rule) before any rule decides is what shadow mode records.
    fn try_shadow(
        &mut self,
        rule: &'p Rule,
        ctx: &CallCtx<'_>,
        steps: Option<&mut Vec<Step>>,
        scope: &Scope,
    ) {
        let matched = match rule.status(ctx) {
            Ok(None) => rule.effect != Effect::Permit || self.unresolved.is_none(),
            Ok(Some(_)) | Err(_) => false,
        };
        if matched && self.shadow.is_none() {
            self.shadow = Some(rule);
        }
        if let Some(steps) = steps {
            let note = if matched {
                "matches, but it is in shadow mode: recorded, never decides"
            } else {
                "in shadow mode, and does not match"
            };
            steps.push(Step {
                rule_id: rule.id.clone(),
                rule_ref: rule.rule_ref.clone(),
                scope: scope.clone(),
                matched: false,
                failed: Some(note.to_owned()),
            });
        }
    }

    /// The decision once every candidate rule was considered.
    pub(super) fn finish(
        self,
        policy: &Policy,
        d: Decision,
        call: &Call,
        reading: &Reading,
        risk: RiskLevel,
        risk_rule: Option<&str>,
    ) -> Decision {
        let read = || FullyRead::of_reading(reading);
        let shadow = self.shadow.map(|r| ShadowHit {
            rule_id: r.id.clone(),
            rule_ref: r.rule_ref.clone(),
            effect: r.effect,
        });
        let mut decision = match (self.decided, self.unresolved) {
            (Some(rule), None) => from_rule(d, rule, risk, risk_rule, read()),
            (Some(rule), Some(_)) if rule.effect == Effect::Deny => {
                from_rule(d, rule, risk, risk_rule, read())
            }
            (Some(rule), Some(why)) => unresolved_decision(policy, d, rule, risk, why, true),
            (None, Some(why)) if self.skipped_allow.is_some() => match self.skipped_allow {
                Some(rule) => unresolved_decision(policy, d, rule, risk, why, false),
                None => d,
            },
            (None, _) => {
                let reason = format!(
                    "no rule matches `{}/{}`; calls no rule allows are denied",
                    call.tool, call.operation
                );
                deny_decision(
                    d,
                    ReasonCode::DefaultDenyNoMatch,
                    reason,
                    None,
                    None,
                    Some(Resolution::RuleBlock { rule_id: None }),
                )
            }
        };
        decision.shadow = shadow.filter(|s| s.effect != decision.effect);
        decision
    }
}

/// A call whose command was not read in full, where `rule` (a require-approval rule that
/// matched, or an allow rule passed over) would have decided: DEFER `COMMAND_UNRESOLVED`, or
/// DENY under `commands: { unresolved: deny }`.
pub(super) fn unresolved_decision(
    policy: &Policy,
    mut d: Decision,
    rule: &Rule,
    risk: RiskLevel,
    why: String,
    deferring: bool,
) -> Decision {
    d.risk_level = rule.risk.unwrap_or(risk);
    d.rule_id = Some(rule.id.clone());
    d.rule_ref = Some(rule.rule_ref.clone());
    let what = if deferring {
        format!("rule `{}` requires approval", rule.id)
    } else {
        format!("rule `{}` allows only commands read in full", rule.id)
    };
    match policy.commands.unresolved {
        Unresolved::Deny => {
            let reason = format!(
                "the command could not be fully read ({why}); this policy denies such commands (`commands.unresolved: deny`)"
            );
            let rule_id = Some(rule.id.clone());
            deny_decision(
                d,
                ReasonCode::CommandUnresolved,
                reason,
                rule_id.clone(),
                Some(rule.rule_ref.clone()),
                Some(Resolution::RuleBlock { rule_id }),
            )
        }
        Unresolved::Defer => {
            let reason =
                format!("the command could not be fully read ({why}); {what}, so a person must approve");
            defer_decision(d, ReasonCode::CommandUnresolved, reason)
        }
    }
}

/// Considers the rules of `set` in order until one decides, recording steps when asked.
pub(super) fn first_match<'p>(
    set: &'p RuleSet,
    ctx: &CallCtx<'_>,
    scope: Scope,
    chooser: &mut Chooser<'p>,
    mut steps: Option<&mut Vec<Step>>,
) -> bool {
    let mut found = false;
    // Deciding visits only the rules the index cannot rule out; explaining visits every rule up
    // to the deciding one, in order, so "why didn't my rule fire?" is answered for a rule of
    // another (perhaps misspelled) tool too. Both find the same rule (property-tested).
    let every_rule: Vec<u32>;
    let lists = if steps.is_some() {
        every_rule = (0..u32::try_from(set.rules.len()).unwrap_or(u32::MAX)).collect();
        [&every_rule[..], &[][..], &[][..], &[][..]]
    } else {
        set.index.candidates(&ctx.call.tool, &ctx.call.operation)
    };
    merge_visit(lists, |idx| {
        let Some(rule) = set.rules.get(idx as usize) else { return false };
        found = chooser.visit(rule, ctx, steps.as_deref_mut(), &scope);
        found
    });
    found
}

pub(super) fn evaluate(
    policy: &Policy,
    call: &Call,
    history: Option<History<'_>>,
    steps: Option<&mut Vec<Step>>,
) -> Explanation {
    let ctx = CallCtx::new(call, policy.detectors, history);
    let mut out = evaluate_in(policy, &ctx, steps);
    out.decision.findings = ctx.findings().to_vec();
    out
}

fn evaluate_in(policy: &Policy, ctx: &CallCtx<'_>, steps: Option<&mut Vec<Step>>) -> Explanation {
    let call = ctx.call;
    let mut out =
        Explanation { decision: base(policy), profile: None, risk_rule: None, steps: Vec::new(), note: None };
    if let Err(e) = validate_call(call) {
        out.decision = deny_decision(out.decision, ReasonCode::InvalidRequest, e.message, None, None, None);
        out.note = Some("the request was refused before any rule was considered".into());
        return out;
    }
    match call.hashes() {
        Ok(h) => (out.decision.request_hash, out.decision.params_hash) = (h.request_hash, h.params_hash),
        Err(e) => {
            out.decision = deny_decision(
                out.decision,
                ReasonCode::InvalidRequest,
                format!("`params`: {e}"),
                None,
                None,
                None,
            );
            out.note = Some("the request was refused before any rule was considered".into());
            return out;
        }
    }
    if let Some(reason) = unreadable_command(policy, ctx) {
        out.decision = deny_decision(out.decision, ReasonCode::InvalidRequest, reason, None, None, None);
        out.note = Some("the request was refused before any rule was considered".into());
        return out;
    }
    let (risk, risk_rule) = risk_of(policy, ctx);
    out.decision.risk_level = risk;
    out.risk_rule = risk_rule.clone();
    let profile = policy.agents.get(&call.agent_id);
    out.profile = profile.map(|p| p.name.clone());
    if let Some(p) = profile
        && let Some(tools) = &p.tools
        && !tools.iter().any(|t| t.matches(&call.tool))
    {
        out.decision = profile_denial(out.decision, p, &call.tool);
        out.note = Some(format!("tool `{}` is not in the `tools` list of agent `{}`", call.tool, p.name));
        return out;
    }
    let mut steps = steps;
    let mut chooser = Chooser::new(ctx);
    let agent_match =
        profile.is_some_and(|p| first_match(&p.rules, ctx, Scope::Agent, &mut chooser, steps.as_deref_mut()));
    if !agent_match {
        first_match(&policy.rules, ctx, Scope::Global, &mut chooser, steps);
    }
    out.decision = chooser.finish(policy, out.decision, call, ctx.reading(), risk, risk_rule.as_deref());
    out
}

/// The risk level the first matching risk rule sets (a rule that would match only for some
/// value of a word known when the command runs counts: risk is raised, never lowered).
pub(super) fn risk_of(policy: &Policy, ctx: &CallCtx<'_>) -> (RiskLevel, Option<String>) {
    match policy.risk_rules.iter().find(|r| r.conds.iter().all(|c| c.check(ctx) != Match::No)) {
        Some(r) => (r.level, Some(r.name.clone())),
        None => (RiskLevel::Low, None),
    }
}

/// Why the call is refused before any rule: the policy matches commands and this call's
/// command cannot be read strictly.
pub(super) fn unreadable_command(policy: &Policy, ctx: &CallCtx<'_>) -> Option<String> {
    match ctx.reading() {
        Reading::Unreadable(e) if policy.uses_commands => {
            Some(format!("{e}; this policy matches commands, and one it cannot read strictly is refused"))
        }
        _ => None,
    }
}

/// Decides by scanning every rule in order, without the index: the baseline the indexed table
/// is benchmarked and tested against. Same answers as [`decide`], slower on large policies.
pub fn decide_linear(policy: &Policy, call: &Call) -> Decision {
    let ctx = CallCtx::new(call, policy.detectors, None);
    let mut d = decide_linear_in(policy, &ctx);
    d.findings = ctx.findings().to_vec();
    d
}

fn decide_linear_in(policy: &Policy, ctx: &CallCtx<'_>) -> Decision {
    let call = ctx.call;
    let mut d = base(policy);
    if let Err(e) = validate_call(call) {
        return deny_decision(d, ReasonCode::InvalidRequest, e.message, None, None, None);
    }
    match call.hashes() {
        Ok(h) => (d.request_hash, d.params_hash) = (h.request_hash, h.params_hash),
        Err(e) => {
            return deny_decision(d, ReasonCode::InvalidRequest, format!("`params`: {e}"), None, None, None);
        }
    }
    if let Some(reason) = unreadable_command(policy, ctx) {
        return deny_decision(d, ReasonCode::InvalidRequest, reason, None, None, None);
    }
    let (risk, risk_rule) = risk_of(policy, ctx);
    d.risk_level = risk;
    let profile = policy.agents.get(&call.agent_id);
    if let Some(p) = profile
        && let Some(tools) = &p.tools
        && !tools.iter().any(|t| t.matches(&call.tool))
    {
        return profile_denial(d, p, &call.tool);
    }
    let agent_rules = profile.map_or(&[][..], |p| p.rules.rules.as_slice());
    let mut chooser = Chooser::new(ctx);
    let scope = Scope::Global;
    for rule in agent_rules.iter().chain(policy.rules.rules.iter()) {
        if chooser.visit(rule, ctx, None, &scope) {
            break;
        }
    }
    chooser.finish(policy, d, call, ctx.reading(), risk, risk_rule.as_deref())
}
