//! `faramesh-client`: the client side of Faramesh, everything that talks to a running daemon on
//! behalf of an agent: the socket client ([`socket`]), coding agents' tool-call hooks
//! ([`hooks`]), and the MCP gateway ([`mcp`]); and [`term`], how others' text is shown on a
//! terminal. Depends on `faramesh-proto` and `faramesh-net`, never on the daemon.

pub mod hooks;
pub mod mcp;
pub mod socket;
pub mod term;
