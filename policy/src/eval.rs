//! Deciding: a call against a compiled [`Policy`] gives a [`Decision`], never an error. Problems
//! with the call itself become DENY `INVALID_REQUEST`.

use std::cell::OnceCell;

use faramesh_proto::{
    Call, CallError, Decision, Effect, ReasonCode, Resolution, RiskLevel, StructuredDenial, canonical_json,
    is_identifier,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::command::{self, Match, Reading};
use super::model::{Cond, Policy, Profile, Rule, RuleSet, Unresolved, merge_visit};
use crate::permit::{FullyRead, Permit};

/// Where a considered rule came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// The agent's own rules (`agents.<name>.rules`).
    Agent,
    /// The global `rules`.
    Global,
}

/// One rule considered while deciding, and why it did or did not match.
///
/// JSON: `{"rule_id": "…", "rule_ref": "p.yaml:7", "scope": "global", "matched": false,
/// "failed": "op: `get` does not match `post`"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Step {
    /// The rule's id.
    pub rule_id: String,
    /// `path:line` of the rule.
    pub rule_ref: String,
    /// Agent or global rule.
    pub scope: Scope,
    /// Whether every condition held.
    pub matched: bool,
    /// The first condition that failed, described for a person.
    pub failed: Option<String>,
}

/// A decision with the trace of how it was reached.
///
/// JSON: `{"decision": {…}, "profile": "payments-bot" | null, "risk_rule": "…" | null,
/// "steps": [Step…], "note": "…" | null}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Explanation {
    /// The decision, identical to what [`decide`] returns.
    pub decision: Decision,
    /// The agent profile that applied, if any.
    pub profile: Option<String>,
    /// The risk rule that set the risk level, if any.
    pub risk_rule: Option<String>,
    /// Every rule before the deciding one and the deciding rule, in order, each with the first
    /// condition that failed.
    pub steps: Vec<Step>,
    /// Why no rule was considered at all (invalid request, profile allow-list), if so.
    pub note: Option<String>,
}

/// Decides `call` under `policy`. Never fails: anything wrong with the call is a DENY.
pub fn decide(policy: &Policy, call: &Call) -> Decision {
    evaluate(policy, call, None).decision
}

/// Decides a request as read from the wire: a request with keys that are not call keys is DENY
/// `INVALID_REQUEST` naming the key (daemon and offline tools alike); otherwise [`decide`].
pub fn decide_request(policy: &Policy, req: &faramesh_proto::CallRequest) -> Decision {
    match req.refusal() {
        Some(why) => refuse(base(policy), &req.call, why),
        None => decide(policy, &req.call),
    }
}

/// [`explain`] for a request as read from the wire (see [`decide_request`]).
pub fn explain_request(policy: &Policy, req: &faramesh_proto::CallRequest) -> Explanation {
    match req.refusal() {
        Some(why) => Explanation {
            decision: refuse(base(policy), &req.call, why),
            profile: None,
            risk_rule: None,
            steps: Vec::new(),
            note: Some("the request was refused before any rule was considered".into()),
        },
        None => explain(policy, &req.call),
    }
}

fn refuse(mut d: Decision, call: &Call, why: String) -> Decision {
    if let Ok(h) = call.hashes() {
        (d.request_hash, d.params_hash) = (h.request_hash, h.params_hash);
    }
    deny_decision(d, ReasonCode::InvalidRequest, why, None, None, None)
}

/// Decides `call` and records every rule considered and the first failing condition of each.
pub fn explain(policy: &Policy, call: &Call) -> Explanation {
    let mut steps = Vec::new();
    let mut out = evaluate(policy, call, Some(&mut steps));
    out.steps = steps;
    out
}

fn invalid(field: &str, message: String) -> CallError {
    CallError { field: field.to_owned(), message }
}

/// Checks the call's shape; the error names the field.
pub fn validate_call(call: &Call) -> Result<(), CallError> {
    if !is_identifier(&call.tool) {
        return Err(invalid(
            "tool",
            format!("`tool` {:?} is not a valid identifier ([A-Za-z0-9_.:/-], 1-128 bytes)", call.tool),
        ));
    }
    if !is_identifier(&call.operation) {
        return Err(invalid(
            "operation",
            format!(
                "`operation` {:?} is not a valid identifier ([A-Za-z0-9_.:/-], 1-128 bytes)",
                call.operation
            ),
        ));
    }
    let agent_ok = !call.agent_id.is_empty()
        && call.agent_id.len() <= 128
        && call.agent_id.bytes().all(|b| b.is_ascii_graphic());
    if !agent_ok {
        return Err(invalid(
            "agent_id",
            format!("`agent_id` {:?} must be 1-128 printable ASCII characters without spaces", call.agent_id),
        ));
    }
    if !call.params.is_object() {
        return Err(invalid("params", "`params` must be a JSON object".to_owned()));
    }
    if !call.context.is_object() {
        return Err(invalid("context", "`context` must be a JSON object".to_owned()));
    }
    Ok(())
}

/// A call being decided, with its lazily computed canonical params text.
pub(crate) struct CallCtx<'a> {
    pub call: &'a Call,
    params_text: OnceCell<String>,
    reading: OnceCell<Reading>,
}

impl<'a> CallCtx<'a> {
    pub(crate) fn new(call: &'a Call) -> Self {
        CallCtx { call, params_text: OnceCell::new(), reading: OnceCell::new() }
    }

    /// The call's command as the reader reads it (once).
    pub(crate) fn reading(&self) -> &Reading {
        self.reading.get_or_init(|| command::read_call(self.call))
    }

    fn params_text(&self) -> &str {
        // Canonicalization cannot fail here: the request hash was computed first.
        self.params_text.get_or_init(|| canonical_json(&self.call.params).unwrap_or_default())
    }

    /// A value key looked up in `params`, then in `context`.
    fn lookup(&self, path: &[String]) -> Option<&'a Value> {
        walk(&self.call.params, path).or_else(|| walk(&self.call.context, path))
    }
}

fn walk<'v>(root: &'v Value, path: &[String]) -> Option<&'v Value> {
    let mut cur = root;
    for part in path {
        cur = cur.as_object()?.get(part)?;
    }
    Some(cur)
}

fn key_path(key: &str) -> [String; 1] {
    [key.to_owned()]
}

impl Cond {
    /// Whether the condition holds, does not, or would only for some value of a word of the
    /// command that is known when the command runs.
    pub(crate) fn check(&self, ctx: &CallCtx<'_>) -> Match {
        match self {
            Cond::Command(c) => c.check_reading(ctx.reading()),
            _ if self.why_not(ctx, false).is_none() => Match::Yes,
            _ => Match::No,
        }
    }

    /// `None` when the condition holds; otherwise why not (described only when `describe`).
    pub(crate) fn why_not(&self, ctx: &CallCtx<'_>, describe: bool) -> Option<String> {
        let fail = |msg: &dyn Fn() -> String| Some(if describe { msg() } else { String::new() });
        let unless = |holds: bool, msg: &dyn Fn() -> String| if holds { None } else { fail(msg) };
        let call = ctx.call;
        match self {
            Cond::Tool(p) => unless(p.matches(&call.tool), &|| {
                format!("tool: `{}` does not match `{}`", call.tool, p.as_str())
            }),
            Cond::Op(p) => unless(p.matches(&call.operation), &|| {
                format!("op: `{}` does not match `{}`", call.operation, p.as_str())
            }),
            Cond::AgentId(p) => unless(p.matches(&call.agent_id), &|| {
                format!("agent_id: `{}` does not match `{}`", call.agent_id, p.as_str())
            }),
            Cond::Contains(s) => unless(ctx.params_text().contains(s.as_str()), &|| {
                format!("contains: params do not contain `{s}`")
            }),
            Cond::Pattern(r) => unless(r.is_match(ctx.params_text()), &|| {
                format!("pattern: params do not match `{}`", r.as_str())
            }),
            Cond::Amount(cmp, bound) => match ctx.lookup(&key_path("amount")) {
                None => fail(&|| format!("{}: `amount` is missing", cmp.key())),
                Some(v) => match v.as_f64().filter(|f| f.is_finite() && v.is_number()) {
                    None => fail(&|| format!("{}: `amount` is not a number ({v})", cmp.key())),
                    Some(amount) if !cmp.holds(amount, *bound) => {
                        fail(&|| format!("{}: amount {amount} is not {} {bound}", cmp.key(), cmp.symbol()))
                    }
                    Some(_) => None,
                },
            },
            Cond::PathContains(s) => {
                string_check(ctx, "path", self.key(), describe, |p| lexical_path(p).contains(s.as_str()), s)
            }
            Cond::PathStartsWith(s) => string_check(
                ctx,
                "path",
                self.key(),
                describe,
                |p| lexical_path(p).starts_with(s.as_str()),
                s,
            ),
            Cond::PathEndsWith(s) => {
                string_check(ctx, "path", self.key(), describe, |p| lexical_path(p).ends_with(s.as_str()), s)
            }
            Cond::Method(m) => {
                string_check(ctx, "method", self.key(), describe, |v| v.to_lowercase() == *m, m)
            }
            Cond::Branch(b) => string_check(ctx, "branch", self.key(), describe, |v| v == b, b),
            Cond::Command(c) => match c.check_reading(ctx.reading()) {
                Match::Yes => None,
                Match::Maybe(word) => fail(&|| {
                    format!(
                        "command: would match only for some value of `{word}`, known when the command runs"
                    )
                }),
                Match::No => fail(&|| match ctx.reading() {
                    Reading::NoCommand => "command: params have no `cmd` or `command`".to_owned(),
                    Reading::Unreadable(e) => format!("command: {e}"),
                    reading => {
                        let programs: Vec<String> = reading.commands().iter().map(command_summary).collect();
                        let how = if c.all { "not every command matches" } else { "no command matches" };
                        format!("command: {how} (programs: {})", programs.join(", "))
                    }
                }),
            },
            Cond::Field(path, expected) => match ctx.lookup(path) {
                None => fail(&|| format!("field: `{}` is missing", path.join("."))),
                Some(actual) if !json_equal(actual, expected) => {
                    fail(&|| format!("field: `{}` is {actual}, not {expected}", path.join(".")))
                }
                Some(_) => None,
            },
        }
    }
}

/// A command as `explain` names it: its program, and the files it writes by redirection.
fn command_summary(c: &command::SimpleCommand) -> String {
    let name = if c.program.is_empty() { "(a redirection alone)" } else { c.program.as_str() };
    if c.writes.is_empty() {
        return name.to_owned();
    }
    let files: Vec<&str> = c.writes.iter().map(|w| w.path.as_str()).collect();
    format!("{name} writing {}", files.join(" "))
}

fn string_check(
    ctx: &CallCtx<'_>,
    field: &str,
    key: &str,
    describe: bool,
    test: impl Fn(&str) -> bool,
    want: &str,
) -> Option<String> {
    let out = |msg: String| Some(if describe { msg } else { String::new() });
    match ctx.lookup(&key_path(field)) {
        None => out(format!("{key}: `{field}` is missing")),
        Some(Value::String(s)) if test(s) => None,
        Some(Value::String(s)) => out(format!("{key}: `{field}` is `{s}`, expected `{want}`")),
        Some(other) => out(format!("{key}: `{field}` is not a string ({other})")),
    }
}

/// `path` as the file system reads it, without following links: empty and `.` segments dropped,
/// `..` taking off the segment before it (`/srv/app/../../etc/passwd` is `/etc/passwd`; above the
/// root stays at the root; a relative path keeps the `..` it cannot resolve). A trailing `/` is
/// kept. The `path_*` keys compare this, so a prefix rule cannot be walked out of with `..`.
pub fn lexical_path(path: &str) -> std::borrow::Cow<'_, str> {
    let absolute = path.starts_with('/');
    let needs = path.split('/').enumerate().any(|(i, seg)| {
        seg == "." || seg == ".." || (seg.is_empty() && i > 0 && i + 1 < path.split('/').count())
    });
    if !needs {
        return std::borrow::Cow::Borrowed(path);
    }
    let mut out: Vec<&str> = Vec::new();
    for seg in path.split('/') {
        match seg {
            "" | "." => {}
            ".." => match out.last() {
                Some(&last) if last != ".." => {
                    out.pop();
                }
                _ if absolute => {}
                _ => out.push(".."),
            },
            other => out.push(other),
        }
    }
    let mut text = out.join("/");
    if absolute {
        text.insert(0, '/');
    }
    let trailing = path.ends_with('/') || path.ends_with("/.") || path.ends_with("/..");
    if trailing && !text.ends_with('/') {
        text.push('/');
    }
    if text.is_empty() {
        text.push('.');
    }
    std::borrow::Cow::Owned(text)
}

/// JSON equality where numbers compare by value (`1` equals `1.0`).
fn json_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_f64(), y.as_f64()) {
            (Some(x), Some(y)) => x == y,
            _ => x == y,
        },
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| json_equal(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| json_equal(v, w)))
        }
        _ => a == b,
    }
}

impl Rule {
    /// Whether the rule matches: `Err(i)` when condition `i` fails first; `Ok(Some(word))`
    /// when it matches only for some value of a word of the command known when it runs.
    fn status(&self, ctx: &CallCtx<'_>) -> Result<Option<String>, usize> {
        let mut maybe = None;
        for (i, c) in self.conds.iter().enumerate() {
            match c.check(ctx) {
                Match::Yes => {}
                Match::No => return Err(i),
                Match::Maybe(w) => {
                    maybe.get_or_insert(w);
                }
            }
        }
        Ok(maybe)
    }
}

/// Picks the deciding rule, rule by rule in policy order. A command the reader could not
/// fully read (or a rule that would match it only for some value of a word known when it
/// runs) never matches an allow rule: allow rules are passed over, and the call is at least
/// DEFER `COMMAND_UNRESOLVED` when one of them would have matched. Deny rules still decide.
struct Chooser<'p> {
    /// Why the command is not read in full, once known.
    unresolved: Option<String>,
    /// The first allow rule passed over.
    skipped_allow: Option<&'p Rule>,
    /// The deciding rule.
    decided: Option<&'p Rule>,
}

impl<'p> Chooser<'p> {
    fn new(ctx: &CallCtx<'_>) -> Self {
        let unresolved = match ctx.reading() {
            Reading::Unresolved { .. } | Reading::Unreadable(_) => ctx.reading().unresolved_reason(),
            Reading::NoCommand | Reading::Resolved(_) => None,
        };
        Chooser { unresolved, skipped_allow: None, decided: None }
    }

    /// Considers `rule`; `true` once a rule decides.
    fn visit(
        &mut self,
        rule: &'p Rule,
        ctx: &CallCtx<'_>,
        steps: Option<&mut Vec<Step>>,
        scope: &Scope,
    ) -> bool {
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

    /// The decision once every candidate rule was considered.
    fn finish(
        self,
        policy: &Policy,
        d: Decision,
        call: &Call,
        reading: &Reading,
        risk: RiskLevel,
        risk_rule: Option<&str>,
    ) -> Decision {
        let read = || FullyRead::of_reading(reading);
        match (self.decided, self.unresolved) {
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
        }
    }
}

/// A call whose command was not read in full, where `rule` (a require-approval rule that
/// matched, or an allow rule passed over) would have decided: DEFER `COMMAND_UNRESOLVED`, or
/// DENY under `commands: { unresolved: deny }`.
fn unresolved_decision(
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
fn first_match<'p>(
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

fn evaluate(policy: &Policy, call: &Call, steps: Option<&mut Vec<Step>>) -> Explanation {
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
    let ctx = CallCtx::new(call);
    if let Some(reason) = unreadable_command(policy, &ctx) {
        out.decision = deny_decision(out.decision, ReasonCode::InvalidRequest, reason, None, None, None);
        out.note = Some("the request was refused before any rule was considered".into());
        return out;
    }
    let (risk, risk_rule) = risk_of(policy, &ctx);
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
    let mut chooser = Chooser::new(&ctx);
    let agent_match = profile
        .is_some_and(|p| first_match(&p.rules, &ctx, Scope::Agent, &mut chooser, steps.as_deref_mut()));
    if !agent_match {
        first_match(&policy.rules, &ctx, Scope::Global, &mut chooser, steps);
    }
    out.decision = chooser.finish(policy, out.decision, call, ctx.reading(), risk, risk_rule.as_deref());
    out
}

/// The risk level the first matching risk rule sets (a rule that would match only for some
/// value of a word known when the command runs counts: risk is raised, never lowered).
fn risk_of(policy: &Policy, ctx: &CallCtx<'_>) -> (RiskLevel, Option<String>) {
    match policy.risk_rules.iter().find(|r| r.conds.iter().all(|c| c.check(ctx) != Match::No)) {
        Some(r) => (r.level, Some(r.name.clone())),
        None => (RiskLevel::Low, None),
    }
}

/// Why the call is refused before any rule: the policy matches commands and this call's
/// command cannot be read strictly.
fn unreadable_command(policy: &Policy, ctx: &CallCtx<'_>) -> Option<String> {
    match ctx.reading() {
        Reading::Unreadable(e) if policy.uses_commands => {
            Some(format!("{e}; this policy matches commands, and one it cannot read strictly is refused"))
        }
        _ => None,
    }
}

/// The decision skeleton: DENY until something says otherwise.
fn base(policy: &Policy) -> Decision {
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

fn profile_denial(d: Decision, profile: &Profile, tool: &str) -> Decision {
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

fn from_rule(
    mut d: Decision,
    rule: &Rule,
    computed_risk: RiskLevel,
    risk_rule: Option<&str>,
    read: Result<FullyRead, String>,
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

/// A rule that can never match because an earlier rule in the same list always matches first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Shadowed {
    /// The rule that can never match.
    pub rule_id: String,
    /// Where it is.
    pub rule_ref: String,
    /// The earlier rule that always wins.
    pub by_rule_id: String,
    /// Where that one is.
    pub by_rule_ref: String,
}

/// Finds rules shadowed by an earlier rule whose every condition holds whenever theirs do.
pub fn shadowed_rules(policy: &Policy) -> Vec<Shadowed> {
    let mut out = Vec::new();
    let mut sets: Vec<&RuleSet> = vec![&policy.rules];
    let mut names: Vec<&String> = policy.agents.keys().collect();
    names.sort();
    for name in names {
        if let Some(p) = policy.agents.get(name) {
            sets.push(&p.rules);
        }
    }
    for set in sets {
        for (j, later) in set.rules.iter().enumerate() {
            let by = set.rules[..j].iter().find(|earlier| {
                earlier
                    .conds
                    .iter()
                    .all(|ec| ec.implied_by_nothing() || later.conds.iter().any(|lc| ec.implied_by(lc)))
            });
            if let Some(by) = by {
                out.push(Shadowed {
                    rule_id: later.id.clone(),
                    rule_ref: later.rule_ref.clone(),
                    by_rule_id: by.id.clone(),
                    by_rule_ref: by.rule_ref.clone(),
                });
            }
        }
    }
    out
}

impl Cond {
    /// Whether the condition holds for every call (`tool: "*"`).
    fn implied_by_nothing(&self) -> bool {
        matches!(self, Cond::Tool(p) | Cond::Op(p) | Cond::AgentId(p) if *p == super::model::NamePat::Any)
    }
}

/// Decides by scanning every rule in order, without the index: the baseline the indexed table
/// is benchmarked and tested against. Same answers as [`decide`], slower on large policies.
pub fn decide_linear(policy: &Policy, call: &Call) -> Decision {
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
    let ctx = CallCtx::new(call);
    if let Some(reason) = unreadable_command(policy, &ctx) {
        return deny_decision(d, ReasonCode::InvalidRequest, reason, None, None, None);
    }
    let (risk, risk_rule) = risk_of(policy, &ctx);
    d.risk_level = risk;
    let profile = policy.agents.get(&call.agent_id);
    if let Some(p) = profile
        && let Some(tools) = &p.tools
        && !tools.iter().any(|t| t.matches(&call.tool))
    {
        return profile_denial(d, p, &call.tool);
    }
    let agent_rules = profile.map_or(&[][..], |p| p.rules.rules.as_slice());
    let mut chooser = Chooser::new(&ctx);
    let scope = Scope::Global;
    for rule in agent_rules.iter().chain(policy.rules.rules.iter()) {
        if chooser.visit(rule, &ctx, None, &scope) {
            break;
        }
    }
    chooser.finish(policy, d, call, ctx.reading(), risk, risk_rule.as_deref())
}

#[cfg(test)]
mod path_tests {
    use super::lexical_path;

    #[test]
    fn dotdot_cannot_walk_out_of_a_prefix() {
        for (given, read) in [
            ("/srv/app/../../etc/passwd", "/etc/passwd"),
            ("/home/me/project/../.ssh/id_ed25519", "/home/me/.ssh/id_ed25519"),
            ("/srv/./a//b", "/srv/a/b"),
            ("/../../etc", "/etc"),
            ("../x", "../x"),
            ("a/../../x", "../x"),
            ("/srv/app/", "/srv/app/"),
            ("/srv/app/..", "/srv/"),
            ("docs/README.md", "docs/README.md"),
            ("/", "/"),
            (".", "."),
        ] {
            assert_eq!(lexical_path(given), read, "{given}");
        }
    }
}
