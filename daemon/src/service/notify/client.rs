//! Delivering a notification to its channel: a signed webhook or a Slack message over HTTP(S),
//! or an email over SMTP.

use super::{DELIVERY_TIMEOUT, Note, email_text, sign, slack_body, webhook_body};
use crate::policy::{Channel, ChannelKind};

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
    pub async fn deliver(&self, channel: &Channel, note: &Note, now_ms: u64) -> Result<(), String> {
        if let Some(email) = &channel.email {
            return tokio::time::timeout(DELIVERY_TIMEOUT * 3, send_email(email, note))
                .await
                .map_err(|_| format!("no answer within {} s", DELIVERY_TIMEOUT.as_secs() * 3))?;
        }
        let url = channel.url.as_ref().ok_or("the channel has no URL")?.read()?;
        let (body, headers) = match channel.kind {
            ChannelKind::Webhook => {
                let secret = channel.secret.as_ref().ok_or("the webhook has no secret")?.read()?;
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
            .map_err(|_| format!("no answer within {} s", DELIVERY_TIMEOUT.as_secs()))?
    }

    async fn post(&self, url: &str, body: String, headers: Vec<(&str, String)>) -> Result<(), String> {
        self.post_bytes(url, "application/json", bytes::Bytes::from(body), headers).await
    }

    /// POSTs `body` as `content_type`; `Ok` on a 2xx answer.
    pub async fn post_bytes(
        &self,
        url: &str,
        content_type: &str,
        body: bytes::Bytes,
        headers: Vec<(&str, String)>,
    ) -> Result<(), String> {
        let uri: hyper::Uri = url.parse().map_err(|e| format!("bad URL: {e}"))?;
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err("the URL must be http:// or https://".into()),
        };
        let host = uri.host().ok_or("the URL has no host")?.to_owned();
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
        let mut req = hyper::Request::post(path)
            .header(hyper::header::HOST, uri.authority().map_or(host.as_str(), |a| a.as_str()))
            .header(hyper::header::CONTENT_TYPE, content_type)
            .header(hyper::header::USER_AGENT, crate::log::dpr::RUNTIME_VERSION);
        for (k, v) in headers {
            req = req.header(k, v);
        }
        let req = req.body(http_body_util::Full::new(body)).map_err(|e| e.to_string())?;
        let status = if https {
            let name = rustls::pki_types::ServerName::try_from(host.clone())
                .map_err(|e| format!("bad host: {e}"))?;
            let tls = self.tls.connect(name, tcp).await.map_err(|e| format!("TLS: {e}"))?;
            send(hyper_util::rt::TokioIo::new(tls), req).await?
        } else {
            send(hyper_util::rt::TokioIo::new(tcp), req).await?
        };
        if status.is_success() { Ok(()) } else { Err(format!("the receiver answered {status}")) }
    }
}

async fn send<T>(
    io: T,
    req: hyper::Request<http_body_util::Full<bytes::Bytes>>,
) -> Result<hyper::StatusCode, String>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await.map_err(|e| causes(&e))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let resp = sender.send_request(req).await.map_err(|e| causes(&e))?;
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
async fn send_email(email: &crate::policy::Email, note: &Note) -> Result<(), String> {
    use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
    let (subject, text) = email_text(note);
    let mut message = lettre::Message::builder()
        .from(email.from.parse().map_err(|e| format!("`from`: {e}"))?)
        .subject(subject)
        .message_id(Some(format!("<{}@faramesh>", note.id)))
        .header(lettre::message::header::ContentType::TEXT_PLAIN);
    for to in &email.to {
        message = message.to(to.parse().map_err(|e| format!("`to` `{to}`: {e}"))?);
    }
    let message = message.body(text).map_err(|e| e.to_string())?;
    let builder = match email.tls {
        crate::policy::EmailTls::Starttls => {
            AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&email.host)
        }
        crate::policy::EmailTls::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(&email.host),
        crate::policy::EmailTls::None => {
            Ok(AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&email.host))
        }
    };
    let mut builder = builder.map_err(|e| e.to_string())?.port(email.port).timeout(Some(DELIVERY_TIMEOUT));
    if let (Some(user), Some(password)) = (&email.username, &email.password) {
        builder = builder.credentials(lettre::transport::smtp::authentication::Credentials::new(
            user.read()?,
            password.read()?,
        ));
    }
    builder.build().send(message).await.map(|_| ()).map_err(|e| e.to_string())
}
