//! Errors of the core: a [`ServiceError`] carries an [`ErrorKind`] each door maps to its own code.

use std::sync::Arc;

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

/// A request the service refused, with a one-line message and the field at fault. Two errors
/// are equal when their kind, message and field are (whatever caused them).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct ServiceError {
    /// What kind of failure.
    pub kind: ErrorKind,
    /// For a person.
    pub message: String,
    /// The request field at fault, if one is.
    pub field: Option<String>,
    /// What failed underneath (the log, serialization, a task), when something did.
    #[source]
    pub source: Option<Arc<dyn std::error::Error + Send + Sync>>,
}

impl PartialEq for ServiceError {
    fn eq(&self, other: &ServiceError) -> bool {
        (self.kind, &self.message, &self.field) == (other.kind, &other.message, &other.field)
    }
}

impl Eq for ServiceError {}

impl ServiceError {
    fn new(kind: ErrorKind, message: impl Into<String>) -> ServiceError {
        ServiceError { kind, message: message.into(), field: None, source: None }
    }

    /// The same error, caused by `source` (kept for whoever reports the chain).
    #[must_use]
    pub fn caused_by(mut self, source: impl std::error::Error + Send + Sync + 'static) -> ServiceError {
        self.source = Some(Arc::new(source));
        self
    }

    /// A bad value in `field`.
    pub fn invalid(field: &str, message: impl Into<String>) -> ServiceError {
        ServiceError {
            kind: ErrorKind::InvalidParams,
            message: message.into(),
            field: Some(field.to_owned()),
            source: None,
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

/// `value` as JSON for an entry or a state row. A value that cannot be written is an error naming
/// `what`, never written as `null` (nor, for a row, as a delete).
pub fn to_json<T: serde::Serialize + ?Sized>(
    what: &str,
    value: &T,
) -> Result<serde_json::Value, ServiceError> {
    serde_json::to_value(value)
        .map_err(|e| ServiceError::internal(format!("cannot write {what}: {e}")).caused_by(e))
}

/// The state row `key` holding `value` as JSON (see [`to_json`]).
pub fn state_row<T: serde::Serialize + ?Sized>(
    key: String,
    value: &T,
) -> Result<(String, Option<Vec<u8>>), ServiceError> {
    let bytes = serde_json::to_vec(value)
        .map_err(|e| ServiceError::internal(format!("cannot write `{key}`: {e}")).caused_by(e))?;
    Ok((key, Some(bytes)))
}

impl From<faramesh_proto::CallError> for ServiceError {
    fn from(e: faramesh_proto::CallError) -> ServiceError {
        let message = e.message.clone();
        ServiceError::invalid(&e.field, message).caused_by(e)
    }
}

impl From<LogError> for ServiceError {
    fn from(e: LogError) -> ServiceError {
        match e {
            // A prune refused for what the log holds, not a failure.
            LogError::NotExported { .. } | LogError::PruneRunning => {
                ServiceError::conflict(e.to_string()).caused_by(e)
            }
            other => ServiceError::internal(other.to_string()).caused_by(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::*;

    /// Regression: a log failure became a bare message; whoever reports it lost what failed.
    #[test]
    fn a_log_failure_keeps_its_cause() {
        let e = ServiceError::from(LogError::Closed);
        assert_eq!(e.kind, ErrorKind::Internal);
        let cause = e.source().expect("the log's error is kept");
        assert_eq!(cause.to_string(), LogError::Closed.to_string());
        let e = ServiceError::from(faramesh_proto::CallError { field: "tool".into(), message: "bad".into() });
        assert_eq!((e.field.as_deref(), e.source().is_some()), (Some("tool"), true));
        assert_eq!(e, ServiceError::invalid("tool", "bad"), "equal whatever caused them");
    }

    struct Unwritable;

    impl serde::Serialize for Unwritable {
        fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
            Err(serde::ser::Error::custom("no JSON form"))
        }
    }

    /// Regression: a state row that could not be serialized became `None`, which the log's
    /// writer carries out as a delete; an entry's field became `null`.
    #[test]
    fn a_value_that_cannot_be_written_is_an_error_not_a_delete() {
        let e = state_row("grant/g1".into(), &Unwritable).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Internal);
        assert!(e.message.contains("`grant/g1`") && e.message.contains("no JSON form"), "{}", e.message);
        assert!(e.source().is_some());
        let e = to_json("the grant", &Unwritable).unwrap_err();
        assert!(e.message.starts_with("cannot write the grant"), "{}", e.message);
        assert_eq!(state_row("k".into(), &1u8).unwrap(), ("k".to_owned(), Some(b"1".to_vec())));
    }
}
