//! Delivering a notification to its channel: a signed webhook or a Slack message over HTTP(S),
//! or an email over SMTP.

use std::time::Duration;

use faramesh_daemon::service::notify::Note;
use faramesh_daemon::service::outbound::{Notifier, Sending};
use faramesh_daemon::service::secret;

use super::{DELIVERY_TIMEOUT, SignError, email_text, sign, slack_body, webhook_body};
use crate::http::{Client, HttpError};
use crate::policy::{Channel, ChannelKind};

/// Why a notification was not delivered (recorded as its text).
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The receiver did not answer in time.
    #[error("no answer within {} s", .0.as_secs())]
    Timeout(Duration),
    /// The channel's settings cannot be used now (a URL, secret or address missing).
    #[error("{0}")]
    Setting(String),
    /// A secret the channel names cannot be read now (an unset variable, an unreadable file).
    #[error(transparent)]
    Secret(#[from] secret::SecretError),
    /// The webhook secret cannot sign.
    #[error(transparent)]
    Sign(#[from] SignError),
    /// The HTTP(S) request failed or was refused.
    #[error(transparent)]
    Http(#[from] HttpError),
    /// The email's `from` is not an address.
    #[error("`from`: {0}")]
    From(#[source] lettre::address::AddressError),
    /// An address in the email's `to` is not one.
    #[error("`to` `{to}`: {source}")]
    To {
        /// The address as written.
        to: String,
        /// Why.
        #[source]
        source: lettre::address::AddressError,
    },
    /// The email could not be built.
    #[error("{0}")]
    Email(#[source] lettre::error::Error),
    /// SMTP failed.
    #[error("{0}")]
    Smtp(#[source] lettre::transport::smtp::Error),
}

/// Delivers to the policy's channels: webhooks and Slack over HTTP(S), email over SMTP.
#[derive(Debug, Clone, Default)]
pub struct Channels {
    http: Client,
}

impl Channels {
    /// Channels over a client trusting the web PKI roots.
    pub fn new() -> Channels {
        Channels { http: Client::new() }
    }

    /// Channels over `http` (a private CA, a client certificate).
    pub fn with_client(http: Client) -> Channels {
        Channels { http }
    }

    /// Posts `note` to `channel` in its format; `Err` with why it was not delivered.
    pub async fn deliver(&self, channel: &Channel, note: &Note, now_ms: u64) -> Result<(), SendError> {
        if let Some(email) = &channel.email {
            return tokio::time::timeout(DELIVERY_TIMEOUT * 3, send_email(email, note))
                .await
                .map_err(|_| SendError::Timeout(DELIVERY_TIMEOUT * 3))?;
        }
        let setting = |what: &str| SendError::Setting(what.to_owned());
        let url = secret::read(channel.url.as_ref().ok_or_else(|| setting("the channel has no URL"))?)?;
        let (body, headers) = match channel.kind {
            ChannelKind::Webhook => {
                let secret = secret::read(
                    channel.secret.as_ref().ok_or_else(|| setting("the webhook has no secret"))?,
                )?;
                let body = webhook_body(note).to_string();
                let timestamp = now_ms / 1000;
                let signature = sign(&secret, &note.id, timestamp, &body)?;
                let headers = vec![
                    ("webhook-id", note.id.clone()),
                    ("webhook-timestamp", timestamp.to_string()),
                    ("webhook-signature", signature),
                ];
                (body, headers)
            }
            ChannelKind::Slack | ChannelKind::Email => (slack_body(note).to_string(), Vec::new()),
        };
        tokio::time::timeout(DELIVERY_TIMEOUT, self.post(&url, body, headers))
            .await
            .map_err(|_| SendError::Timeout(DELIVERY_TIMEOUT))?
    }

    async fn post(&self, url: &str, body: String, headers: Vec<(&str, String)>) -> Result<(), SendError> {
        Ok(self.http.post_ok(url, "application/json", bytes::Bytes::from(body), headers).await?)
    }
}

impl Notifier for Channels {
    fn deliver<'a>(&'a self, channel: &'a Channel, note: &'a Note, now_ms: u64) -> Sending<'a> {
        Box::pin(async move { Ok(Channels::deliver(self, channel, note, now_ms).await?) })
    }
}

/// Sends `note` as a plain-text email (its id as the Message-ID, for deduplication).
async fn send_email(email: &crate::policy::Email, note: &Note) -> Result<(), SendError> {
    use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
    let (subject, text) = email_text(note);
    let mut message = lettre::Message::builder()
        .from(email.from.parse().map_err(SendError::From)?)
        .subject(subject)
        .message_id(Some(format!("<{}@faramesh>", note.id)))
        .header(lettre::message::header::ContentType::TEXT_PLAIN);
    for to in &email.to {
        message = message.to(to.parse().map_err(|source| SendError::To { to: to.clone(), source })?);
    }
    let message = message.body(text).map_err(SendError::Email)?;
    let builder = match email.tls {
        crate::policy::EmailTls::Starttls => {
            AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&email.host)
        }
        crate::policy::EmailTls::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(&email.host),
        crate::policy::EmailTls::None => {
            Ok(AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&email.host))
        }
    };
    let mut builder = builder.map_err(SendError::Smtp)?.port(email.port).timeout(Some(DELIVERY_TIMEOUT));
    if let (Some(user), Some(password)) = (&email.username, &email.password) {
        builder = builder.credentials(lettre::transport::smtp::authentication::Credentials::new(
            secret::read(user)?,
            secret::read(password)?,
        ));
    }
    builder.build().send(message).await.map(|_| ()).map_err(SendError::Smtp)
}
