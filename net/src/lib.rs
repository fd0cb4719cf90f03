//! `faramesh-net`: what the daemon's HTTP listener and the client side (`faramesh mcp --listen`,
//! its https:// upstreams) share: the checks every request passes before a route sees it
//! ([`guard`]), and the TLS client configuration ([`tls`]). Depends on the `http` types and
//! rustls only: no server, no runtime.

pub mod guard;
pub mod tls;
