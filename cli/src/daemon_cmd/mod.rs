//! `faramesh serve`, `dev`, `apply`, `status`, `stop`: running the daemon and talking to it.
//! `config` reads `serve`'s options into the daemon's configuration, `start` runs it in the
//! foreground, `control` talks to a running one.

mod config;
mod control;
mod start;

pub use config::ServeArgs;
pub(crate) use control::installed_unit;
pub use control::{ApplyArgs, apply, dashboard, status, stop};
pub use start::{DevArgs, dev, serve};
