//! The socket door's JSON-RPC vocabulary: the error codes service errors become. Method names
//! and params are read by the core (`service::apply::Request::parse`).

use faramesh_daemon::service::{ErrorKind, ServiceError};

/// JSON-RPC error codes used on the socket.
pub mod codes {
    /// The line is not JSON (or not UTF-8).
    pub const PARSE_ERROR: i32 = -32700;
    /// Not a JSON-RPC request, or a line over the size limit.
    pub const INVALID_REQUEST: i32 = -32600;
    /// No such method.
    pub const METHOD_NOT_FOUND: i32 = -32601;
    /// Missing or mistyped params (the message names the field).
    pub const INVALID_PARAMS: i32 = -32602;
    /// Something failed inside the daemon.
    pub const INTERNAL_ERROR: i32 = -32603;
    /// The caller may not do this.
    pub const NOT_AUTHORIZED: i32 = -32001;
    /// No such action, approval or entry.
    pub const NOT_FOUND: i32 = -32002;
    /// The object is not in a state that allows this (or an id prefix is ambiguous).
    pub const CONFLICT: i32 = -32003;
    /// Too many connections or requests.
    pub const OVERLOADED: i32 = -32004;
}

/// The JSON-RPC code of a service error.
pub fn code_of(e: &ServiceError) -> i32 {
    match e.kind {
        ErrorKind::InvalidParams => codes::INVALID_PARAMS,
        ErrorKind::NotAuthorized => codes::NOT_AUTHORIZED,
        ErrorKind::NotFound => codes::NOT_FOUND,
        ErrorKind::Conflict => codes::CONFLICT,
        ErrorKind::Internal => codes::INTERNAL_ERROR,
    }
}
