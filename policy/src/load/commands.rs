//! The `commands:` section and a rule's `command:` condition (program, flags, arguments,
//! files written).

use super::{Loader, PolicyError};
use crate::command::{CommandCond, CommandMatch, Flag};
use crate::model::{Commands, NamePat, Unresolved};
use crate::yaml::{Kind, Node, Pos};

impl Loader<'_> {
    /// The `commands:` section.
    pub(super) fn commands(&self, node: &Node) -> Result<Commands, PolicyError> {
        let entries = self.map(node, "`commands`")?;
        self.check_keys(entries, COMMANDS_KEYS, "commands")?;
        let mut commands = Commands::default();
        for (key, value) in entries {
            if key.name == "unresolved" {
                let text = self.string(value, "`unresolved`")?;
                commands.unresolved = match text.as_str() {
                    "defer" => Unresolved::Defer,
                    "deny" => Unresolved::Deny,
                    _ => {
                        return Err(self.err(
                            value.pos,
                            format!("unknown `unresolved` `{text}`: expected `defer` or `deny`"),
                        ));
                    }
                };
            }
        }
        Ok(commands)
    }

    /// `command:`: one matcher (a mapping) or a list of them (any).
    pub(super) fn command(&self, node: &Node) -> Result<CommandCond, PolicyError> {
        let items: Vec<&Node> = match &node.kind {
            Kind::Seq(items) if !items.is_empty() => items.iter().collect(),
            Kind::Map(_) => vec![node],
            other => {
                return Err(self.err(
                    node.pos,
                    format!(
                        "`command` must be a mapping (`{{ program: rm, flags: [\"-r|-R\"] }}`) or a non-empty list of them, found {}",
                        other.describe()
                    ),
                ));
            }
        };
        let mut matchers = Vec::with_capacity(items.len());
        for item in items {
            let entries = self.map(item, "a `command` matcher")?;
            if entries.is_empty() {
                return Err(
                    self.err(item.pos, "a `command` matcher needs `program`, `flags`, `args` or `writes`")
                );
            }
            self.check_keys(entries, COMMAND_KEYS, "command")?;
            let mut m = CommandMatch {
                programs: Vec::new(),
                flags: Vec::new(),
                args: Vec::new(),
                writes: Vec::new(),
            };
            for (key, value) in entries {
                let names = |what: &str| -> Result<Vec<(String, Pos)>, PolicyError> {
                    match &value.kind {
                        Kind::Str(s) => Ok(vec![(s.clone(), value.pos)]),
                        Kind::Seq(list) if !list.is_empty() => {
                            list.iter().map(|n| Ok((self.string(n, what)?, n.pos))).collect()
                        }
                        other => Err(self.err(
                            value.pos,
                            format!(
                                "{what} must be a string or a non-empty list of strings, found {}",
                                other.describe()
                            ),
                        )),
                    }
                };
                match key.name.as_str() {
                    "program" => {
                        for (name, pos) in names("`program`")? {
                            if name.is_empty()
                                || name.contains('/')
                                || !name.bytes().all(|b| b.is_ascii_graphic())
                            {
                                return Err(self.err(
                                    pos,
                                    format!("`program` `{name}` must be a program's name (its basename, printable ASCII; globs allowed)"),
                                ));
                            }
                            m.programs.push(NamePat::new(&name));
                        }
                    }
                    "flags" => {
                        for (group, pos) in names("`flags`")? {
                            let alternatives: Option<Vec<Flag>> = group.split('|').map(Flag::parse).collect();
                            match alternatives {
                                Some(a) if !a.is_empty() => m.flags.push(a),
                                _ => {
                                    return Err(self.err(
                                        pos,
                                        format!("`flags` entry `{group}` must be flags like `-r`, `--force` or alternatives `-r|-R|--recursive`"),
                                    ));
                                }
                            }
                        }
                    }
                    "writes" => {
                        for (path, pos) in names("`writes`")? {
                            if path.is_empty() {
                                return Err(self.err(
                                    pos,
                                    "`writes` entries must be paths or globs (`/tmp/*`, `*.log`), not empty",
                                ));
                            }
                            m.writes.push(NamePat::new(&path));
                        }
                    }
                    _ => {
                        for (arg, _) in names("`args`")? {
                            m.args.push(NamePat::new(&arg));
                        }
                    }
                }
            }
            matchers.push(m);
        }
        Ok(CommandCond { matchers, all: false })
    }
}

const COMMANDS_KEYS: &[&str] = &["unresolved"];

const COMMAND_KEYS: &[&str] = &["program", "flags", "args", "writes"];
