//! The command reader against bash itself.
//!
//! Design. Command lines are generated from a fixed seed (wrappers with their options, quoting
//! including `$'…'`, brace expansion, `;` `&&` `||` `|` `&`, subshells, groups, `if`/`for`/
//! `case`, substitutions, nesting through `bash -c`/`sh -c`, absolute paths, and variables,
//! globs and substitutions in command position), together with every line of the committed
//! corpus `shell_differential_corpus.jsonl` (lines where the reader and bash once disagreed).
//! Each line runs under real bash, `bash -c LINE`, traced by `strace -f -e trace=execve`, which
//! records every program bash and its children actually executed, with its argv.
//!
//! What runs is harmless: `PATH` starts with a directory of stubs (symbolic links to `true`)
//! named like the programs the lines use (`rm`, `cat`, `python3`, `sudo`, …), so `rm -rf x`
//! executes a stub that does nothing. The wrappers that only need the process itself are the
//! real system programs (`env`, `nice`, `stdbuf`, `timeout`, `nohup`, `xargs`, `setsid`,
//! `flock`, `taskset`, `ionice`, `chrt`, `find`), so they really execute what follows them, by
//! their own option grammar. Wrappers that need privileges (`sudo`, `doas`, `su`, `runuser`,
//! `pkexec`, `nsenter`, `unshare`, `chroot`) are stubs here, so bash runs the stub and nothing
//! after it: their option tables are covered by the unit tests of `policy::command` instead.
//! `watch` (which never ends) is a stub too. The generator never writes what would leave the
//! stubs (`env -i`, `command -p`, a `PATH` assignment, a wrapper after `exec -c`, a glob over a
//! system directory), and each `flock` gets its own lock file. As root the run drops to uid/gid
//! 65534, in a temporary directory. Each traced process carries `FARAMESH_LINE=<n>` in its
//! environment, which ties every `execve` to its line; the lines run in two batches, one
//! `strace` each, so thousands take seconds.
//!
//! The rule checked: when the reader says a line is resolved, every program bash executed
//! (but the `bash -c` running the line) is one of the reader's commands: same program
//! basename, and the same argv whenever the reader knows every word of it. An unresolved line
//! may run anything. The test also requires a good share of the lines to be resolved, so a
//! reader that refuses everything fails it.
//!
//! `FARAMESH_DIFF_LINES` (default 2500) and `FARAMESH_DIFF_SEED` change the generated lines.
//! Without bash or strace the test says so and passes (`scripts/test.sh` installs strace).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "tests fail by panicking")]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use faramesh_policy::command::{Reading, SimpleCommand, read_line};

/// Programs the lines run that exist here only as stubs.
const STUBS: &[&str] = &[
    "rm", "ls", "cat", "mkfs", "dd", "shutdown", "chmod", "curl", "touch", "grep", "cp", "mv", "echo",
    "python3", "perl", "node", "ruby", "php", "awk", "sed", "sudo", "doas", "pkexec", "su", "runuser",
    "nsenter", "unshare", "chroot", "watch", "git", "tar", "ssh", "wc", "head",
];
/// Real wrappers the lines use (must be installed).
const REAL: &[&str] = &[
    "env", "nice", "stdbuf", "timeout", "nohup", "xargs", "setsid", "flock", "taskset", "ionice", "chrt",
    "find", "bash", "sh",
];
/// Programs lines may target.
const TARGETS: &[&str] =
    &["rm", "ls", "cat", "mkfs", "dd", "chmod", "touch", "grep", "cp", "mv", "git", "tar", "wc", "head"];

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).map(|d| d.join(name)).find(|f| f.is_file()))
        .unwrap_or(None)
}

/// splitmix64: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

fn squote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

fn dquote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        if matches!(c, '\\' | '"' | '$' | '`') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

struct Gen {
    rng: Rng,
    stubs: String,
    /// Where lock files go: each `flock` gets its own, so no two ever wait for each other.
    locks: String,
    n_locks: usize,
}

impl Gen {
    /// A word spelled one of the ways bash reads as that word.
    fn spell(&mut self, w: &str) -> String {
        let plain = w.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=".contains(c));
        match self.rng.below(14) {
            0 => squote(w),
            1 => dquote(w),
            2 if plain => format!("\\{w}"),
            3 => format!("$'{}'", w.chars().map(|c| format!("\\x{:02x}", c as u32)).collect::<String>()),
            4 => format!("$'{}'", w.chars().map(|c| format!("\\{:03o}", c as u32)).collect::<String>()),
            5 if plain && w.len() > 1 => format!("{}''{}", &w[..1], &w[1..]),
            6 if plain && w.len() > 1 => format!("\"{}\"{}", &w[..1], &w[1..]),
            7 if plain => format!("{{{w},}}"),
            8 => format!("$'{}'", w.replace('\\', "\\\\").replace('\'', "\\'")),
            9 if plain && w.len() > 1 => format!("{}\\{}", &w[..1], &w[1..]),
            10 => format!(
                "$'\\u{:04x}{}'",
                w.chars().next().map_or(0, |c| c as u32),
                &w[w.chars().next().map_or(0, char::len_utf8)..].replace('\'', "\\'")
            ),
            _ if plain => w.to_owned(),
            _ => squote(w),
        }
    }

    fn arg(&mut self) -> String {
        match self.rng.below(20) {
            0 => "{a,b}".into(),
            1 => "{1..3}".into(),
            2 => "x{,y}".into(),
            3 => "\"$HOME\"".into(),
            4 => "$HOME".into(),
            5 => "*".into(),
            6 => "'a b'".into(),
            7 => "--".into(),
            8 => "\"\"".into(),
            9 => "$'-r\\x66'".into(),
            _ => {
                let w = self.rng.pick(&[
                    "-rf",
                    "-r",
                    "-f",
                    "-R",
                    "--force",
                    "--recursive",
                    "x",
                    "y",
                    "-",
                    "a=b",
                    "-la",
                    "/tmp/t",
                    "-n",
                ]);
                self.spell(w)
            }
        }
    }

    fn program(&mut self) -> String {
        let t = self.rng.pick(TARGETS);
        match self.rng.below(12) {
            0 => format!("{}/{t}", self.stubs),
            1 => format!("{{{t},-rf}}"),
            _ => self.spell(t),
        }
    }

    fn wrapper(&mut self) -> String {
        let w = self.wrapper_plain();
        // Sometimes the wrapper's own name is spelled another way.
        match w.split_once(' ') {
            Some((name, rest)) if self.rng.chance(20) => format!("{} {rest}", self.spell(name)),
            _ => w,
        }
    }

    fn wrapper_plain(&mut self) -> String {
        self.n_locks += 1;
        let lock = format!("{}/lock{}", self.locks, self.n_locks);
        match self.rng.below(52) {
            30 => "env 'B=x y' ".into(),
            31 => "env -S 'C=1' ".into(),
            32 => "env --split-string='D=2 E=3' ".into(),
            33 => "nice -n5 ".into(),
            34 => "nice -- ".into(),
            35 => "stdbuf -e0 -oL -- ".into(),
            36 => "timeout --preserve-status -v 5 ".into(),
            37 => "timeout -k1 5 -- ".into(),
            38 => "nohup -- ".into(),
            39 => "xargs -0 ".into(),
            40 => "xargs -n 1 -P 1 ".into(),
            41 => format!("flock -w 1 {lock} "),
            42 => "taskset -a 0x1 ".into(),
            43 => "ionice -t -c 3 ".into(),
            44 => "ionice -n 7 ".into(),
            45 => "chrt -b 0 ".into(),
            46 => "chrt --idle 0 ".into(),
            47 => "command -- ".into(),
            48 => "{nice,-n,3} ".into(),
            49 => "setsid -f ".into(),
            50 => "env A=1 B=2 ".into(),
            51 => "sudo -E -- ".into(),
            0 => "env ".into(),
            1 => "env A=1 ".into(),
            2 => "env -u FOO ".into(),
            3 => "env -- ".into(),
            4 => "nice ".into(),
            5 => "nice -n 5 ".into(),
            6 => "nice -5 ".into(),
            7 => "nice --adjustment=3 ".into(),
            8 => "stdbuf -oL ".into(),
            9 => "stdbuf -o L ".into(),
            10 => "stdbuf -i0 -e L ".into(),
            11 => "stdbuf --output=L ".into(),
            12 => "timeout 5 ".into(),
            13 => "timeout -s KILL 5 ".into(),
            14 => "timeout --kill-after=1 5 ".into(),
            15 => "nohup ".into(),
            16 => "setsid ".into(),
            17 => "setsid -w ".into(),
            18 => "xargs ".into(),
            19 => "xargs -r ".into(),
            20 => "xargs --max-args=1 ".into(),
            21 => format!("flock {lock} "),
            22 => format!("flock -n {lock} "),
            23 => "taskset 0x1 ".into(),
            24 => "taskset -c 0 ".into(),
            25 => "ionice -c 3 ".into(),
            26 => "ionice -c2 -n7 ".into(),
            27 => "chrt -o 0 ".into(),
            28 => "command ".into(),
            _ => "sudo -u root ".into(),
        }
    }

    fn simple(&mut self) -> String {
        let mut s = String::new();
        if self.rng.chance(10) {
            s.push_str("A=1 ");
        }
        for _ in 0..self.rng.below(3) {
            s.push_str(&self.wrapper());
        }
        s.push_str(&self.program());
        for _ in 0..self.rng.below(4) {
            s.push(' ');
            s.push_str(&self.arg());
        }
        match self.rng.below(10) {
            0 => s.push_str(" >/dev/null"),
            1 => s.push_str(" 2>&1"),
            2 => s.push_str(" </dev/null"),
            _ => {}
        }
        s
    }

    fn command(&mut self, depth: usize) -> String {
        let nest = depth < 2;
        match self.rng.below(64) {
            56 => format!(
                "case b in a) {} ;& b) {} ;;& *) {} ;; esac",
                self.simple(),
                self.simple(),
                self.simple()
            ),
            57 => format!("a=({} x); \"${{a[@]}}\"", self.rng.pick(TARGETS)),
            58 => format!("select v in a; do {}; done", self.simple()),
            59 => format!("{{ exec >/dev/null; {}; }}", self.simple()),
            60 => {
                let t = self.rng.pick(TARGETS);
                format!("{}\\\n{} {}", &t[..1], &t[1..], self.arg())
            }
            61 => format!("time {} | {}", self.simple(), self.simple()),
            62 => format!("x=1 y=$({}) {}", self.simple(), self.simple()),
            63 => format!("<({}) {}", self.simple(), self.arg()),
            32 if nest => format!("bash -e -x -c {} arg0 arg1", squote(&self.line(depth + 1))),
            33 if nest => format!("bash --norc --noprofile -c {}", squote(&self.line(depth + 1))),
            34 if nest => format!("dash -c {}", squote(&self.line(depth + 1))),
            35 if nest => format!("bash -o pipefail -o errexit -c -- {}", squote(&self.line(depth + 1))),
            36 => format!(
                "if false; then {}; elif {}; then {}; else {}; fi",
                self.simple(),
                self.simple(),
                self.simple(),
                self.simple()
            ),
            37 => format!("until true; do {}; done", self.simple()),
            38 => format!("while read -r v; do {}; done <<< 'a b'", self.simple()),
            39 => format!("{} \\# not a comment", self.simple()),
            40 => format!("{} \\\n  {}", self.simple(), self.arg()),
            41 => format!("echo \"$({})\"", self.simple()),
            42 => format!("echo \"x $({} | {}) y\"", self.simple(), self.simple()),
            43 => format!("{} > >({})", self.simple(), self.simple()),
            44 => format!("{} 3>&1 {{fd}}>/dev/null &>/dev/null", self.simple()),
            45 => format!("{{ cat <<EOF\n$({})\nEOF\n}}", self.simple()),
            46 => format!("{{ cat <<'EOF'\n$({})\nEOF\n{}; }}", self.simple(), self.simple()),
            47 => format!("[[ a =~ ^(a|b)$ ]] && {}", self.simple()),
            48 => format!("case x in (x|y) {} ;; esac", self.simple()),
            49 => format!("time -p -- {}", self.simple()),
            50 => format!("builtin echo {}", self.arg()),
            51 => {
                let p = self.program();
                format!("find . -maxdepth 0 -execdir {p} {{}} +")
            }
            52 => format!("echo a | xargs -i {} {{}}", self.program()),
            53 => format!("echo a | xargs -I X {} X", self.program()),
            // `exec -c` empties the environment: only a stub may follow (a wrapper would
            // search the default PATH, past the stubs).
            54 => {
                let (p, a) = (self.program(), self.arg());
                format!("( exec -c {p} {a} )")
            }
            55 => format!("x=$({}) {}", self.simple(), self.simple()),
            0 if nest => format!("( {} )", self.line(depth + 1)),
            1 if nest => format!("{{ {}; }}", self.line(depth + 1)),
            2 if nest => format!("bash -c {}", squote(&self.line(depth + 1))),
            3 if nest => format!("sh -c {}", dquote(&self.line(depth + 1))),
            4 if nest => format!("bash -o errexit -c {}", squote(&self.line(depth + 1))),
            5 if nest => format!("bash -O extglob +o posix -c {}", squote(&self.line(depth + 1))),
            6 => format!("if {}; then {}; fi", self.simple(), self.simple()),
            7 => format!("for v in a b; do {}; done", self.simple()),
            8 => format!("echo $({})", self.simple()),
            9 => format!("cat <({})", self.simple()),
            10 => format!("case a in a) {} ;; b) {} ;; esac", self.simple(), self.simple()),
            11 => format!("{} | bash", squote(&self.simple())).replacen('\'', "echo '", 1),
            12 => format!("bash <<< {}", squote(&self.simple())),
            13 => format!("time {}", self.simple()),
            14 => format!("! {}", self.simple()),
            15 => {
                let t = self.rng.pick(TARGETS);
                format!("X={t}; $X {}", self.arg())
            }
            16 => format!("$(echo {}) {}", self.rng.pick(TARGETS), self.arg()),
            17 => {
                let a = self.arg();
                format!("{}/r? {a}", self.stubs)
            }
            18 => format!("eval {}", squote(&self.simple())),
            19 => format!(
                "( exec -a {} {} {} )",
                self.rng.pick(&["foo", "-x", "rm"]),
                self.program(),
                self.arg()
            ),
            20 => {
                let p = self.program();
                let a = self.arg();
                format!("find . -maxdepth 0 -exec {p} {a} {{}} \\;")
            }
            21 => format!(
                "env -S {}",
                squote(&format!("{} {}", self.rng.pick(TARGETS), self.rng.pick(&["-rf", "x", "-f y"])))
            ),
            22 => format!("echo x | xargs -I{{}} {} {{}}", self.program()),
            23 => format!("f() {{ {}; }}; f", self.simple()),
            24 => format!("bash -c {} sh {}", squote("\"$@\""), self.simple()),
            25 => format!("{} & wait", self.simple()),
            26 => format!("echo `{}`", self.simple()),
            27 => format!("while false; do {}; done; {}", self.simple(), self.simple()),
            28 => format!("[[ -n x ]] && {}", self.simple()),
            _ => self.simple(),
        }
    }

    fn line(&mut self, depth: usize) -> String {
        let mut s = String::new();
        let n = 1 + self.rng.below(3);
        for i in 0..n {
            if i > 0 {
                s.push_str(self.rng.pick(&["; ", " && ", " || ", " | ", "\n", " |& ", " & "]));
            }
            s.push_str(&self.command(depth));
        }
        if depth == 0 && self.rng.chance(5) {
            s.push_str(" # rm -rf never");
        }
        s
    }
}

/// One `execve` as strace saw it.
#[derive(Debug, Clone)]
struct Exec {
    path: String,
    argv: Vec<String>,
}

fn hex_string(s: &str, at: &mut usize) -> Option<String> {
    let b = s.as_bytes();
    if b.get(*at) != Some(&b'"') {
        return None;
    }
    *at += 1;
    let mut bytes = Vec::new();
    while b.get(*at) == Some(&b'\\') && b.get(*at + 1) == Some(&b'x') {
        bytes.push(u8::from_str_radix(s.get(*at + 2..*at + 4)?, 16).ok()?);
        *at += 4;
    }
    if b.get(*at) != Some(&b'"') {
        return None;
    }
    *at += 1;
    Some(String::from_utf8_lossy(&bytes).into_owned())
}

fn string_array(s: &str, at: &mut usize) -> Option<Vec<String>> {
    let b = s.as_bytes();
    if b.get(*at) != Some(&b'[') {
        return None;
    }
    *at += 1;
    let mut out = Vec::new();
    loop {
        match b.get(*at)? {
            b']' => {
                *at += 1;
                return Some(out);
            }
            b'"' => out.push(hex_string(s, at)?),
            b',' | b' ' => *at += 1,
            _ => return None,
        }
    }
}

/// Every successful `execve` in a strace log, with its line number (from `FARAMESH_LINE`).
fn parse_log(text: &str) -> Vec<(usize, Exec)> {
    let mut pending: HashMap<String, String> = HashMap::new();
    let mut out = Vec::new();
    for raw in text.lines() {
        let Some((pid, rest)) = raw.split_once(' ') else { continue };
        let rest = rest.trim_start();
        let full = if let Some(head) = rest.strip_suffix(" <unfinished ...>") {
            pending.insert(pid.to_owned(), head.to_owned());
            continue;
        } else if let Some(tail) = rest.strip_prefix("<... execve resumed>") {
            match pending.remove(pid) {
                Some(head) => format!("{head}{tail}"),
                None => continue,
            }
        } else {
            rest.to_owned()
        };
        let Some(args) = full.strip_prefix("execve(") else { continue };
        if !full.trim_end().ends_with("= 0") {
            continue;
        }
        let mut at = 0;
        let parsed = (|| {
            let path = hex_string(args, &mut at)?;
            at += 2;
            let argv = string_array(args, &mut at)?;
            at += 2;
            let env = string_array(args, &mut at)?;
            Some((path, argv, env))
        })();
        let Some((path, argv, env)) = parsed else { panic!("cannot read strace line: {raw}") };
        let line = env.iter().find_map(|e| e.strip_prefix("FARAMESH_LINE=")).and_then(|n| n.parse().ok());
        let Some(line) = line else { continue };
        out.push((line, Exec { path, argv }));
    }
    out
}

struct Setup {
    _dir: tempfile::TempDir,
    root: PathBuf,
    stubs: PathBuf,
    work: PathBuf,
}

fn setup() -> Setup {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let stubs = root.join("stubs");
    let work = root.join("work");
    std::fs::create_dir_all(&stubs).unwrap();
    std::fs::create_dir_all(&work).unwrap();
    let truth = which("true").expect("`true` is installed");
    for name in STUBS {
        std::os::unix::fs::symlink(&truth, stubs.join(name)).unwrap();
    }
    for (path, mode) in [(&root, 0o755), (&stubs, 0o755), (&work, 0o777)] {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    Setup { _dir: dir, root, stubs, work }
}

/// Runs `lines` under strace: the execs of each line, by line index.
fn run_bash(s: &Setup, lines: &[String]) -> HashMap<usize, Vec<Exec>> {
    let lines_dir = s.root.join("lines");
    std::fs::create_dir_all(&lines_dir).unwrap();
    for (i, l) in lines.iter().enumerate() {
        std::fs::write(lines_dir.join(i.to_string()), l).unwrap();
    }
    let driver = s.root.join("driver.sh");
    std::fs::write(
        &driver,
        "for ((i=$1; i<$2; i++)); do\n  FARAMESH_LINE=$i bash -c \"$(<\"$3/$i\")\" \"faramesh-line-$i\" </dev/null >/dev/null 2>&1\ndone\nexit 0\n",
    )
    .unwrap();
    let root_user = Command::new("id").arg("-u").output().map(|o| o.stdout == b"0\n").unwrap_or(false);
    let chunks = 2;
    let per = lines.len().div_ceil(chunks);
    let mut children = Vec::new();
    for c in 0..chunks {
        let (from, to) = (c * per, ((c + 1) * per).min(lines.len()));
        let log = s.work.join(format!("strace-{c}.log"));
        let mut cmd = if root_user {
            let mut cmd = Command::new("setpriv");
            cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups", "strace"]);
            cmd
        } else {
            Command::new("strace")
        };
        cmd.args([
            "-f",
            "--seccomp-bpf",
            "-qq",
            "-v",
            "-xx",
            "-s",
            "65535",
            "-e",
            "trace=execve",
            "-e",
            "signal=none",
            "-o",
        ])
        .arg(&log)
        .arg("bash")
        .arg(&driver)
        .args([from.to_string(), to.to_string()])
        .arg(&lines_dir)
        .env_clear()
        .env("PATH", format!("{}:/usr/bin:/bin", s.stubs.display()))
        .env("HOME", &s.work)
        .env("SHELL", "/bin/sh")
        .env("LANG", "C")
        .current_dir(&s.work)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .process_group(0);
        use std::os::unix::process::CommandExt;
        children.push((cmd.spawn().expect("strace starts"), log));
    }
    let deadline = Instant::now() + Duration::from_secs(300);
    let groups: Vec<String> = children.iter().map(|(c, _)| format!("-{}", c.id())).collect();
    let mut execs: HashMap<usize, Vec<Exec>> = HashMap::new();
    for (mut child, log) in children {
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                let mut err = String::new();
                if let Some(mut e) = child.stderr.take() {
                    use std::io::Read;
                    let _ = e.read_to_string(&mut err);
                }
                assert!(status.success(), "strace failed ({status}): {err}");
                break;
            }
            if Instant::now() > deadline {
                for g in &groups {
                    let _ = Command::new("kill").args(["-KILL", "--", g]).status();
                }
                panic!("the traced bash runs did not finish in 300 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let text = std::fs::read_to_string(&log).unwrap();
        for (line, exec) in parse_log(&text) {
            execs.entry(line).or_default().push(exec);
        }
    }
    execs
}

/// Whether the reader's commands account for `exec`.
fn accounted(cmds: &[SimpleCommand], exec: &Exec) -> bool {
    let base = exec.path.rsplit('/').next().unwrap_or(&exec.path);
    cmds.iter().any(|c| c.program == base && (!c.unknown.is_empty() || c.argv == exec.argv))
}

fn corpus() -> Vec<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/shell_differential_corpus.jsonl");
    std::fs::read_to_string(&path)
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str::<String>(l).unwrap_or_else(|e| panic!("{}: {l}: {e}", path.display())))
        .collect()
}

#[test]
fn every_program_bash_runs_is_one_the_reader_resolved() {
    for tool in ["bash", "strace"] {
        if which(tool).is_none() {
            println!("skipped: `{tool}` is not installed (scripts/test.sh installs it)");
            return;
        }
    }
    for tool in REAL {
        assert!(which(tool).is_some(), "`{tool}` is not installed");
    }
    let s = setup();
    let n: usize = std::env::var("FARAMESH_DIFF_LINES").ok().and_then(|v| v.parse().ok()).unwrap_or(2500);
    let seed: u64 =
        std::env::var("FARAMESH_DIFF_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or(0x5eed_f00d);
    let mut g = Gen {
        rng: Rng(seed),
        stubs: s.stubs.display().to_string(),
        locks: s.work.display().to_string(),
        n_locks: 0,
    };
    let mut lines = corpus();
    let n_corpus = lines.len();
    for _ in 0..n {
        lines.push(g.line(0));
    }
    let execs = run_bash(&s, &lines);
    let (mut resolved, mut unresolved, mut unreadable) = (0, 0, 0);
    let mut failures = Vec::new();
    let mut reasons: HashMap<String, usize> = HashMap::new();
    for (i, line) in lines.iter().enumerate() {
        let own_root = |e: &Exec| {
            e.argv.first().is_some_and(|a| a == "bash")
                && e.argv.get(1).is_some_and(|a| a == "-c")
                && e.argv.get(3) == Some(&format!("faramesh-line-{i}"))
        };
        let ran: Vec<&Exec> =
            execs.get(&i).map(|v| v.iter().filter(|e| !own_root(e)).collect()).unwrap_or_default();
        match read_line(line) {
            Reading::Resolved(cmds) => {
                resolved += 1;
                for e in ran {
                    if !accounted(&cmds, e) {
                        let read: Vec<String> =
                            cmds.iter().map(|c| format!("{} {:?}", c.program, c.argv)).collect();
                        failures.push(format!(
                            "line {line:?}\n  bash ran {} {:?}\n  the reader resolved: {}",
                            e.path,
                            e.argv,
                            read.join("; ")
                        ));
                        break;
                    }
                }
            }
            Reading::Unresolved { why, part, .. } => {
                if std::env::var("FARAMESH_DIFF_SHOW").is_ok_and(|w| why.contains(&w)) {
                    println!("{line:?}\n    `{part}`: {why}");
                }
                unresolved += 1;
                *reasons.entry(why).or_insert(0usize) += 1;
            }
            Reading::Unreadable(e) => {
                if std::env::var("FARAMESH_DIFF_SHOW").is_ok_and(|w| w == "unreadable") {
                    println!("{line:?}\n    {e}");
                }
                unreadable += 1;
            }
            Reading::NoCommand => {}
        }
    }
    println!(
        "{} lines ({n_corpus} from the corpus): {resolved} resolved, {unresolved} unresolved, {unreadable} unreadable; {} execs",
        lines.len(),
        execs.values().map(Vec::len).sum::<usize>()
    );
    let mut reasons: Vec<(String, usize)> = reasons.into_iter().collect();
    reasons.sort_by_key(|r| std::cmp::Reverse(r.1));
    for (why, n) in reasons.iter().take(12) {
        println!("  unresolved {n:>5}: {why}");
    }
    assert!(
        failures.is_empty(),
        "{} lines where bash ran a program the reader did not resolve (add each, once fixed, to \
         policy/tests/shell_differential_corpus.jsonl):\n{}",
        failures.len(),
        failures.iter().take(20).cloned().collect::<Vec<_>>().join("\n")
    );
    assert!(resolved * 3 >= lines.len(), "only {resolved} of {} lines resolved", lines.len());
}
