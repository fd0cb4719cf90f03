//! The command reader behind the `command:` match key. A call's command (`params.cmd` or
//! `params.command`: a shell line or an argv array) is read the way bash runs it, and the
//! answer is either **resolved**, with every program the line runs as argv (seen through every
//! wrapper the reader knows: `sudo`, `env`, `nice`, `xargs`, `sh -c`, …), or **unresolved**,
//! naming the part the reader could not read (a variable in command position, `eval`, an inline
//! interpreter such as `python -c`, a shell reading its script from standard input, an option of
//! a wrapper the reader does not know, …). What cannot be read strictly at all (an unbalanced
//! quote, a control character, a program name outside ASCII) is an error. See docs/policy.md.
//!
//! The reader never runs anything: it parses. `policy/tests/shell_differential.rs` checks it
//! against bash itself on generated lines.

use serde_json::Value;

use super::model::NamePat;

mod expand;
mod programs;
mod shell;

/// Deepest nesting of scripts (`sh -c`, backquotes) and wrappers read through.
const MAX_DEPTH: usize = 8;
/// Most simple commands read from one call.
const MAX_COMMANDS: usize = 256;

/// One simple command as run: the program's basename, its flags and its other arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimpleCommand {
    /// The program's basename (`/bin/rm` → `rm`).
    pub program: String,
    /// Short flags, each letter on its own (`-Rf` → `R`, `f`), case-exact.
    pub short: Vec<char>,
    /// Long flags without the dashes and any `=value` (`--force` → `force`).
    pub long: Vec<String>,
    /// The other known arguments, in order (everything after `--` among them).
    pub args: Vec<String>,
    /// The argv bash passes, `argv[0]` included (`exec -a NAME` sets it); a word whose value
    /// is only known when the command runs appears as written.
    pub argv: Vec<String>,
    /// The words of `argv` whose value is only known when the command runs (a variable, a
    /// glob, a substitution, the arguments `xargs` reads): each may be any argument. Empty:
    /// `argv` is exact.
    pub unknown: Vec<Unknown>,
    /// The files the command writes through an output redirection (`>`, `>>`, `>|`, `&>`,
    /// `&>>`, `<>`, with any descriptor), its own or that of a compound command around it.
    /// `/dev/null`, `/dev/stdout`, `/dev/stderr`, descriptor duplication (`2>&1`, `>&-`) and
    /// process substitutions are not files written.
    pub writes: Vec<WrittenFile>,
}

/// A file a command writes through a redirection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrittenFile {
    /// The path (as written when it is not known).
    pub path: String,
    /// Whether the path is known; otherwise only known when the command runs (`> "$f"`,
    /// `> ~/x`) and it may be any file.
    pub known: bool,
}

/// A word of a command whose value the reader cannot know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unknown {
    /// The word as written (`"$f"`, `*.log`).
    pub text: String,
    /// Whether it may be a flag (`-r`): it stands before `--` and may start with `-`.
    pub may_be_flag: bool,
}

/// What the reader made of a call's command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reading {
    /// The call has neither `params.cmd` nor `params.command`.
    NoCommand,
    /// Every program the command runs is known.
    Resolved(Vec<SimpleCommand>),
    /// Some part could not be read. `commands` holds what was read (deny rules still apply
    /// to it); `part` is the text the reader could not read and `why` says what it is.
    Unresolved {
        /// The part, as written (shortened when long).
        part: String,
        /// What it is, for a person.
        why: String,
        /// The commands read besides it.
        commands: Vec<SimpleCommand>,
    },
    /// The command cannot be read strictly at all (an unbalanced quote, a control character,
    /// a program name outside ASCII, nesting past the limits): the message names the field.
    Unreadable(String),
}

impl Reading {
    /// Whether every program the command runs is known (or there is no command at all): the
    /// only readings an allow rule may permit.
    pub fn permits_rules(&self) -> bool {
        matches!(self, Reading::NoCommand | Reading::Resolved(_))
    }

    /// Whether the call carries a command that was fully read.
    pub fn is_resolved(&self) -> bool {
        matches!(self, Reading::Resolved(_))
    }

    /// The commands read (all of them when resolved, those besides the unread part otherwise).
    pub fn commands(&self) -> &[SimpleCommand] {
        match self {
            Reading::Resolved(c) | Reading::Unresolved { commands: c, .. } => c,
            Reading::NoCommand | Reading::Unreadable(_) => &[],
        }
    }

    /// Why the command is not resolved, for a decision's reason (`None` when it is, or when
    /// there is none).
    pub fn unresolved_reason(&self) -> Option<String> {
        match self {
            Reading::Unresolved { part, why, .. } => Some(format!("`{part}`: {why}")),
            Reading::Unreadable(e) => Some(e.clone()),
            Reading::NoCommand | Reading::Resolved(_) => None,
        }
    }
}

/// Reads a call's command once: see [`read_params`].
pub fn read_call(call: &faramesh_proto::Call) -> Reading {
    read_params(&call.params)
}

/// Reads the command in `params`: `cmd` and `command` (both when both are present), a string
/// read as a bash line or an array of strings read as argv; `args` (an array of strings)
/// beside a string `command` are the last command's arguments.
pub fn read_params(params: &Value) -> Reading {
    let mut out = Out::default();
    let mut found = false;
    for key in ["cmd", "command"] {
        let Some(value) = params.get(key) else { continue };
        found = true;
        if let Err(e) = read_value(value, params.get("args"), &mut out) {
            return Reading::Unreadable(format!("`params.{key}`: {e}"));
        }
    }
    if !found {
        return Reading::NoCommand;
    }
    out.finish()
}

/// Reads one bash command line.
pub fn read_line(line: &str) -> Reading {
    let mut out = Out::default();
    match shell::read_script(&mut out, line, 0, shell::Dialect::Bash) {
        Ok(()) => out.finish(),
        Err(e) => Reading::Unreadable(e.into_message()),
    }
}

/// Why the reader refuses a command: the part it could not read strictly, in words. It becomes
/// [`Reading::Unreadable`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadError(String);

impl ReadError {
    /// The words.
    pub fn into_message(self) -> String {
        self.0
    }
}

impl From<String> for ReadError {
    fn from(why: String) -> ReadError {
        ReadError(why)
    }
}

impl From<&str> for ReadError {
    fn from(why: &str) -> ReadError {
        ReadError(why.to_owned())
    }
}

/// A refusal with these words.
pub(crate) fn refuse<T>(why: impl Into<ReadError>) -> Result<T, ReadError> {
    Err(why.into())
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Reads an argv (no shell involved).
pub fn read_argv(argv: &[String]) -> Reading {
    let mut out = Out::default();
    let run = || -> Result<(), ReadError> {
        for word in argv {
            check_controls(word)?;
        }
        Ok(())
    };
    if let Err(e) = run() {
        return Reading::Unreadable(e.into_message());
    }
    let fields = argv.iter().map(|w| expand::Field::Known(w.clone())).collect();
    match programs::resolve(&mut out, fields, 0) {
        Ok(()) => out.finish(),
        Err(e) => Reading::Unreadable(e.into_message()),
    }
}

fn read_value(value: &Value, extra: Option<&Value>, out: &mut Out) -> Result<(), ReadError> {
    let extra_words = match extra {
        Some(Value::Array(items)) => strings(items)?,
        _ => Vec::new(),
    };
    match value {
        Value::String(text) => {
            // `{"command": "rm", "args": ["-rf", "/"]}`: the arguments belong to the program,
            // each one word as given.
            let mut line = text.clone();
            for word in &extra_words {
                line.push(' ');
                line.push_str(&shell::quote(word));
            }
            shell::read_script(out, &line, 0, shell::Dialect::Bash)
        }
        Value::Array(items) => {
            let mut words = strings(items)?;
            words.extend(extra_words);
            let fields = words.into_iter().map(expand::Field::Known).collect();
            programs::resolve(out, fields, 0)
        }
        _ => Err("must be a string (a shell command) or an array of strings (argv)".into()),
    }
}

fn strings(items: &[Value]) -> Result<Vec<String>, ReadError> {
    items
        .iter()
        .map(|v| match v {
            Value::String(s) => {
                check_controls(s)?;
                Ok(s.clone())
            }
            _ => refuse("an argv array must hold only strings"),
        })
        .collect()
}

fn check_controls(s: &str) -> Result<(), ReadError> {
    match s.chars().find(|c| c.is_control()) {
        Some(c) => refuse(format!("control character U+{:04X} in a command", u32::from(c))),
        None => Ok(()),
    }
}

/// What a reading collects: the commands, and the first part it could not read.
#[derive(Debug, Default)]
struct Out {
    cmds: Vec<SimpleCommand>,
    refused: Option<(String, String)>,
    /// How deep the reading is nested right now (grammar, expansions, scripts within scripts).
    nest: usize,
}

impl Out {
    /// Records a part the reader cannot read (the first one is kept).
    fn refuse(&mut self, part: &str, why: impl Into<String>) {
        if self.refused.is_none() {
            self.refused = Some((shorten(part), why.into()));
        }
    }

    /// Records the files written by redirections that apply to the commands read since
    /// `from`; with none (`> f` alone, `(( 1 )) > f`), to a command without a program.
    fn add_writes(&mut self, from: usize, writes: &[WrittenFile]) -> Result<(), ReadError> {
        if writes.is_empty() {
            return Ok(());
        }
        if from >= self.cmds.len() {
            let mut cmd = SimpleCommand::new("", &[])?;
            cmd.writes = writes.to_vec();
            self.push(cmd)?;
            return Ok(());
        }
        for cmd in &mut self.cmds[from..] {
            cmd.writes.extend(writes.iter().cloned());
        }
        Ok(())
    }

    /// Adds a command; its index.
    fn push(&mut self, cmd: SimpleCommand) -> Result<usize, ReadError> {
        self.cmds.push(cmd);
        if self.cmds.len() > MAX_COMMANDS {
            return refuse(format!("more than {MAX_COMMANDS} commands"));
        }
        Ok(self.cmds.len() - 1)
    }

    fn finish(self) -> Reading {
        match self.refused {
            None => Reading::Resolved(self.cmds),
            Some((part, why)) => Reading::Unresolved { part, why, commands: self.cmds },
        }
    }
}

/// At most 80 characters of `text`, on one line.
fn shorten(text: &str) -> String {
    let one_line: String = text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    let trimmed = one_line.trim();
    if trimmed.chars().count() <= 80 {
        trimmed.to_owned()
    } else {
        let mut s: String = trimmed.chars().take(79).collect();
        s.push('…');
        s
    }
}

impl SimpleCommand {
    /// Builds the command bash runs for `program` (as looked up) with `argv` (`argv[0]`
    /// included): flags are gathered from the words before `--`.
    fn new(program: &str, argv: &[expand::Field]) -> Result<SimpleCommand, ReadError> {
        let mut cmd = SimpleCommand {
            program: program.rsplit('/').next().unwrap_or(program).to_owned(),
            short: Vec::new(),
            long: Vec::new(),
            args: Vec::new(),
            argv: argv.iter().map(|f| f.text().to_owned()).collect(),
            unknown: Vec::new(),
            writes: Vec::new(),
        };
        let mut options_over = false;
        for field in argv.iter().skip(1) {
            let arg = match field {
                expand::Field::Known(v) | expand::Field::Home(v) => v,
                expand::Field::Unknown { text, may_be_flag, .. } => {
                    cmd.unknown
                        .push(Unknown { text: text.clone(), may_be_flag: *may_be_flag && !options_over });
                    continue;
                }
            };
            if options_over || arg == "-" || !arg.starts_with('-') {
                cmd.args.push(arg.clone());
            } else if arg == "--" {
                options_over = true;
            } else if !arg.is_ascii() {
                return refuse(format!(
                    "the flag `{arg}` has characters outside ASCII (look-alikes are refused)"
                ));
            } else if let Some(long) = arg.strip_prefix("--") {
                cmd.long.push(long.split('=').next().unwrap_or(long).to_owned());
            } else {
                cmd.short.extend(arg.chars().skip(1));
            }
        }
        Ok(cmd)
    }
}

/// A flag a `command:` matcher asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Flag {
    /// `-r`
    Short(char),
    /// `--recursive`
    Long(String),
}

impl Flag {
    /// Reads `-x` or `--long`.
    pub fn parse(text: &str) -> Option<Flag> {
        if let Some(long) = text.strip_prefix("--") {
            let ok =
                !long.is_empty() && long.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            return ok.then(|| Flag::Long(long.to_owned()));
        }
        let mut chars = text.strip_prefix('-')?.chars();
        match (chars.next(), chars.next()) {
            (Some(c), None) if c.is_ascii_graphic() && c != '-' => Some(Flag::Short(c)),
            _ => None,
        }
    }

    fn as_text(&self) -> String {
        match self {
            Flag::Short(c) => format!("-{c}"),
            Flag::Long(l) => format!("--{l}"),
        }
    }
}

/// Whether a matcher holds: yes, no, or maybe (only a word the reader cannot know would
/// decide: the word is given).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Match {
    /// It holds.
    Yes,
    /// It does not.
    No,
    /// It holds for some value of this word, which is only known when the command runs.
    Maybe(String),
}

impl Match {
    fn and(self, other: Match) -> Match {
        match (self, other) {
            (Match::No, _) | (_, Match::No) => Match::No,
            (Match::Maybe(w), _) | (_, Match::Maybe(w)) => Match::Maybe(w),
            _ => Match::Yes,
        }
    }

    fn or(self, other: Match) -> Match {
        match (self, other) {
            (Match::Yes, _) | (_, Match::Yes) => Match::Yes,
            (Match::Maybe(w), _) | (_, Match::Maybe(w)) => Match::Maybe(w),
            _ => Match::No,
        }
    }
}

/// One matcher of a `command:` condition: every part given must hold for one simple command.
#[derive(Debug, Clone)]
pub struct CommandMatch {
    /// The program's basename is one of these (names or globs); empty: any program.
    pub programs: Vec<NamePat>,
    /// Each group: at least one of its flags is present.
    pub flags: Vec<Vec<Flag>>,
    /// Each pattern matches at least one argument.
    pub args: Vec<NamePat>,
    /// Files written by redirection (paths or globs): in an allow rule every file the command
    /// writes matches one (and without them it must write none); elsewhere one file does.
    pub writes: Vec<NamePat>,
}

/// Whether `given` is an abbreviation of the long flag `full` (`recur` of `recursive`): GNU
/// programs take any unambiguous one.
fn abbreviates(given: &str, full: &str) -> bool {
    !given.is_empty() && given.len() < full.len() && full.starts_with(given)
}

impl CommandMatch {
    /// Whether this simple command matches: a word the reader cannot know may be any flag
    /// (when it may start with `-`) and any argument. `all`: the matcher is an allow rule's,
    /// which holds only for exact spellings of its flags and for files written that it lists.
    pub fn matches(&self, cmd: &SimpleCommand, all: bool) -> Match {
        if !(self.programs.is_empty() || self.programs.iter().any(|p| p.matches(&cmd.program))) {
            return Match::No;
        }
        let mut result = self.writes_match(cmd, all);
        if result == Match::No {
            return Match::No;
        }
        for group in &self.flags {
            // An abbreviated long flag is the flag in a rule that denies or asks (the program
            // either reads it so or refuses it), never in one that allows.
            let present = group.iter().any(|f| match f {
                Flag::Short(c) => cmd.short.contains(c),
                Flag::Long(l) => cmd.long.iter().any(|x| x == l || (!all && abbreviates(x, l))),
            });
            let part = if present {
                Match::Yes
            } else {
                match cmd.unknown.iter().find(|u| u.may_be_flag) {
                    Some(u) => Match::Maybe(u.text.clone()),
                    None => Match::No,
                }
            };
            result = result.and(part);
        }
        for pat in &self.args {
            let part = if cmd.args.iter().any(|a| pat.matches(a)) {
                Match::Yes
            } else {
                match cmd.unknown.first() {
                    Some(u) => Match::Maybe(u.text.clone()),
                    None => Match::No,
                }
            };
            result = result.and(part);
        }
        result
    }

    /// The `writes` part: in an allow rule (`all`) every file written must be listed (none
    /// may be written when the matcher lists none); elsewhere, when files are listed, one
    /// written file must be one of them.
    fn writes_match(&self, cmd: &SimpleCommand, all: bool) -> Match {
        let listed = |w: &WrittenFile| {
            let path = super::eval::lexical_path(&w.path);
            self.writes.iter().any(|p| p.matches(&path))
        };
        if all {
            let mut result = Match::Yes;
            for w in &cmd.writes {
                if !w.known {
                    // Any file: only a matcher that lists every path allows it for sure.
                    if self.writes.is_empty() {
                        return Match::No;
                    }
                    if !self.writes.contains(&NamePat::Any) {
                        result = result.and(Match::Maybe(w.path.clone()));
                    }
                } else if !listed(w) {
                    return Match::No;
                }
            }
            return result;
        }
        if self.writes.is_empty() {
            return Match::Yes;
        }
        if cmd.writes.iter().any(|w| w.known && listed(w)) {
            return Match::Yes;
        }
        match cmd.writes.iter().find(|w| !w.known) {
            Some(w) => Match::Maybe(w.path.clone()),
            None => Match::No,
        }
    }

    /// As written (normalized), for the policy hash and `explain`. `writes` appears only when
    /// given, so a policy without it keeps its hash.
    pub fn to_json(&self) -> Value {
        let mut v = serde_json::json!({
            "program": self.programs.iter().map(NamePat::as_str).collect::<Vec<_>>(),
            "flags": self.flags.iter().map(|g| g.iter().map(Flag::as_text).collect::<Vec<_>>().join("|")).collect::<Vec<_>>(),
            "args": self.args.iter().map(NamePat::as_str).collect::<Vec<_>>(),
        });
        if !self.writes.is_empty()
            && let Some(map) = v.as_object_mut()
        {
            map.insert("writes".into(), self.writes.iter().map(NamePat::as_str).collect::<Vec<_>>().into());
        }
        v
    }
}

/// The `command:` condition: any of its matchers. In an `allow` rule it holds only when
/// *every* simple command of the call matches (`ls; rm -rf /` is not `ls`); elsewhere (deny,
/// approval, risk) when *any* does.
#[derive(Debug, Clone)]
pub struct CommandCond {
    /// The matchers (any).
    pub matchers: Vec<CommandMatch>,
    /// Every simple command must match (allow rules).
    pub all: bool,
}

impl CommandCond {
    /// Whether the condition holds for a call's command. In an allow rule, the part of a
    /// line the reader could not read may be any command: the condition holds at most for
    /// some value of it (never surely), also when nothing else was read (`$X` alone).
    pub fn check_reading(&self, reading: &Reading) -> Match {
        match reading {
            Reading::Unresolved { part, commands, .. } if self.all => {
                let unread = Match::Maybe(part.clone());
                if commands.is_empty() { unread } else { self.check(commands).and(unread) }
            }
            _ => self.check(reading.commands()),
        }
    }

    /// Whether the condition holds for these commands (none: it never holds).
    pub fn check(&self, cmds: &[SimpleCommand]) -> Match {
        if cmds.is_empty() {
            return Match::No;
        }
        let one =
            |c: &SimpleCommand| self.matchers.iter().fold(Match::No, |acc, m| acc.or(m.matches(c, self.all)));
        if self.all {
            cmds.iter().fold(Match::Yes, |acc, c| acc.and(one(c)))
        } else {
            cmds.iter().fold(Match::No, |acc, c| acc.or(one(c)))
        }
    }

    /// Whether the condition surely holds for these commands.
    pub fn holds(&self, cmds: &[SimpleCommand]) -> bool {
        self.check(cmds) == Match::Yes
    }
}

#[cfg(test)]
mod tests;
