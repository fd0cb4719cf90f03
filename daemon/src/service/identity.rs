//! Who is calling: kernel peer credentials (the socket), a bearer token's identity (HTTP), or an
//! unauthenticated loopback agent; what each is recorded as in a DPR.

use std::sync::Arc;

use crate::log::dpr::{self, Caller, PeerCred};

pub use crate::log::dpr::Role;

/// An HTTP caller, identified by its token (never the token itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenIdentity {
    /// The token's name, or `sha256:` + 12 hex characters of its hash.
    pub name: String,
    /// What it may do.
    pub role: Role,
    /// The agent ids it may act for (`None`: any).
    pub agents: Option<Vec<String>>,
    /// For a dashboard session opened with a sign-in link: the socket caller it was made for.
    pub for_peer: Option<PeerCred>,
}

/// A Unix-socket peer as the kernel described it when the connection was accepted: its
/// credentials (SO_PEERCRED) and supplementary groups (SO_PEERGROUPS). Never re-read later (a
/// pid can be recycled by another process).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    /// uid, primary gid and pid.
    pub cred: PeerCred,
    /// Supplementary group ids (shared: the identity is cloned for every request).
    pub groups: Arc<[u32]>,
}

impl Peer {
    /// A peer with no supplementary groups.
    pub fn new(cred: PeerCred) -> Peer {
        Peer { cred, groups: Arc::from([]) }
    }

    /// Whether the peer is in group `gid` (primary or supplementary).
    pub fn in_group(&self, gid: u32) -> bool {
        self.cred.gid == gid || self.groups.contains(&gid)
    }
}

impl std::ops::Deref for Peer {
    type Target = PeerCred;
    fn deref(&self) -> &PeerCred {
        &self.cred
    }
}

/// Who is asking: the kernel's word for a socket peer, or a bearer token's identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// A Unix-socket peer.
    Peer(Peer),
    /// An HTTP caller.
    Token(TokenIdentity),
    /// A socket peer whose credentials could not be read.
    Unknown,
    /// A tokenless HTTP caller on a loopback listener with no token configured: an agent that
    /// submits calls and reads back its actions by id, never lists, streams or approves.
    Anonymous,
}

/// How a tokenless loopback caller is recorded (`caller.token`).
pub const ANONYMOUS: &str = "anonymous:loopback";

impl Identity {
    /// As recorded in DPRs and approvals.
    pub fn caller(&self) -> Option<Caller> {
        match self {
            Identity::Peer(p) => Some(Caller::Peer(p.cred)),
            Identity::Token(t) => Some(Caller::Token(dpr::TokenCaller {
                token: t.name.clone(),
                role: t.role,
                for_peer: t.for_peer,
            })),
            Identity::Unknown => None,
            Identity::Anonymous => Some(Caller::Token(dpr::TokenCaller {
                token: ANONYMOUS.to_owned(),
                role: Role::Agent,
                for_peer: None,
            })),
        }
    }

    pub(super) fn peer(&self) -> Option<PeerCred> {
        match self {
            Identity::Peer(p) => Some(p.cred),
            _ => None,
        }
    }

    pub(super) fn describe(&self) -> String {
        match self {
            Identity::Peer(p) => format!("uid {}", p.uid),
            Identity::Token(t) => format!("token `{}`", t.name),
            Identity::Unknown => "uid unknown".to_owned(),
            Identity::Anonymous => "an unauthenticated loopback caller".to_owned(),
        }
    }
}
