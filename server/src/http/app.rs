//! What every route shares: the listener's state, the caller's identity (bearer token or
//! dashboard session), the strict JSON body, and errors as JSON responses.

use super::*;

/// An HTTP error reply: `{"error": {"code", "message", "field"?}, "detail": message}`.
#[derive(Debug)]
pub struct HttpError {
    pub(crate) status: StatusCode,
    pub(crate) code: &'static str,
    pub(crate) message: String,
    pub(crate) field: Option<String>,
}

impl HttpError {
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> HttpError {
        HttpError { status, code, message: message.into(), field: None }
    }

    pub(crate) fn internal(message: impl Into<String>) -> HttpError {
        HttpError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }
}

impl From<faramesh_proto::CallError> for HttpError {
    fn from(e: faramesh_proto::CallError) -> HttpError {
        HttpError::from(ServiceError::from(e))
    }
}

impl From<ServiceError> for HttpError {
    fn from(e: ServiceError) -> HttpError {
        let (status, code) = match e.kind {
            ErrorKind::InvalidParams => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_params"),
            ErrorKind::NotAuthorized => (StatusCode::FORBIDDEN, "forbidden"),
            ErrorKind::NotFound => (StatusCode::NOT_FOUND, "not_found"),
            ErrorKind::Conflict => (StatusCode::CONFLICT, "conflict"),
            ErrorKind::Internal => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        };
        HttpError { status, code, message: e.message, field: e.field }
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let mut error = json!({"code": self.code, "message": self.message});
        if let (Some(f), Value::Object(m)) = (&self.field, &mut error) {
            m.insert("field".into(), json!(f));
        }
        let body = json!({"error": error, "detail": self.message});
        let mut resp = json_response(self.status, &body);
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        resp
    }
}

pub(crate) type HttpResult = Result<Response, HttpError>;

#[derive(Clone)]
pub(crate) struct App {
    pub(crate) service: Service,
    pub(crate) tokens: Arc<Tokens>,
    pub(crate) limits: HttpLimits,
    pub(crate) sessions: Arc<crate::dashboard::Sessions>,
    /// Tokenless callers are unauthenticated agents (loopback, no token configured).
    pub(crate) anonymous: bool,
    /// The listener, as the checks every request passes see it (`guard.rs`).
    pub(crate) door: super::guard::Door,
}

impl App {
    /// The caller's identity from `Authorization: Bearer …`, else from a dashboard session
    /// cookie (with its CSRF token for a state-changing request, `write`): 401 when neither is
    /// there or known. Handlers take it as [`Caller`] or [`Writer`].
    fn identify(&self, headers: &HeaderMap, write: bool) -> Result<Identity, HttpError> {
        let value = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).unwrap_or_default();
        let token = value.strip_prefix("Bearer ").or_else(|| value.strip_prefix("bearer ")).map(str::trim);
        let Some(token) = token.filter(|t| !t.is_empty()) else {
            if let Some(session) = self.sessions.identify(headers, write) {
                return session.map(Identity::Token);
            }
            if self.anonymous {
                return Ok(Identity::Anonymous);
            }
            return Err(HttpError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "missing bearer token: send `Authorization: Bearer <token>`",
            ));
        };
        self.tokens
            .identify(token)
            .map(Identity::Token)
            .ok_or_else(|| HttpError::new(StatusCode::UNAUTHORIZED, "unauthorized", "unknown bearer token"))
    }

    /// Reads a JSON object body within the size and time limits.
    async fn body(&self, body: Body) -> Result<Map<String, Value>, HttpError> {
        let limit = self.limits.max_body_bytes;
        let read = tokio::time::timeout(self.limits.body_timeout, read_within(body, limit)).await;
        let bytes: Bytes = match read {
            Err(_) => {
                return Err(HttpError::new(
                    StatusCode::REQUEST_TIMEOUT,
                    "timeout",
                    format!("request body not received within {} s", self.limits.body_timeout.as_secs()),
                ));
            }
            Ok(Err(_) | Ok(None)) => {
                return Err(HttpError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "payload_too_large",
                    format!("request body over the {limit}-byte limit"),
                ));
            }
            Ok(Ok(Some(b))) => b,
        };
        match faramesh_proto::parse_strict(&bytes) {
            Ok(Value::Object(m)) => Ok(m),
            Ok(_) => {
                Err(HttpError::new(StatusCode::BAD_REQUEST, "bad_request", "the body must be a JSON object"))
            }
            Err(faramesh_proto::StrictJsonError::DuplicateKey(path)) => Err(HttpError {
                status: StatusCode::BAD_REQUEST,
                code: "bad_request",
                message: format!("duplicate key `{path}`: a key may appear once per object"),
                field: Some(path),
            }),
            Err(e) => Err(HttpError::new(
                StatusCode::BAD_REQUEST,
                "bad_request",
                format!("the body is not JSON: {e}"),
            )),
        }
    }
}

/// A JSON answer: one line, ending with a newline (so `curl` leaves the prompt on a line of
/// its own, and a stream of answers is JSON lines).
pub(crate) fn json_response(status: StatusCode, v: &Value) -> Response {
    let mut body = v.to_string();
    body.push('\n');
    (status, [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], body).into_response()
}

/// The caller of a request that reads: its bearer token's identity, else its dashboard
/// session's (401 when neither is there or known).
pub(crate) struct Caller(pub(crate) Identity);

/// The caller of a request that changes state: as [`Caller`], but a session cookie counts only
/// with the session's CSRF token (browsers never send bearer tokens by themselves).
pub(crate) struct Writer(pub(crate) Identity);

/// A JSON object body, declared `Content-Type: application/json` (415 otherwise: a browser
/// sends `text/plain` or a form to another site without asking it first), read strictly (no
/// duplicate key) within the size and time limits.
pub(crate) struct JsonObject(pub(crate) Map<String, Value>);

impl axum::extract::FromRequestParts<App> for Caller {
    type Rejection = HttpError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        app: &App,
    ) -> Result<Self, HttpError> {
        app.identify(&parts.headers, false).map(Caller)
    }
}

impl axum::extract::FromRequestParts<App> for Writer {
    type Rejection = HttpError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        app: &App,
    ) -> Result<Self, HttpError> {
        app.identify(&parts.headers, true).map(Writer)
    }
}

impl axum::extract::FromRequest<App> for JsonObject {
    type Rejection = HttpError;

    async fn from_request(req: Request, app: &App) -> Result<Self, HttpError> {
        let ct = req.headers().get(header::CONTENT_TYPE).map(|v| v.to_str().unwrap_or("(not ASCII)"));
        if !ct.is_some_and(super::guard::is_json) {
            return Err(super::guard::unsupported(ct.unwrap_or_default()).into());
        }
        app.body(req.into_body()).await.map(JsonObject)
    }
}

/// How much of a body over the limit is still read (and dropped), as a multiple of the limit.
const DRAIN_LIMITS: usize = 4;

/// The body's bytes when it is at most `limit`, `None` when it is over. A body over the limit
/// is still read and dropped up to [`DRAIN_LIMITS`] times the limit (within the caller's body
/// timeout), so a client still sending it receives the 413 instead of a connection reset
/// mid-upload; a larger one is cut off.
async fn read_within(body: Body, limit: usize) -> Result<Option<Bytes>, axum::Error> {
    use http_body_util::BodyExt;
    let mut body = body;
    let mut kept = bytes::BytesMut::new();
    let mut seen = 0usize;
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame?.into_data() else { continue };
        seen = seen.saturating_add(data.len());
        if seen <= limit {
            kept.extend_from_slice(&data);
        } else if seen > limit.saturating_mul(DRAIN_LIMITS) {
            return Ok(None);
        }
    }
    Ok((seen <= limit).then(|| kept.freeze()))
}

#[cfg(test)]
mod tests {
    use super::{Body, DRAIN_LIMITS, read_within};

    fn chunked(total: usize) -> Body {
        let chunks: Vec<Result<bytes::Bytes, std::io::Error>> = (0..total.div_ceil(1000))
            .map(|i| Ok(bytes::Bytes::from(vec![b'x'; 1000.min(total - i * 1000)])))
            .collect();
        Body::from_stream(futures_util::stream::iter(chunks))
    }

    #[tokio::test]
    async fn a_body_within_the_limit_is_kept_whole() {
        let got = read_within(chunked(10_000), 10_000).await.unwrap();
        assert_eq!(got.map(|b| b.len()), Some(10_000));
    }

    #[tokio::test]
    async fn a_body_over_the_limit_is_read_to_its_end_then_refused() {
        // Read to the end (the client still sending gets the 413, not a reset); nothing kept.
        let read = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = std::sync::Arc::clone(&read);
        let stream = futures_util::stream::iter((0..30).map(move |_| {
            counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Ok::<_, std::io::Error>(bytes::Bytes::from(vec![b'x'; 1000]))
        }));
        let got = read_within(Body::from_stream(stream), 10_000).await.unwrap();
        assert_eq!(got, None);
        assert_eq!(read.load(std::sync::atomic::Ordering::Relaxed), 30, "every chunk was read");
    }

    #[tokio::test]
    async fn a_body_far_over_the_limit_is_cut_off() {
        let stream = futures_util::stream::iter(std::iter::repeat_with(|| {
            Ok::<_, std::io::Error>(bytes::Bytes::from(vec![b'x'; 1000]))
        }));
        let got = read_within(Body::from_stream(stream), 10_000).await.unwrap();
        assert_eq!(got, None, "an endless body ends at {DRAIN_LIMITS} times the limit");
    }
}
