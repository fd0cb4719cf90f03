//! A socket peer's identity as the kernel gives it when the connection is accepted: SO_PEERCRED
//! (uid, gid, pid) and SO_PEERGROUPS (supplementary groups, as they were at `connect`). Both are
//! read once per connection; nothing is ever re-read through `/proc/<pid>` (a pid outlives its
//! process and can be recycled by anyone).

use std::os::fd::AsRawFd;

use faramesh_daemon::service::PeerCred;
use faramesh_daemon::service::{Identity, Peer};

/// Most supplementary groups read (Linux's NGROUPS_MAX is 65,536).
const MAX_GROUPS: usize = 65_536;

/// The identity of the peer on `stream`: [`Identity::Unknown`] when its credentials cannot be
/// read. Groups that cannot be read are none (a peer then passes only uid and primary gid checks).
pub fn identity(stream: &tokio::net::UnixStream) -> Identity {
    match stream.peer_cred() {
        Ok(c) => {
            let cred = PeerCred { uid: c.uid(), gid: c.gid(), pid: c.pid().unwrap_or(0) };
            let groups = peer_groups(stream.as_raw_fd()).unwrap_or_else(|e| {
                tracing::warn!(error = %e, uid = cred.uid, "cannot read the peer's supplementary groups");
                Vec::new()
            });
            Identity::Peer(Peer { cred, groups: groups.into() })
        }
        Err(_) => Identity::Unknown,
    }
}

/// SO_PEERGROUPS of a connected Unix socket.
#[allow(unsafe_code)]
fn peer_groups(fd: std::os::fd::RawFd) -> std::io::Result<Vec<u32>> {
    let mut groups: Vec<libc::gid_t> = vec![0; 64];
    loop {
        let mut len = libc::socklen_t::try_from(groups.len() * std::mem::size_of::<libc::gid_t>())
            .map_err(|_| std::io::Error::other("too many groups"))?;
        // SAFETY: `groups` is a live, writable buffer of exactly `len` bytes, and `len` points to
        // a socklen_t the call updates; the kernel writes at most `len` bytes.
        let rc = unsafe {
            libc::getsockopt(fd, libc::SOL_SOCKET, libc::SO_PEERGROUPS, groups.as_mut_ptr().cast(), &mut len)
        };
        let n = len as usize / std::mem::size_of::<libc::gid_t>();
        if rc == 0 {
            groups.truncate(n.min(groups.len()));
            return Ok(groups);
        }
        let err = std::io::Error::last_os_error();
        // ERANGE: the buffer was too small; `len` says how big it must be.
        if err.raw_os_error() == Some(libc::ERANGE) && n > groups.len() && n <= MAX_GROUPS {
            groups.resize(n, 0);
            continue;
        }
        return Err(err);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn groups_come_from_the_connection() {
        let (a, _b) = tokio::net::UnixStream::pair().unwrap();
        let Identity::Peer(peer) = identity(&a) else { panic!("no credentials") };
        assert_eq!(peer.uid, nix::unistd::getuid().as_raw());
        // The kernel's list for this process (what SO_PEERGROUPS reports for a socketpair).
        let mut ours: Vec<u32> = nix::unistd::getgroups().unwrap().into_iter().map(|g| g.as_raw()).collect();
        let mut got = peer.groups.to_vec();
        ours.sort_unstable();
        got.sort_unstable();
        assert_eq!(got, ours);
    }
}
