//! Reading what a policy names but does not hold: a notification channel's URL, webhook secret
//! or SMTP credentials, given in the policy, in an environment variable or in a file. The
//! policy keeps the reference; the daemon reads it each time it sends.

use crate::policy::SecretRef;

/// Why a secret cannot be read now.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The environment variable is not set (or not UTF-8).
    #[error("environment variable `{0}` is not set")]
    Unset(String),
    /// The file cannot be read.
    #[error("cannot read `{path}`: {source}")]
    File {
        /// The file.
        path: String,
        /// The system's error.
        #[source]
        source: std::io::Error,
    },
}

/// The value, read now: a literal as given, an environment variable of the daemon, or a file
/// with its trailing whitespace trimmed.
pub fn read(secret: &SecretRef) -> Result<String, SecretError> {
    match secret {
        SecretRef::Literal(v) => Ok(v.clone()),
        SecretRef::Env(name) => std::env::var(name).map_err(|_| SecretError::Unset(name.clone())),
        SecretRef::File(path) => std::fs::read_to_string(path)
            .map(|t| t.trim_end().to_owned())
            .map_err(|source| SecretError::File { path: path.clone(), source }),
    }
}
