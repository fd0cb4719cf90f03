//! `faramesh-daemon`: the library behind `faramesh serve`. The `policy` module decides calls
//! (pure, no IO); `service` is the transport-free core both doors (`server::rpc` for the socket,
//! `server::http` for HTTP) map onto.

pub use faramesh_log as log;
pub mod permit;
pub mod policy;
pub mod service;
pub mod systemd;
pub mod tls;
