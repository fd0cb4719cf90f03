//! systemd integration, written against the documented protocols (sd_notify(3),
//! sd_listen_fds(3)): readiness and status notifications to `NOTIFY_SOCKET` (a path or an
//! abstract `@name`), the watchdog, and sockets passed by socket activation (`LISTEN_FDS`).
//! Each is a no-op when systemd did not ask for it.

use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixDatagram;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Sends `state` (newline-separated `KEY=value` assignments) to the service manager. Returns
/// whether it was sent (false without `NOTIFY_SOCKET`).
pub fn notify(state: &str) -> bool {
    let Some(target) = std::env::var_os("NOTIFY_SOCKET") else { return false };
    let Ok(sock) = UnixDatagram::unbound() else { return false };
    let bytes = target.as_encoded_bytes();
    let sent = if let Some(name) = bytes.strip_prefix(b"@") {
        // An abstract socket (Linux): `@name` stands for a leading NUL byte.
        use std::os::linux::net::SocketAddrExt;
        std::os::unix::net::SocketAddr::from_abstract_name(name)
            .and_then(|addr| sock.send_to_addr(state.as_bytes(), &addr))
    } else {
        sock.send_to(state.as_bytes(), std::path::Path::new(&target))
    };
    sent.is_ok()
}

/// `CLOCK_MONOTONIC` in microseconds (what `RELOADING=1` pairs with as `MONOTONIC_USEC`).
pub fn monotonic_usec() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map(|t| {
            let secs = u64::try_from(t.tv_sec()).unwrap_or(0);
            let nanos = u64::try_from(t.tv_nsec()).unwrap_or(0);
            secs.saturating_mul(1_000_000).saturating_add(nanos / 1000)
        })
        .unwrap_or(0)
}

/// Tells systemd a reload starts (`RELOADING=1` with `MONOTONIC_USEC`).
pub fn reloading() {
    notify(&format!("RELOADING=1\nMONOTONIC_USEC={}", monotonic_usec()));
}

/// The watchdog interval systemd asked for (`WATCHDOG_USEC`, for this process per
/// `WATCHDOG_PID` when set).
pub fn watchdog_interval() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    if let Ok(pid) = std::env::var("WATCHDOG_PID")
        && pid.parse::<u32>().ok() != Some(std::process::id())
    {
        return None;
    }
    (usec > 0).then(|| Duration::from_micros(usec))
}

/// Heartbeats the watchdog checks: the socket accept loop's last turn.
#[derive(Debug, Default)]
pub struct Heartbeat {
    /// `monotonic_usec` of the accept loop's last turn.
    accept_loop: AtomicU64,
}

impl Heartbeat {
    /// The accept loop is alive now.
    pub fn beat(&self) {
        self.accept_loop.store(monotonic_usec(), Ordering::Relaxed);
    }

    fn accept_loop_age(&self) -> Duration {
        Duration::from_micros(monotonic_usec().saturating_sub(self.accept_loop.load(Ordering::Relaxed)))
    }
}

/// Pings `WATCHDOG=1` every half interval while the accept loop turns and the log writer is
/// not stuck in one commit; stops pinging (so systemd restarts the daemon) when either hangs.
pub fn spawn_watchdog(
    interval: Duration,
    heartbeat: Arc<Heartbeat>,
    writer_busy_for: Arc<dyn Fn() -> Option<Duration> + Send + Sync>,
) -> tokio::task::JoinHandle<()> {
    let every = interval / 2;
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        let mut quiet = false;
        loop {
            tick.tick().await;
            let accept_age = heartbeat.accept_loop_age();
            let writer_busy = writer_busy_for();
            let writer_stuck = writer_busy.is_some_and(|d| d >= every);
            if healthy(accept_age, writer_busy, every) {
                notify("WATCHDOG=1");
                if quiet {
                    tracing::info!("watchdog: healthy again, pinging");
                    quiet = false;
                }
            } else if !quiet {
                tracing::error!(
                    accept_loop_age_ms = accept_age.as_millis() as u64,
                    writer_stuck,
                    "watchdog: not pinging, the daemon is stuck"
                );
                quiet = true;
            }
        }
    })
}

/// Whether the watchdog pings: the accept loop turned within `every`, and the log writer is
/// idle or has been on its current commit for less than `every` (a hung disk stops the pings).
fn healthy(accept_loop_age: Duration, writer_busy_for: Option<Duration>, every: Duration) -> bool {
    accept_loop_age < every && writer_busy_for.is_none_or(|d| d < every)
}

/// A socket passed by socket activation.
#[derive(Debug)]
pub enum Activated {
    /// A listening Unix stream socket (the agents' socket).
    Unix(std::os::unix::net::UnixListener),
    /// A listening TCP socket (the HTTP listener).
    Tcp(std::net::TcpListener),
}

/// The listening sockets systemd passed (`LISTEN_PID` = this process, `LISTEN_FDS` from fd 3,
/// `LISTEN_FDNAMES`), by kind. The daemon starts no children, so the variables are left as
/// they are (they name this process only).
// `unsafe` (as in the export thread, service/fleet/send.rs): taking ownership of inherited descriptors has no safe
// std API. Each descriptor is taken once, only when LISTEN_PID names this process.
#[allow(unsafe_code)]
pub fn listen_fds() -> Vec<(Activated, String)> {
    static TAKEN: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if TAKEN.swap(true, Ordering::SeqCst) {
        return Vec::new();
    }
    let for_us =
        std::env::var("LISTEN_PID").ok().and_then(|p| p.parse::<u32>().ok()) == Some(std::process::id());
    let n: RawFd = std::env::var("LISTEN_FDS").ok().and_then(|n| n.parse().ok()).unwrap_or(0);
    let names: Vec<String> = std::env::var("LISTEN_FDNAMES")
        .map(|s| s.split(':').map(str::to_owned).collect())
        .unwrap_or_default();
    if !for_us || n <= 0 {
        return Vec::new();
    }
    let mut out = Vec::new();
    for i in 0..n {
        let fd = 3 + i;
        let name = names.get(usize::try_from(i).unwrap_or(0)).cloned().unwrap_or_default();
        use nix::sys::socket::SockaddrLike;
        let family = nix::sys::socket::getsockname::<nix::sys::socket::SockaddrStorage>(fd)
            .ok()
            .and_then(|a| a.family());
        // SAFETY: per sd_listen_fds(3), fds 3..3+LISTEN_FDS are open listening sockets passed
        // to this process (LISTEN_PID checked above); nothing else in the daemon owns them,
        // and this function is called once, at start.
        let owned = unsafe { OwnedFd::from_raw_fd(fd) };
        match family {
            Some(nix::sys::socket::AddressFamily::Unix) => {
                out.push((Activated::Unix(std::os::unix::net::UnixListener::from(owned)), name));
            }
            Some(nix::sys::socket::AddressFamily::Inet | nix::sys::socket::AddressFamily::Inet6) => {
                out.push((Activated::Tcp(std::net::TcpListener::from(owned)), name));
            }
            _ => tracing::warn!(fd, name, "ignoring a passed descriptor that is not a Unix or TCP socket"),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_watchdog_pings_only_while_the_accept_loop_turns_and_no_commit_hangs() {
        let every = Duration::from_millis(200);
        let ms = Duration::from_millis;
        assert!(healthy(ms(10), None, every));
        assert!(healthy(ms(10), Some(ms(150)), every), "a commit in progress is fine");
        assert!(!healthy(ms(10), Some(ms(200)), every), "a commit as long as the interval is stuck");
        assert!(!healthy(ms(250), None, every), "a stalled accept loop");
    }
}
