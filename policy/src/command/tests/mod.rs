//! The command reader's unit tests, by topic, and the helpers they share.

mod grammar;
mod matching;
mod unresolved;
mod wrappers;
mod writes;

use serde_json::{Value, json};

use super::{CommandCond, CommandMatch, Flag, Reading, SimpleCommand, read_line, read_params};
use crate::model::NamePat;

pub(super) fn read(v: Value) -> Reading {
    read_params(&json!({ "cmd": v }))
}

/// The commands of a line that must be resolved.
pub(super) fn resolved(line: &str) -> Vec<SimpleCommand> {
    match read_line(line) {
        Reading::Resolved(c) => c,
        other => panic!("{line:?} is not resolved: {other:?}"),
    }
}

pub(super) fn programs(line: &str) -> Vec<String> {
    resolved(line).into_iter().map(|c| c.program).collect()
}

/// The part a line leaves unread (panics when it is resolved).
pub(super) fn unresolved(line: &str) -> String {
    match read_line(line) {
        Reading::Unresolved { part, .. } => part,
        other => panic!("{line:?} is not unresolved: {other:?}"),
    }
}

pub(super) fn rm_rf() -> CommandCond {
    CommandCond {
        matchers: vec![CommandMatch {
            programs: vec![NamePat::new("rm")],
            flags: vec![
                vec![Flag::Short('r'), Flag::Short('R'), Flag::Long("recursive".into())],
                vec![Flag::Short('f'), Flag::Long("force".into())],
            ],
            args: vec![],
            writes: vec![],
        }],
        all: false,
    }
}

/// Whether the default policy's `shell-destructive` matcher surely holds.
pub(super) fn destructive(line: &str) -> bool {
    rm_rf().holds(read_line(line).commands())
}

/// A matcher for `program` (any when `"*"`) with the `writes` patterns given.
pub(super) fn program_writing(all: bool, program: &str, writes: &[&str]) -> CommandCond {
    CommandCond {
        matchers: vec![CommandMatch {
            programs: vec![NamePat::new(program)],
            flags: vec![],
            args: vec![],
            writes: writes.iter().map(|w| NamePat::new(w)).collect(),
        }],
        all,
    }
}

/// The files each command of a resolved line writes, as `program:path` (`?` before an
/// unknown path).
pub(super) fn writes(line: &str) -> Vec<String> {
    resolved(line)
        .iter()
        .flat_map(|c| {
            c.writes
                .iter()
                .map(move |w| format!("{}:{}{}", c.program, if w.known { "" } else { "?" }, w.path))
        })
        .collect()
}
