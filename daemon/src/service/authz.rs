//! Every permission check, in one place, for every door. The doors pass the caller's
//! [`Identity`]; nothing here knows which door it came through.
//!
//! | who | reads | approves | reloads the policy | manages the log |
//! | --- | --- | --- | --- | --- |
//! | root, the daemon's uid (socket) | everything | yes | yes | yes |
//! | an approver (socket peer listed in `approvals.approvers`) | everything | yes | yes | no |
//! | another socket peer | entries its uid caused | no | no | no |
//! | an approver token (HTTP) | everything | yes | no | no |
//! | an agent token (HTTP) | entries of its agents, or that it caused | no | no | no |
//! | a tokenless loopback caller (HTTP, no token configured) | an action a tokenless caller made, named by its full id; lists, streams, explains and overviews nothing | no | no | no |
//!
//! MCP tool listings (`mcp.tools`, which pin tool definitions) are reported only over the socket
//! by root, the daemon's uid, an approver or a peer listed in the policy's `mcp.gateways`
//! ([`Service::may_report_mcp_tools`]); trusting a quarantined tool (`mcp.trust`) needs an
//! approver.
//!
//! A deferred call is resumed only by the caller that made it ([`made_the_call`]); approval
//! ids are listed (and waited on) only by those who read everything and by that caller.

use super::approvals::Approval;
use super::{ANONYMOUS, Identity, Role, Service, ServiceError, TokenIdentity, approvals};
use crate::log::dpr::{Caller, EntryHead};

impl Service {
    /// Whether one uid may approve (or grant) calls its own uid made, from another process: when
    /// the policy says so (`approvals.allow_same_uid`) or the daemon runs for a single user.
    pub fn same_uid_ok(&self) -> bool {
        self.state.policy.load().policy.approvals.allow_same_uid || self.state.single_user_now()
    }

    /// Why `who` may not make a grant covering `covers` (its own calls), if so: the rules of
    /// approving apply to grants in full (see [`crate::permit::distinct`]).
    pub fn self_grant(&self, covers: &crate::permit::Covers, who: &Identity) -> Option<String> {
        match crate::permit::principal(who.caller().as_ref()?) {
            Caller::Peer(p) if p.uid == 0 => None,
            Caller::Peer(p) if covers.uid == Some(p.uid) && !self.same_uid_ok() => Some(format!(
                "not authorized: uid {} may not grant calls of its own uid; grant from another uid or root, \
                 or set `approvals: {{ allow_same_uid: true }}` in the policy",
                p.uid
            )),
            Caller::Token(t) if covers.token.as_deref() == Some(t.token.as_str()) => {
                Some(format!("not authorized: token `{}` may not grant its own calls", t.token))
            }
            _ => None,
        }
    }

    /// Whether `who` may approve or deny.
    pub fn may_approve(&self, who: &Identity) -> bool {
        match who {
            Identity::Peer(p) => {
                let policy = self.state.policy.load();
                approvals::may_approve(p, self.state.own_uid, &policy.policy.approvals)
            }
            Identity::Token(t) => t.role == Role::Approver,
            Identity::Unknown | Identity::Anonymous => false,
        }
    }

    /// Whether `who` may report an MCP server's tool listing (`mcp.tools`): a socket peer that
    /// may approve, or one the policy lists in `mcp.gateways` (the users `faramesh mcp` runs
    /// as). A listing pins definitions for every proxy of that server, so an arbitrary socket
    /// peer (an agent) may not send one.
    pub fn may_report_mcp_tools(&self, who: &Identity) -> Result<(), ServiceError> {
        if let Identity::Peer(p) = who {
            let policy = self.state.policy.load();
            if self.may_approve(who) || approvals::is_listed(p, &policy.policy.mcp.gateways) {
                return Ok(());
            }
        }
        Err(ServiceError::not_authorized(format!(
            "not authorized: {} may not report MCP tool listings (root, the daemon's uid {}, an approver or a peer in the policy's `mcp.gateways` may; `faramesh mcp` running as this user needs `mcp: {{ gateways: [\"{}\"] }}`)",
            who.describe(),
            self.state.own_uid,
            match who {
                Identity::Peer(p) => format!("uid:{}", p.uid),
                _ => "uid:N".to_owned(),
            }
        )))
    }

    /// Whether a token may open a dashboard session: approvers only (the dashboard approves).
    pub fn may_open_session(&self, token: &TokenIdentity) -> Result<(), ServiceError> {
        if token.role == Role::Approver {
            return Ok(());
        }
        Err(ServiceError::not_authorized(
            "the dashboard needs an approver token (an agent token cannot open a session)",
        ))
    }

    /// The identity a one-time sign-in link opens a dashboard session as (it was printed to, or
    /// asked for by, someone who may approve), once.
    /// The session is the caller the link was made for, as far as approving goes: named
    /// `dashboard:uid:<uid>`, and no one approves their own calls through it.
    pub fn sign_in_with_link(&self, secret: &str) -> Result<TokenIdentity, super::logins::LinkRefused> {
        let for_peer = self.state.logins.take(secret, self.clock.monotonic())?;
        let name = match &for_peer {
            Some(p) => format!("dashboard:uid:{}", p.uid),
            None => "dashboard:login-link".to_owned(),
        };
        Ok(TokenIdentity { name, role: Role::Approver, agents: None, for_peer })
    }

    /// Whether `who` reads every entry: root, the daemon's uid and approvers.
    pub fn reads_everything(&self, who: &Identity) -> bool {
        self.may_approve(who)
    }

    /// Whether `who` may read (and report on) an action, or see a log entry: those who read
    /// everything; else an entry the caller caused (its uid on the socket, its token over HTTP)
    /// or, for a token bound to agent ids, an entry of those agents. Daemon events (policy
    /// loads, prunes) have no caller: only those who read everything see them.
    pub fn may_read(&self, who: &Identity, caller: Option<&Caller>, agent_id: &str) -> bool {
        self.reads_everything(who) || owns(who, caller, Some(agent_id))
    }

    /// What `who` may see of the log: checked per entry only when it does not read everything
    /// (the check is made once, not per entry).
    pub fn reader(&self, who: &Identity) -> Reader {
        match who {
            _ if self.reads_everything(who) => Reader::All,
            // Tokenless callers cannot be told apart: none lists or streams another's actions.
            Identity::Anonymous => Reader::Nothing,
            _ => Reader::Own(who.clone()),
        }
    }

    /// Whether `who` names actions by their full id only: a tokenless loopback caller. Tokenless
    /// callers cannot be told apart, so what makes an action one's own is the id its submission
    /// answered: never a prefix (which could be guessed in a few billion tries) or its
    /// approval's id.
    pub fn names_actions_in_full(&self, who: &Identity) -> bool {
        matches!(who, Identity::Anonymous)
    }

    /// Whether `who` may read the daemon's overview (the policy's path and hash, every agent's
    /// decision counts, the log's checkpoint): those who read everything.
    pub fn may_read_overview(&self, who: &Identity) -> Result<(), ServiceError> {
        if self.reads_everything(who) {
            return Ok(());
        }
        Err(ServiceError::not_authorized(format!(
            "not authorized: {} may not read the overview (root, the daemon's uid, approvers and approver tokens may)",
            who.describe()
        )))
    }

    /// Whether `who` may ask for an explanation (every rule of the policy tried against a
    /// call): anyone who may read the call, but not a tokenless caller, which reads back its
    /// action and nothing of the policy.
    pub fn may_explain(&self, who: &Identity) -> Result<(), ServiceError> {
        match who {
            Identity::Anonymous => Err(ServiceError::not_authorized(
                "not authorized: a caller without a token may not read explanations (they show the policy); \
                 use a token or the dashboard",
            )),
            _ => Ok(()),
        }
    }

    /// Whether `who` may reload the policy: root, the daemon's uid and approvers on the socket.
    pub fn may_reload(&self, who: &Identity) -> Result<(), ServiceError> {
        match who {
            Identity::Peer(_) if self.may_approve(who) => Ok(()),
            _ => Err(ServiceError::not_authorized(format!(
                "not authorized: {} may not reload the policy (root, the daemon's uid {} or an approver may)",
                who.describe(),
                self.state.own_uid
            ))),
        }
    }

    /// Whether `who` may prune the log or mark it exported: a socket peer running as the
    /// daemon's user or as root (not an HTTP token: retention is an operator's act on the host).
    pub fn may_manage_log(&self, who: &Identity) -> Result<(), ServiceError> {
        match who {
            Identity::Peer(p) if p.uid == 0 || p.uid == self.state.own_uid => Ok(()),
            _ => Err(ServiceError::not_authorized(
                "pruning the log and marking it exported need the daemon's user or root, on the socket",
            )),
        }
    }

    /// Whether `who` is shown an action's `approval_token` (the v1 API's name for its approval
    /// id, which the published SDK's `approve_action` reads): approvers, while it is pending.
    pub fn shows_approval_token(&self, who: &Identity, view: &super::ActionView) -> bool {
        view.status == super::ActionStatus::PendingApproval && self.may_approve(who)
    }

    /// Whether `who` sees `approval` listed (and its id): those who read everything, and the
    /// caller that made the deferred call.
    pub fn may_see_approval(&self, who: &Identity, approval: &Approval) -> bool {
        self.reads_everything(who) || made_the_call(approval, who)
    }
}

/// What a caller may see of the log, decided once per request or stream.
#[derive(Debug, Clone)]
pub enum Reader {
    /// Everything.
    All,
    /// What this caller owns.
    Own(Identity),
    /// Nothing (tokenless loopback callers: they read an action back by its id only).
    Nothing,
}

impl Reader {
    /// Whether an entry caused by `caller` (about `agent_id`) is visible.
    pub fn sees(&self, caller: Option<&Caller>, agent_id: Option<&str>) -> bool {
        match self {
            Reader::All => true,
            Reader::Own(who) => owns(who, caller, agent_id),
            Reader::Nothing => false,
        }
    }

    /// Whether a stored entry is visible (its head is read only when it must be).
    pub fn sees_entry(&self, record: &str) -> bool {
        match self {
            Reader::All => true,
            Reader::Own(_) => {
                let head = EntryHead::parse(record);
                self.sees(head.caller.as_ref(), head.agent_id.as_deref())
            }
            Reader::Nothing => false,
        }
    }

    /// Whether every entry is visible (no need to parse an entry to check).
    pub fn sees_everything(&self) -> bool {
        matches!(self, Reader::All)
    }

    /// A visible entry as this reader is shown it: without the shadow-mode rule a decision was
    /// tried against, unless the reader reads everything (the operators).
    pub fn shown(&self, record: String) -> String {
        if self.sees_everything() || !record.contains("\"shadow\"") {
            return record;
        }
        match serde_json::from_str::<serde_json::Value>(&record) {
            Ok(serde_json::Value::Object(mut m)) => {
                m.remove("shadow");
                serde_json::Value::Object(m).to_string()
            }
            _ => record,
        }
    }
}

/// Whether the entry is the caller's own: caused by its uid (socket) or token (HTTP), or, for
/// a token bound to agent ids, about one of those agents.
fn owns(who: &Identity, caller: Option<&Caller>, agent_id: Option<&str>) -> bool {
    let token = match caller {
        Some(Caller::Token(t)) => Some(t.token.as_str()),
        _ => None,
    };
    match who {
        Identity::Peer(p) => caller.and_then(Caller::uid) == Some(p.uid),
        Identity::Token(t) => match &t.agents {
            Some(agents) if t.role == Role::Agent => {
                agent_id.is_some_and(|agent| agents.iter().any(|a| a == agent))
            }
            _ => token == Some(t.name.as_str()),
        },
        Identity::Anonymous => token == Some(ANONYMOUS),
        Identity::Unknown => false,
    }
}

/// Whether `who` is the caller that made the deferred call: the same uid on the socket, the
/// same token over HTTP. Only that caller may resume it.
pub fn made_the_call(a: &Approval, who: &Identity) -> bool {
    match (&a.requested_by, who) {
        (Some(Caller::Peer(req)), Identity::Peer(p)) => req.uid == p.uid,
        (Some(Caller::Token(req)), Identity::Token(t)) => req.token == t.name,
        (Some(Caller::Token(req)), Identity::Anonymous) => req.token == ANONYMOUS,
        _ => false,
    }
}
