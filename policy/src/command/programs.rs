//! What a simple command runs: the program itself, and what it runs in turn when it is a
//! wrapper (`sudo`, `env`, `nice`, `xargs`, `find -exec`, …) or a shell given a script. Each
//! wrapper's options are written as data ([`Spec`]): an option it does not list makes the line
//! unresolved, since it might take the next word as its value (or be the command). Builtins
//! that run text (`eval`, `source`), inline interpreters (`python -c`, `perl -e`, an `awk`
//! program that calls `system`), shells reading their script from standard input and options
//! that run commands (`tar --to-command`, `ssh -o ProxyCommand=…`) are unresolved too.

use super::expand::Field;
use super::shell::{self, Dialect};
use super::{MAX_DEPTH, Out, SimpleCommand};

/// A wrapper's options.
#[derive(Default)]
struct Spec {
    /// Short options without a value.
    flags: &'static str,
    /// Short options whose value is the rest of the word or the next word.
    values: &'static str,
    /// Short options whose value, if any, is the rest of the word.
    optional: &'static str,
    /// Short options after which the wrapper runs no command (they may take a value).
    no_run: &'static str,
    /// Long options without a value.
    long_flags: &'static [&'static str],
    /// Long options with a value (`--name=V` or `--name V`).
    long_values: &'static [&'static str],
    /// Long options whose value, if any, follows `=`.
    long_optional: &'static [&'static str],
    /// Long options after which the wrapper runs no command.
    long_no_run: &'static [&'static str],
    /// Options may follow operands (GNU argument permutation).
    permute: bool,
}

/// A wrapper's arguments, read.
struct Parsed {
    /// Options given, each as written (`-u`, `--user`) with its value.
    opts: Vec<(String, Option<Field>)>,
    /// Operands, in order (for a non-permuting wrapper: the command and its arguments).
    operands: Vec<Field>,
    /// An option said no command runs.
    no_run: bool,
}

impl Parsed {
    fn has(&self, names: &[&str]) -> bool {
        self.opts.iter().any(|(n, _)| names.contains(&n.as_str()))
    }

    fn value(&self, names: &[&str]) -> Option<&Field> {
        self.opts.iter().rev().find(|(n, _)| names.contains(&n.as_str())).and_then(|(_, v)| v.as_ref())
    }
}

/// Why a wrapper's arguments cannot be read: the part, and what it is.
type Refusal = (String, String);

fn unknown_here(name: &str, f: &Field) -> Refusal {
    (
        f.text().to_owned(),
        format!(
            "a word only known when the command runs, where `{name}` expects an option, an operand or the command"
        ),
    )
}

/// Reads `args` by `spec` (`name` for messages).
fn parse(name: &str, spec: &Spec, args: &[Field]) -> Result<Parsed, Refusal> {
    let mut p = Parsed { opts: Vec::new(), operands: Vec::new(), no_run: false };
    let mut i = 0;
    while i < args.len() {
        let f = &args[i];
        let Some(s) = f.known() else {
            if !p.operands.is_empty() && !spec.permute {
                break;
            }
            return Err(unknown_here(name, f));
        };
        if s == "--" {
            i += 1;
            p.operands.extend(args[i..].iter().cloned());
            return Ok(p);
        }
        if !s.starts_with('-') || s == "-" {
            if spec.permute {
                p.operands.push(f.clone());
                i += 1;
                continue;
            }
            break;
        }
        i += 1;
        if let Some(long) = s.strip_prefix("--") {
            let (lname, inline) = match long.split_once('=') {
                Some((n, v)) => (n, Some(Field::Known(v.to_owned()))),
                None => (long, None),
            };
            let opt = format!("--{lname}");
            if spec.long_no_run.contains(&lname) || lname == "help" || lname == "version" {
                p.no_run = true;
                p.opts.push((opt, inline));
            } else if spec.long_flags.contains(&lname) && inline.is_none() {
                p.opts.push((opt, None));
            } else if spec.long_optional.contains(&lname) {
                p.opts.push((opt, inline));
            } else if spec.long_values.contains(&lname) {
                let value = match inline {
                    Some(v) => v,
                    None => {
                        let v = args
                            .get(i)
                            .ok_or_else(|| (s.to_owned(), format!("`{name} {s}` without its value")))?;
                        i += 1;
                        one_word(name, v)?
                    }
                };
                p.opts.push((opt, Some(value)));
            } else {
                return Err((s.to_owned(), format!("an option of `{name}` the reader does not know")));
            }
            continue;
        }
        let chars: Vec<char> = s.chars().skip(1).collect();
        let mut k = 0;
        while k < chars.len() {
            let c = chars[k];
            let opt = format!("-{c}");
            let rest: String = chars[k + 1..].iter().collect();
            if spec.no_run.contains(c) {
                p.no_run = true;
                p.opts.push((opt, None));
                break;
            } else if spec.flags.contains(c) {
                p.opts.push((opt, None));
            } else if spec.values.contains(c) {
                let value = if rest.is_empty() {
                    let v = args
                        .get(i)
                        .ok_or_else(|| (s.to_owned(), format!("`{name} -{c}` without its value")))?;
                    i += 1;
                    one_word(name, v)?
                } else {
                    Field::Known(rest)
                };
                p.opts.push((opt, Some(value)));
                break;
            } else if spec.optional.contains(c) {
                p.opts.push((opt, (!rest.is_empty()).then_some(Field::Known(rest))));
                break;
            } else {
                return Err((s.to_owned(), format!("an option of `{name}` the reader does not know")));
            }
            k += 1;
        }
    }
    p.operands.extend(args[i..].iter().cloned());
    Ok(p)
}

/// A value that must be exactly one word.
fn one_word(name: &str, f: &Field) -> Result<Field, Refusal> {
    match f {
        Field::Unknown { one: false, .. } => Err(unknown_here(name, f)),
        _ => Ok(f.clone()),
    }
}

/// Environment variables that make a shell or the dynamic loader run code of their choosing.
pub(super) fn dangerous_variable(name: &str) -> Option<&'static str> {
    const NAMES: &[&str] = &[
        "BASH_ENV",
        "ENV",
        "SHELLOPTS",
        "BASHOPTS",
        "PS4",
        "PROMPT_COMMAND",
        "BASH_LOADABLES_PATH",
        "LD_PRELOAD",
        "LD_AUDIT",
        "LD_LIBRARY_PATH",
        "NODE_OPTIONS",
        "PERL5OPT",
        "PERL5DB",
        "RUBYOPT",
        "PYTHONSTARTUP",
        "PYTHONINSPECT",
        "GIT_SSH_COMMAND",
        "GIT_EXTERNAL_DIFF",
        "GIT_EXEC_PATH",
        "GIT_PAGER",
        "PAGER",
        "EDITOR",
        "VISUAL",
    ];
    (NAMES.contains(&name) || name.starts_with("BASH_FUNC_"))
        .then_some("an environment variable that makes a shell or program run other code")
}

/// Resolves a simple command read by bash.
pub(super) fn resolve(out: &mut Out, fields: Vec<Field>, depth: usize) -> Result<(), String> {
    resolve_in(out, fields, depth, Dialect::Bash)
}

/// Resolves a simple command (its expanded words) read by a shell of `dialect`.
pub(super) fn resolve_in(
    out: &mut Out,
    fields: Vec<Field>,
    depth: usize,
    dialect: Dialect,
) -> Result<(), String> {
    Resolver { out, dialect }.run(fields, None, depth)
}

struct Resolver<'o> {
    out: &'o mut Out,
    dialect: Dialect,
}

const SHELLS: &[&str] = &[
    "sh", "bash", "dash", "ash", "ksh", "ksh93", "mksh", "lksh", "pdksh", "oksh", "posh", "yash", "rbash",
    "zsh",
];
/// Shells whose grammar this reader does not read: a script for them is unresolved.
const OTHER_SHELLS: &[&str] = &[
    "fish",
    "csh",
    "tcsh",
    "pwsh",
    "powershell",
    "nu",
    "elvish",
    "xonsh",
    "rc",
    "es",
    "ion",
    "oil",
    "osh",
    "ysh",
];
const STDIN_PATHS: &[&str] = &["-", "/dev/stdin", "/dev/fd/0", "/proc/self/fd/0"];

impl Resolver<'_> {
    fn refuse(&mut self, part: &str, why: impl Into<String>) {
        self.out.refuse(part, why);
    }

    /// A parse of a wrapper's arguments, or `None` after recording why it cannot be read.
    fn parse(&mut self, name: &str, spec: &Spec, args: &[Field]) -> Option<Parsed> {
        match parse(name, spec, args) {
            Ok(p) => Some(p),
            Err((part, why)) => {
                self.refuse(&part, why);
                None
            }
        }
    }

    /// `fields` is argv; `program` the path looked up when it differs from `argv[0]`
    /// (`exec -a NAME`).
    fn run(&mut self, fields: Vec<Field>, program: Option<Field>, depth: usize) -> Result<(), String> {
        if depth > MAX_DEPTH {
            return Err(format!("commands nested more than {MAX_DEPTH} deep"));
        }
        let Some(first) = program.as_ref().or(fields.first()) else { return Ok(()) };
        let word = match first {
            Field::Known(v) => v.clone(),
            Field::Home(v) if v.contains('/') => v.clone(),
            Field::Home(v) => {
                let v = v.clone();
                self.refuse(&v, "a home directory in command position");
                return Ok(());
            }
            Field::Unknown { text, .. } => {
                let text = text.clone();
                self.refuse(
                    &text,
                    "a word only known when the command runs (a variable, a glob or a substitution) in command position",
                );
                return Ok(());
            }
        };
        if !word.is_ascii() || word.chars().any(|c| c.is_ascii_control()) {
            return Err(format!(
                "the program `{word}` has characters outside ASCII (look-alike letters and spaces are refused)"
            ));
        }
        let idx = self.out.push(SimpleCommand::new(&word, &fields)?)?;
        let name = word.rsplit('/').next().unwrap_or(&word).to_owned();
        let path = word.contains('/');
        let args: Vec<Field> = fields.get(1..).map(<[Field]>::to_vec).unwrap_or_default();
        let whole = || fields.iter().map(Field::text).collect::<Vec<_>>().join(" ");
        if !path && self.builtin(&name, &args, depth, &whole)? {
            return Ok(());
        }
        if self.dialect == Dialect::Zsh && !path && self.zsh_builtin(&name, &args, depth, &whole)? {
            return Ok(());
        }
        self.program(&name, idx, &args, depth, &whole)
    }

    /// Builtins of bash; `true` when `name` was one.
    fn builtin(
        &mut self,
        name: &str,
        args: &[Field],
        depth: usize,
        whole: &dyn Fn() -> String,
    ) -> Result<bool, String> {
        match name {
            "eval" => self.refuse(&whole(), "`eval` runs its arguments as a new command line"),
            "source" | "." => self.refuse(&whole(), "`source` runs the commands of a file"),
            "alias" => {
                if args.iter().any(|a| a.text().contains('=')) || args.iter().any(|a| a.known().is_none()) {
                    self.refuse(&whole(), "`alias` changes what a command name runs");
                }
            }
            "enable" => {
                if args.iter().any(|a| !matches!(a.known(), Some("-a" | "-p" | "-s"))) {
                    self.refuse(&whole(), "`enable` loads or switches off builtins");
                }
            }
            "hash" => {
                if args.iter().any(|a| a.known().is_none_or(|s| s.starts_with('-') && s.contains('p'))) {
                    self.refuse(&whole(), "`hash -p` makes a command name run another file");
                }
            }
            "complete" | "compgen" | "fc" | "bind" => {
                self.refuse(&whole(), format!("`{name}` runs commands it is given as text"));
            }
            "mapfile" | "readarray" => {
                if args.iter().any(|a| a.known().is_none_or(|s| s.starts_with('-') && s.contains('C'))) {
                    self.refuse(&whole(), "`mapfile -C` runs a command it is given as text");
                }
                self.names(args, "dnOsuCc", whole);
            }
            "trap" => self.trap(args, depth)?,
            "declare" | "typeset" | "local" | "export" | "readonly" => self.declare(args, whole),
            "read" => self.names(args, "adinNptu", whole),
            "printf" => {
                if let Some(i) = args.iter().position(|a| a.known() == Some("-v")) {
                    self.names(args.get(i + 1..i + 2).unwrap_or(&[]), "", whole);
                }
            }
            "unset" => self.names(args, "", whole),
            "getopts" => self.names(args.get(1..2).unwrap_or(&[]), "", whole),
            "let" => {
                for a in args {
                    if !a.known().is_some_and(shell::safe_arith) {
                        self.refuse(a.text(), "arithmetic that refers to variables or runs commands");
                    }
                }
            }
            "test" | "[" => {
                for pair in args.windows(2) {
                    if matches!(pair[0].known(), Some("-v" | "-R")) && pair[1].text().contains('[') {
                        self.refuse(
                            pair[1].text(),
                            "an array subscript that is evaluated when the command runs",
                        );
                    }
                }
            }
            "command" => {
                let mut i = 0;
                let mut runs = true;
                while let Some(s) = args.get(i).and_then(Field::known) {
                    if s == "--" {
                        i += 1;
                        break;
                    }
                    if !s.starts_with('-') || s == "-" {
                        break;
                    }
                    if !s[1..].chars().all(|c| "pvV".contains(c)) {
                        self.refuse(s, "an option of `command` the reader does not know");
                        return Ok(true);
                    }
                    runs &= !s.contains(['v', 'V']);
                    i += 1;
                }
                if let Some(f @ Field::Unknown { .. }) = args.get(i) {
                    let f = f.clone();
                    let (part, why) = unknown_here("command", &f);
                    self.refuse(&part, why);
                } else if runs {
                    self.run(args[i..].to_vec(), None, depth + 1)?;
                }
            }
            "builtin" => {
                let rest = match args.first().and_then(Field::known) {
                    Some("--") => &args[1..],
                    _ => args,
                };
                self.run(rest.to_vec(), None, depth + 1)?;
            }
            "exec" => {
                let mut i = 0;
                let mut argv0 = None;
                while let Some(s) = args.get(i).and_then(Field::known) {
                    if s == "--" {
                        i += 1;
                        break;
                    }
                    if !s.starts_with('-') || s == "-" {
                        break;
                    }
                    let letters: Vec<char> = s.chars().skip(1).collect();
                    i += 1;
                    for (k, c) in letters.iter().enumerate() {
                        match c {
                            'c' | 'l' => {}
                            'a' => {
                                let rest: String = letters[k + 1..].iter().collect();
                                argv0 = Some(if rest.is_empty() {
                                    let v = args.get(i).cloned();
                                    i += 1;
                                    v
                                } else {
                                    Some(Field::Known(rest))
                                });
                                break;
                            }
                            _ => {
                                self.refuse(s, "an option of `exec` the reader does not know");
                                return Ok(true);
                            }
                        }
                    }
                }
                let mut rest: Vec<Field> = args.get(i..).map(<[Field]>::to_vec).unwrap_or_default();
                match argv0 {
                    Some(Some(name)) if !rest.is_empty() => {
                        let program = rest[0].clone();
                        rest[0] = name;
                        self.run(rest, Some(program), depth + 1)?;
                    }
                    Some(None) => self.refuse("exec -a", "`exec -a` without its name"),
                    _ => self.run(rest, None, depth + 1)?,
                }
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// Builtins of zsh that run text or change what names run.
    fn zsh_builtin(
        &mut self,
        name: &str,
        args: &[Field],
        depth: usize,
        whole: &dyn Fn() -> String,
    ) -> Result<bool, String> {
        match name {
            "autoload" | "zmodload" | "emulate" | "zpty" | "sched" | "functions" | "zcompile" => {
                self.refuse(&whole(), format!("zsh's `{name}` runs or defines code"));
            }
            "noglob" | "nocorrect" | "-" => self.run(args.to_vec(), None, depth + 1)?,
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// Arguments of `declare` and its kin: names (with subscripts) and attributes.
    fn declare(&mut self, args: &[Field], whole: &dyn Fn() -> String) {
        for a in args {
            match a.known() {
                Some(s) if s.starts_with('-') || s.starts_with('+') => {
                    if s.starts_with('-') && s.contains(['i', 'n']) {
                        self.refuse(
                            &whole(),
                            "`declare -i` / `-n` make later assignments evaluated as arithmetic or names",
                        );
                    }
                }
                _ => self.name_word(a.text(), whole),
            }
        }
    }

    /// Name arguments (`read NAME`, `unset NAME[sub]`): `opts` take a value.
    fn names(&mut self, args: &[Field], opts: &str, whole: &dyn Fn() -> String) {
        let mut i = 0;
        while i < args.len() {
            let a = &args[i];
            i += 1;
            match a.known() {
                Some("--") => {}
                Some(s) if s.starts_with('-') && s.len() > 1 => {
                    // The first option taking a value takes the rest of the word, or the next.
                    if let Some(pos) = s[1..].find(|c| opts.contains(c))
                        && pos + 2 == s.len()
                    {
                        i += 1;
                    }
                }
                _ => self.name_word(a.text(), whole),
            }
        }
    }

    /// A word naming a variable: its name must be known, its subscript only numbers, and it
    /// must not be one that runs code.
    fn name_word(&mut self, text: &str, whole: &dyn Fn() -> String) {
        let name_end = text.find(['=', '[']).unwrap_or(text.len());
        let name = text[..name_end].trim_end_matches('+');
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            self.refuse(&whole(), "a variable name only known when the command runs");
            return;
        }
        if let Some(why) = dangerous_variable(name) {
            self.refuse(text, why);
        }
        if text[name_end..].starts_with('[') {
            let sub: String = text[name_end + 1..].chars().take_while(|c| *c != ']').collect();
            if sub != "@" && sub != "*" && !shell::safe_arith(&sub) {
                self.refuse(text, "an array subscript that is evaluated when the command runs");
            }
        }
    }

    fn trap(&mut self, args: &[Field], depth: usize) -> Result<(), String> {
        let args = match args.first().and_then(Field::known) {
            Some("--") => &args[1..],
            _ => args,
        };
        let Some(first) = args.first() else { return Ok(()) };
        match first {
            Field::Unknown { text, .. } => {
                let text = text.clone();
                self.refuse(&text, "a `trap` action only known when the command runs");
            }
            Field::Known(s) | Field::Home(s) => {
                let signal_only = args.len() == 1 || s.bytes().all(|b| b.is_ascii_digit()) || s == "-";
                if s.starts_with('-') && s.len() > 1 || signal_only {
                    return Ok(());
                }
                shell::read_script(self.out, s, depth + 1, self.dialect)?;
            }
        }
        Ok(())
    }

    /// External programs (or builtins called by path).
    fn program(
        &mut self,
        name: &str,
        idx: usize,
        args: &[Field],
        depth: usize,
        whole: &dyn Fn() -> String,
    ) -> Result<(), String> {
        match name {
            "sudo" => return self.sudo(args, depth),
            "doas" => {
                let spec = Spec { flags: "ns", values: "uC", no_run: "L", ..Spec::default() };
                let Some(p) = self.parse(name, &spec, args) else { return Ok(()) };
                if p.has(&["-C"]) || p.no_run {
                    return Ok(());
                }
                if p.has(&["-s"]) {
                    self.refuse(&whole(), "`doas -s` starts an interactive shell");
                    return Ok(());
                }
                return self.command_of(name, p.operands, depth, Without::Nothing);
            }
            "env" => return self.env(args, depth),
            "nice" => return self.nice(args, depth),
            "stdbuf" => {
                let spec =
                    Spec { values: "ioe", long_values: &["input", "output", "error"], ..Spec::default() };
                return self.wrapper(name, &spec, args, 0, depth, Without::Nothing);
            }
            "timeout" => {
                let spec = Spec {
                    flags: "vfp",
                    values: "ks",
                    long_flags: &["verbose", "foreground", "preserve-status"],
                    long_values: &["kill-after", "signal"],
                    ..Spec::default()
                };
                return self.wrapper(name, &spec, args, 1, depth, Without::Nothing);
            }
            "nohup" => return self.wrapper(name, &Spec::default(), args, 0, depth, Without::Nothing),
            "setsid" => {
                let spec = Spec { flags: "cfw", long_flags: &["ctty", "fork", "wait"], ..Spec::default() };
                return self.wrapper(name, &spec, args, 0, depth, Without::Nothing);
            }
            "taskset" => {
                let spec = Spec {
                    flags: "ac",
                    no_run: "p",
                    long_flags: &["all-tasks", "cpu-list"],
                    long_no_run: &["pid"],
                    ..Spec::default()
                };
                return self.wrapper(name, &spec, args, 1, depth, Without::Nothing);
            }
            "ionice" => {
                let spec = Spec {
                    flags: "t",
                    values: "cn",
                    no_run: "pPu",
                    long_flags: &["ignore"],
                    long_values: &["class", "classdata"],
                    long_no_run: &["pid", "pgid", "uid"],
                    ..Spec::default()
                };
                return self.wrapper(name, &spec, args, 0, depth, Without::Nothing);
            }
            "chrt" => {
                let spec = Spec {
                    flags: "abdfiorRv",
                    values: "TPD",
                    no_run: "pm",
                    long_flags: &[
                        "all-tasks",
                        "batch",
                        "deadline",
                        "fifo",
                        "idle",
                        "other",
                        "rr",
                        "reset-on-fork",
                        "verbose",
                    ],
                    long_values: &["sched-runtime", "sched-period", "sched-deadline"],
                    long_no_run: &["pid", "max"],
                    ..Spec::default()
                };
                return self.wrapper(name, &spec, args, 1, depth, Without::Nothing);
            }
            "chroot" => {
                let spec = Spec {
                    long_flags: &["skip-chdir"],
                    long_values: &["userspec", "groups"],
                    ..Spec::default()
                };
                return self.wrapper(name, &spec, args, 1, depth, Without::Shell);
            }
            "unshare" => {
                let spec = Spec {
                    flags: "frc",
                    values: "RwSG",
                    optional: "muinpUCT",
                    long_flags: &["fork", "map-root-user", "map-current-user", "map-auto", "keep-caps"],
                    long_values: &[
                        "propagation",
                        "setgroups",
                        "root",
                        "wd",
                        "setuid",
                        "setgid",
                        "map-user",
                        "map-group",
                        "map-users",
                        "map-groups",
                        "monotonic",
                        "boottime",
                    ],
                    long_optional: &[
                        "mount",
                        "uts",
                        "ipc",
                        "net",
                        "pid",
                        "user",
                        "cgroup",
                        "time",
                        "kill-child",
                        "mount-proc",
                    ],
                    ..Spec::default()
                };
                return self.wrapper(name, &spec, args, 0, depth, Without::Shell);
            }
            "nsenter" => {
                let spec = Spec {
                    flags: "aFZec",
                    values: "tSGW",
                    optional: "muinpCUTrw",
                    long_flags: &[
                        "all",
                        "preserve-credentials",
                        "no-fork",
                        "follow-context",
                        "env",
                        "join-cgroup",
                    ],
                    long_values: &["target", "setuid", "setgid", "wdns"],
                    long_optional: &[
                        "mount", "uts", "ipc", "net", "pid", "cgroup", "user", "time", "root", "wd",
                    ],
                    ..Spec::default()
                };
                return self.wrapper(name, &spec, args, 0, depth, Without::Shell);
            }
            "pkexec" => {
                let spec = Spec {
                    values: "u",
                    long_flags: &["disable-internal-agent", "keep-cwd"],
                    long_values: &["user"],
                    ..Spec::default()
                };
                return self.wrapper(name, &spec, args, 0, depth, Without::Shell);
            }
            "setpriv" | "sg" | "newgrp" | "su" | "runuser" | "script" | "flock" | "watch" => {
                return self.shell_starting(name, args, depth, whole);
            }
            "time" => {
                let spec = Spec {
                    flags: "apqv",
                    values: "fo",
                    no_run: "V",
                    long_flags: &["append", "portability", "quiet", "verbose"],
                    long_values: &["format", "output"],
                    ..Spec::default()
                };
                return self.wrapper(name, &spec, args, 0, depth, Without::Nothing);
            }
            "fakeroot" => {
                let spec = Spec {
                    flags: "u",
                    values: "lsib",
                    no_run: "hv",
                    long_flags: &["unknown-is-real"],
                    long_values: &["lib", "faked"],
                    ..Spec::default()
                };
                return self.wrapper(name, &spec, args, 0, depth, Without::Shell);
            }
            "strace" => {
                let spec = Spec {
                    flags: "AcCdDfFhikqrtTvwxyYzZn",
                    values: "abeEIoOpPsSuUX",
                    no_run: "V",
                    long_flags: &[
                        "seccomp-bpf",
                        "follow-forks",
                        "output-separately",
                        "summary-only",
                        "summary",
                        "no-abbrev",
                        "quiet",
                    ],
                    long_values: &[
                        "output",
                        "trace",
                        "signal",
                        "string-limit",
                        "user",
                        "env",
                        "attach",
                        "trace-path",
                    ],
                    ..Spec::default()
                };
                return self.wrapper(name, &spec, args, 0, depth, Without::Nothing);
            }
            "busybox" | "toybox" => {
                return match args.first() {
                    None => Ok(()),
                    Some(Field::Known(s)) if s.starts_with('-') => Ok(()),
                    Some(_) => self.run(args.to_vec(), None, depth + 1),
                };
            }
            "ssh" => return self.ssh(args, depth, whole),
            "systemd-run" | "run0" => return self.systemd_run(name, args, depth, whole),
            "xargs" => return self.xargs(args, depth),
            "find" => return self.find(args, depth),
            "parallel" => {
                self.refuse(&whole(), "GNU `parallel` runs its arguments as shell commands");
                return Ok(());
            }
            _ => {}
        }
        if SHELLS.contains(&name) {
            return self.shell(name, idx, args, depth);
        }
        if OTHER_SHELLS.contains(&name) {
            let script_file = args.first().and_then(Field::known).is_some_and(|s| !s.starts_with('-'));
            if !script_file || STDIN_PATHS.contains(&args[0].text()) {
                self.refuse(
                    &whole(),
                    format!("a `{name}` script, a shell language the reader does not read"),
                );
            }
            return Ok(());
        }
        self.interpreter(name, args, whole);
        self.runs_commands_by_option(name, args, whole);
        Ok(())
    }

    /// The command a wrapper runs: `operands` are its argv.
    fn command_of(
        &mut self,
        name: &str,
        operands: Vec<Field>,
        depth: usize,
        without: Without,
    ) -> Result<(), String> {
        if operands.is_empty() {
            if without == Without::Shell {
                self.refuse(
                    name,
                    format!("`{name}` without a command starts a shell that reads standard input"),
                );
            }
            return Ok(());
        }
        self.run(operands, None, depth + 1)
    }

    /// A wrapper read by `spec`: `leading` operands before the command (`timeout DURATION`).
    fn wrapper(
        &mut self,
        name: &str,
        spec: &Spec,
        args: &[Field],
        leading: usize,
        depth: usize,
        without: Without,
    ) -> Result<(), String> {
        let Some(p) = self.parse(name, spec, args) else { return Ok(()) };
        if p.no_run {
            return Ok(());
        }
        if p.operands.len() < leading {
            return Ok(());
        }
        for f in &p.operands[..leading] {
            if let Err((part, why)) = one_word(name, f) {
                self.refuse(&part, why);
                return Ok(());
            }
        }
        let rest = p.operands[leading..].to_vec();
        self.command_of(name, rest, depth, without)
    }

    fn sudo(&mut self, args: &[Field], depth: usize) -> Result<(), String> {
        let spec = Spec {
            flags: "ABbEHkNnPSise",
            values: "CDgpRrtTUu",
            no_run: "KVvl",
            long_flags: &[
                "askpass",
                "bell",
                "background",
                "set-home",
                "login",
                "reset-timestamp",
                "no-update",
                "non-interactive",
                "preserve-groups",
                "shell",
                "stdin",
                "edit",
            ],
            long_values: &[
                "close-from",
                "chdir",
                "group",
                "prompt",
                "chroot",
                "role",
                "type",
                "command-timeout",
                "other-user",
                "user",
            ],
            long_optional: &["preserve-env"],
            long_no_run: &["remove-timestamp", "validate", "list"],
            ..Spec::default()
        };
        let Some(p) = self.parse("sudo", &spec, args) else { return Ok(()) };
        if p.no_run {
            return Ok(());
        }
        if p.has(&["-e", "--edit"]) {
            self.refuse("sudo -e", "`sudo -e` runs an editor");
            return Ok(());
        }
        let shell_mode = p.has(&["-s", "-i", "--shell", "--login"]);
        let mut rest = p.operands;
        while let Some(Field::Known(s)) = rest.first() {
            match s.split_once('=') {
                Some((n, _)) if !n.is_empty() && !s.starts_with('-') => {
                    if let Some(why) = dangerous_variable(n) {
                        let s = s.clone();
                        self.refuse(&s, why);
                    }
                    rest.remove(0);
                }
                _ => break,
            }
        }
        if shell_mode {
            if rest.is_empty() {
                self.refuse(
                    "sudo -s",
                    "`sudo -s` / `-i` without a command starts a shell that reads standard input",
                );
                return Ok(());
            }
            if let Some(f) = rest.iter().find(|f| f.known().is_none_or(|s| s.contains('$'))) {
                let t = f.text().to_owned();
                self.refuse(&t, "`sudo -s` hands `$` to the shell, which expands it");
                return Ok(());
            }
            let line = rest.iter().map(|f| shell::quote(f.text())).collect::<Vec<_>>().join(" ");
            self.synthetic_shell(&line)?;
        }
        self.command_of("sudo", rest, depth, Without::Nothing)
    }

    /// The shell a wrapper starts for a command line (`su -c`, `watch`, `flock -c`): read as
    /// `sh -c LINE` (its real path is the user's shell).
    fn synthetic_shell(&mut self, line: &str) -> Result<(), String> {
        let argv = [Field::Known("sh".into()), Field::Known("-c".into()), Field::Known(line.to_owned())];
        self.out.push(SimpleCommand::new("sh", &argv)?)?;
        Ok(())
    }

    /// A command line a wrapper hands to a shell.
    fn shell_line(&mut self, name: &str, line: &Field, depth: usize) -> Result<(), String> {
        match line.known() {
            Some(text) => {
                let text = text.to_owned();
                self.synthetic_shell(&text)?;
                shell::read_script(self.out, &text, depth + 1, Dialect::Posix)
            }
            None => {
                let t = line.text().to_owned();
                self.refuse(
                    &t,
                    format!("the command line `{name}` runs is only known when the command runs"),
                );
                Ok(())
            }
        }
    }

    fn env(&mut self, args: &[Field], depth: usize) -> Result<(), String> {
        let mut args: Vec<Field> = args.to_vec();
        let mut argv0 = None;
        let mut splits = 0;
        let mut i = 0;
        // Options; `-S STRING` is split into words read in its place.
        while let Some(f) = args.get(i) {
            let Some(s) = f.known().map(str::to_owned) else {
                let (part, why) = unknown_here("env", f);
                self.refuse(&part, why);
                return Ok(());
            };
            if s == "--" {
                i += 1;
                break;
            }
            if s == "-" {
                i += 1;
                continue;
            }
            if !s.starts_with('-') {
                break;
            }
            let mut split: Option<(String, String, usize)> = None;
            if let Some(long) = s.strip_prefix("--") {
                let (name, inline) = match long.split_once('=') {
                    Some((n, v)) => (n, Some(v.to_owned())),
                    None => (long, None),
                };
                match name {
                    "help" | "version" => return Ok(()),
                    "ignore-environment" | "null" | "debug" | "list-signal-handling" if inline.is_none() => {
                        i += 1
                    }
                    "block-signal" | "default-signal" | "ignore-signal" => i += 1,
                    "unset" | "chdir" | "argv0" | "split-string" => {
                        let (value, used) = match inline {
                            Some(v) => (Some(Field::Known(v)), 1),
                            None => (args.get(i + 1).cloned(), 2),
                        };
                        let Some(value) = value else { return Ok(()) };
                        if name == "argv0" {
                            argv0 = Some(value);
                        } else if name == "split-string" {
                            split = Some((String::new(), value.text().to_owned(), used));
                            if value.known().is_none() {
                                self.refuse(
                                    value.text(),
                                    "an `env -S` string only known when the command runs",
                                );
                                return Ok(());
                            }
                        } else if let Err((part, why)) = one_word("env", &value) {
                            self.refuse(&part, why);
                            return Ok(());
                        }
                        if split.is_none() {
                            i += used;
                        }
                    }
                    _ => {
                        self.refuse(&s, "an option of `env` the reader does not know");
                        return Ok(());
                    }
                }
            } else {
                let chars: Vec<char> = s.chars().skip(1).collect();
                let mut used = 1;
                for (k, c) in chars.iter().enumerate() {
                    let rest: String = chars[k + 1..].iter().collect();
                    match c {
                        'i' | '0' | 'v' => continue,
                        'u' | 'C' | 'a' | 'S' => {
                            let value = if rest.is_empty() {
                                used = 2;
                                match args.get(i + 1) {
                                    Some(v) => v.clone(),
                                    None => return Ok(()),
                                }
                            } else {
                                Field::Known(rest)
                            };
                            match c {
                                'a' => argv0 = Some(value),
                                'S' => {
                                    if value.known().is_none() {
                                        self.refuse(
                                            value.text(),
                                            "an `env -S` string only known when the command runs",
                                        );
                                        return Ok(());
                                    }
                                    let before: String = chars[..k].iter().collect();
                                    split = Some((before, value.text().to_owned(), used));
                                }
                                _ => {
                                    if let Err((part, why)) = one_word("env", &value) {
                                        self.refuse(&part, why);
                                        return Ok(());
                                    }
                                }
                            }
                            break;
                        }
                        _ => {
                            self.refuse(&s, "an option of `env` the reader does not know");
                            return Ok(());
                        }
                    }
                }
                if split.is_none() {
                    i += used;
                }
            }
            if let Some((before, text, used)) = split {
                splits += 1;
                let Some(words) = env_split(&text).filter(|_| splits <= 8) else {
                    self.refuse(
                        &text,
                        "an `env -S` string with escapes or variables the reader does not read",
                    );
                    return Ok(());
                };
                let mut replaced: Vec<Field> = Vec::new();
                if !before.is_empty() {
                    replaced.push(Field::Known(format!("-{before}")));
                }
                replaced.extend(words.into_iter().map(Field::Known));
                args.splice(i..(i + used).min(args.len()), replaced);
            }
        }
        let mut rest: Vec<Field> = args.get(i..).map(<[Field]>::to_vec).unwrap_or_default();
        loop {
            match rest.first() {
                Some(Field::Known(s)) if s.contains('=') && !s.starts_with('=') => {
                    let name = s.split('=').next().unwrap_or_default();
                    if let Some(why) = dangerous_variable(name) {
                        let s = s.clone();
                        self.refuse(&s, why);
                    }
                    rest.remove(0);
                }
                Some(f @ Field::Unknown { .. }) => {
                    let (part, why) = unknown_here("env", f);
                    self.refuse(&part, why);
                    return Ok(());
                }
                _ => break,
            }
        }
        if rest.is_empty() {
            return Ok(());
        }
        match argv0 {
            Some(a) => {
                let program = rest[0].clone();
                rest[0] = a;
                self.run(rest, Some(program), depth + 1)
            }
            None => self.run(rest, None, depth + 1),
        }
    }

    fn nice(&mut self, args: &[Field], depth: usize) -> Result<(), String> {
        // `-N`, `--N`, `-+N`: the adjustment, in the old form.
        let mut i = 0;
        let mut rest = Vec::new();
        while let Some(f) = args.get(i) {
            let Some(s) = f.known() else { break };
            let digits =
                s.strip_prefix("--").or_else(|| s.strip_prefix("-+")).or_else(|| s.strip_prefix('-'));
            if digits.is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit())) {
                i += 1;
                continue;
            }
            rest.extend(args[i..].iter().cloned());
            break;
        }
        let spec = Spec { values: "n", long_values: &["adjustment"], ..Spec::default() };
        self.wrapper("nice", &spec, &rest, 0, depth, Without::Nothing)
    }

    /// Wrappers that hand a command line to a shell, or start one.
    fn shell_starting(
        &mut self,
        name: &str,
        args: &[Field],
        depth: usize,
        whole: &dyn Fn() -> String,
    ) -> Result<(), String> {
        match name {
            "su" | "runuser" => {
                let spec = Spec {
                    flags: "flmpP",
                    values: if name == "runuser" { "cgGswu" } else { "cgGsw" },
                    long_flags: &["fast", "login", "preserve-environment", "pty"],
                    long_values: &[
                        "command",
                        "session-command",
                        "group",
                        "supp-group",
                        "shell",
                        "whitelist-environment",
                        "user",
                    ],
                    permute: true,
                    ..Spec::default()
                };
                let args: Vec<Field> = args.iter().filter(|f| f.known() != Some("-")).cloned().collect();
                let Some(p) = self.parse(name, &spec, &args) else { return Ok(()) };
                if p.no_run {
                    return Ok(());
                }
                if p.has(&["-u", "--user"]) {
                    return self.command_of(name, p.operands, depth, Without::Nothing);
                }
                if let Some(shell) = p.value(&["-s", "--shell"]) {
                    let known = shell.known().map(|s| s.rsplit('/').next().unwrap_or(s).to_owned());
                    if !known.is_some_and(|s| SHELLS.contains(&s.as_str())) {
                        let t = shell.text().to_owned();
                        self.refuse(&t, "a shell the reader does not read");
                        return Ok(());
                    }
                }
                if let Some(line) = p.value(&["-c", "--command", "--session-command"]).cloned() {
                    return self.shell_line(name, &line, depth);
                }
                let extra: Vec<Field> = p.operands.iter().skip(1).cloned().collect();
                if extra.is_empty() {
                    self.refuse(
                        &whole(),
                        format!("`{name}` without `-c` starts a shell that reads standard input"),
                    );
                    return Ok(());
                }
                let mut argv = vec![Field::Known("sh".into())];
                argv.extend(extra);
                self.run(argv, None, depth + 1)
            }
            "script" => {
                let spec = Spec {
                    flags: "aefq",
                    values: "cEBIOTmo",
                    optional: "t",
                    long_flags: &["append", "return", "flush", "force", "quiet"],
                    long_values: &[
                        "command",
                        "echo",
                        "log-io",
                        "log-in",
                        "log-out",
                        "log-timing",
                        "logging-format",
                        "output-limit",
                    ],
                    long_optional: &["timing"],
                    permute: true,
                    ..Spec::default()
                };
                let Some(p) = self.parse(name, &spec, args) else { return Ok(()) };
                if p.no_run {
                    return Ok(());
                }
                match p.value(&["-c", "--command"]).cloned() {
                    Some(line) => self.shell_line(name, &line, depth),
                    None => {
                        self.refuse(
                            &whole(),
                            "`script` without `-c` starts a shell that reads standard input",
                        );
                        Ok(())
                    }
                }
            }
            "flock" => {
                let spec = Spec {
                    flags: "sxeunoF",
                    values: "wEc",
                    long_flags: &[
                        "shared",
                        "exclusive",
                        "unlock",
                        "nonblock",
                        "nb",
                        "close",
                        "no-fork",
                        "verbose",
                    ],
                    long_values: &["timeout", "wait", "conflict-exit-code", "command"],
                    ..Spec::default()
                };
                let Some(p) = self.parse(name, &spec, args) else { return Ok(()) };
                if p.no_run {
                    return Ok(());
                }
                if let Some(line) = p.value(&["-c", "--command"]).cloned() {
                    return self.shell_line(name, &line, depth);
                }
                let mut ops = p.operands.into_iter();
                let Some(file) = ops.next() else { return Ok(()) };
                if let Err((part, why)) = one_word(name, &file) {
                    self.refuse(&part, why);
                    return Ok(());
                }
                let rest: Vec<Field> = ops.collect();
                match rest.first().map(Field::known) {
                    Some(Some("-c" | "--command")) => match rest.get(1) {
                        Some(line) => {
                            let line = line.clone();
                            self.shell_line(name, &line, depth)
                        }
                        None => Ok(()),
                    },
                    _ => self.command_of(name, rest, depth, Without::Nothing),
                }
            }
            "watch" => {
                let spec = Spec {
                    flags: "bcCegptwxqr",
                    values: "n",
                    optional: "d",
                    long_flags: &[
                        "beep", "color", "no-color", "errexit", "chgexit", "precise", "no-title", "no-wrap",
                        "exec", "equexit", "no-rerun",
                    ],
                    long_values: &["interval"],
                    long_optional: &["differences"],
                    ..Spec::default()
                };
                let Some(p) = self.parse(name, &spec, args) else { return Ok(()) };
                if p.no_run || p.operands.is_empty() {
                    return Ok(());
                }
                if p.has(&["-x", "--exec"]) {
                    return self.command_of(name, p.operands, depth, Without::Nothing);
                }
                if let Some(f) = p.operands.iter().find(|f| f.known().is_none()) {
                    let (part, why) = unknown_here(name, f);
                    self.refuse(&part, why);
                    return Ok(());
                }
                let line = p.operands.iter().map(Field::text).collect::<Vec<_>>().join(" ");
                self.shell_line(name, &Field::Known(line), depth)
            }
            "sg" => {
                let args: Vec<Field> = args.iter().filter(|f| f.known() != Some("-")).cloned().collect();
                let rest: Vec<Field> = args.into_iter().skip(1).collect();
                let rest = match rest.first().map(Field::known) {
                    Some(Some("-c")) => rest[1..].to_vec(),
                    _ => rest,
                };
                match rest.first() {
                    None => {
                        self.refuse(
                            &whole(),
                            "`sg` without a command starts a shell that reads standard input",
                        );
                        Ok(())
                    }
                    Some(line) => {
                        let line = line.clone();
                        self.shell_line(name, &line, depth)
                    }
                }
            }
            "newgrp" => {
                self.refuse(&whole(), "`newgrp` starts a shell that reads standard input");
                Ok(())
            }
            _ => {
                // setpriv: options with values everywhere; read conservatively.
                let spec = Spec {
                    flags: "d",
                    long_flags: &[
                        "dump",
                        "nnp",
                        "no-new-privs",
                        "clear-groups",
                        "keep-groups",
                        "init-groups",
                        "reset-env",
                    ],
                    long_values: &[
                        "reuid",
                        "regid",
                        "ruid",
                        "euid",
                        "rgid",
                        "egid",
                        "groups",
                        "inh-caps",
                        "ambient-caps",
                        "bounding-set",
                        "securebits",
                        "pdeathsig",
                        "selinux-label",
                        "apparmor-profile",
                        "landlock-access",
                        "landlock-rule",
                    ],
                    ..Spec::default()
                };
                self.wrapper(name, &spec, args, 0, depth, Without::Nothing)
            }
        }
    }

    /// `ssh [options] destination [options] [command …]`: the command's words are joined with
    /// spaces and run by the remote user's shell, read as `sh -c LINE`. Without a command
    /// the remote shell reads standard input.
    fn ssh(&mut self, args: &[Field], depth: usize, whole: &dyn Fn() -> String) -> Result<(), String> {
        let spec = Spec {
            flags: "46AaCfgKkMNnqsTtvXxYy",
            values: "BbcDEeFIiJLlmOoPpRSWw",
            no_run: "GVQ",
            ..Spec::default()
        };
        let Some(p) = self.parse("ssh", &spec, args) else { return Ok(()) };
        if p.no_run {
            return Ok(());
        }
        let mut opts = p.opts;
        let mut rest = p.operands.into_iter();
        let Some(destination) = rest.next() else { return Ok(()) };
        if let Err((part, why)) = one_word("ssh", &destination) {
            self.refuse(&part, why);
            return Ok(());
        }
        // Options may follow the destination too.
        let after: Vec<Field> = rest.collect();
        let Some(p) = self.parse("ssh", &spec, &after) else { return Ok(()) };
        if p.no_run {
            return Ok(());
        }
        opts.extend(p.opts);
        for (opt, value) in &opts {
            let Some(value) = value else { continue };
            if opt != "-o" {
                continue;
            }
            let Some(v) = value.known() else {
                let t = value.text().to_owned();
                self.refuse(&t, "an `ssh -o` option only known when the command runs");
                return Ok(());
            };
            let v = v.to_ascii_lowercase();
            let runs =
                ["proxycommand", "localcommand", "permitlocalcommand", "knownhostscommand", "remotecommand"]
                    .iter()
                    .any(|o| v.starts_with(o));
            if runs {
                self.refuse(&whole(), "an `ssh` option that runs a command");
                return Ok(());
            }
        }
        let has = |names: &[&str]| opts.iter().any(|(n, _)| names.contains(&n.as_str()));
        if has(&["-s"]) {
            self.refuse(&whole(), "`ssh -s` runs a subsystem the server configures");
            return Ok(());
        }
        if p.operands.is_empty() {
            if !has(&["-N", "-W", "-O"]) {
                self.refuse(
                    &whole(),
                    "`ssh` without a command starts a remote shell that reads standard input",
                );
            }
            return Ok(());
        }
        if let Some(f) = p.operands.iter().find(|f| f.known().is_none()) {
            let (part, why) = unknown_here("ssh", f);
            self.refuse(&part, why);
            return Ok(());
        }
        let line = p.operands.iter().map(Field::text).collect::<Vec<_>>().join(" ");
        self.shell_line("ssh", &Field::Known(line), depth)
    }

    /// `systemd-run` and `run0`: the command after their options, run as a service; without
    /// one (`--shell`, or `run0` alone) an interactive shell.
    fn systemd_run(
        &mut self,
        name: &str,
        args: &[Field],
        depth: usize,
        whole: &dyn Fn() -> String,
    ) -> Result<(), String> {
        let run0 = name == "run0";
        let spec = Spec {
            flags: if run0 { "i" } else { "rtPqGdS" },
            values: if run0 { "ugDa" } else { "HMEpu" },
            no_run: "hV",
            long_flags: &[
                "no-ask-password",
                "user",
                "system",
                "scope",
                "slice-inherit",
                "remain-after-exit",
                "send-sighup",
                "same-dir",
                "pty",
                "pty-late",
                "pipe",
                "quiet",
                "collect",
                "shell",
                "wait",
                "no-block",
                "on-clock-change",
                "on-timezone-change",
                "via-shell",
                "empower",
            ],
            long_values: &[
                "host",
                "machine",
                "unit",
                "property",
                "description",
                "slice",
                "service-type",
                "working-directory",
                "uid",
                "gid",
                "nice",
                "setenv",
                "on-active",
                "on-boot",
                "on-startup",
                "on-unit-active",
                "on-unit-inactive",
                "on-calendar",
                "timer-property",
                "path-property",
                "socket-property",
                "expand-environment",
                "json",
                "job-mode",
                "background",
                "capsule",
                "group",
                "chdir",
                "shell-prompt-prefix",
                "lightweight",
                "area",
            ],
            ..Spec::default()
        };
        let Some(p) = self.parse(name, &spec, args) else { return Ok(()) };
        if p.no_run {
            return Ok(());
        }
        for (opt, value) in &p.opts {
            let text = value.as_ref().map_or("", Field::text).to_owned();
            if matches!(opt.as_str(), "-E" | "--setenv") {
                let var = text.split('=').next().unwrap_or_default();
                if let Some(why) = dangerous_variable(var) {
                    self.refuse(&text, why);
                    return Ok(());
                }
            }
            // `-p ExecStartPre=…` runs a command; `Environment=` sets variables.
            if opt == "-p" || opt.ends_with("property") {
                let Some(known) = value.as_ref().and_then(Field::known) else {
                    self.refuse(&text, format!("a `{name}` property only known when the command runs"));
                    return Ok(());
                };
                let prop = known.split('=').next().unwrap_or_default().to_ascii_lowercase();
                if prop.starts_with("exec") || prop.starts_with("environment") {
                    self.refuse(
                        &text,
                        format!("a `{name}` property that runs a command or sets its environment"),
                    );
                    return Ok(());
                }
            }
        }
        if p.has(&["-S", "--shell"]) || (run0 && p.operands.is_empty()) {
            self.refuse(
                &whole(),
                format!("`{name}` without a command starts a shell that reads standard input"),
            );
            return Ok(());
        }
        self.command_of(name, p.operands, depth, Without::Nothing)
    }

    fn xargs(&mut self, args: &[Field], depth: usize) -> Result<(), String> {
        let spec = Spec {
            flags: "0oprtx",
            values: "adEILnPs",
            optional: "eil",
            long_flags: &[
                "null",
                "open-tty",
                "interactive",
                "no-run-if-empty",
                "verbose",
                "exit",
                "show-limits",
            ],
            long_values: &["arg-file", "delimiter", "max-args", "max-procs", "max-chars", "process-slot-var"],
            long_optional: &["max-lines", "replace", "eof"],
            ..Spec::default()
        };
        let Some(p) = self.parse("xargs", &spec, args) else { return Ok(()) };
        if p.no_run {
            return Ok(());
        }
        let mut command =
            if p.operands.is_empty() { vec![Field::Known("echo".into())] } else { p.operands.clone() };
        let replace = p.opts.iter().rev().find_map(|(n, v)| match n.as_str() {
            "-I" => v.as_ref().and_then(Field::known).map(str::to_owned),
            "-i" | "--replace" => Some(v.as_ref().and_then(Field::known).unwrap_or("{}").to_owned()),
            _ => None,
        });
        match replace {
            Some(r) if !r.is_empty() => {
                for f in &mut command {
                    if let Some(s) = f.known()
                        && s.contains(r.as_str())
                    {
                        let may_be_flag = s.starts_with('-') || s.starts_with(r.as_str());
                        *f = Field::Unknown { text: s.to_owned(), one: true, may_be_flag };
                    }
                }
            }
            _ => command.push(Field::filled_in("(arguments xargs reads from its input)", true)),
        }
        self.run(command, None, depth + 1)
    }

    fn find(&mut self, args: &[Field], depth: usize) -> Result<(), String> {
        const ONE_ARG: &[&str] = &[
            "-amin",
            "-anewer",
            "-atime",
            "-cmin",
            "-cnewer",
            "-context",
            "-ctime",
            "-fls",
            "-fprint",
            "-fprint0",
            "-fstype",
            "-gid",
            "-group",
            "-ilname",
            "-iname",
            "-inum",
            "-ipath",
            "-iregex",
            "-iwholename",
            "-links",
            "-lname",
            "-maxdepth",
            "-mindepth",
            "-mmin",
            "-mtime",
            "-name",
            "-newer",
            "-path",
            "-perm",
            "-regex",
            "-regextype",
            "-samefile",
            "-size",
            "-type",
            "-uid",
            "-used",
            "-user",
            "-wholename",
            "-xtype",
            "-files0-from",
            "-printf",
            "-D",
            "-newerXY",
        ];
        let mut i = 0;
        // Leading options, then starting points.
        while let Some(s) = args.get(i).and_then(Field::known) {
            match s {
                "-H" | "-L" | "-P" => i += 1,
                "-D" => i += 2,
                _ if s.starts_with("-O") => i += 1,
                _ => break,
            }
        }
        let mut starts_safe = true;
        while let Some(f) = args.get(i) {
            match f.known() {
                Some(s) if s.starts_with('-') || s == "(" || s == "!" => break,
                Some(_) => {}
                None => {
                    let (part, why) = unknown_here("find", f);
                    self.refuse(&part, why);
                    return Ok(());
                }
            }
            starts_safe &= !f.text().starts_with('-');
            i += 1;
        }
        while let Some(f) = args.get(i) {
            i += 1;
            let Some(s) = f.known() else {
                let (part, why) = unknown_here("find", f);
                self.refuse(&part, why);
                return Ok(());
            };
            match s {
                "-exec" | "-execdir" | "-ok" | "-okdir" => {
                    let mut command = Vec::new();
                    loop {
                        let Some(w) = args.get(i) else { return Ok(()) };
                        i += 1;
                        if w.known() == Some(";")
                            || (w.known() == Some("+")
                                && command.last().is_some_and(|l: &Field| l.text() == "{}"))
                        {
                            break;
                        }
                        command.push(match w.known() {
                            Some(t) if t.contains("{}") => Field::Unknown {
                                text: t.to_owned(),
                                one: true,
                                may_be_flag: !starts_safe || !t.starts_with("{}"),
                            },
                            _ => w.clone(),
                        });
                    }
                    self.run(command, None, depth + 1)?;
                }
                "-fprintf" => i += 2,
                _ if ONE_ARG.contains(&s) || s.starts_with("-newer") => i += 1,
                _ => {}
            }
        }
        Ok(())
    }

    fn shell(&mut self, name: &str, idx: usize, args: &[Field], depth: usize) -> Result<(), String> {
        let zsh = name == "zsh";
        let (letters, values): (&str, &str) = match name {
            "zsh" => ("abcdefghijklmnpqrstuvwxyzABCDEFGHIJKLMNPQRSTUVWXYZ0123456789", "o"),
            "dash" | "ash" | "posh" => ("aCefnuvxIimqVEbpslc", "o"),
            _ => ("abefhkmnptuvxBCEHPTilrsDc", "oO"),
        };
        const LONG_FLAGS: &[&str] = &[
            "debugger",
            "dump-po-strings",
            "dump-strings",
            "login",
            "noediting",
            "noprofile",
            "norc",
            "posix",
            "pretty-print",
            "restricted",
            "verbose",
        ];
        let mut i = 0;
        let mut command_mode = false;
        let mut stdin = false;
        while let Some(f) = args.get(i) {
            let Some(s) = f.known() else {
                let (part, why) = unknown_here(name, f);
                self.refuse(&part, why);
                return Ok(());
            };
            if s == "--" || s == "-" {
                i += 1;
                break;
            }
            if !(s.starts_with('-') || s.starts_with('+')) || s.len() < 2 {
                break;
            }
            i += 1;
            if let Some(long) = s.strip_prefix("--") {
                match long {
                    "help" | "version" => return Ok(()),
                    "rcfile" | "init-file" | "emulate" => i += 1,
                    _ if LONG_FLAGS.contains(&long) || (zsh && !long.contains('=')) => {}
                    _ => {
                        self.refuse(s, format!("an option of `{name}` the reader does not know"));
                        return Ok(());
                    }
                }
                continue;
            }
            for c in s.chars().skip(1) {
                if values.contains(c) {
                    match args.get(i) {
                        Some(v) if v.known().is_some() => i += 1,
                        Some(v) => {
                            let (part, why) = unknown_here(name, v);
                            self.refuse(&part, why);
                            return Ok(());
                        }
                        None => return Ok(()),
                    }
                } else if letters.contains(c) {
                    command_mode |= c == 'c' && s.starts_with('-');
                    stdin |= c == 's' && s.starts_with('-');
                } else {
                    self.refuse(s, format!("an option of `{name}` the reader does not know"));
                    return Ok(());
                }
            }
        }
        let operand = args.get(i);
        let dialect = match name {
            "zsh" => Dialect::Zsh,
            "bash" | "rbash" => Dialect::Bash,
            _ => Dialect::Posix,
        };
        if command_mode {
            return match operand {
                None => Ok(()),
                Some(Field::Known(script)) | Some(Field::Home(script)) => {
                    let script = script.clone();
                    shell::read_script(self.out, &script, depth + 1, dialect)
                }
                Some(f) => {
                    let t = f.text().to_owned();
                    self.refuse(&t, format!("the script of `{name} -c` is only known when the command runs"));
                    Ok(())
                }
            };
        }
        match operand {
            Some(f) if !stdin => match f.known() {
                Some(path)
                    if !STDIN_PATHS.contains(&path)
                        && !path.starts_with("/dev/fd/")
                        && !path.starts_with("/proc/") =>
                {
                    Ok(())
                }
                Some(path) => {
                    let path = path.to_owned();
                    self.refuse(
                        &path,
                        format!(
                            "`{name}` reading its commands from standard input (a pipe, a here-document)"
                        ),
                    );
                    Ok(())
                }
                None => {
                    let t = f.text().to_owned();
                    self.refuse(
                        &t,
                        format!("`{name}` reads its script from a file only known when the command runs"),
                    );
                    Ok(())
                }
            },
            _ => {
                // Reading standard input is `-s`: a policy can match it as a flag.
                if let Some(cmd) = self.out.cmds.get_mut(idx)
                    && !cmd.short.contains(&'s')
                {
                    cmd.short.push('s');
                }
                self.refuse(
                    name,
                    format!("`{name}` reading its commands from standard input (a pipe, a here-document)"),
                );
                Ok(())
            }
        }
    }

    /// Inline interpreters: a program given as an argument, or read from standard input.
    fn interpreter(&mut self, name: &str, args: &[Field], whole: &dyn Fn() -> String) {
        let base = name.trim_end_matches(|c: char| c.is_ascii_digit() || c == '.');
        let spec: Option<Interp> = match base {
            "python" | "pypy" => Some(Interp {
                flags: "bBdEIOqsSuvxRP3",
                values: "WX",
                inline: "c",
                module: "m",
                interactive: "i",
                no_run: "hV?",
                long_values: &["check-hash-based-pycs"],
                ..Interp::default()
            }),
            "perl" => Some(Interp { perl: true, inline: "eE", ..Interp::default() }),
            "ruby" => Some(Interp {
                flags: "acdlnpsSvwWyU",
                values: "CEFIr",
                optional: "0iKTWx",
                inline: "e",
                no_run: "h",
                ..Interp::default()
            }),
            "node" | "nodejs" => Some(Interp {
                flags: "c",
                values: "rC",
                inline: "ep",
                interactive: "i",
                no_run: "hv",
                long_inline: &["eval", "print"],
                long_values: &[
                    "require",
                    "import",
                    "loader",
                    "experimental-loader",
                    "conditions",
                    "input-type",
                    "env-file",
                    "title",
                ],
                long_flags: &[
                    "no-warnings",
                    "enable-source-maps",
                    "trace-warnings",
                    "inspect",
                    "inspect-brk",
                    "watch",
                    "test",
                    "expose-gc",
                    "experimental-vm-modules",
                    "no-deprecation",
                    "trace-deprecation",
                    "preserve-symlinks",
                    "check",
                    "experimental-strip-types",
                ],
                ..Interp::default()
            }),
            "php" => Some(Interp {
                flags: "nehilmsvwHq",
                values: "cdzt",
                inline: "rBRES",
                long_inline: &["run", "process-begin", "process-code", "process-end"],
                interactive: "a",
                script: "fF",
                ..Interp::default()
            }),
            "lua" | "luajit" => {
                Some(Interp { flags: "vEW", values: "l", inline: "e", interactive: "i", ..Interp::default() })
            }
            "Rscript" | "R" => Some(Interp { inline: "e", script: "f", ..Interp::default() }),
            "expect" => Some(Interp {
                flags: "bdDnNv",
                inline: "c",
                interactive: "i",
                script: "f",
                ..Interp::default()
            }),
            "tclsh" | "wish" | "jimsh" | "osascript" => {
                Some(Interp { values: "ls", inline: "e", ..Interp::default() })
            }
            "julia" | "groovy" | "elixir" | "iex" | "erl" | "guile" | "racket" | "sbcl" | "clojure"
            | "bb" | "bun" | "deno" | "pwsh" | "powershell" | "irb" | "jshell" | "ghci" | "scala" => {
                // Read no further: only a script file given first is resolved.
                let first = args.first().and_then(Field::known);
                let script =
                    first.is_some_and(|s| !s.starts_with('-') && !matches!(s, "eval" | "repl" | "-"));
                if !script || matches!(base, "pwsh" | "powershell" | "irb" | "jshell" | "ghci") {
                    self.refuse(
                        &whole(),
                        format!("`{name}` runs program text from its arguments or its input"),
                    );
                }
                None
            }
            "awk" | "gawk" | "mawk" | "nawk" => {
                self.awk(name, args, whole);
                None
            }
            "sed" | "gsed" => {
                self.sed(args, whole);
                None
            }
            _ => None,
        };
        let Some(spec) = spec else { return };
        if let Err(why) = spec.read(args) {
            self.refuse(&whole(), format!("`{name}` {why}"));
        }
    }

    fn awk(&mut self, name: &str, args: &[Field], whole: &dyn Fn() -> String) {
        let spec = Spec {
            flags: "bcCgMnNOPrstVhySU",
            values: "FvfEeilW",
            optional: "dDLopz",
            long_flags: &[
                "characters-as-bytes",
                "traditional",
                "copyright",
                "gen-pot",
                "bignum",
                "use-lc-numeric",
                "non-decimal-data",
                "optimize",
                "posix",
                "re-interval",
                "no-optimize",
                "sandbox",
                "lint-old",
                "csv",
                "trace",
            ],
            long_values: &["field-separator", "assign", "file", "exec", "source", "include", "load"],
            long_optional: &["lint", "debug", "dump-variables", "pretty-print", "profile"],
            ..Spec::default()
        };
        let Some(p) = self.parse(name, &spec, args) else { return };
        if p.no_run {
            return;
        }
        if p.has(&["-l", "--load"]) {
            self.refuse(&whole(), "`awk -l` loads a compiled extension");
            return;
        }
        if p.has(&["-S", "--sandbox"]) {
            return;
        }
        let mut programs: Vec<Field> = p
            .opts
            .iter()
            .filter(|(n, _)| n == "-e" || n == "--source")
            .filter_map(|(_, v)| v.clone())
            .collect();
        if programs.is_empty() && !p.has(&["-f", "--file", "-E", "--exec"]) {
            match p.operands.first() {
                Some(f) => programs.push(f.clone()),
                None => return,
            }
        }
        for prog in programs {
            match prog.known() {
                Some(text) if !(text.contains("system") || text.contains('|') || text.contains("@load")) => {}
                _ => {
                    let t = prog.text().to_owned();
                    self.refuse(&t, "an awk program that runs commands (`system`, a pipe) or is only known when the command runs");
                    return;
                }
            }
        }
    }

    fn sed(&mut self, args: &[Field], whole: &dyn Fn() -> String) {
        let spec = Spec {
            flags: "nrEsuzb",
            values: "efl",
            optional: "i",
            long_flags: &[
                "quiet",
                "silent",
                "regexp-extended",
                "separate",
                "unbuffered",
                "null-data",
                "posix",
                "debug",
                "sandbox",
                "follow-symlinks",
                "binary",
            ],
            long_values: &["expression", "file", "line-length"],
            long_optional: &["in-place"],
            permute: true,
            ..Spec::default()
        };
        let Some(p) = self.parse("sed", &spec, args) else { return };
        if p.no_run || p.has(&["--sandbox"]) {
            return;
        }
        let mut scripts: Vec<Field> = p
            .opts
            .iter()
            .filter(|(n, _)| n == "-e" || n == "--expression")
            .filter_map(|(_, v)| v.clone())
            .collect();
        if scripts.is_empty() && !p.has(&["-f", "--file"]) {
            match p.operands.first() {
                Some(f) => scripts.push(f.clone()),
                None => return,
            }
        }
        for script in scripts {
            match script.known() {
                Some(text) if sed_script_runs_nothing(text) => {}
                _ => {
                    let _ = whole;
                    let t = script.text().to_owned();
                    self.refuse(&t, "a sed script that runs commands (`e`) or the reader cannot read");
                    return;
                }
            }
        }
    }

    /// Programs that run commands given in their own options.
    fn runs_commands_by_option(&mut self, name: &str, args: &[Field], whole: &dyn Fn() -> String) {
        let known: Vec<&str> = args.iter().filter_map(Field::known).collect();
        // GNU programs take any unambiguous abbreviation of a long option (`tar --to-c=…`,
        // `make --ev=…`); `gdb` reads long options after one dash as well. An abbreviation
        // of a listed option counts as it, unless it is an option of its own (`tar
        // --checkpoint`).
        let one_dash_long = name == "gdb";
        let exact: &[&str] = if matches!(name, "tar" | "gtar" | "bsdtar") { &["checkpoint"] } else { &[] };
        let abbreviated = |a: &str, p: &str| {
            let Some(full) = p.strip_prefix("--").or_else(|| p.strip_prefix('-').filter(|_| one_dash_long))
            else {
                return false;
            };
            let given = match a.strip_prefix("--") {
                Some(g) => g,
                None if one_dash_long => match a.strip_prefix('-') {
                    Some(g) if g.len() >= 2 => g,
                    _ => return false,
                },
                None => return false,
            };
            let given = given.split('=').next().unwrap_or(given);
            super::abbreviates(given, full) && !exact.contains(&given)
        };
        let long_prefix = |prefixes: &[&str]| {
            known.iter().any(|a| prefixes.iter().any(|p| a.starts_with(p) || abbreviated(a, p)))
        };
        let why = match name {
            "tar" | "bsdtar" | "gtar" => {
                let long = long_prefix(&[
                    "--to-command",
                    "--checkpoint-action",
                    "--use-compress-program",
                    "--info-script",
                    "--new-volume-script",
                    "--rsh-command",
                    "--rmt-command",
                ]);
                let short = known.iter().enumerate().any(|(k, a)| {
                    let cluster = if k == 0 && !a.starts_with('-') {
                        Some(*a)
                    } else {
                        a.strip_prefix('-').filter(|c| !c.starts_with('-'))
                    };
                    cluster.is_some_and(|c| {
                        for ch in c.chars() {
                            if "IF".contains(ch) {
                                return true;
                            }
                            if "fCTXbgHKLNV".contains(ch) {
                                return false;
                            }
                        }
                        false
                    })
                });
                (long || short).then_some("`tar` options that run a program")
            }
            "rsync" => {
                let short = known
                    .iter()
                    .any(|a| a.strip_prefix('-').is_some_and(|c| !c.starts_with('-') && c.contains('e')));
                (short || long_prefix(&["--rsh"])).then_some("`rsync -e` runs a program")
            }
            "ssh" | "scp" | "sftp" | "slogin" => {
                let mut hit = false;
                for (k, a) in known.iter().enumerate() {
                    let value = if *a == "-o" { known.get(k + 1).copied() } else { a.strip_prefix("-o") };
                    if let Some(v) = value {
                        let v = v.to_ascii_lowercase();
                        hit |= ["proxycommand", "localcommand", "permitlocalcommand", "knownhostscommand"]
                            .iter()
                            .any(|o| v.starts_with(o));
                    }
                    hit |= name != "ssh" && (*a == "-S" || *a == "-D" || a.starts_with("-S"));
                }
                hit.then_some("an `ssh` option that runs a local command")
            }
            "git" => {
                let mut hit = false;
                for a in &known {
                    if !a.starts_with('-') {
                        break;
                    }
                    hit |= *a == "-c" || a.starts_with("--config-env") || a.starts_with("--exec-path=");
                }
                hit.then_some("`git -c` sets configuration that can run commands")
            }
            "vim" | "vi" | "nvim" | "view" | "ex" | "vimdiff" | "gvim" | "rvim" => known
                .iter()
                .any(|a| a.starts_with('+') || matches!(*a, "-c" | "--cmd" | "-S") || a.starts_with("-c"))
                .then_some("an editor given commands to run"),
            "emacs" => long_prefix(&[
                "--eval",
                "-eval",
                "--execute",
                "-batch",
                "--batch",
                "-l",
                "--load",
                "-f",
                "--funcall",
            ])
            .then_some("`emacs` given code to run"),
            "gdb" => long_prefix(&[
                "-ex",
                "--ex",
                "-eval-command",
                "--eval-command",
                "-iex",
                "-x",
                "--command",
                "-batch",
            ])
            .then_some("`gdb` given commands to run"),
            "zip" => long_prefix(&["-TT", "--unzip-command"]).then_some("`zip -TT` runs a program"),
            "man" => {
                long_prefix(&["-P", "--pager", "-H", "--html"]).then_some("`man` given a program to run")
            }
            "make" | "gmake" => long_prefix(&["--eval"]).then_some("`make --eval` runs given text"),
            _ => None,
        };
        if let Some(why) = why {
            self.refuse(&whole(), why);
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Without {
    /// No command: nothing runs.
    Nothing,
    /// No command: the wrapper starts a shell, which reads standard input.
    Shell,
}

/// An interpreter's options.
#[derive(Default)]
struct Interp {
    flags: &'static str,
    values: &'static str,
    optional: &'static str,
    /// Options whose value is program text.
    inline: &'static str,
    long_inline: &'static [&'static str],
    /// Options naming a module to run (ends the options; resolved).
    module: &'static str,
    /// Options that read further commands from standard input.
    interactive: &'static str,
    /// Options whose value is the script file.
    script: &'static str,
    no_run: &'static str,
    long_flags: &'static [&'static str],
    long_values: &'static [&'static str],
    /// Perl's own switch syntax.
    perl: bool,
}

impl Interp {
    /// `Ok` when the interpreter runs a script file (or nothing); otherwise why not.
    fn read(&self, args: &[Field]) -> Result<(), String> {
        let mut i = 0;
        while let Some(f) = args.get(i) {
            let Some(s) = f.known() else {
                return Err("is given a word only known when the command runs".into());
            };
            i += 1;
            if s == "--" {
                break;
            }
            if s == "-" {
                return Err("reads its program from standard input".into());
            }
            if !s.starts_with('-') {
                i -= 1;
                break;
            }
            if let Some(long) = s.strip_prefix("--") {
                let lname = long.split('=').next().unwrap_or(long);
                if self.long_inline.contains(&lname) {
                    return Err(format!("runs program text given with `--{lname}`"));
                }
                if lname == "help" || lname == "version" {
                    return Ok(());
                }
                if self.long_values.contains(&lname) && !long.contains('=') {
                    i += 1;
                } else if !(long.contains('=') || self.long_flags.contains(&lname)) {
                    return Err(format!("has an option the reader does not know (`{s}`)"));
                }
                continue;
            }
            let chars: Vec<char> = s.chars().skip(1).collect();
            let mut k = 0;
            while k < chars.len() {
                let c = chars[k];
                let rest: String = chars[k + 1..].iter().collect();
                if self.inline.contains(c) {
                    return Err(format!("runs program text given with `-{c}`"));
                }
                if self.interactive.contains(c) {
                    return Err(format!("reads commands from standard input (`-{c}`)"));
                }
                if self.no_run.contains(c) {
                    return Ok(());
                }
                if self.module.contains(c) || self.script.contains(c) {
                    return Ok(());
                }
                if self.perl {
                    match c {
                        'l' | '0' | 'C' => {
                            let digits =
                                rest.chars().take_while(|d| d.is_ascii_hexdigit() || *d == 'x').count();
                            k += 1 + digits;
                            continue;
                        }
                        'M' | 'm' => {
                            let module = if rest.is_empty() {
                                let v = args.get(i).and_then(Field::known).unwrap_or("").to_owned();
                                i += 1;
                                v
                            } else {
                                rest
                            };
                            let plain = module.trim_start_matches('-');
                            let (m, imports) = plain.split_once('=').unwrap_or((plain, ""));
                            let ok = !m.is_empty()
                                && m.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':')
                                && imports.bytes().all(|b| {
                                    b.is_ascii_alphanumeric() || b == b'_' || b == b',' || b == b':'
                                });
                            if !ok {
                                return Err("is given a module switch holding code".into());
                            }
                            break;
                        }
                        'I' => {
                            if rest.is_empty() {
                                i += 1;
                            }
                            break;
                        }
                        'd' | 'D' | 'x' | 'V' | 'i' | 'F' => break,
                        'a' | 'c' | 'f' | 'n' | 'p' | 's' | 'S' | 't' | 'T' | 'u' | 'U' | 'w' | 'W' | 'X' => {
                        }
                        'h' | 'v' => return Ok(()),
                        _ => return Err(format!("has a switch the reader does not know (`-{c}`)")),
                    }
                    k += 1;
                    continue;
                }
                if self.flags.contains(c) {
                    k += 1;
                    continue;
                }
                if self.values.contains(c) {
                    if rest.is_empty() {
                        i += 1;
                    }
                    break;
                }
                if self.optional.contains(c) {
                    break;
                }
                return Err(format!("has an option the reader does not know (`-{c}`)"));
            }
        }
        match args.get(i).map(Field::known) {
            None => Err("reads its program from standard input".into()),
            Some(None) => Err("runs a script only known when the command runs".into()),
            Some(Some(path))
                if STDIN_PATHS.contains(&path)
                    || path.starts_with("/dev/fd/")
                    || path.starts_with("/proc/") =>
            {
                Err("reads its program from standard input".into())
            }
            Some(Some(_)) => Ok(()),
        }
    }
}

/// Splits an `env -S` string: quotes and the plain escapes; `None` for what is not read
/// (`${VAR}`, `\c`, `\_`).
fn env_split(text: &str) -> Option<Vec<String>> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' | '\n' => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '#' if !in_word => break,
            '\'' => {
                in_word = true;
                loop {
                    match chars.next()? {
                        '\'' => break,
                        ch => word.push(ch),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next()? {
                        '"' => break,
                        '\\' => word.push(env_escape(chars.next()?)?),
                        '$' => return None,
                        ch => word.push(ch),
                    }
                }
            }
            '\\' => {
                in_word = true;
                word.push(env_escape(chars.next()?)?);
            }
            '$' => return None,
            ch => {
                in_word = true;
                word.push(ch);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Some(words)
}

fn env_escape(c: char) -> Option<char> {
    Some(match c {
        '\\' | '\'' | '"' | '#' | '$' => c,
        't' => '\t',
        'n' => '\n',
        'r' => '\r',
        'f' => '\x0c',
        'v' => '\x0b',
        _ => return None,
    })
}

/// Whether a sed script surely runs no command: it parses, and has no `e` command or `e`
/// flag of `s`.
fn sed_script_runs_nothing(script: &str) -> bool {
    let s: Vec<char> = script.chars().collect();
    let mut i = 0;
    let n = s.len();
    let to_eol = |i: &mut usize| {
        while *i < n && s[*i] != '\n' {
            *i += 1;
        }
    };
    // Reads a delimited part starting after its opening delimiter; false when unterminated.
    let delimited = |i: &mut usize, d: char| -> bool {
        while *i < n {
            if s[*i] == '\\' {
                *i += 2;
                continue;
            }
            if s[*i] == d {
                *i += 1;
                return true;
            }
            *i += 1;
        }
        false
    };
    let address = |i: &mut usize| -> bool {
        match s.get(*i) {
            Some(c) if c.is_ascii_digit() => {
                while *i < n && (s[*i].is_ascii_digit() || s[*i] == '~') {
                    *i += 1;
                }
            }
            Some('$') => *i += 1,
            Some('/') => {
                *i += 1;
                if !delimited(i, '/') {
                    return false;
                }
                while *i < n && (s[*i] == 'I' || s[*i] == 'M') {
                    *i += 1;
                }
            }
            Some('\\') => {
                let Some(&d) = s.get(*i + 1) else { return false };
                *i += 2;
                if !delimited(i, d) {
                    return false;
                }
                while *i < n && (s[*i] == 'I' || s[*i] == 'M') {
                    *i += 1;
                }
            }
            _ => {}
        }
        true
    };
    while i < n {
        let c = s[i];
        if c.is_whitespace() || c == ';' {
            i += 1;
            continue;
        }
        if c == '#' {
            to_eol(&mut i);
            continue;
        }
        if !address(&mut i) {
            return false;
        }
        if s.get(i) == Some(&',') {
            i += 1;
            if matches!(s.get(i), Some('+' | '~')) {
                i += 1;
            }
            if !address(&mut i) {
                return false;
            }
        }
        while i < n && (s[i] == ' ' || s[i] == '!') {
            i += 1;
        }
        let Some(&cmd) = s.get(i) else { return false };
        i += 1;
        match cmd {
            '{' | '}' | '=' | 'd' | 'D' | 'g' | 'G' | 'h' | 'H' | 'n' | 'N' | 'p' | 'P' | 'x' | 'z' | 'F' => {
            }
            'l' | 'q' | 'Q' | 'L' => {
                while i < n && (s[i] == ' ' || s[i].is_ascii_digit()) {
                    i += 1;
                }
            }
            'a' | 'i' | 'c' => {
                // Text to the end of the line, continued by a trailing backslash.
                while i < n && s[i] != '\n' {
                    if s[i] == '\\' {
                        i += 1;
                    }
                    i += 1;
                }
            }
            ':' | 'r' | 'R' | 'w' | 'W' => to_eol(&mut i),
            'b' | 't' | 'T' | 'v' => {
                while i < n && s[i] != '\n' && s[i] != ';' && s[i] != '}' {
                    i += 1;
                }
            }
            's' | 'y' => {
                let Some(&d) = s.get(i) else { return false };
                if d == '\n' || d == '\\' {
                    return false;
                }
                i += 1;
                if !delimited(&mut i, d) || !delimited(&mut i, d) {
                    return false;
                }
                if cmd == 's' {
                    while i < n {
                        match s[i] {
                            'g' | 'p' | 'i' | 'I' | 'm' | 'M' => i += 1,
                            c if c.is_ascii_digit() => i += 1,
                            'w' => {
                                to_eol(&mut i);
                                break;
                            }
                            'e' => return false,
                            ';' | '\n' | '}' | ' ' | '\t' => break,
                            _ => return false,
                        }
                    }
                }
            }
            _ => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sed_scripts_that_run_commands_are_seen() {
        for ok in
            ["s/a/b/g", "1d; $d", "/x/!p", "s,a,b,2w out", "y/abc/xyz/", "a\\\nline", "1,5{s/a/b/;p}", "$!N"]
        {
            assert!(sed_script_runs_nothing(ok), "{ok}");
        }
        for bad in ["1e rm -rf /", "s/x/rm -rf y/e", "s/a/b/ge", "e", "s/a/b", "k"] {
            assert!(!sed_script_runs_nothing(bad), "{bad}");
        }
    }

    #[test]
    fn env_split_strings_are_split_like_env() {
        assert_eq!(env_split("rm -rf '/a b'"), Some(vec!["rm".into(), "-rf".into(), "/a b".into()]));
        assert_eq!(env_split("a\\tb"), Some(vec!["a\tb".into()]));
        assert_eq!(env_split("${X}"), None);
        assert_eq!(env_split("a\\cb"), None);
    }
}
