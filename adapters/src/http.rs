//! One small HTTP/1 client for what the daemon posts (webhooks, Slack, OTLP, witnesses): a
//! connection per request, HTTPS with rustls (ring, the Mozilla roots, optionally a private CA
//! and a client certificate; see `faramesh_net::tls`).

use std::sync::Arc;

use http_body_util::BodyExt;

/// Why a POST got no answer, or not the one wanted. The text holds every cause.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
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
    /// HTTP failed.
    #[error("{}", causes(.0))]
    Http(#[source] hyper::Error),
    /// The answer's body could not be read, or was longer than allowed.
    #[error("the answer: {0}")]
    Answer(String),
    /// The receiver answered, but not 2xx.
    #[error("the receiver answered {0}")]
    Status(hyper::StatusCode),
}

/// An error with its causes (`connection error: received fatal alert: CertificateRequired`).
pub fn causes(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Posts over HTTP or HTTPS.
#[derive(Clone)]
pub struct Client {
    tls: tokio_rustls::TlsConnector,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").finish_non_exhaustive()
    }
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
        Client { tls: tokio_rustls::TlsConnector::from(Arc::new(config)) }
    }

    /// POSTs `body` as `content_type`; `Ok` on a 2xx answer.
    pub async fn post_ok(
        &self,
        url: &str,
        content_type: &str,
        body: bytes::Bytes,
        headers: Vec<(&str, String)>,
    ) -> Result<(), HttpError> {
        let (status, _) = self.post(url, content_type, body, headers, 0).await?;
        if status.is_success() { Ok(()) } else { Err(HttpError::Status(status)) }
    }

    /// POSTs `body` as `content_type`: the answer's status and up to `max_answer` bytes of its
    /// body (a longer body is an error; 0 reads none).
    pub async fn post(
        &self,
        url: &str,
        content_type: &str,
        body: bytes::Bytes,
        headers: Vec<(&str, String)>,
        max_answer: usize,
    ) -> Result<(hyper::StatusCode, bytes::Bytes), HttpError> {
        let uri: hyper::Uri = url.parse().map_err(HttpError::Url)?;
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(HttpError::Scheme),
        };
        let host = uri.host().ok_or(HttpError::NoHost)?.trim_matches(['[', ']']).to_owned();
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let tcp = tokio::net::TcpStream::connect((host.as_str(), port)).await.map_err(HttpError::Connect)?;
        let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
        let mut req = hyper::Request::post(path)
            .header(hyper::header::HOST, uri.authority().map_or(host.as_str(), |a| a.as_str()))
            .header(hyper::header::CONTENT_TYPE, content_type)
            .header(hyper::header::USER_AGENT, crate::log::dpr::RUNTIME_VERSION);
        for (k, v) in headers {
            req = req.header(k, v);
        }
        let req = req.body(http_body_util::Full::new(body)).map_err(HttpError::Request)?;
        if https {
            let name = rustls::pki_types::ServerName::try_from(host.clone()).map_err(HttpError::Host)?;
            let tls = self.tls.connect(name, tcp).await.map_err(HttpError::Tls)?;
            send(hyper_util::rt::TokioIo::new(tls), req, max_answer).await
        } else {
            send(hyper_util::rt::TokioIo::new(tcp), req, max_answer).await
        }
    }
}

async fn send<T>(
    io: T,
    req: hyper::Request<http_body_util::Full<bytes::Bytes>>,
    max_answer: usize,
) -> Result<(hyper::StatusCode, bytes::Bytes), HttpError>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await.map_err(HttpError::Http)?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let resp = sender.send_request(req).await.map_err(HttpError::Http)?;
    let status = resp.status();
    if max_answer == 0 {
        return Ok((status, bytes::Bytes::new()));
    }
    let limited = http_body_util::Limited::new(resp.into_body(), max_answer);
    let body = limited.collect().await.map_err(|e| HttpError::Answer(e.to_string()))?.to_bytes();
    Ok((status, body))
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::*;

    /// A failed post says what failed, in the words the log records, and keeps the system's
    /// error as its cause.
    #[tokio::test]
    async fn a_failed_post_keeps_its_cause() {
        let client = Client::new();
        let post = |url: &'static str| async {
            client.post_ok(url, "application/json", bytes::Bytes::new(), Vec::new()).await.unwrap_err()
        };
        let e = post("ftp://example.com/x").await;
        assert_eq!(e.to_string(), "the URL must be http:// or https://");
        let e = post("http://127.0.0.1:1/hook").await;
        assert!(e.to_string().starts_with("connect: "), "{e}");
        let io = e.source().and_then(|s| s.downcast_ref::<std::io::Error>());
        assert_eq!(io.map(std::io::Error::kind), Some(std::io::ErrorKind::ConnectionRefused));
    }
}
