//! `faramesh … | head -1`: output to a pipe nobody reads any more ends the command quietly, as
//! other Unix tools end (exit 141, as a shell reports a tool SIGPIPE ended), not with a panic or
//! an error. A hook run ends with its refusal's exit code instead: its host reads an exit 0 as
//! "allow".

use std::os::fd::AsFd;

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

/// The exit code of a command whose output pipe was closed: 128 + SIGPIPE.
const EXIT_BROKEN_PIPE: u8 = 141;

/// Whether stdout is a pipe (or socket) whose reading end is gone: the next write fails with
/// EPIPE.
fn stdout_reader_gone() -> bool {
    let stdout = std::io::stdout();
    let mut fds = [PollFd::new(stdout.as_fd(), PollFlags::POLLOUT)];
    poll(&mut fds, PollTimeout::ZERO).is_ok()
        && fds[0].revents().is_some_and(|r| r.contains(PollFlags::POLLERR))
}

/// The exit code for a command that stopped at a write to a closed stdout (`hook_run`: the hook
/// blocks the call).
fn exit_code(hook_run: bool) -> u8 {
    if hook_run { crate::hook_cmd::EXIT_BLOCK } else { EXIT_BROKEN_PIPE }
}

/// Ends the process quietly when `print!` or `println!` on the main thread fails because
/// stdout's reader is gone (they panic on a failed write); every other panic is reported as
/// before.
pub(crate) fn end_quietly_on_panic(hook_run: bool) {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let printing = info.payload_as_str().is_some_and(|m| m.starts_with("failed printing to stdout"));
        if printing && std::thread::current().name() == Some("main") && stdout_reader_gone() {
            std::process::exit(i32::from(exit_code(hook_run)));
        }
        report(info);
    }));
}

/// For a command that failed with `err`: its exit code when that failure was a write to a
/// closed stdout, else `None` (the error is reported).
pub(crate) fn quiet_exit(err: &anyhow::Error, hook_run: bool) -> Option<u8> {
    let broken = err.chain().any(|e| {
        e.downcast_ref::<std::io::Error>().is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    });
    (broken && stdout_reader_gone()).then(|| exit_code(hook_run))
}
