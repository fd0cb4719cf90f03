//! The one place a PERMIT is made.
//!
//! A call may run for one of three reasons, and nothing else:
//! - an allow rule matched every condition of a call the gate read in full (its shell line, if it
//!   has one, resolved to the programs it runs): [`Permit::rule`];
//! - a person other than the caller that made the call approved that exact call:
//!   [`Permit::approval`];
//! - a person other than the caller granted that same caller the tool and operation for a while:
//!   [`Permit::grant`].
//!
//! Each constructor checks its own condition; [`Permit::apply`] is the only code that writes
//! `Effect::Permit` into a decision, and it writes the [`Provenance`] with it. [`checked`] is the
//! last step before a decision is recorded or answered: a PERMIT without a provenance becomes
//! DENY `INTERNAL_ERROR`. `daemon/tests/provenance.rs` scans the sources so that no other module
//! writes a PERMIT.

use faramesh_proto::{Caller, Decision, Effect, Provenance, ProvenanceKind, ReasonCode};
use serde::{Deserialize, Serialize};

use crate::command::Reading;

/// Why no PERMIT can be built: the condition that does not hold, in words (recorded as the
/// decision's reason).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct NoPermit(pub String);

/// Evidence that the gate read the whole call: it carries no shell line, or its shell line
/// resolved to every program it runs. Made only by [`FullyRead::of_reading`].
#[derive(Debug)]
pub struct FullyRead(());

impl FullyRead {
    /// `Ok` when the call has no shell line or the reader resolved it; otherwise the part the
    /// reader could not read.
    pub(crate) fn of_reading(reading: &Reading) -> Result<FullyRead, NoPermit> {
        if reading.permits_rules() {
            return Ok(FullyRead(()));
        }
        Err(NoPermit(reading.unresolved_reason().unwrap_or_else(|| "the command was not read".to_owned())))
    }
}

/// Whom a grant covers: the caller of the approved call (its uid on the socket, its token over
/// HTTP, and its session when the call had one), or every caller when the approver said so.
///
/// JSON: `{"uid": 1000, "session_id": "s-1"}`, `{"token": "agent:ci-bot"}` or `{"any_caller":
/// true}`. A grant without any of them (written by an older daemon) covers no one.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Covers {
    /// Calls from this socket uid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    /// Calls made with this HTTP token (its name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// Only calls of this session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// Every caller (the approver widened it explicitly); never the grantor itself.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub any_caller: bool,
}

impl Covers {
    /// The caller of a call, as a grant binds to it (its session too when it had one).
    pub fn caller(caller: Option<&Caller>, session_id: Option<&str>) -> Covers {
        let session_id = session_id.map(str::to_owned);
        match caller {
            Some(Caller::Peer(p)) => Covers { uid: Some(p.uid), session_id, ..Covers::default() },
            Some(Caller::Token(t)) => {
                Covers { token: Some(t.token.clone()), session_id, ..Covers::default() }
            }
            None => Covers::default(),
        }
    }

    /// Every caller (still never the grantor).
    pub fn any() -> Covers {
        Covers { any_caller: true, ..Covers::default() }
    }

    /// Whether it names exactly one caller, or every caller.
    pub fn is_well_formed(&self) -> bool {
        let named = usize::from(self.uid.is_some()) + usize::from(self.token.is_some());
        if self.any_caller { named == 0 } else { named == 1 }
    }

    /// Whether a call by `requester` in `session_id` is covered.
    pub fn includes(&self, requester: Option<&Caller>, session_id: Option<&str>) -> bool {
        if !self.is_well_formed() {
            return false;
        }
        if self.session_id.is_some() && self.session_id.as_deref() != session_id {
            return false;
        }
        if self.any_caller {
            return true;
        }
        match requester {
            Some(Caller::Peer(p)) => self.uid == Some(p.uid),
            Some(Caller::Token(t)) => self.token.as_deref() == Some(t.token.as_str()),
            None => false,
        }
    }

    /// For people: `uid 1000`, `token agent:bot`, `any caller`, with ` in session s-1`.
    pub fn describe(&self) -> String {
        let who = match (&self.uid, &self.token) {
            _ if self.any_caller => "any caller".to_owned(),
            (Some(uid), _) => format!("uid {uid}"),
            (None, Some(t)) => format!("token {t}"),
            (None, None) => "no one".to_owned(),
        };
        match &self.session_id {
            Some(s) => format!("{who} in session {s}"),
            None => who,
        }
    }
}

/// The rule that no one approves their own calls, for approvals and grants alike: the decider
/// must not be the process that made the call, nor its uid (unless same-uid approvals are
/// allowed on this host), nor its token. Root decides for anyone on its host.
pub fn distinct(
    requester: Option<&Caller>,
    decider: Option<&Caller>,
    same_uid_ok: bool,
) -> Result<(), NoPermit> {
    let Some(decider) = decider else {
        return Err(NoPermit("no one is recorded as deciding".to_owned()));
    };
    let decider = &principal(decider);
    match (requester, decider) {
        (_, Caller::Peer(d)) if d.uid == 0 => Ok(()),
        (Some(Caller::Peer(r)), Caller::Peer(d)) if r.pid == d.pid => {
            Err(NoPermit("an agent cannot approve its own call".to_owned()))
        }
        (Some(Caller::Peer(r)), Caller::Peer(d)) if r.uid == d.uid && !same_uid_ok => Err(NoPermit(format!(
            "uid {} made this call and may not approve it; approve from another uid or root, or set \
             `approvals: {{ allow_same_uid: true }}` in the policy",
            d.uid
        ))),
        (Some(Caller::Token(r)), Caller::Token(d)) if r.token == d.token => {
            Err(NoPermit("an agent cannot approve its own call".to_owned()))
        }
        _ => Ok(()),
    }
}

/// Who a caller is for the rules above: a dashboard session opened with a sign-in link is the
/// socket caller the link was made for (its uid and process); anyone else is themselves.
pub fn principal(caller: &Caller) -> Caller {
    match caller {
        Caller::Token(t) => match t.for_peer {
            Some(p) => Caller::Peer(p),
            None => caller.clone(),
        },
        Caller::Peer(_) => caller.clone(),
    }
}

/// A PERMIT with its provenance, ready to be applied to a decision.
#[derive(Debug)]
pub struct Permit {
    provenance: Provenance,
    code: ReasonCode,
    reason: String,
    rule_id: Option<String>,
}

impl Permit {
    /// An allow rule matched every condition of a call the gate read in full.
    pub(crate) fn rule(rule_id: &str, reason: String, _read: FullyRead) -> Permit {
        Permit {
            provenance: Provenance { kind: ProvenanceKind::Rule, id: rule_id.to_owned(), by: None },
            code: ReasonCode::PolicyPermit,
            reason,
            rule_id: Some(rule_id.to_owned()),
        }
    }

    /// A person other than the requester approved this call (`decided_by`); the caller asking
    /// to run it now is the requester (checked by the caller of this function).
    pub fn approval(
        approval_id: &str,
        rule_id: Option<String>,
        requested_by: Option<&Caller>,
        decided_by: Option<&Caller>,
        same_uid_ok: bool,
    ) -> Result<Permit, NoPermit> {
        distinct(requested_by, decided_by, same_uid_ok)?;
        Ok(Permit {
            provenance: Provenance {
                kind: ProvenanceKind::Approval,
                id: approval_id.to_owned(),
                by: decided_by.and_then(|c| serde_json::to_value(c).ok()),
            },
            code: ReasonCode::ApprovalGranted,
            reason: format!("approved by a person (approval `{approval_id}`)"),
            rule_id,
        })
    }

    /// A grant, made by a person other than the requester, that covers the requester.
    pub fn grant(
        grant_id: &str,
        created_by: Option<&Caller>,
        covers: &Covers,
        requester: Option<&Caller>,
        session_id: Option<&str>,
        same_uid_ok: bool,
        reason: String,
    ) -> Result<Permit, NoPermit> {
        if !covers.includes(requester, session_id) {
            return Err(NoPermit(format!(
                "grant `{grant_id}` covers {}, not this caller",
                covers.describe()
            )));
        }
        distinct(requester, created_by, same_uid_ok)?;
        Ok(Permit {
            provenance: Provenance {
                kind: ProvenanceKind::Grant,
                id: grant_id.to_owned(),
                by: created_by.and_then(|c| serde_json::to_value(c).ok()),
            },
            code: ReasonCode::GrantApplied,
            reason,
            rule_id: Some(format!("grant:{grant_id}")),
        })
    }

    /// Where it came from.
    pub fn provenance(&self) -> &Provenance {
        &self.provenance
    }

    /// `d` as a PERMIT from this provenance.
    pub fn apply(self, mut d: Decision) -> Decision {
        d.effect = Effect::Permit;
        d.reason_code = self.code;
        d.reason = self.reason;
        if self.provenance.kind != ProvenanceKind::Rule {
            d.rule_id = self.rule_id;
        }
        d.structured_denial = None;
        d.provenance = Some(self.provenance);
        d
    }
}

/// The last check before a decision is recorded or answered: a PERMIT must carry a provenance
/// that matches its reason, and nothing else carries one.
pub fn checked(mut d: Decision) -> Decision {
    let consistent = match (&d.effect, &d.provenance) {
        (Effect::Permit, Some(p)) => matches!(
            (p.kind, d.reason_code),
            (ProvenanceKind::Rule, ReasonCode::PolicyPermit)
                | (ProvenanceKind::Approval, ReasonCode::ApprovalGranted)
                | (ProvenanceKind::Grant, ReasonCode::GrantApplied)
        ),
        (Effect::Permit, None) => false,
        (_, p) => {
            if p.is_some() {
                d.provenance = None;
            }
            true
        }
    };
    if consistent {
        return d;
    }
    let (rule_id, rule_ref) = (d.rule_id.clone(), d.rule_ref.clone());
    d.provenance = None;
    crate::deny_decision(
        d,
        ReasonCode::InternalError,
        "a PERMIT without a rule, approval or grant behind it was refused".to_owned(),
        rule_id,
        rule_ref,
        None,
    )
}

#[cfg(test)]
mod tests {
    use faramesh_proto::{
        Caller, Decision, Effect, PeerCred, Provenance, ProvenanceKind, ReasonCode, Role, TokenCaller,
    };

    use super::{Covers, FullyRead, Permit, checked};
    use crate::command::Reading;

    fn peer(uid: u32, pid: i32) -> Caller {
        Caller::Peer(PeerCred { uid, gid: uid, pid })
    }

    fn token(name: &str) -> Caller {
        Caller::Token(TokenCaller { token: name.into(), role: Role::Approver, for_peer: None })
    }

    fn deny() -> Decision {
        Decision {
            effect: Effect::Defer,
            reason_code: ReasonCode::PolicyDefer,
            reason: "needs a person".into(),
            rule_id: Some("r".into()),
            rule_ref: Some("p.yaml:3".into()),
            risk_level: faramesh_proto::RiskLevel::Low,
            request_hash: "h".into(),
            policy_hash: "p".into(),
            structured_denial: None,
            provenance: None,
            params_hash: String::new(),
            shadow: None,
            findings: Vec::new(),
        }
    }

    #[test]
    fn unresolved_command_gives_no_evidence() {
        use crate::command::read_line;
        let why = FullyRead::of_reading(&read_line("X=rm; $X -rf /")).unwrap_err();
        assert!(why.0.contains("$X"), "{why}");
        assert!(FullyRead::of_reading(&read_line("python3 -c 'print(1)'")).is_err());
        assert!(FullyRead::of_reading(&read_line("echo \"unbalanced")).is_err());
        assert!(FullyRead::of_reading(&Reading::NoCommand).is_ok());
        assert!(FullyRead::of_reading(&read_line("ls -la /tmp")).is_ok());
    }

    #[test]
    fn approval_by_the_requester_is_no_permit() {
        let agent = peer(1000, 42);
        // The same process, the same uid, the same token: refused.
        assert!(Permit::approval("a", None, Some(&agent), Some(&peer(1000, 42)), true).is_err());
        assert!(Permit::approval("a", None, Some(&agent), Some(&peer(1000, 43)), false).is_err());
        assert!(Permit::approval("a", None, Some(&token("bot")), Some(&token("bot")), true).is_err());
        assert!(Permit::approval("a", None, Some(&agent), None, true).is_err());
        // Another uid, root, the same uid where allowed, another token: a PERMIT naming who.
        for (by, ok) in [(peer(1001, 7), false), (peer(0, 42), false), (peer(1000, 43), true)] {
            let p = Permit::approval("a", None, Some(&agent), Some(&by), ok).unwrap();
            let d = p.apply(deny());
            assert_eq!((d.effect, d.reason_code), (Effect::Permit, ReasonCode::ApprovalGranted));
            let prov = d.provenance.unwrap();
            assert_eq!((prov.kind, prov.id.as_str()), (ProvenanceKind::Approval, "a"));
            assert_eq!(prov.by, Some(serde_json::to_value(&by).unwrap()));
        }
        assert!(Permit::approval("a", None, Some(&token("bot")), Some(&token("alice")), false).is_ok());
    }

    #[test]
    fn grant_covers_only_its_caller_and_never_its_grantor() {
        let agent = peer(1000, 42);
        let other = peer(1001, 50);
        let covers = Covers::caller(Some(&agent), Some("s1"));
        let root = peer(0, 1);
        let grant = |covers: &Covers, requester: &Caller, session: Option<&str>, by: &Caller| {
            Permit::grant("g", Some(by), covers, Some(requester), session, false, "r".into())
        };
        assert!(grant(&covers, &agent, Some("s1"), &root).is_ok());
        assert!(grant(&covers, &agent, Some("s2"), &root).is_err(), "another session");
        assert!(grant(&covers, &agent, None, &root).is_err(), "no session");
        assert!(grant(&covers, &other, Some("s1"), &root).is_err(), "another uid");
        // Made by the requester's own uid: refused even when it names that uid.
        let own = Covers::caller(Some(&agent), None);
        assert!(grant(&own, &agent, None, &peer(1000, 99)).is_err());
        // Any caller: still not the grantor's own calls.
        assert!(grant(&Covers::any(), &other, None, &peer(1000, 99)).is_ok());
        assert!(grant(&Covers::any(), &agent, None, &peer(1000, 99)).is_err());
        // A grant from before callers were recorded covers no one.
        assert!(grant(&Covers::default(), &agent, None, &root).is_err());
        let tok = Covers::caller(Some(&token("bot")), None);
        assert!(grant(&tok, &token("bot"), None, &token("alice")).is_ok());
        assert!(grant(&tok, &token("bot"), None, &token("bot")).is_err());
        assert!(grant(&tok, &token("bot2"), None, &token("alice")).is_err());
        let d = grant(&covers, &agent, Some("s1"), &root).unwrap().apply(deny());
        assert_eq!(
            (d.effect, d.reason_code, d.rule_id.as_deref()),
            (Effect::Permit, ReasonCode::GrantApplied, Some("grant:g"))
        );
    }

    #[test]
    fn a_permit_without_provenance_is_refused() {
        let mut d = deny();
        d.effect = Effect::Permit;
        d.reason_code = ReasonCode::PolicyPermit;
        let out = checked(d.clone());
        assert_eq!((out.effect, out.reason_code), (Effect::Deny, ReasonCode::InternalError));
        // A provenance that does not match the reason is refused too.
        d.provenance = Some(Provenance { kind: ProvenanceKind::Grant, id: "g".into(), by: None });
        assert_eq!(checked(d).effect, Effect::Deny);
        let rule = Permit::rule("r", "allowed".into(), FullyRead(())).apply(deny());
        assert_eq!(checked(rule.clone()), rule);
        // DENY and DEFER pass unchanged.
        assert_eq!(checked(deny()), deny());
    }
}
