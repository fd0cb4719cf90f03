//! What a simple command runs: the program itself, and what it runs in turn when it is a
//! wrapper (`sudo`, `env`, `nice`, `xargs`, `find -exec`, …) or a shell given a script. Each
//! wrapper's options are written as data ([`Spec`]): an option it does not list makes the line
//! unresolved, since it might take the next word as its value (or be the command). Builtins
//! that run text (`eval`, `source`), inline interpreters (`python -c`, `perl -e`, an `awk`
//! program that calls `system`), shells reading their script from standard input and options
//! that run commands (`tar --to-command`, `ssh -o ProxyCommand=…`) are unresolved too.

mod builtins;
mod interpreters;
mod runners;
mod shells;
mod table;
mod wrappers;

use super::expand::Field;
use super::shell::Dialect;
use super::{MAX_DEPTH, Out, SimpleCommand};
use crate::command::{ReadError, refuse};

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
    // Where a program, a library or a module is looked for: set, the same name runs other code.
    const SEARCH_PATHS: &[&str] =
        &["PATH", "GCONV_PATH", "PYTHONPATH", "NODE_PATH", "PERL5LIB", "PERLLIB", "RUBYLIB", "GEM_PATH"];
    if SEARCH_PATHS.contains(&name) {
        return Some("an environment variable that changes which program or module a name runs");
    }
    (NAMES.contains(&name) || name.starts_with("BASH_FUNC_"))
        .then_some("an environment variable that makes a shell or program run other code")
}

/// Resolves a simple command read by bash.
pub(super) fn resolve(out: &mut Out, fields: Vec<Field>, depth: usize) -> Result<(), ReadError> {
    resolve_in(out, fields, depth, Dialect::Bash)
}

/// Resolves a simple command (its expanded words) read by a shell of `dialect`.
pub(super) fn resolve_in(
    out: &mut Out,
    fields: Vec<Field>,
    depth: usize,
    dialect: Dialect,
) -> Result<(), ReadError> {
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
    fn run(&mut self, fields: Vec<Field>, program: Option<Field>, depth: usize) -> Result<(), ReadError> {
        if depth > MAX_DEPTH {
            return refuse(format!("commands nested more than {MAX_DEPTH} deep"));
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
            return refuse(format!(
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
}

/// What a wrapper given no command does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Without {
    /// No command: nothing runs.
    Nothing,
    /// No command: the wrapper starts a shell, which reads standard input.
    Shell,
}
