//! Notifications on the policy's channels (`docs/notifications.md`): a Standard Webhooks signed
//! JSON POST, a Slack Block Kit message, or an email. What a message says is written here
//! ([`format`]); which notes exist, when they are retried and what is recorded is the core's
//! outbox.

mod deliver;
mod format;

use std::time::Duration;

pub use deliver::{Channels, SendError};
pub use format::{SignError, email_text, one_line, sign, slack_body, slack_escape, webhook_body};

/// How long one delivery may take.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);
