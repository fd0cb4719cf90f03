//! The routes: the v1 actions API of the published Python SDK, `/v1/evaluate`,
//! `/v1/gate/decide`, `/health`, `/ready`, `/metrics`; each a thin mapping onto the core.

use super::sse::events;
use super::*;
use faramesh_daemon::service::apply::Request as CoreRequest;

/// The router.
pub(super) fn router(app: App) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .route("/v1/evaluate", post(evaluate))
        .route("/v1/gate/decide", post(gate_decide))
        .route("/v1/actions", post(submit_action).get(list_actions))
        .route("/v1/actions/{id}", get(get_action))
        .route("/v1/actions/{id}/events", get(action_events))
        .route("/v1/actions/{id}/approval", post(approval))
        .route("/v1/actions/{id}/start", post(start_action))
        .route("/v1/actions/{id}/result", post(report_result))
        .route("/v1/actions/{id}/result-check", post(check_result))
        .route("/v1/events", get(events))
        .route("/v1/grants", get(list_grants).post(create_grant))
        .route("/v1/grants/{id}", axum::routing::delete(revoke_grant))
        .merge(super::tlog::routes())
        .merge(crate::dashboard::routes())
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(app.clone(), super::guard::layer))
        .with_state(app)
}

pub(super) async fn not_found(req: Request) -> HttpError {
    HttpError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no route {} {}", req.method(), req.uri().path()),
    )
}

pub(super) async fn health() -> Response {
    json_response(StatusCode::OK, &json!({"status": "ok"}))
}

pub(super) async fn ready(AxState(app): AxState<App>, _: Caller) -> HttpResult {
    let (writable, policy_hash) = app.service.readiness();
    let body = json!({
        "ready": writable,
        "policy_hash": policy_hash,
        "log_writable": writable,
    });
    let status = if writable { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    Ok(json_response(status, &body))
}

pub(super) async fn metrics(AxState(app): AxState<App>, _: Caller) -> HttpResult {
    // A token is needed, except where tokenless loopback callers are served (the quickstart),
    // which `Caller` already answers for.
    let text = app.service.metrics_text();
    let mut resp = text.into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    Ok(resp)
}

pub(super) async fn evaluate(
    AxState(app): AxState<App>,
    Writer(who): Writer,
    headers: axum::http::HeaderMap,
    JsonObject(body): JsonObject,
) -> HttpResult {
    answer(&app, CoreRequest::Govern(call_request(&headers, body)?), &who).await
}

pub(super) async fn gate_decide(
    AxState(app): AxState<App>,
    Writer(who): Writer,
    headers: axum::http::HeaderMap,
    JsonObject(body): JsonObject,
) -> HttpResult {
    answer(&app, CoreRequest::DecideV1(call_request(&headers, body)?), &who).await
}

pub(super) async fn submit_action(
    AxState(app): AxState<App>,
    Writer(who): Writer,
    headers: axum::http::HeaderMap,
    JsonObject(body): JsonObject,
) -> HttpResult {
    answer(&app, CoreRequest::ActionSubmit(call_request(&headers, body)?), &who).await
}

/// The core's answer to `request`, as a 200 with its JSON.
async fn answer(app: &App, request: CoreRequest, who: &Identity) -> HttpResult {
    Ok(json_response(StatusCode::OK, &app.service.apply(request, who).await?))
}

/// The call in `body`; a W3C `traceparent` header is its `traceparent` when the body has none.
fn call_request(
    headers: &axum::http::HeaderMap,
    mut body: Map<String, Value>,
) -> Result<CallRequest, HttpError> {
    if !body.contains_key("traceparent")
        && let Some(t) = headers.get("traceparent").and_then(|v| v.to_str().ok())
    {
        body.insert("traceparent".into(), Value::String(t.trim().to_owned()));
    }
    Ok(CallRequest::from_json(&body)?)
}

pub(super) fn query_map(q: HashMap<String, String>) -> Map<String, Value> {
    q.into_iter().map(|(k, v)| (k, Value::String(v))).collect()
}

pub(super) async fn list_actions(
    AxState(app): AxState<App>,
    Caller(who): Caller,
    Query(q): Query<HashMap<String, String>>,
) -> HttpResult {
    answer(&app, CoreRequest::ActionPage(ListQuery::from_json(&query_map(q), 20)?), &who).await
}

pub(super) async fn get_action(
    AxState(app): AxState<App>,
    Caller(who): Caller,
    UrlPath(id): UrlPath<String>,
) -> HttpResult {
    answer(&app, CoreRequest::ActionGet { id, v1: true }, &who).await
}

pub(super) async fn action_events(
    AxState(app): AxState<App>,
    Caller(who): Caller,
    UrlPath(id): UrlPath<String>,
) -> HttpResult {
    answer(&app, CoreRequest::ActionEvents { id, v1: true }, &who).await
}

pub(super) async fn approval(
    AxState(app): AxState<App>,
    Writer(who): Writer,
    UrlPath(id): UrlPath<String>,
    JsonObject(body): JsonObject,
) -> HttpResult {
    let answer_given = faramesh_daemon::service::grants::ApprovalAnswer::from_json(&body, None)?;
    let token = faramesh_daemon::service::Fields(&body).string("token")?;
    answer(&app, CoreRequest::ApproveAction { action_id: id, answer: answer_given, token }, &who).await
}

pub(super) async fn list_grants(AxState(app): AxState<App>, Caller(who): Caller) -> HttpResult {
    answer(&app, CoreRequest::GrantList, &who).await
}

pub(super) async fn create_grant(
    AxState(app): AxState<App>,
    Writer(who): Writer,
    JsonObject(body): JsonObject,
) -> HttpResult {
    let grant = faramesh_daemon::service::grants::GrantRequest::from_json(&body)?;
    answer(&app, CoreRequest::GrantCreate(grant), &who).await
}

pub(super) async fn revoke_grant(
    AxState(app): AxState<App>,
    Writer(who): Writer,
    UrlPath(id): UrlPath<String>,
) -> HttpResult {
    answer(&app, CoreRequest::GrantRevoke { id }, &who).await
}

pub(super) async fn start_action(
    AxState(app): AxState<App>,
    Writer(who): Writer,
    UrlPath(id): UrlPath<String>,
) -> HttpResult {
    answer(&app, CoreRequest::ActionTransition { id, transition: Transition::Start, v1: true }, &who).await
}

pub(super) async fn report_result(
    AxState(app): AxState<App>,
    Writer(who): Writer,
    UrlPath(id): UrlPath<String>,
    JsonObject(body): JsonObject,
) -> HttpResult {
    let transition = Transition::result_from_json(&body)?;
    answer(&app, CoreRequest::ActionTransition { id, transition, v1: true }, &who).await
}

pub(super) async fn check_result(
    AxState(app): AxState<App>,
    Writer(who): Writer,
    UrlPath(id): UrlPath<String>,
    JsonObject(body): JsonObject,
) -> HttpResult {
    let result = body
        .get("result")
        .cloned()
        .ok_or_else(|| faramesh_daemon::service::ServiceError::missing("result"))?;
    answer(&app, CoreRequest::ResultCheck { id, result }, &who).await
}
