//! Interpreters (`python`, `perl`, `node`, …): a script file is read as a program; inline
//! program text (`-c`, `-e`) is unresolved. `awk` programs that call `system` or pipe to a
//! command, `sed` scripts with `e` or `w`, and options that run commands are unresolved too.

use super::{Resolver, STDIN_PATHS, Spec};
use crate::command::expand::Field;
use crate::command::{ReadError, refuse};

impl Resolver<'_> {
    /// Inline interpreters: a program given as an argument, or read from standard input.
    pub(super) fn interpreter(&mut self, name: &str, args: &[Field], whole: &dyn Fn() -> String) {
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

    pub(super) fn awk(&mut self, name: &str, args: &[Field], whole: &dyn Fn() -> String) {
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

    pub(super) fn sed(&mut self, args: &[Field], whole: &dyn Fn() -> String) {
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
    pub(super) fn runs_commands_by_option(&mut self, name: &str, args: &[Field], whole: &dyn Fn() -> String) {
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
            crate::command::abbreviates(given, full) && !exact.contains(&given)
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
                // Options that name a program or command to run, in any abbreviation: the
                // transports' (`clone`, `fetch`, `pull`, `ls-remote`, `push`, `archive`),
                // `rebase --exec`/`-x`, `difftool --extcmd`/`-x`, `bisect run`, `submodule
                // foreach`.
                let mut rest = known.iter().copied();
                let mut sub = None;
                while let Some(a) = rest.next() {
                    if matches!(
                        a,
                        "-C" | "-c" | "--git-dir" | "--work-tree" | "--namespace" | "--super-prefix"
                    ) {
                        rest.next();
                    } else if !a.starts_with('-') {
                        sub = Some(a);
                        break;
                    }
                }
                let after: Vec<&str> = rest.collect();
                let short =
                    |f: &str| after.iter().any(|a| *a == f || (a.starts_with(f) && !a.starts_with("--")));
                let runs = long_prefix(&["--upload-pack", "--receive-pack", "--exec", "--extcmd"])
                    || match sub {
                        Some("clone") => short("-u"),
                        Some("rebase" | "difftool") => short("-x"),
                        Some("bisect") => after.first() == Some(&"run"),
                        Some("submodule") => after.contains(&"foreach"),
                        _ => false,
                    };
                if hit {
                    Some("`git -c` sets configuration that can run commands")
                } else {
                    runs.then_some("a `git` option that names a program to run")
                }
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
            "make" | "gmake" => {
                // `-E` is `--eval`'s short form (bundled too: `-sE`); `-f -` reads the makefile
                // from standard input.
                let short_eval =
                    known.iter().any(|a| a.starts_with('-') && !a.starts_with("--") && a.contains('E'));
                let stdin_makefile = known.iter().enumerate().any(|(k, a)| {
                    let names_file = *a == "-f"
                        || ["--file", "--makefile"]
                            .iter()
                            .any(|p| *a == *p || abbreviated(a, p) && !a.contains('='));
                    let inline = ["-f-", "--file=-", "--makefile=-"].contains(a)
                        || a.ends_with("=-") && ["--file", "--makefile"].iter().any(|p| abbreviated(a, p));
                    inline || names_file && known.get(k + 1) == Some(&"-")
                });
                if short_eval || long_prefix(&["--eval"]) {
                    Some("`make --eval` (`-E`) runs given text")
                } else if stdin_makefile {
                    Some("`make -f -` reads its makefile from standard input")
                } else {
                    None
                }
            }
            "split" => long_prefix(&["--filter"]).then_some("`split --filter` runs a shell command"),
            "less" | "more" => known
                .iter()
                .any(|a| a.starts_with('+') || a.starts_with("--cmd"))
                .then_some("`less +…` runs its commands, `!` included"),
            _ => None,
        };
        if let Some(why) = why {
            self.refuse(&whole(), why);
        }
    }
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
    fn read(&self, args: &[Field]) -> Result<(), ReadError> {
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
                    return refuse(format!("runs program text given with `--{lname}`"));
                }
                if lname == "help" || lname == "version" {
                    return Ok(());
                }
                if self.long_values.contains(&lname) && !long.contains('=') {
                    i += 1;
                } else if !(long.contains('=') || self.long_flags.contains(&lname)) {
                    return refuse(format!("has an option the reader does not know (`{s}`)"));
                }
                continue;
            }
            let chars: Vec<char> = s.chars().skip(1).collect();
            let mut k = 0;
            while k < chars.len() {
                let c = chars[k];
                let rest: String = chars[k + 1..].iter().collect();
                if self.inline.contains(c) {
                    return refuse(format!("runs program text given with `-{c}`"));
                }
                if self.interactive.contains(c) {
                    return refuse(format!("reads commands from standard input (`-{c}`)"));
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
                        _ => return refuse(format!("has a switch the reader does not know (`-{c}`)")),
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
                return refuse(format!("has an option the reader does not know (`-{c}`)"));
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
    use super::sed_script_runs_nothing;

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
}
