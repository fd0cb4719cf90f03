//! Errors of the core: a [`ServiceError`] carries an [`ErrorKind`] each door maps to its own code.

use crate::log::LogError;

/// What kind of failure a [`ServiceError`] is; each door maps it to its own code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Missing or mistyped request field (socket -32602, HTTP 422).
    InvalidParams,
    /// The caller may not do this (socket -32001, HTTP 403).
    NotAuthorized,
    /// No such action, approval or entry (socket -32002, HTTP 404).
    NotFound,
    /// Wrong state, or an ambiguous id prefix (socket -32003, HTTP 409).
    Conflict,
    /// Something failed inside the daemon (socket -32603, HTTP 500).
    Internal,
}

/// A request the service refused, with a one-line message and the field at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ServiceError {
    /// What kind of failure.
    pub kind: ErrorKind,
    /// For a person.
    pub message: String,
    /// The request field at fault, if one is.
    pub field: Option<String>,
}

impl ServiceError {
    fn new(kind: ErrorKind, message: impl Into<String>) -> ServiceError {
        ServiceError { kind, message: message.into(), field: None }
    }

    /// A bad value in `field`.
    pub fn invalid(field: &str, message: impl Into<String>) -> ServiceError {
        ServiceError {
            kind: ErrorKind::InvalidParams,
            message: message.into(),
            field: Some(field.to_owned()),
        }
    }

    /// `field` is required.
    pub fn missing(field: &str) -> ServiceError {
        ServiceError::invalid(field, format!("missing field `{field}`"))
    }

    /// Not allowed.
    pub fn not_authorized(message: impl Into<String>) -> ServiceError {
        ServiceError::new(ErrorKind::NotAuthorized, message)
    }

    /// No such thing.
    pub fn not_found(message: impl Into<String>) -> ServiceError {
        ServiceError::new(ErrorKind::NotFound, message)
    }

    /// Wrong state.
    pub fn conflict(message: impl Into<String>) -> ServiceError {
        ServiceError::new(ErrorKind::Conflict, message)
    }

    /// Internal failure.
    pub fn internal(message: impl Into<String>) -> ServiceError {
        ServiceError::new(ErrorKind::Internal, message)
    }
}

impl From<faramesh_proto::CallError> for ServiceError {
    fn from(e: faramesh_proto::CallError) -> ServiceError {
        ServiceError::invalid(&e.field, e.message)
    }
}

impl From<LogError> for ServiceError {
    fn from(e: LogError) -> ServiceError {
        match e {
            // A prune refused for what the log holds, not a failure.
            LogError::NotExported { .. } | LogError::PruneRunning => ServiceError::conflict(e.to_string()),
            other => ServiceError::internal(other.to_string()),
        }
    }
}
