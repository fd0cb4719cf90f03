//! `faramesh-daemon`: the core behind `faramesh serve`. It decides with the `faramesh-policy`
//! crate (pure, no IO), records in the `faramesh-log` crate, and `service` is the transport-free core the
//! doors (the `faramesh-server` crate: socket, HTTP, dashboard) map onto.

// The log and the policy are the core's: crates above it (the doors) cannot name them through
// this one. Tools that read a log or a policy offline depend on those crates directly.
pub(crate) use faramesh_log as log;
pub(crate) use faramesh_policy as policy;
pub(crate) use faramesh_policy::permit;
pub mod service;
pub mod systemd;
