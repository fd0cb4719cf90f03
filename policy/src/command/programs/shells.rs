//! Shells: a shell given a script (`bash -c LINE`, read with the same reader), a shell reading
//! its script from standard input (unresolved), and the wrappers that start one (`su`,
//! `runuser`, `script`, …).

use super::{Resolver, SHELLS, STDIN_PATHS, Spec, Without, one_word, unknown_here};
use crate::command::ReadError;
use crate::command::SimpleCommand;
use crate::command::expand::Field;
use crate::command::shell::{self, Dialect};

impl Resolver<'_> {
    /// The shell a wrapper starts for a command line (`su -c`, `watch`, `flock -c`): read as
    /// `sh -c LINE` (its real path is the user's shell).
    pub(super) fn synthetic_shell(&mut self, line: &str) -> Result<(), ReadError> {
        let argv = [Field::Known("sh".into()), Field::Known("-c".into()), Field::Known(line.to_owned())];
        self.out.push(SimpleCommand::new("sh", &argv)?)?;
        Ok(())
    }

    /// A command line a wrapper hands to a shell.
    pub(super) fn shell_line(&mut self, name: &str, line: &Field, depth: usize) -> Result<(), ReadError> {
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

    /// Wrappers that hand a command line to a shell, or start one.
    pub(super) fn shell_starting(
        &mut self,
        name: &str,
        args: &[Field],
        depth: usize,
        whole: &dyn Fn() -> String,
    ) -> Result<(), ReadError> {
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
                    flags: "bcCegptwxr",
                    // `-q`/`--equexit` take a number of cycles (procps-ng 4).
                    values: "nq",
                    optional: "d",
                    long_flags: &[
                        "beep", "color", "no-color", "errexit", "chgexit", "precise", "no-title", "no-wrap",
                        "exec", "no-rerun",
                    ],
                    long_values: &["interval", "equexit"],
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

    pub(super) fn shell(
        &mut self,
        name: &str,
        idx: usize,
        args: &[Field],
        depth: usize,
    ) -> Result<(), ReadError> {
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
}
