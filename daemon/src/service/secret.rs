//! Reading what a policy names but does not hold: a notification channel's URL, webhook secret
//! or SMTP credentials, given in the policy, in an environment variable or in a file. The
//! policy keeps the reference; the daemon reads it each time it sends.

use crate::policy::SecretRef;

/// The value, read now: a literal as given, an environment variable of the daemon, or a file
/// with its trailing whitespace trimmed.
pub(crate) fn read(secret: &SecretRef) -> Result<String, String> {
    match secret {
        SecretRef::Literal(v) => Ok(v.clone()),
        SecretRef::Env(name) => {
            std::env::var(name).map_err(|_| format!("environment variable `{name}` is not set"))
        }
        SecretRef::File(path) => std::fs::read_to_string(path)
            .map(|t| t.trim_end().to_owned())
            .map_err(|e| format!("cannot read `{path}`: {e}")),
    }
}
