//! `faramesh-daemon`: the core behind `faramesh serve`. It decides with the `faramesh-policy`
//! crate (pure, no IO; re-exported here as `policy`, with its `permit` module), records in the
//! `faramesh-log` crate (re-exported as `log`), and `service` is the transport-free core the
//! doors (the `faramesh-server` crate: socket, HTTP, dashboard) map onto.

pub use faramesh_log as log;
pub use faramesh_policy as policy;
pub use faramesh_policy::permit;
pub mod service;
pub mod systemd;
pub mod tls;
