//! `GET /v1/events`: the log's entries the caller may see, as server-sent events, replayed from
//! `Last-Event-ID` and then live.

use super::*;
use faramesh_daemon::service::v1::event_type;

/// An SSE frame for a log entry, if it passes the filters and the reader may see it.
pub(super) fn sse_frame(record: &str, agent: Option<&str>, effect: Option<&str>) -> Option<(u64, String)> {
    let mut v: Value = serde_json::from_str(record).ok()?;
    let seq = v.get("seq").and_then(Value::as_u64)?;
    if agent.is_some_and(|a| v.get("agent_id").and_then(Value::as_str) != Some(a))
        || effect.is_some_and(|e| v.get("effect").and_then(Value::as_str) != Some(e))
    {
        return None;
    }
    let et = event_type(&v);
    if let Value::Object(m) = &mut v {
        m.insert("event_type".into(), json!(et));
        if m.get("kind").and_then(Value::as_str) == Some("decision") {
            let id = m.get("id").cloned().unwrap_or(Value::Null);
            m.insert("action_id".into(), id);
        }
    }
    Some((seq, format!("id: {seq}\ndata: {v}\n\n")))
}

pub(super) async fn events(
    AxState(app): AxState<App>,
    Caller(who): Caller,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> HttpResult {
    let agent = q.get("agent_id").or(q.get("agent")).cloned();
    let effect = q.get("effect").map(|e| e.to_ascii_uppercase());
    let last_id = match headers.get("last-event-id").map(|v| v.to_str().map(|s| s.trim().parse::<u64>())) {
        None => None,
        Some(Ok(Ok(n))) => Some(n),
        Some(_) => {
            return Err(HttpError {
                status: StatusCode::BAD_REQUEST,
                code: "bad_request",
                message: "`Last-Event-ID` must be a sequence number".into(),
                field: Some("Last-Event-ID".into()),
            });
        }
    };
    // Subscribe first, then replay: nothing committed in between is missed; duplicates are
    // skipped by seq.
    // Who sees what is decided by the core (the replay and the live stream alike).
    let mut live = app.service.subscribe(&who);
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, Infallible>>(256);
    tokio::spawn(async move {
        let mut sent = last_id.unwrap_or(0);
        let _ = tx.send(Ok(Bytes::from_static(b": faramesh events\n\n"))).await;
        if let Some(from) = last_id {
            let mut next = from + 1;
            while let Ok((records, next_seq)) = app.service.entries(Some(next), None, 1000, &who) {
                if records.is_empty() {
                    break;
                }
                for r in &records {
                    if let Some((seq, frame)) = sse_frame(&r.to_string(), agent.as_deref(), effect.as_deref())
                    {
                        sent = sent.max(seq);
                        if tx.send(Ok(Bytes::from(frame))).await.is_err() {
                            return;
                        }
                    }
                }
                next = next_seq;
            }
            sent = sent.max(next.saturating_sub(1));
        }
        let mut keepalive = tokio::time::interval(Duration::from_secs(15));
        loop {
            tokio::select! {
                r = live.next() => match r {
                    Some(Seen::Entry(record)) => {
                        if let Some((seq, frame)) = sse_frame(&record, agent.as_deref(), effect.as_deref()) {
                            if seq <= sent {
                                continue;
                            }
                            sent = seq;
                            if tx.send(Ok(Bytes::from(frame))).await.is_err() {
                                return;
                            }
                        }
                    }
                    Some(Seen::Lagged(n)) => {
                        let note = format!("event: lagged\ndata: {{\"missed\":{n}}}\n\n");
                        if tx.send(Ok(Bytes::from(note))).await.is_err() {
                            return;
                        }
                    }
                    None => return,
                },
                _ = keepalive.tick() => {
                    if tx.send(Ok(Bytes::from_static(b": keep-alive\n\n"))).await.is_err() {
                        return;
                    }
                }
            }
        }
    });
    let stream =
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) });
    let mut resp = Response::new(Body::from_stream(stream));
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Ok(resp)
}
