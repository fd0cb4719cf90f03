//! The web dashboard: static assets embedded in the binary (served at `/` with a strict
//! Content-Security-Policy), browser sessions (an `HttpOnly`, `SameSite=Strict` cookie plus a
//! CSRF token on every state-changing request), and the two read routes the page needs beyond
//! the v1 API: an action's explain trace and an overview of the daemon. See `docs/dashboard.md`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{Path as UrlPath, State as AxState};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};

use super::http::{App, Caller, HttpError, HttpResult, JsonObject, Writer, json_response};
use faramesh_daemon::service::logins::{LinkRefused, constant_time_eq};
use faramesh_daemon::service::{ExplainTarget, TokenIdentity};

const INDEX: &str = include_str!("dashboard/index.html");
const APP_JS: &str = include_str!("dashboard/app.js");
const APP_CSS: &str = include_str!("dashboard/app.css");

/// The page may load only its own script and style, talk only to its own origin, and be framed
/// by nobody.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
                       img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The session cookie's name.
pub const COOKIE: &str = "faramesh_session";
/// The header carrying the CSRF token.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// How long a browser session lasts.
const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// Most live browser sessions; opening one more ends the oldest.
const MAX_SESSIONS: usize = 1024;

#[derive(Debug, Clone)]
struct Session {
    csrf: String,
    identity: TokenIdentity,
    expires: Instant,
}

/// Browser sessions, opened by an approver token or a one-time sign-in link.
#[derive(Debug)]
pub struct Sessions {
    map: Mutex<HashMap<String, Session>>,
    secure: bool,
}

impl Sessions {
    /// Sessions; `secure` marks the cookie `Secure` (TLS listeners).
    pub fn new(secure: bool) -> Sessions {
        Sessions { map: Mutex::new(HashMap::new()), secure }
    }

    fn open(&self, identity: TokenIdentity) -> Result<(String, String), HttpError> {
        let (id, csrf) = (random_token()?, random_token()?);
        let mut map = self.map.lock().map_err(|_| HttpError::internal("session table poisoned"))?;
        let now = Instant::now();
        map.retain(|_, s| s.expires > now);
        if map.len() >= MAX_SESSIONS
            && let Some(oldest) = map.iter().min_by_key(|(_, s)| s.expires).map(|(k, _)| k.clone())
        {
            map.remove(&oldest);
        }
        map.insert(id.clone(), Session { csrf: csrf.clone(), identity, expires: now + SESSION_TTL });
        Ok((id, csrf))
    }

    fn session(&self, headers: &HeaderMap) -> Option<Session> {
        let id = cookie(headers, COOKIE)?;
        let map = self.map.lock().ok()?;
        map.get(&id).filter(|s| s.expires > Instant::now()).cloned()
    }

    /// The identity of a request authenticated by its session cookie; for a state-changing
    /// request (`write`), only with the session's CSRF token in `X-CSRF-Token`. `None` when the
    /// request has no live session cookie.
    pub fn identify(&self, headers: &HeaderMap, write: bool) -> Option<Result<TokenIdentity, HttpError>> {
        let session = self.session(headers)?;
        if write {
            let given = headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok()).unwrap_or_default();
            if !constant_time_eq(given.as_bytes(), session.csrf.as_bytes()) {
                return Some(Err(HttpError::new(
                    StatusCode::FORBIDDEN,
                    "forbidden",
                    "missing or wrong CSRF token: send the session's token in `X-CSRF-Token`",
                )));
            }
        }
        Some(Ok(session.identity))
    }

    fn cookie(&self, id: &str, max_age: u64) -> String {
        cookie::Cookie::build((COOKIE, id))
            .path("/")
            .http_only(true)
            .same_site(cookie::SameSite::Strict)
            .max_age(cookie::time::Duration::seconds(i64::try_from(max_age).unwrap_or(i64::MAX)))
            .secure(self.secure)
            .build()
            .to_string()
    }
}

/// Signs in with a one-time link: the core says whom it opens a session as.
fn sign_in(app: &App, given: &str) -> Result<TokenIdentity, HttpError> {
    app.service.sign_in_with_link(given).map_err(|why| match why {
        LinkRefused::Unknown => HttpError::new(StatusCode::UNAUTHORIZED, "unauthorized", "unknown login link"),
        LinkRefused::Spent => HttpError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "this login link was already used or has expired (it works once): `faramesh dashboard` prints a new one, or sign in with an approver token",
        ),
    })
}

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers.get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok()).find_map(|line| {
        cookie::Cookie::split_parse(line).flatten().find(|c| c.name() == name).map(|c| c.value().to_owned())
    })
}

/// 256 random bits, hex (session ids, CSRF tokens).
fn random_token() -> Result<String, HttpError> {
    faramesh_daemon::service::files::random_hex(32)
        .map_err(|e| HttpError::internal(format!("cannot read /dev/urandom: {e}")))
}

/// The dashboard's routes (merged into the listener's router).
pub(super) fn routes() -> Router<App> {
    Router::new()
        .route("/", get(index))
        .route("/assets/app.js", get(app_js))
        .route("/assets/app.css", get(app_css))
        .route("/v1/session", get(session_get).post(session_open).delete(session_close))
        .route("/login/{secret}", get(login_link))
        .route("/v1/actions/{id}/explain", get(explain))
        .route("/v1/actions/{id}/approval-statement", axum::routing::post(approval_statement))
        .route("/v1/overview", get(overview))
        .route("/v1/stats", get(stats))
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut resp = Body::from(body).into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

async fn index() -> Response {
    asset("text/html; charset=utf-8", INDEX)
}

async fn app_js() -> Response {
    asset("text/javascript; charset=utf-8", APP_JS)
}

async fn app_css() -> Response {
    asset("text/css; charset=utf-8", APP_CSS)
}

fn session_json(identity: &TokenIdentity, csrf: &str) -> Value {
    json!({"name": identity.name, "role": identity.role.as_str(), "csrf": csrf})
}

/// `GET /v1/session`: the current session (its CSRF token), or 401.
async fn session_get(AxState(app): AxState<App>, headers: HeaderMap) -> HttpResult {
    let session = app.sessions.session(&headers).ok_or_else(|| {
        HttpError::new(StatusCode::UNAUTHORIZED, "unauthorized", "no session: sign in with an approver token")
    })?;
    Ok(json_response(StatusCode::OK, &session_json(&session.identity, &session.csrf)))
}

/// `POST /v1/session` `{"login": secret}` (the one-time link of `faramesh dev`) or
/// `{"token": approver token}`: sets the session cookie, returns the CSRF token.
async fn session_open(AxState(app): AxState<App>, JsonObject(body): JsonObject) -> HttpResult {
    let f = faramesh_daemon::service::Fields(&body);
    let identity = if let Some(secret) = f.string("login")? {
        sign_in(&app, &secret)?
    } else if let Some(token) = f.string("token")? {
        let identity = app
            .tokens
            .identify(&token)
            .ok_or_else(|| HttpError::new(StatusCode::UNAUTHORIZED, "unauthorized", "unknown token"))?;
        app.service.may_open_session(&identity)?;
        identity
    } else {
        return Err(HttpError::from(faramesh_daemon::service::ServiceError::missing("token")));
    };
    let (id, csrf) = app.sessions.open(identity.clone())?;
    let mut resp = json_response(StatusCode::OK, &session_json(&identity, &csrf));
    let cookie = HeaderValue::from_str(&app.sessions.cookie(&id, SESSION_TTL.as_secs()))
        .map_err(|_| HttpError::internal("cookie"))?;
    resp.headers_mut().insert(header::SET_COOKIE, cookie);
    Ok(resp)
}

/// `GET /login/{secret}`: the sign-in link without JavaScript (a browser, `curl -L -c jar`):
/// uses the one-time secret, sets the session cookie and redirects to the dashboard.
async fn login_link(AxState(app): AxState<App>, UrlPath(secret): UrlPath<String>) -> HttpResult {
    let identity = sign_in(&app, &secret)?;
    let (id, _csrf) = app.sessions.open(identity)?;
    let mut resp = (StatusCode::SEE_OTHER, "signed in: continue to /").into_response();
    let h = resp.headers_mut();
    h.insert(header::LOCATION, HeaderValue::from_static("/"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    let cookie = HeaderValue::from_str(&app.sessions.cookie(&id, SESSION_TTL.as_secs()))
        .map_err(|_| HttpError::internal("cookie"))?;
    h.insert(header::SET_COOKIE, cookie);
    Ok(resp)
}

/// `DELETE /v1/session`: signs out (CSRF token required).
async fn session_close(AxState(app): AxState<App>, _: Writer, headers: HeaderMap) -> HttpResult {
    if let Some(id) = cookie(&headers, COOKIE)
        && let Ok(mut map) = app.sessions.map.lock()
    {
        map.remove(&id);
    }
    let mut resp = json_response(StatusCode::OK, &json!({"signed_out": true}));
    let expired =
        HeaderValue::from_str(&app.sessions.cookie("", 0)).map_err(|_| HttpError::internal("cookie"))?;
    resp.headers_mut().insert(header::SET_COOKIE, expired);
    Ok(resp)
}

/// `GET /v1/actions/{id}/explain`: every rule tried under the current policy and why each
/// earlier one did not match (`policy.explain` on the socket).
/// `POST /v1/actions/{id}/approval-statement` `{decision, approver}`: the statement an approver
/// signs with their passkey (and its challenge and credential), valid for five minutes.
async fn approval_statement(
    AxState(app): AxState<App>,
    super::http::Writer(who): super::http::Writer,
    UrlPath(id): UrlPath<String>,
    super::http::JsonObject(body): super::http::JsonObject,
) -> HttpResult {
    let f = faramesh_daemon::service::Fields(&body);
    let approve = match f.string("decision")?.as_deref() {
        Some("approve") => true,
        Some("deny") => false,
        _ => {
            return Err(faramesh_daemon::service::ServiceError::invalid(
                "decision",
                "`decision` must be `approve` or `deny`",
            )
            .into());
        }
    };
    let approver =
        f.string("approver")?.ok_or_else(|| faramesh_daemon::service::ServiceError::missing("approver"))?;
    let st = app.service.approval_statement(&id, approve, &approver, 5 * 60 * 1000, &who)?;
    Ok(json_response(StatusCode::OK, &st))
}

async fn explain(
    AxState(app): AxState<App>,
    Caller(who): Caller,
    UrlPath(id): UrlPath<String>,
) -> HttpResult {
    let explained = app.service.explain(ExplainTarget::Action(id), &who)?;
    Ok(json_response(StatusCode::OK, &explained))
}

/// `GET /v1/stats?window=hour|day`: decisions over time by effect, top agents and tools, and
/// each rule's hits (`Service::stats`).
async fn stats(
    AxState(app): AxState<App>,
    Caller(who): Caller,
    axum::extract::Query(q): axum::extract::Query<std::collections::HashMap<String, String>>,
) -> HttpResult {
    let window = match q.get("window").map(String::as_str) {
        None => faramesh_daemon::service::stats::Window::Hour,
        Some(w) => faramesh_daemon::service::stats::Window::parse(w).ok_or_else(|| {
            faramesh_daemon::service::ServiceError::invalid(
                "window",
                format!("`window` must be `hour` or `day`, not `{w}`"),
            )
        })?,
    };
    Ok(json_response(StatusCode::OK, &app.service.stats(window, &who)?))
}

/// `GET /v1/overview`: the policy (path, hash, loaded at, last reload error), decision counts,
/// and the log's latest signed checkpoint, verified with the log's public key (those who read
/// everything).
async fn overview(AxState(app): AxState<App>, Caller(who): Caller) -> HttpResult {
    Ok(json_response(StatusCode::OK, &app.service.overview(&who)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_session_cookie_is_strict_and_read_back_by_name() {
        let set = Sessions::new(true).cookie("abc", 60);
        for part in ["faramesh_session=abc", "Path=/", "HttpOnly", "SameSite=Strict", "Max-Age=60", "Secure"]
        {
            assert!(set.split("; ").any(|p| p == part), "{part} missing from {set}");
        }
        assert!(!Sessions::new(false).cookie("abc", 60).contains("Secure"));
        let mut headers = HeaderMap::new();
        headers.append(header::COOKIE, "theme=dark; other_session=zzz".parse().unwrap());
        headers.append(header::COOKIE, "x=1;faramesh_session=abc; y=2".parse().unwrap());
        assert_eq!(cookie(&headers, COOKIE).as_deref(), Some("abc"));
        assert_eq!(cookie(&headers, "missing"), None);
    }
}
