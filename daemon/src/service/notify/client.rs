//! Delivering a notification to its channel: a signed webhook or a Slack message over HTTP(S),
//! or an email over SMTP.

use crate::service::secret;
use std::time::Duration;

use super::{DELIVERY_TIMEOUT, Note, SignError, email_text, sign, slack_body, webhook_body};
use crate::policy::{Channel, ChannelKind};

/// Why a notification or an export batch was not delivered (recorded as its text).
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
    Secret(#[from] crate::service::secret::SecretError),
    /// The webhook secret cannot sign.
    #[error(transparent)]
    Sign(#[from] SignError),
    /// The URL does not parse.
    #[error("bad URL: {0}")]
    Url(#[source] hyper::http::uri::InvalidUri),
    /// The URL is neither `http://` nor `https://`.
    #[error("the URL must be http:// or https://")]
    Scheme,
    /// The URL names no host.
    #[error("the URL has no host")]
    NoHost,
    /// The TCP connection failed.
    #[error("connect: {0}")]
    Connect(#[source] std::io::Error),
    /// The host is not a name TLS can check.
    #[error("bad host: {0}")]
    Host(#[source] rustls::pki_types::InvalidDnsNameError),
    /// The TLS handshake failed.
    #[error("TLS: {0}")]
    Tls(#[source] std::io::Error),
    /// The request could not be built (a header value it refuses).
    #[error("{0}")]
    Request(#[source] hyper::http::Error),
    /// HTTP failed (the text holds every cause).
    #[error("{}", causes(.0))]
    Http(#[source] hyper::Error),
    /// The receiver answered, but not 2xx.
    #[error("the receiver answered {0}")]
    Status(hyper::StatusCode),
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

/// Posts notifications (and OTLP batches) over HTTP or HTTPS (rustls with the Mozilla roots,
/// see [`crate::tls`]).
pub struct Client {
    tls: tokio_rustls::TlsConnector,
}

impl Default for Client {
    fn default() -> Self {
        Self::new()
    }
}

impl Client {
    /// A client trusting the web PKI roots.
    pub fn new() -> Client {
        let config = crate::tls::client_config(None, None).unwrap_or_else(|_| {
            rustls::ClientConfig::builder()
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth()
        });
        Client::with_config(config)
    }

    /// A client with its own TLS configuration (a private CA, a client certificate).
    pub fn with_config(config: rustls::ClientConfig) -> Client {
        Client { tls: tokio_rustls::TlsConnector::from(std::sync::Arc::new(config)) }
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
        self.post_bytes(url, "application/json", bytes::Bytes::from(body), headers).await
    }

    /// POSTs `body` as `content_type`; `Ok` on a 2xx answer.
    pub async fn post_bytes(
        &self,
        url: &str,
        content_type: &str,
        body: bytes::Bytes,
        headers: Vec<(&str, String)>,
    ) -> Result<(), SendError> {
        let uri: hyper::Uri = url.parse().map_err(SendError::Url)?;
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(SendError::Scheme),
        };
        let host = uri.host().ok_or(SendError::NoHost)?.to_owned();
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let tcp = tokio::net::TcpStream::connect((host.as_str(), port)).await.map_err(SendError::Connect)?;
        let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
        let mut req = hyper::Request::post(path)
            .header(hyper::header::HOST, uri.authority().map_or(host.as_str(), |a| a.as_str()))
            .header(hyper::header::CONTENT_TYPE, content_type)
            .header(hyper::header::USER_AGENT, crate::log::dpr::RUNTIME_VERSION);
        for (k, v) in headers {
            req = req.header(k, v);
        }
        let req = req.body(http_body_util::Full::new(body)).map_err(SendError::Request)?;
        let status = if https {
            let name = rustls::pki_types::ServerName::try_from(host.clone()).map_err(SendError::Host)?;
            let tls = self.tls.connect(name, tcp).await.map_err(SendError::Tls)?;
            send(hyper_util::rt::TokioIo::new(tls), req).await?
        } else {
            send(hyper_util::rt::TokioIo::new(tcp), req).await?
        };
        if status.is_success() { Ok(()) } else { Err(SendError::Status(status)) }
    }
}

async fn send<T>(
    io: T,
    req: hyper::Request<http_body_util::Full<bytes::Bytes>>,
) -> Result<hyper::StatusCode, SendError>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await.map_err(SendError::Http)?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let resp = sender.send_request(req).await.map_err(SendError::Http)?;
    Ok(resp.status())
}

/// An error with its causes (`connection error: received fatal alert: CertificateRequired`).
fn causes(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
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

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::*;

    /// A failed delivery says what failed, in the words the log records, and keeps the
    /// system's error as its cause.
    #[tokio::test]
    async fn a_failed_post_keeps_its_cause() {
        let client = Client::new();
        let post = |url: &'static str| async {
            client.post_bytes(url, "application/json", bytes::Bytes::new(), Vec::new()).await.unwrap_err()
        };
        let e = post("ftp://example.com/x").await;
        assert_eq!(e.to_string(), "the URL must be http:// or https://");
        let e = post("http://127.0.0.1:1/hook").await;
        assert!(e.to_string().starts_with("connect: "), "{e}");
        let io = e.source().and_then(|s| s.downcast_ref::<std::io::Error>());
        assert_eq!(io.map(std::io::Error::kind), Some(std::io::ErrorKind::ConnectionRefused));
    }
}
