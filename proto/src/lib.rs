//! `faramesh-proto`: the wire types of Faramesh (calls, decisions, reason codes), canonical JSON
//! and request hashing, and the few checks the daemon and its clients share. Depends on serde,
//! hashing and strsim (for "did you mean") only: no runtime, no storage.

pub mod call;
pub mod caller;
pub mod canonical;
pub mod fs;
pub mod mcp;
pub mod types;

pub use call::{CallError, CallRequest, StrictJsonError, parse_strict};
pub use caller::{Caller, PeerCred, Role, TokenCaller};
pub use canonical::{CanonicalError, canonical_json, request_hash};
pub use types::{
    Call, Decision, Effect, Finding, GovernAnswer, Provenance, ProvenanceKind, ReasonCode, Resolution,
    RiskLevel, ShadowHit, StructuredDenial, is_identifier, is_server_prefix,
};
