//! A call's conditions: the call being decided ([`CallCtx`]), whether each condition holds
//! (or why not), and the lexical reading of paths.

use std::cell::OnceCell;

use faramesh_proto::{Call, Finding, canonical_json};
use serde_json::Value;

use crate::command::{self, Match, Reading};
use crate::detect::{self, DetectSet};
use crate::model::{Cond, History, Rule};

/// A call being decided, with its lazily computed canonical params text, command reading and
/// findings, and what its session did before (the daemon's; offline tools have none).
pub(crate) struct CallCtx<'a> {
    pub call: &'a Call,
    pub history: Option<History<'a>>,
    params_text: OnceCell<String>,
    reading: OnceCell<Reading>,
    /// The detectors the policy names (all run once, whichever condition asks first).
    detectors: DetectSet,
    findings: OnceCell<Vec<Finding>>,
}

impl<'a> CallCtx<'a> {
    pub(crate) fn new(call: &'a Call, detectors: DetectSet, history: Option<History<'a>>) -> Self {
        CallCtx {
            call,
            history,
            params_text: OnceCell::new(),
            reading: OnceCell::new(),
            detectors,
            findings: OnceCell::new(),
        }
    }

    /// What the policy's detectors find in the params (once).
    pub(crate) fn findings(&self) -> &[Finding] {
        self.findings.get_or_init(|| detect::scan(&self.call.params, self.detectors))
    }

    /// The call's command as the reader reads it (once).
    pub(crate) fn reading(&self) -> &Reading {
        self.reading.get_or_init(|| command::read_call(self.call))
    }

    pub(super) fn params_text(&self) -> &str {
        // Canonicalization cannot fail here: the request hash was computed first.
        self.params_text.get_or_init(|| canonical_json(&self.call.params).unwrap_or_default())
    }

    /// A value key looked up in `params`, then in `context`.
    pub(super) fn lookup(&self, path: &[String]) -> Option<&'a Value> {
        walk(&self.call.params, path).or_else(|| walk(&self.call.context, path))
    }
}

pub(super) fn walk<'v>(root: &'v Value, path: &[String]) -> Option<&'v Value> {
    let mut cur = root;
    for part in path {
        cur = cur.as_object()?.get(part)?;
    }
    Some(cur)
}

pub(super) fn key_path(key: &str) -> [String; 1] {
    [key.to_owned()]
}

impl Cond {
    /// Whether the condition holds, does not, or would only for some value of a word of the
    /// command that is known when the command runs.
    pub(crate) fn check(&self, ctx: &CallCtx<'_>) -> Match {
        match self {
            Cond::Command(c) => c.check_reading(ctx.reading()),
            _ if self.why_not(ctx, false).is_none() => Match::Yes,
            _ => Match::No,
        }
    }

    /// `None` when the condition holds; otherwise why not (described only when `describe`).
    pub(crate) fn why_not(&self, ctx: &CallCtx<'_>, describe: bool) -> Option<String> {
        let fail = |msg: &dyn Fn() -> String| Some(if describe { msg() } else { String::new() });
        let unless = |holds: bool, msg: &dyn Fn() -> String| if holds { None } else { fail(msg) };
        let call = ctx.call;
        match self {
            Cond::Tool(p) => unless(p.matches(&call.tool), &|| {
                format!("tool: `{}` does not match `{}`", call.tool, p.as_str())
            }),
            Cond::Op(p) => unless(p.matches(&call.operation), &|| {
                format!("op: `{}` does not match `{}`", call.operation, p.as_str())
            }),
            Cond::AgentId(p) => unless(p.matches(&call.agent_id), &|| {
                format!("agent_id: `{}` does not match `{}`", call.agent_id, p.as_str())
            }),
            Cond::Contains(s) => unless(ctx.params_text().contains(s.as_str()), &|| {
                format!("contains: params do not contain `{s}`")
            }),
            Cond::Pattern(r) => unless(r.is_match(ctx.params_text()), &|| {
                format!("pattern: params do not match `{}`", r.as_str())
            }),
            Cond::Amount(cmp, bound) => match ctx.lookup(&key_path("amount")) {
                None => fail(&|| format!("{}: `amount` is missing", cmp.key())),
                Some(v) => match v.as_f64().filter(|f| f.is_finite() && v.is_number()) {
                    None => fail(&|| format!("{}: `amount` is not a number ({v})", cmp.key())),
                    Some(amount) if !cmp.holds(amount, *bound) => {
                        fail(&|| format!("{}: amount {amount} is not {} {bound}", cmp.key(), cmp.symbol()))
                    }
                    Some(_) => None,
                },
            },
            Cond::PathContains(s) => {
                string_check(ctx, "path", self.key(), describe, |p| lexical_path(p).contains(s.as_str()), s)
            }
            Cond::PathStartsWith(s) => string_check(
                ctx,
                "path",
                self.key(),
                describe,
                |p| lexical_path(p).starts_with(s.as_str()),
                s,
            ),
            Cond::PathEndsWith(s) => {
                string_check(ctx, "path", self.key(), describe, |p| lexical_path(p).ends_with(s.as_str()), s)
            }
            Cond::Method(m) => {
                string_check(ctx, "method", self.key(), describe, |v| v.to_lowercase() == *m, m)
            }
            Cond::Branch(b) => string_check(ctx, "branch", self.key(), describe, |v| v == b, b),
            Cond::Command(c) => match c.check_reading(ctx.reading()) {
                Match::Yes => None,
                Match::Maybe(word) => fail(&|| {
                    format!(
                        "command: would match only for some value of `{word}`, known when the command runs"
                    )
                }),
                Match::No => fail(&|| match ctx.reading() {
                    Reading::NoCommand => "command: params have no `cmd` or `command`".to_owned(),
                    Reading::Unreadable(e) => format!("command: {e}"),
                    reading => {
                        let programs: Vec<String> = reading.commands().iter().map(command_summary).collect();
                        let how = if c.all { "not every command matches" } else { "no command matches" };
                        format!("command: {how} (programs: {})", programs.join(", "))
                    }
                }),
            },
            Cond::Detect(set, names) => unless(set.any_in(ctx.findings()), &|| {
                format!("detect: nothing of {} found in params", names.join(", "))
            }),
            Cond::Field(path, expected) => match ctx.lookup(path) {
                None => fail(&|| format!("field: `{}` is missing", path.join("."))),
                Some(actual) if !json_equal(actual, expected) => {
                    fail(&|| format!("field: `{}` is {actual}, not {expected}", path.join(".")))
                }
                Some(_) => None,
            },
            Cond::After(a) => match &ctx.history {
                None => fail(&|| "after: what came before is known only to the daemon".to_owned()),
                Some(h) => unless(
                    h.earlier.iter().any(|e| {
                        a.tool.matches(&e.tool)
                            && a.op.matches(&e.operation)
                            && e.at_ms <= h.now_ms
                            && h.now_ms - e.at_ms <= a.within_ms
                    }),
                    &|| {
                        format!(
                            "after: no permitted `{}/{}` call in the last {} s of this session",
                            a.tool.as_str(),
                            a.op.as_str(),
                            a.within_ms / 1000
                        )
                    },
                ),
            },
        }
    }
}

/// A command as `explain` names it: its program, and the files it writes by redirection.
pub(super) fn command_summary(c: &command::SimpleCommand) -> String {
    let name = if c.program.is_empty() { "(a redirection alone)" } else { c.program.as_str() };
    if c.writes.is_empty() {
        return name.to_owned();
    }
    let files: Vec<&str> = c.writes.iter().map(|w| w.path.as_str()).collect();
    format!("{name} writing {}", files.join(" "))
}

pub(super) fn string_check(
    ctx: &CallCtx<'_>,
    field: &str,
    key: &str,
    describe: bool,
    test: impl Fn(&str) -> bool,
    want: &str,
) -> Option<String> {
    let out = |msg: String| Some(if describe { msg } else { String::new() });
    match ctx.lookup(&key_path(field)) {
        None => out(format!("{key}: `{field}` is missing")),
        Some(Value::String(s)) if test(s) => None,
        Some(Value::String(s)) => out(format!("{key}: `{field}` is `{s}`, expected `{want}`")),
        Some(other) => out(format!("{key}: `{field}` is not a string ({other})")),
    }
}

/// `path` as the file system reads it, without following links: empty and `.` segments dropped,
/// `..` taking off the segment before it (`/srv/app/../../etc/passwd` is `/etc/passwd`; above the
/// root stays at the root; a relative path keeps the `..` it cannot resolve). A trailing `/` is
/// kept. The `path_*` keys compare this, so a prefix rule cannot be walked out of with `..`.
pub fn lexical_path(path: &str) -> std::borrow::Cow<'_, str> {
    let absolute = path.starts_with('/');
    let needs = path.split('/').enumerate().any(|(i, seg)| {
        seg == "." || seg == ".." || (seg.is_empty() && i > 0 && i + 1 < path.split('/').count())
    });
    if !needs {
        return std::borrow::Cow::Borrowed(path);
    }
    let mut out: Vec<&str> = Vec::new();
    for seg in path.split('/') {
        match seg {
            "" | "." => {}
            ".." => match out.last() {
                Some(&last) if last != ".." => {
                    out.pop();
                }
                _ if absolute => {}
                _ => out.push(".."),
            },
            other => out.push(other),
        }
    }
    let mut text = out.join("/");
    if absolute {
        text.insert(0, '/');
    }
    let trailing = path.ends_with('/') || path.ends_with("/.") || path.ends_with("/..");
    if trailing && !text.ends_with('/') {
        text.push('/');
    }
    if text.is_empty() {
        text.push('.');
    }
    std::borrow::Cow::Owned(text)
}

/// JSON equality where numbers compare by value (`1` equals `1.0`).
pub(super) fn json_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_f64(), y.as_f64()) {
            (Some(x), Some(y)) => x == y,
            _ => x == y,
        },
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| json_equal(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| json_equal(v, w)))
        }
        _ => a == b,
    }
}

impl Rule {
    /// Whether the rule matches: `Err(i)` when condition `i` fails first; `Ok(Some(word))`
    /// when it matches only for some value of a word of the command known when it runs.
    pub(super) fn status(&self, ctx: &CallCtx<'_>) -> Result<Option<String>, usize> {
        let mut maybe = None;
        for (i, c) in self.conds.iter().enumerate() {
            match c.check(ctx) {
                Match::Yes => {}
                Match::No => return Err(i),
                Match::Maybe(w) => {
                    maybe.get_or_insert(w);
                }
            }
        }
        Ok(maybe)
    }
}

#[cfg(test)]
mod path_tests {
    use super::lexical_path;

    #[test]
    fn dotdot_cannot_walk_out_of_a_prefix() {
        for (given, read) in [
            ("/srv/app/../../etc/passwd", "/etc/passwd"),
            ("/home/me/project/../.ssh/id_ed25519", "/home/me/.ssh/id_ed25519"),
            ("/srv/./a//b", "/srv/a/b"),
            ("/../../etc", "/etc"),
            ("../x", "../x"),
            ("a/../../x", "../x"),
            ("/srv/app/", "/srv/app/"),
            ("/srv/app/..", "/srv/"),
            ("docs/README.md", "docs/README.md"),
            ("/", "/"),
            (".", "."),
        ] {
            assert_eq!(lexical_path(given), read, "{given}");
        }
    }
}
