//! Commands matched as commands: the `command:` match key. A call's command (`params.cmd` or
//! `params.command`: a shell string or an argv array) is normalized into simple commands,
//! each a program's basename, its flags and its arguments, so that `rm -Rf /`, `rm -fr /`,
//! `/bin/rm -r -f /`, `["rm","-rf","/"]` and `sudo sh -c 'rm -rf /'` all read as `rm` with the
//! flags `-r` and `-f` (or `-R`). What cannot be read strictly (an unbalanced quote, a control
//! character, a program name or flag outside ASCII such as a look-alike letter) is an error:
//! the call is refused when the policy matches on commands. See docs/policy.md.

use serde_json::Value;

use super::model::NamePat;

/// Deepest nesting of `sh -c`, `$(…)` and prefixes read through.
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
    /// The other arguments, in order (everything after `--` among them).
    pub args: Vec<String>,
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

/// One matcher of a `command:` condition: every part given must hold for one simple command.
#[derive(Debug, Clone)]
pub struct CommandMatch {
    /// The program's basename is one of these (names or globs); empty: any program.
    pub programs: Vec<NamePat>,
    /// Each group: at least one of its flags is present.
    pub flags: Vec<Vec<Flag>>,
    /// Each pattern matches at least one argument.
    pub args: Vec<NamePat>,
}

impl CommandMatch {
    /// Whether this simple command matches.
    pub fn matches(&self, cmd: &SimpleCommand) -> bool {
        (self.programs.is_empty() || self.programs.iter().any(|p| p.matches(&cmd.program)))
            && self.flags.iter().all(|group| {
                group.iter().any(|f| match f {
                    Flag::Short(c) => cmd.short.contains(c),
                    Flag::Long(l) => cmd.long.iter().any(|x| x == l),
                })
            })
            && self.args.iter().all(|p| cmd.args.iter().any(|a| p.matches(a)))
    }

    /// As written (normalized), for the policy hash and `explain`.
    pub fn to_json(&self) -> Value {
        serde_json::json!({
            "program": self.programs.iter().map(NamePat::as_str).collect::<Vec<_>>(),
            "flags": self.flags.iter().map(|g| g.iter().map(Flag::as_text).collect::<Vec<_>>().join("|")).collect::<Vec<_>>(),
            "args": self.args.iter().map(NamePat::as_str).collect::<Vec<_>>(),
        })
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
    /// Whether the condition holds for the call's commands (`None`: the call has no command,
    /// or it could not be read: never holds).
    pub fn holds(&self, commands: Option<&[SimpleCommand]>) -> bool {
        let Some(cmds) = commands.filter(|c| !c.is_empty()) else { return false };
        let one = |c: &SimpleCommand| self.matchers.iter().any(|m| m.matches(c));
        if self.all { cmds.iter().all(one) } else { cmds.iter().any(one) }
    }
}

/// The call's command, normalized: `None` when `params` has neither `cmd` nor `command`;
/// an error (naming the field) when it cannot be read strictly.
pub fn from_params(params: &Value) -> Option<Result<Vec<SimpleCommand>, String>> {
    let mut found = false;
    let mut out = Vec::new();
    for key in ["cmd", "command"] {
        let Some(value) = params.get(key) else { continue };
        found = true;
        if let Err(e) = read_value(value, params.get("args"), &mut out) {
            return Some(Err(format!("`params.{key}`: {e}")));
        }
    }
    found.then_some(Ok(out))
}

fn read_value(value: &Value, extra: Option<&Value>, out: &mut Vec<SimpleCommand>) -> Result<(), String> {
    let extra_words = match extra {
        Some(Value::Array(items)) => strings(items)?,
        _ => Vec::new(),
    };
    match value {
        Value::String(text) => {
            let mut cmds = Vec::new();
            split_shell(text, 0, &mut cmds)?;
            // `{"command": "rm", "args": ["-rf", "/"]}`: the arguments belong to the program.
            if let Some(last) = cmds.last_mut() {
                last.extend(extra_words);
            }
            for words in cmds {
                normalize(words, 0, out)?;
            }
            Ok(())
        }
        Value::Array(items) => {
            let mut words = strings(items)?;
            words.extend(extra_words);
            normalize(words, 0, out)
        }
        _ => Err("must be a string (a shell command) or an array of strings (argv)".into()),
    }
}

fn strings(items: &[Value]) -> Result<Vec<String>, String> {
    items
        .iter()
        .map(|v| match v {
            Value::String(s) => {
                check_controls(s)?;
                Ok(s.clone())
            }
            _ => Err("an argv array must hold only strings".to_owned()),
        })
        .collect()
}

fn check_controls(s: &str) -> Result<(), String> {
    match s.chars().find(|c| c.is_control()) {
        Some(c) => Err(format!("control character U+{:04X} in a command", u32::from(c))),
        None => Ok(()),
    }
}

/// Splits a shell string into simple commands (lists of words) the way a POSIX shell reads
/// them: quotes and backslashes, `;` `&` `|` `(` `)` and newlines between commands, `#`
/// comments; `$(…)` and backquotes are read as commands of their own too. Any other Unicode
/// whitespace separates words like a space (so `rm<NBSP>-rf` is `rm -rf`).
pub fn split_shell(text: &str, depth: usize, out: &mut Vec<Vec<String>>) -> Result<(), String> {
    if depth > MAX_DEPTH {
        return Err(format!("commands nested more than {MAX_DEPTH} deep"));
    }
    let chars: Vec<char> = text.chars().collect();
    let mut words: Vec<String> = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut i = 0;
    macro_rules! end_word {
        () => {
            if in_word {
                words.push(std::mem::take(&mut word));
            }
            #[allow(unused_assignments)]
            {
                in_word = false;
            }
        };
    }
    macro_rules! end_cmd {
        () => {
            end_word!();
            if !words.is_empty() {
                out.push(std::mem::take(&mut words));
                if out.len() > MAX_COMMANDS {
                    return Err(format!("more than {MAX_COMMANDS} commands"));
                }
            }
        };
    }
    while i < chars.len() {
        let c = chars[i];
        match c {
            '\n' | ';' | '(' | ')' | '|' => {
                end_cmd!();
            }
            '&' => {
                if in_word && (word.ends_with('>') || word.ends_with('<')) {
                    word.push('&');
                } else {
                    end_cmd!();
                }
            }
            ' ' | '\t' => {
                end_word!();
            }
            c if c.is_control() => {
                return Err(format!("control character U+{:04X} in a command", u32::from(c)));
            }
            c if c.is_whitespace() => {
                // Not a separator to a POSIX shell, but one to a reader that looks like one:
                // read the words apart, as the call presents itself.
                end_word!();
            }
            '#' if !in_word => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
                continue;
            }
            '\\' => {
                match chars.get(i + 1) {
                    None => return Err("a command ends with a lone backslash".into()),
                    Some('\n') => {}
                    Some(&next) => {
                        if next.is_control() {
                            return Err(format!("control character U+{:04X} in a command", u32::from(next)));
                        }
                        word.push(next);
                        in_word = true;
                    }
                }
                i += 2;
                continue;
            }
            '\'' => {
                let close = (i + 1..chars.len())
                    .find(|&j| chars[j] == '\'')
                    .ok_or("unbalanced single quote in a command")?;
                let inner: String = chars[i + 1..close].iter().collect();
                check_controls(&inner)?;
                word.push_str(&inner);
                in_word = true;
                i = close + 1;
                continue;
            }
            '"' => {
                in_word = true;
                i += 1;
                loop {
                    let Some(&d) = chars.get(i) else {
                        return Err("unbalanced double quote in a command".into());
                    };
                    match d {
                        '"' => break,
                        '\\' => match chars.get(i + 1) {
                            Some(&e @ ('$' | '`' | '"' | '\\')) => {
                                word.push(e);
                                i += 1;
                            }
                            Some('\n') => i += 1,
                            _ => word.push('\\'),
                        },
                        '$' if chars.get(i + 1) == Some(&'(') => {
                            let close = substitution(&chars, i + 1, depth, out)?;
                            word.extend(chars[i..=close].iter());
                            i = close;
                        }
                        '`' => {
                            let close = backquote(&chars, i, depth, out)?;
                            word.extend(chars[i..=close].iter());
                            i = close;
                        }
                        d if d.is_control() && d != '\n' && d != '\t' => {
                            return Err(format!("control character U+{:04X} in a command", u32::from(d)));
                        }
                        d => word.push(d),
                    }
                    i += 1;
                }
                i += 1;
                continue;
            }
            '$' if chars.get(i + 1) == Some(&'(') => {
                let close = substitution(&chars, i + 1, depth, out)?;
                word.extend(chars[i..=close].iter());
                in_word = true;
                i = close + 1;
                continue;
            }
            '`' => {
                let close = backquote(&chars, i, depth, out)?;
                word.extend(chars[i..=close].iter());
                in_word = true;
                i = close + 1;
                continue;
            }
            c => {
                word.push(c);
                in_word = true;
            }
        }
        i += 1;
    }
    end_cmd!();
    Ok(())
}

/// `$(…)` whose `(` is at `open`: reads the inner commands into `out`, returns the index of `)`.
fn substitution(
    chars: &[char],
    open: usize,
    depth: usize,
    out: &mut Vec<Vec<String>>,
) -> Result<usize, String> {
    let mut level = 0usize;
    let mut j = open;
    while j < chars.len() {
        match chars[j] {
            '\\' => j += 1,
            '\'' => {
                j = (j + 1..chars.len())
                    .find(|&k| chars[k] == '\'')
                    .ok_or("unbalanced single quote in a command")?;
            }
            '(' => level += 1,
            ')' => {
                level -= 1;
                if level == 0 {
                    let inner: String = chars[open + 1..j].iter().collect();
                    split_shell(&inner, depth + 1, out)?;
                    return Ok(j);
                }
            }
            _ => {}
        }
        j += 1;
    }
    Err("unbalanced `$(` in a command".into())
}

/// A backquoted command starting at `open`: reads it into `out`, returns the closing index.
fn backquote(chars: &[char], open: usize, depth: usize, out: &mut Vec<Vec<String>>) -> Result<usize, String> {
    let mut j = open + 1;
    let mut inner = String::new();
    while j < chars.len() {
        match chars[j] {
            '\\' if j + 1 < chars.len() => {
                inner.push(chars[j + 1]);
                j += 1;
            }
            '`' => {
                split_shell(&inner, depth + 1, out)?;
                return Ok(j);
            }
            c => inner.push(c),
        }
        j += 1;
    }
    Err("unbalanced backquote in a command".into())
}

fn is_assignment(word: &str) -> bool {
    match word.split_once('=') {
        Some((name, _)) => {
            !name.is_empty()
                && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                && !name.as_bytes()[0].is_ascii_digit()
        }
        None => false,
    }
}

const RESERVED: &[&str] =
    &["!", "{", "}", "then", "do", "else", "elif", "if", "while", "until", "fi", "done"];
const SHELLS: &[&str] = &["sh", "bash", "dash", "zsh", "ksh", "ash", "mksh", "yash", "fish"];

/// Turns one simple command's words into [`SimpleCommand`]s: itself, and what it runs when its
/// program is a prefix (`sudo`, `env`, `sh -c`, `xargs`, …).
fn normalize(words: Vec<String>, depth: usize, out: &mut Vec<SimpleCommand>) -> Result<(), String> {
    if depth > MAX_DEPTH {
        return Err(format!("commands nested more than {MAX_DEPTH} deep"));
    }
    let mut rest: &[String] = &words;
    while let Some((first, tail)) = rest.split_first() {
        if RESERVED.contains(&first.as_str()) || is_assignment(first) {
            rest = tail;
        } else {
            break;
        }
    }
    let Some((program_word, args)) = rest.split_first() else { return Ok(()) };
    if !program_word.is_ascii() {
        return Err(format!(
            "the program `{program_word}` has characters outside ASCII (look-alike letters and spaces are refused)"
        ));
    }
    let program = program_word.rsplit('/').next().unwrap_or(program_word).to_owned();
    let mut cmd =
        SimpleCommand { program: program.clone(), short: Vec::new(), long: Vec::new(), args: Vec::new() };
    let mut options_over = false;
    for arg in args {
        if options_over || arg == "-" || !arg.starts_with('-') {
            cmd.args.push(arg.clone());
        } else if arg == "--" {
            options_over = true;
        } else if !arg.is_ascii() {
            return Err(format!("the flag `{arg}` has characters outside ASCII (look-alikes are refused)"));
        } else if let Some(long) = arg.strip_prefix("--") {
            cmd.long.push(long.split('=').next().unwrap_or(long).to_owned());
        } else {
            cmd.short.extend(arg.chars().skip(1));
        }
    }
    out.push(cmd);
    if out.len() > MAX_COMMANDS {
        return Err(format!("more than {MAX_COMMANDS} commands"));
    }
    // What the program runs, when it is a prefix.
    let inner: Option<Vec<String>> = match program.as_str() {
        "sudo" | "doas" => {
            Some(skip_options(args, &["-u", "-g", "-C", "-D", "-h", "-p", "-r", "-t", "-U", "-T"], 0))
        }
        "nohup" | "exec" | "command" | "builtin" | "setsid" | "time" | "stdbuf" | "unbuffer" => {
            Some(skip_options(args, &[], 0))
        }
        "nice" => Some(skip_options(args, &["-n"], 0)),
        "ionice" => Some(skip_options(args, &["-c", "-n", "-p"], 0)),
        "timeout" => Some(skip_options(args, &["-s", "-k"], 1)),
        "chroot" => Some(skip_options(args, &[], 1)),
        "xargs" => Some(skip_options(args, &["-I", "-L", "-n", "-P", "-s", "-d", "-E", "-a"], 0)),
        "env" => Some(env_command(args, depth)?),
        "eval" => {
            let mut cmds = Vec::new();
            split_shell(&args.join(" "), depth + 1, &mut cmds)?;
            for words in cmds {
                normalize(words, depth + 1, out)?;
            }
            None
        }
        "busybox" => Some(args.to_vec()),
        p if SHELLS.contains(&p) => {
            if let Some(script) = shell_string(args) {
                let mut cmds = Vec::new();
                split_shell(script, depth + 1, &mut cmds)?;
                for words in cmds {
                    normalize(words, depth + 1, out)?;
                }
            }
            None
        }
        _ => None,
    };
    if let Some(words) = inner
        && !words.is_empty()
    {
        normalize(words, depth + 1, out)?;
    }
    Ok(())
}

/// The words after a prefix's options (`with_value` take the next word) and `positionals`
/// leading operands (`timeout DURATION`, `chroot DIR`).
fn skip_options(args: &[String], with_value: &[&str], positionals: usize) -> Vec<String> {
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        if a == "--" {
            i += 1;
            break;
        }
        if !a.starts_with('-') || a == "-" {
            break;
        }
        let takes_value =
            with_value.contains(&a.as_str()) || (a.starts_with("--") && !a.contains('=') && is_value_long(a));
        i += if takes_value { 2 } else { 1 };
    }
    let i = (i + positionals).min(args.len());
    args[i..].to_vec()
}

fn is_value_long(flag: &str) -> bool {
    matches!(flag, "--user" | "--group" | "--chdir" | "--signal" | "--kill-after" | "--unset" | "--prompt")
}

/// What `env [OPTIONS] [NAME=VALUE]... COMMAND` runs; `-S STRING` is split like a shell would.
fn env_command(args: &[String], depth: usize) -> Result<Vec<String>, String> {
    let mut i = 0;
    let mut words = Vec::new();
    while i < args.len() {
        let a = args[i].as_str();
        if a == "--" {
            i += 1;
            break;
        }
        if let Some(script) = a.strip_prefix("--split-string=").or(if a == "-S" || a == "--split-string" {
            i += 1;
            args.get(i).map(String::as_str)
        } else {
            a.strip_prefix("-S").filter(|s| !s.is_empty())
        }) {
            let mut cmds = Vec::new();
            split_shell(script, depth + 1, &mut cmds)?;
            words.extend(cmds.into_iter().flatten());
            i += 1;
            break;
        }
        if !a.starts_with('-') || a == "-" {
            break;
        }
        i += if matches!(a, "-u" | "-C" | "--unset" | "--chdir") { 2 } else { 1 };
    }
    words.extend(args[i.min(args.len())..].iter().cloned());
    Ok(words)
}

/// The script of `sh [OPTIONS] -c SCRIPT` (`-c` alone or in a cluster such as `-lc`).
fn shell_string(args: &[String]) -> Option<&str> {
    let mut wants = false;
    for a in args {
        if wants && !a.starts_with('-') {
            return Some(a);
        }
        if a == "--" {
            continue;
        }
        if a.starts_with('-') && !a.starts_with("--") && a.contains('c') {
            wants = true;
        } else if !a.starts_with('-') {
            return None;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cmds(v: Value) -> Vec<SimpleCommand> {
        from_params(&json!({ "cmd": v })).unwrap().unwrap()
    }

    fn rm_rf() -> CommandCond {
        CommandCond {
            matchers: vec![CommandMatch {
                programs: vec![NamePat::new("rm")],
                flags: vec![
                    vec![Flag::Short('r'), Flag::Short('R'), Flag::Long("recursive".into())],
                    vec![Flag::Short('f'), Flag::Long("force".into())],
                ],
                args: vec![],
            }],
            all: false,
        }
    }

    #[test]
    fn every_spelling_of_rm_rf_is_rm_with_r_and_f() {
        // Regression: `pattern: "rm -rf"` let each of these through as a low-risk DEFER.
        for v in [
            json!("rm -rf /"),
            json!("rm -Rf /"),
            json!("rm -fr /"),
            json!("/bin/rm -r -f /"),
            json!("rm --recursive --force /"),
            json!("rm / -rf"),
            json!(["rm", "-rf", "/"]),
            json!("rm\u{a0}-rf /"),
            json!("rm\u{2003}-r\u{3000}-f /"),
            json!("sudo rm -rf /"),
            json!("sudo -u root -- rm -rf /"),
            json!("env -i PATH=/bin rm -rf /"),
            json!("env -S 'rm -rf' /"),
            json!("sh -c 'rm -rf /'"),
            json!("bash -lc \"cd / && rm -rf .\""),
            json!("ls; rm -rf /"),
            json!("ls && sudo sh -c \"nohup rm -rf / &\""),
            json!("echo $(rm -rf /)"),
            json!("echo `rm -rf /`"),
            json!("FOO=1 rm -rf /"),
            json!("xargs rm -rf < list"),
            json!("timeout 5 nice -n 10 rm -rf /"),
            json!(["sh", "-c", "rm -rf /"]),
            json!("r\\m -rf /"),
            json!("'rm' -rf /"),
        ] {
            let c = cmds(v.clone());
            assert!(rm_rf().holds(Some(&c)), "{v} read as {c:?}");
        }
        for v in [json!("rm -r /tmp/x"), json!("rm -f x"), json!("echo 'rm -rf /'"), json!("ls -rf")] {
            assert!(!rm_rf().holds(Some(&cmds(v.clone()))), "{v}");
        }
    }

    #[test]
    fn what_cannot_be_read_strictly_is_an_error() {
        for v in [
            json!("rm -rf '/"),
            json!("echo \"x"),
            json!("echo $(rm"),
            json!("echo `x"),
            json!("rm -rf /\r"),
            json!("r\u{0430}m -rf /"), // Cyrillic a
            json!("\u{0440}m -rf /"),  // Cyrillic er, looks like p... or r
            json!("rm \u{2013}rf /"),  // en dash: refused as a flag? It is an argument: fine
            json!(["rm", 5]),
            json!(5),
        ] {
            let got = from_params(&json!({ "cmd": v }));
            if v == json!("rm \u{2013}rf /") {
                // An en dash is not a dash: the word is an argument, not a flag.
                assert!(!rm_rf().holds(got.unwrap().ok().as_deref()));
                continue;
            }
            assert!(matches!(got, Some(Err(_))), "{v} was read: {got:?}");
        }
        let e = from_params(&json!({"command": "\u{0440}m -rf /"})).unwrap().unwrap_err();
        assert!(e.starts_with("`params.command`:") && e.contains("outside ASCII"), "{e}");
        assert_eq!(from_params(&json!({"path": "/"})), None);
    }

    #[test]
    fn in_an_allow_rule_every_command_must_match() {
        let ls = CommandCond {
            matchers: vec![CommandMatch { programs: vec![NamePat::new("ls")], flags: vec![], args: vec![] }],
            all: true,
        };
        assert!(ls.holds(Some(&cmds(json!("ls -la /tmp")))));
        assert!(!ls.holds(Some(&cmds(json!("ls; rm -rf /")))));
        assert!(!ls.holds(Some(&cmds(json!("ls $(rm -rf /)")))));
        assert!(!ls.holds(Some(&cmds(json!("sudo ls")))));
        assert!(ls.holds(Some(&cmds(json!("ls 2>&1")))));
        assert!(!ls.holds(None));
        let args = CommandMatch {
            programs: vec![NamePat::new("dd")],
            flags: vec![],
            args: vec![NamePat::new("if=*")],
        };
        assert!(args.matches(&cmds(json!("dd if=/dev/zero of=/dev/sda"))[0]));
        assert_eq!(
            from_params(&json!({"command": "rm", "args": ["-rf", "/"]})).unwrap().unwrap()[0].short,
            vec!['r', 'f']
        );
    }
}
