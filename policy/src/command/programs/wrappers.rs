//! Wrappers that run the command after their options: `sudo`, `env` (with `-S` split like
//! `env` does), `nice`, and the generic reader behind `stdbuf`, `timeout`, `nohup`, …

use super::{Resolver, Spec, Without, dangerous_variable, one_word, unknown_here};
use crate::command::ReadError;
use crate::command::expand::Field;
use crate::command::shell::{self};

impl Resolver<'_> {
    /// The command a wrapper runs: `operands` are its argv.
    pub(super) fn command_of(
        &mut self,
        name: &str,
        operands: Vec<Field>,
        depth: usize,
        without: Without,
    ) -> Result<(), ReadError> {
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
    pub(super) fn wrapper(
        &mut self,
        name: &str,
        spec: &Spec,
        args: &[Field],
        leading: usize,
        depth: usize,
        without: Without,
    ) -> Result<(), ReadError> {
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

    pub(super) fn sudo(&mut self, args: &[Field], depth: usize) -> Result<(), ReadError> {
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

    pub(super) fn env(&mut self, args: &[Field], depth: usize) -> Result<(), ReadError> {
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

    pub(super) fn nice(&mut self, args: &[Field], depth: usize) -> Result<(), ReadError> {
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

#[cfg(test)]
mod tests {
    use super::env_split;

    #[test]
    fn env_split_strings_are_split_like_env() {
        assert_eq!(env_split("rm -rf '/a b'"), Some(vec!["rm".into(), "-rf".into(), "/a b".into()]));
        assert_eq!(env_split("a\\tb"), Some(vec!["a\tb".into()]));
        assert_eq!(env_split("${X}"), None);
        assert_eq!(env_split("a\\cb"), None);
    }
}
