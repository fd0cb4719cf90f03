//! The log as a C2SP `tlog-tiles` log, for those who may read every entry: `GET
//! /v1/log/checkpoint` (the newest signed checkpoint, with the witnesses' cosignatures when
//! they cosigned it) and `GET /v1/log/tile/<L>/<N>[.p/<W>]` (Merkle tree hashes; no entry
//! bundles). Any C2SP client can audit the host with the prefix `<listener>/v1/log`.

use super::*;

/// The routes.
pub(super) fn routes() -> Router<App> {
    Router::new().route("/v1/log/checkpoint", get(checkpoint)).route("/v1/log/tile/{*path}", get(tile))
}

fn reader(app: &App, who: &faramesh_daemon::service::Identity) -> Result<(), HttpError> {
    if app.service.reads_everything(who) {
        Ok(())
    } else {
        Err(HttpError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "the log's tree is for those who read every entry",
        ))
    }
}

async fn checkpoint(AxState(app): AxState<App>, Caller(who): Caller) -> HttpResult {
    reader(&app, &who)?;
    let cp = app.service.checkpoint()?;
    let note = cp["checkpoint"].as_str().unwrap_or_default().to_owned();
    // The cosigned note when it is of the same checkpoint (the newest one is signed first).
    let cosigned = cp["cosigned"]
        .as_str()
        .filter(|c| c.split_once("\n\n").map(|(b, _)| b) == note.split_once("\n\n").map(|(b, _)| b));
    let body = cosigned.map_or(note, str::to_owned);
    if body.is_empty() {
        return Err(HttpError::new(StatusCode::NOT_FOUND, "not_found", "the log has no checkpoint yet"));
    }
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8"), (header::CACHE_CONTROL, "no-store")],
        body,
    )
        .into_response())
}

/// `<L>/<N>[.p/<W>]`, `<N>` in 3-digit path elements (`x001/x234/067`): `(level, index, width)`.
fn parse_tile(path: &str) -> Option<(u32, u64, u64)> {
    let (main, width) = match path.split_once(".p/") {
        Some((m, w)) => {
            let n: u64 = w.parse().ok().filter(|n: &u64| (1..=255).contains(n) && n.to_string() == w)?;
            (m, n)
        }
        None => (path, 256),
    };
    let mut parts = main.split('/');
    let level_text = parts.next()?;
    let level: u32 = level_text.parse().ok().filter(|l: &u32| *l <= 63 && level_text == l.to_string())?;
    let elements: Vec<&str> = parts.collect();
    let (last, rest) = elements.split_last()?;
    let mut index: u64 = 0;
    for e in rest {
        let digits = e.strip_prefix('x').filter(|d| d.len() == 3 && d.bytes().all(|b| b.is_ascii_digit()))?;
        index = index.checked_mul(1000)?.checked_add(digits.parse().ok()?)?;
    }
    if last.len() != 3 || !last.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    index = index.checked_mul(1000)?.checked_add(last.parse().ok()?)?;
    Some((level, index, width))
}

async fn tile(AxState(app): AxState<App>, Caller(who): Caller, UrlPath(path): UrlPath<String>) -> HttpResult {
    reader(&app, &who)?;
    let not_found = || HttpError::new(StatusCode::NOT_FOUND, "not_found", format!("no tile `{path}`"));
    if path.starts_with("entries/") {
        return Err(HttpError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "entry bundles are not served: hashes only",
        ));
    }
    let (level, index, width) = parse_tile(&path).ok_or_else(not_found)?;
    let hashes = app.service.tile(level, index, width).await?.ok_or_else(not_found)?;
    let cache = if width == 256 { "public, max-age=31536000, immutable" } else { "no-store" };
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/octet-stream"), (header::CACHE_CONTROL, cache)],
        hashes,
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::parse_tile;

    #[test]
    fn tile_paths_read_as_tlog_tiles_writes_them() {
        assert_eq!(parse_tile("0/000"), Some((0, 0, 256)));
        assert_eq!(parse_tile("1/x001/x234/067"), Some((1, 1_234_067, 256)));
        assert_eq!(parse_tile("0/005.p/17"), Some((0, 5, 17)));
        for bad in [
            "",
            "0",
            "0/5",
            "01/000",
            "64/000",
            "0/x001",
            "0/001/002",
            "0/000.p/0",
            "0/000.p/256",
            "0/000.p/017",
            "0/y001/000",
        ] {
            assert_eq!(parse_tile(bad), None, "{bad}");
        }
    }
}
