//! `faramesh-daemon`: the library behind `faramesh serve`. The `faramesh-policy` crate decides
//! calls (pure, no IO; re-exported here as `policy`, with its `permit` module); `service` is the
//! transport-free core both doors (`server::rpc` for the socket, `server::http` for HTTP) map
//! onto.

pub mod log;
pub mod server;
pub mod service;
pub mod systemd;
pub mod tls;

pub use faramesh_policy as policy;
pub use faramesh_policy::permit;
