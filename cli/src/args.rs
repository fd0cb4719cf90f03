//! What several commands share: the socket and state-dir arguments, and the exit codes.

use std::path::PathBuf;

use anyhow::{Result, anyhow};
use clap::Args;

use crate::client;

/// Exit code of a command that reports a mismatch: `policy test` (a case decided otherwise),
/// `policy diff` and `replay` (a decision would change).
pub const EXIT_MISMATCH: u8 = 2;
/// Exit code of every command for a policy that does not compile.
pub const EXIT_INVALID_POLICY: u8 = 3;

#[derive(Args, Debug, Clone)]
pub struct SocketArg {
    /// The daemon's socket (default `~/.faramesh/runtime/faramesh.sock`).
    #[arg(long, env = "FARAMESH_SOCKET")]
    pub socket: Option<PathBuf>,
}

impl SocketArg {
    pub fn path(&self) -> PathBuf {
        self.socket.clone().filter(|p| !p.as_os_str().is_empty()).unwrap_or_else(client::default_socket)
    }
}

/// The state directory: `--state-dir`, `FARAMESH_STATE_DIR`, or `~/.faramesh/state`.
#[derive(Args, Debug, Clone)]
pub struct StateDir {
    /// The daemon's state directory (holds `log.redb` and `log.key`).
    #[arg(long, env = "FARAMESH_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
}

impl StateDir {
    /// The directory, defaulting to `~/.faramesh/state`.
    pub fn path(&self) -> Result<PathBuf> {
        match &self.state_dir {
            Some(p) => Ok(p.clone()),
            None => {
                let home =
                    std::env::var_os("HOME").ok_or_else(|| anyhow!("HOME is not set: pass --state-dir"))?;
                Ok(PathBuf::from(home).join(".faramesh/state"))
            }
        }
    }
}
