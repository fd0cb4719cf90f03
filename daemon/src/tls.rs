//! TLS for the connections the daemon opens (notifications, OTLP, PostgreSQL): the client
//! configuration `faramesh-net` builds, shared with the client side.

pub use faramesh_net::tls::{PemFile, TlsError, client_config};
