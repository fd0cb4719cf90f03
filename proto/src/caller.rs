//! Who made a call or decided one: a socket peer's kernel credentials, or an HTTP token's
//! identity. Plain data, written into signed log entries (their JSON shape is part of the log
//! format) and read by the rules that keep a person from approving their own calls.

use serde::{Deserialize, Serialize};

/// Who caused an entry: a socket peer's kernel credentials (SO_PEERCRED), or an HTTP bearer
/// token's identity (its name, never the token).
///
/// JSON: `{"uid": 1000, "gid": 1000, "pid": 4242}` or `{"token": "agent:ci-bot", "role": "agent"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Caller {
    /// A Unix-socket peer.
    Peer(PeerCred),
    /// An HTTP caller, by token identity.
    Token(TokenCaller),
}

/// Kernel peer credentials of a socket connection.
///
/// JSON: `{"uid": 1000, "gid": 1000, "pid": 4242}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerCred {
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
    /// Process id.
    pub pid: i32,
}

/// An HTTP caller: the token's name (from the tokens file) or `sha256:` and the first 12 hex
/// characters of the token's SHA-256, and its role.
///
/// JSON: `{"token": "agent:ci-bot", "role": "agent"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenCaller {
    /// The token's identity (a name or a hash prefix).
    pub token: String,
    /// What the token may do.
    pub role: Role,
    /// For a dashboard session opened with a sign-in link: the socket caller the link was made
    /// for (or the daemon itself, for the link it prints at start). The rules that keep a
    /// person from approving their own calls see the session as that caller.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub for_peer: Option<PeerCred>,
}

/// What an HTTP bearer token may do.
///
/// JSON: `"agent"` or `"approver"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Evaluate calls and read (and report on) its own actions.
    Agent,
    /// Approve and deny, and read everything.
    Approver,
}

impl Role {
    /// `agent` or `approver`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Agent => "agent",
            Role::Approver => "approver",
        }
    }
}

impl Caller {
    /// The peer's uid, for socket callers.
    pub fn uid(&self) -> Option<u32> {
        match self {
            Caller::Peer(p) => Some(p.uid),
            Caller::Token(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Caller, PeerCred, Role, TokenCaller};

    #[test]
    fn callers_keep_their_json_shape() {
        let peer = Caller::Peer(PeerCred { uid: 1000, gid: 1001, pid: 4242 });
        let json = serde_json::to_string(&peer).unwrap();
        assert_eq!(json, r#"{"uid":1000,"gid":1001,"pid":4242}"#);
        assert_eq!(serde_json::from_str::<Caller>(&json).unwrap(), peer);
        let token =
            Caller::Token(TokenCaller { token: "agent:ci-bot".into(), role: Role::Agent, for_peer: None });
        let json = serde_json::to_string(&token).unwrap();
        assert_eq!(json, r#"{"token":"agent:ci-bot","role":"agent"}"#);
        assert_eq!(serde_json::from_str::<Caller>(&json).unwrap(), token);
        let link = Caller::Token(TokenCaller {
            token: "sha256:0123456789ab".into(),
            role: Role::Approver,
            for_peer: Some(PeerCred { uid: 0, gid: 0, pid: 1 }),
        });
        let json = serde_json::to_string(&link).unwrap();
        assert_eq!(
            json,
            r#"{"token":"sha256:0123456789ab","role":"approver","for_peer":{"uid":0,"gid":0,"pid":1}}"#
        );
        assert_eq!(serde_json::from_str::<Caller>(&json).unwrap(), link);
    }
}
