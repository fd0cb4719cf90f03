//! External programs by name: each wrapper with its options written as data ([`Spec`]), and
//! the reader of each family (shells, interpreters, remote and indirect runners).

use super::{OTHER_SHELLS, Resolver, SHELLS, STDIN_PATHS, Spec, Without};
use crate::command::ReadError;
use crate::command::expand::Field;

impl Resolver<'_> {
    /// External programs (or builtins called by path).
    pub(super) fn program(
        &mut self,
        name: &str,
        idx: usize,
        args: &[Field],
        depth: usize,
        whole: &dyn Fn() -> String,
    ) -> Result<(), ReadError> {
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
            // Each runs commands it reads (its arguments or standard input: `ed`'s and `dc`'s
            // `!`, `sqlite3`'s `.shell`, `m4`'s `syscmd`, `at`'s job), in a language the reader
            // does not read.
            "ed" | "red" | "dc" | "m4" | "sqlite3" | "at" | "batch" => {
                self.refuse(
                    &whole(),
                    format!("`{name}` runs commands it reads, which the reader does not follow"),
                );
                return Ok(());
            }
            // Each runs a command given on its command line inside a container, a pod or a
            // terminal session: a command the reader does not follow there.
            "docker" | "podman" | "nerdctl" | "docker-compose" | "kubectl" | "oc" | "crictl" | "lxc"
            | "incus" => {
                const RUNS: &[&str] =
                    &["exec", "run", "debug", "attach", "start", "create", "execute", "shell", "console"];
                let runs = args.iter().filter_map(Field::known).any(|a| RUNS.contains(&a));
                if runs || args.iter().any(|a| a.known().is_none()) {
                    self.refuse(
                        &whole(),
                        format!("`{name}` runs a command in a container, which the reader does not follow"),
                    );
                }
                return Ok(());
            }
            "tmux" | "screen" | "byobu" | "dtach" | "abduco" => {
                // Listing and ending sessions run nothing; anything else may run a command.
                const QUIET: &[&str] = &[
                    "ls",
                    "list-sessions",
                    "list-windows",
                    "list-panes",
                    "list-clients",
                    "has-session",
                    "has",
                    "kill-session",
                    "kill-server",
                    "kill-window",
                    "kill-pane",
                    "-ls",
                    "-list",
                ];
                let first =
                    args.iter().find(|a| a.known().is_none_or(|s| !s.starts_with('-') || QUIET.contains(&s)));
                let quiet = first.is_some_and(|a| a.known().is_some_and(|s| QUIET.contains(&s)))
                    && args.iter().all(|a| a.known().is_some());
                if !quiet {
                    self.refuse(
                        &whole(),
                        format!(
                            "`{name}` runs the commands it is given in a session the reader does not follow"
                        ),
                    );
                }
                return Ok(());
            }
            // Each runs a command (or a shell) after options the reader has no table for.
            "capsh" | "setarch" | "linux32" | "linux64" | "i386" | "x86_64" | "uname26" | "prlimit"
            | "choom" | "ssh-agent" | "dbus-run-session" | "dbus-launch" | "valgrind" | "perf" | "ltrace"
            | "gdbserver" | "catchsegv" | "firejail" | "bwrap" | "proot" | "schroot" | "numactl"
            | "cgexec" | "systemd-inhibit" | "unbuffer" | "faketime" | "torsocks" | "proxychains"
            | "proxychains4" => {
                self.refuse(&whole(), format!("`{name}` runs a command the reader does not follow"));
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
}
