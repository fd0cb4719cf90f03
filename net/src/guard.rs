//! What every request passes before a route sees it: on a loopback listener, a `Host` that names
//! loopback and the listener's port (a web page on another name that resolves to 127.0.0.1 is
//! refused: DNS rebinding); for a request that changes state, no `Origin` but the server's own
//! and a JSON body. A browser on another site can then neither read from nor write to the door,
//! with or without a token. See `docs/http.md#what-a-browser-may-send`. The daemon's HTTP
//! listener and `faramesh mcp --listen` serve their clients behind these checks
//! (`docs/mcp.md#streamable-http`).

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

use http::{HeaderMap, Method, StatusCode, Uri};

/// What the checks need to know about the listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Door {
    /// The port it listens on.
    pub port: u16,
    /// Whether it listens on a loopback address (then only loopback names are served).
    pub loopback: bool,
    /// Whether it serves TLS (a `Host` without a port then means 443).
    pub tls: bool,
    /// Whether reads (GET, HEAD, OPTIONS) pass the `Sec-Fetch-Site` and `Origin` checks too, not
    /// only requests that change state: for the MCP gateway, whose GET opens the server's event
    /// stream (the dashboard's pages are opened from links on other sites).
    pub guard_reads: bool,
}

impl Door {
    /// The listener at `addr`.
    pub fn at(addr: &SocketAddr, tls: bool) -> Door {
        Door { port: addr.port(), loopback: addr.ip().is_loopback(), tls, guard_reads: false }
    }

    fn default_port(self) -> u16 {
        if self.tls { 443 } else { 80 }
    }

    /// Whether `host` (a `Host` header or a request target's authority) names this loopback
    /// listener: `localhost`, a loopback IPv4 address or `[::1]`, with the listener's port. No
    /// port means the scheme's default (80, 443), as a browser writes it: accepted only when the
    /// listener is on that port.
    pub fn serves_host(self, host: &str) -> bool {
        let port = match host.strip_prefix('[') {
            Some(rest) => {
                let Some((v6, after)) = rest.split_once(']') else { return false };
                if !v6.parse::<Ipv6Addr>().is_ok_and(|ip| ip.is_loopback()) {
                    return false;
                }
                match after {
                    "" => None,
                    p => match p.strip_prefix(':') {
                        Some(p) => Some(p),
                        None => return false,
                    },
                }
            }
            None => {
                let (name, port) = match host.split_once(':') {
                    Some((n, p)) => (n, Some(p)),
                    None => (host, None),
                };
                let loopback = name.eq_ignore_ascii_case("localhost")
                    || name.parse::<Ipv4Addr>().is_ok_and(|ip| ip.is_loopback());
                if !loopback {
                    return false;
                }
                port
            }
        };
        match port {
            None => self.port == self.default_port(),
            Some(p) => {
                !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) && p.parse::<u16>() == Ok(self.port)
            }
        }
    }

    /// The names this listener answers to, for the error.
    fn served_names(self) -> String {
        let p = self.port;
        format!("`127.0.0.1:{p}`, `localhost:{p}` or `[::1]:{p}`")
    }
}

/// Whether `origin` (an `Origin` header) is the origin of the server the request was sent to:
/// its host and port are the request's `Host`. `null` (a sandboxed or privacy-stripped origin)
/// is no server's.
pub fn same_origin(origin: &str, host: &str) -> bool {
    let Some((scheme, authority)) = origin.split_once("://") else { return false };
    (scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https"))
        && !authority.is_empty()
        && !authority.contains(['/', '@', '?', '#'])
        && authority.eq_ignore_ascii_case(host)
}

/// Whether `content_type` is JSON: `application/json`, with or without parameters
/// (`; charset=utf-8`).
pub fn is_json(content_type: &str) -> bool {
    content_type.split(';').next().unwrap_or_default().trim().eq_ignore_ascii_case("application/json")
}

/// Whether a request with `method` may change state (everything but GET, HEAD and OPTIONS).
fn changes_state(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// A request refused before any route saw it: the HTTP status, a short code
/// (`misdirected_request`, `forbidden`, `unsupported_media_type`, `bad_request`), the message,
/// and the header it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// 400, 403, 415 or 421.
    pub status: StatusCode,
    /// The error code of the daemon's JSON errors.
    pub code: &'static str,
    /// What was refused and why.
    pub message: String,
    /// The header (`Host`, `Origin`, `Sec-Fetch-Site`, `Content-Type`, …).
    pub field: String,
}

impl Refused {
    fn new(status: StatusCode, code: &'static str, message: String, field: &str) -> Refused {
        Refused { status, code, message, field: field.to_owned() }
    }
}

/// The one value of header `name`: `Ok(None)` when absent, an error naming it when repeated or
/// not visible ASCII.
fn one_header<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, Refused> {
    let mut values = headers.get_all(name).iter();
    let Some(first) = values.next() else { return Ok(None) };
    let refused =
        |why: &str| Refused::new(StatusCode::BAD_REQUEST, "bad_request", format!("`{name}` {why}"), name);
    if values.next().is_some() {
        return Err(refused("is sent more than once"));
    }
    first.to_str().map(|v| Some(v.trim())).map_err(|_| refused("is not visible ASCII"))
}

/// The checks, in order: `Host` (loopback listeners), then for a state-changing request (every
/// request when [`Door::guard_reads`]) `Sec-Fetch-Site` and `Origin`, and for a state-changing
/// request `Content-Type` (when one is sent: a body without one is refused by whoever reads
/// the body, with [`require_json`]).
pub fn check(door: Door, method: &Method, uri: &Uri, headers: &HeaderMap) -> Result<(), Refused> {
    let host = one_header(headers, "host")?;
    if door.loopback {
        let misdirected = |what: String| {
            Refused::new(
                StatusCode::MISDIRECTED_REQUEST,
                "misdirected_request",
                format!(
                    "{what}: this listener is on loopback and answers only {} (a web page on another name \
                     that resolves here is refused)",
                    door.served_names()
                ),
                "Host",
            )
        };
        match host {
            None => return Err(misdirected("no `Host` header".into())),
            Some(h) if !door.serves_host(h) => {
                return Err(misdirected(format!("`Host: {h}` is not served here")));
            }
            Some(_) => {}
        }
        if let Some(authority) = uri.authority()
            && !door.serves_host(authority.as_str())
        {
            return Err(misdirected(format!("the request target's host `{authority}` is not served here")));
        }
    }
    let changes = changes_state(method);
    if !changes && !door.guard_reads {
        return Ok(());
    }
    let forbidden =
        |message: String, name: &str| Refused::new(StatusCode::FORBIDDEN, "forbidden", message, name);
    if let Some(site) = one_header(headers, "sec-fetch-site")?
        && !(site.eq_ignore_ascii_case("same-origin") || site.eq_ignore_ascii_case("none"))
    {
        return Err(forbidden(
            format!("`Sec-Fetch-Site: {site}`: a {method} from another site's page is refused"),
            "Sec-Fetch-Site",
        ));
    }
    if let Some(origin) = one_header(headers, "origin")?
        && !host.is_some_and(|h| same_origin(origin, h))
    {
        return Err(forbidden(
            format!(
                "`Origin: {origin}` is not this server's (`Host: {}`): a {method} from another site's page is refused",
                host.unwrap_or("")
            ),
            "Origin",
        ));
    }
    if changes
        && let Some(ct) = one_header(headers, "content-type")?
        && !is_json(ct)
    {
        return Err(unsupported(ct));
    }
    Ok(())
}

/// For a request with a body: its `Content-Type` must be JSON (415 otherwise, and when there is
/// none).
pub fn require_json(headers: &HeaderMap) -> Result<(), Refused> {
    match one_header(headers, "content-type")? {
        Some(ct) if is_json(ct) => Ok(()),
        ct => Err(unsupported(ct.unwrap_or_default())),
    }
}

/// 415 for a body that is not declared JSON.
pub fn unsupported(content_type: &str) -> Refused {
    let what = if content_type.is_empty() {
        "no `Content-Type`".to_owned()
    } else {
        format!("`Content-Type: {content_type}`")
    };
    Refused::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
        format!("{what}: request bodies must be `Content-Type: application/json`"),
        "Content-Type",
    )
}

#[cfg(test)]
mod tests {
    use super::{Door, is_json, same_origin};

    const PLAIN: Door = Door { port: 8000, loopback: true, tls: false, guard_reads: false };

    #[test]
    fn loopback_names_with_the_listeners_port_only() {
        for ok in ["127.0.0.1:8000", "localhost:8000", "LOCALHOST:8000", "[::1]:8000", "127.0.0.2:8000"] {
            assert!(PLAIN.serves_host(ok), "{ok}");
        }
        for refused in [
            "evil.example:8000",
            "evil.example",
            "127.0.0.1",
            "localhost",
            "127.0.0.1:8001",
            "127.0.0.1:",
            "127.0.0.1:+8000",
            "127.0.0.1:80000",
            "localhost.:8000",
            "a.localhost:8000",
            "127.1:8000",
            "[::2]:8000",
            "[::1]8000",
            "[::1",
            "10.0.0.1:8000",
            "",
        ] {
            assert!(!PLAIN.serves_host(refused), "{refused}");
        }
        // No port is the scheme's default: served only by a listener on it.
        assert!(Door { port: 80, ..PLAIN }.serves_host("localhost"));
        assert!(Door { port: 443, tls: true, ..PLAIN }.serves_host("[::1]"));
        assert!(!Door { port: 443, ..PLAIN }.serves_host("localhost"));
    }

    #[test]
    fn origins_match_the_host_they_were_sent_to() {
        assert!(same_origin("http://127.0.0.1:8000", "127.0.0.1:8000"));
        assert!(same_origin("https://Faramesh.example", "faramesh.example"));
        for (origin, host) in [
            ("null", "127.0.0.1:8000"),
            ("http://evil.example", "127.0.0.1:8000"),
            ("http://localhost:8000", "127.0.0.1:8000"),
            ("http://127.0.0.1:8000/", "127.0.0.1:8000"),
            ("file://", "127.0.0.1:8000"),
            ("ftp://127.0.0.1:8000", "127.0.0.1:8000"),
            ("http://x@127.0.0.1:8000", "127.0.0.1:8000"),
        ] {
            assert!(!same_origin(origin, host), "{origin} {host}");
        }
    }

    #[test]
    fn json_is_application_json_with_any_parameters() {
        assert!(is_json("application/json"));
        assert!(is_json("Application/JSON; charset=utf-8"));
        for no in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "application/jsonp",
            "",
        ] {
            assert!(!is_json(no), "{no}");
        }
    }
}
