//! What every request passes before a route sees it: the checks of `faramesh_net::guard` (shared
//! with `faramesh mcp --listen`), run as the middleware of every route.

use axum::extract::Request;
use axum::middleware::Next;

pub use faramesh_net::guard::{Door, Refused, check, is_json, unsupported};

use super::{App, AxState, HttpError, IntoResponse, Response};

impl From<Refused> for HttpError {
    fn from(r: Refused) -> HttpError {
        let mut e = HttpError::new(r.status, r.code, r.message);
        e.field = Some(r.field);
        e
    }
}

/// The middleware every route and the fallback run behind.
pub(super) async fn layer(AxState(app): AxState<App>, req: Request, next: Next) -> Response {
    match check(app.door, req.method(), req.uri(), req.headers()) {
        Ok(()) => next.run(req).await,
        Err(e) => HttpError::from(e).into_response(),
    }
}
