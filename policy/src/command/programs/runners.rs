//! Programs that run commands remotely or indirectly: `ssh`, `systemd-run`, `xargs` and
//! `find -exec`.

use super::{Resolver, Spec, Without, dangerous_variable, one_word, unknown_here};
use crate::command::ReadError;
use crate::command::expand::Field;

impl Resolver<'_> {
    /// `ssh [options] destination [options] [command …]`: the command's words are joined with
    /// spaces and run by the remote user's shell, read as `sh -c LINE`. Without a command
    /// the remote shell reads standard input.
    pub(super) fn ssh(
        &mut self,
        args: &[Field],
        depth: usize,
        whole: &dyn Fn() -> String,
    ) -> Result<(), ReadError> {
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
    pub(super) fn systemd_run(
        &mut self,
        name: &str,
        args: &[Field],
        depth: usize,
        whole: &dyn Fn() -> String,
    ) -> Result<(), ReadError> {
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

    pub(super) fn xargs(&mut self, args: &[Field], depth: usize) -> Result<(), ReadError> {
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

    pub(super) fn find(&mut self, args: &[Field], depth: usize) -> Result<(), ReadError> {
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
}
