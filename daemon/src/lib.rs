//! `faramesh-daemon`: the library behind `faramesh serve`. The `policy` module decides calls
//! (pure, no IO).

pub mod log;
pub mod policy;
pub mod server;
