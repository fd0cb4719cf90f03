//! Bash's (and zsh's) builtins: those that run nothing, those that run their arguments
//! (`command`, `builtin`, `exec`, `time`, …), and those that run text (`eval`, `source`, `trap`),
//! which leave the line unresolved.

use super::{Resolver, dangerous_variable, unknown_here};
use crate::command::ReadError;
use crate::command::expand::Field;
use crate::command::shell::{self};

impl Resolver<'_> {
    /// Builtins of bash; `true` when `name` was one.
    pub(super) fn builtin(
        &mut self,
        name: &str,
        args: &[Field],
        depth: usize,
        whole: &dyn Fn() -> String,
    ) -> Result<bool, ReadError> {
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
    pub(super) fn zsh_builtin(
        &mut self,
        name: &str,
        args: &[Field],
        depth: usize,
        whole: &dyn Fn() -> String,
    ) -> Result<bool, ReadError> {
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
    pub(super) fn declare(&mut self, args: &[Field], whole: &dyn Fn() -> String) {
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
    pub(super) fn names(&mut self, args: &[Field], opts: &str, whole: &dyn Fn() -> String) {
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
    pub(super) fn name_word(&mut self, text: &str, whole: &dyn Fn() -> String) {
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

    pub(super) fn trap(&mut self, args: &[Field], depth: usize) -> Result<(), ReadError> {
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
}
