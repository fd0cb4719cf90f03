//! How `faramesh hook` reads a glob pattern a host's search tool is given: decided on the
//! directory before its first wildcard, plus every symlink its wildcards can reach that leads
//! out of that directory (`docs/hooks.md`, "How paths are read").

use super::{Unreadable, refuse};
use std::collections::{HashSet, VecDeque};
use std::ffi::OsStr;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use super::paths::{MAX_PATHS, Resolved, check, joined, lexical, readings, walk};

/// The most alternatives the braces of one glob pattern may expand to.
const MAX_BRACE_ALTERNATIVES: usize = 256;
/// The most directory entries the hook reads to see what one glob pattern reaches (an entry
/// is counted each time it is read).
const MAX_GLOB_ENTRIES: usize = 200_000;
/// The deepest the hook descends below a pattern's directory.
const MAX_GLOB_DEPTH: usize = 128;

/// A glob pattern (`src/**/*.rs`, `../notes/*.md`) under `dir` (else `cwd`): the part before the
/// first wildcard is resolved as a directory, and the pattern after it appended as written, so
/// every file the pattern can match without leaving that directory lies under the path decided
/// on. Every symlink the pattern can reach that leads out of the directory adds its target,
/// followed by the rest of the pattern, and is followed in turn. A pattern whose wildcard part
/// could leave the directory by name (a `..` component, an absolute alternative in braces), or
/// that the hook cannot read (escapes, unpaired braces), is refused. A pattern without
/// wildcards is a path; with `whole_dirs` (a tool that reads every file under a directory it is
/// given), a directory is read as `dir/**`.
pub(crate) fn resolve_pattern(
    raw: &str,
    dir: Option<&str>,
    cwd: &Result<PathBuf, Unreadable>,
    whole_dirs: bool,
) -> Result<Resolved, Unreadable> {
    check(raw)?;
    let under = match (raw.starts_with('/'), dir) {
        (true, _) => PathBuf::from("/"),
        (false, Some(dir)) => joined(dir, cwd)?,
        (false, None) => match cwd {
            Ok(c) => c.clone(),
            Err(why) => return refuse(format!("`{raw}` is relative and {why}")),
        },
    };
    let parts: Vec<&str> = raw.split('/').collect();
    let Some(first) = parts.iter().position(|p| is_glob(p)) else {
        let mut found = readings(raw, &under.join(raw))?;
        if whole_dirs {
            let dirs: Vec<String> = found.paths.iter().filter(|p| p.ends_with('/')).cloned().collect();
            Reach::new(raw).run(&mut found, dirs.iter().map(|d| (d.as_str(), vec!["**".to_owned()])))?;
        }
        return Ok(found);
    };
    if raw.contains('\\') {
        return refuse(format!("the pattern `{raw}` holds a `\\` escape, which the hook does not read"));
    }
    let literal = parts[..first].join("/");
    let rest = parts[first..].join("/");
    let alternatives = expand_braces(&rest).map_err(|why| format!("the pattern `{raw}`: {why}"))?;
    for alternative in &alternatives {
        if alternative.starts_with('/') {
            return refuse(format!("the pattern `{raw}` names an absolute path inside its braces"));
        }
        if alternative.split('/').any(|c| c == "..") {
            return refuse(format!(
                "the pattern `{raw}` climbs out of `{}` with `..` in its wildcard part: name the directory it reads",
                lexical(&under.join(&literal)).display()
            ));
        }
    }
    let bases = readings(raw, &under.join(&literal))?;
    let mut found = Resolved { paths: Vec::new(), notes: bases.notes };
    for base in &bases.paths {
        found.add(format!("{}/{rest}", base.trim_end_matches('/')));
    }
    let roots = bases.paths.iter().filter(|b| b.ends_with('/')).flat_map(|base| {
        alternatives.iter().map(move |a| (base.as_str(), a.split('/').map(str::to_owned).collect()))
    });
    Reach::new(raw).run(&mut found, roots)?;
    Ok(found)
}

/// What a glob pattern reaches through symlinks: the file system is read below the pattern's
/// directory where its components can match (any name a wildcard, class, brace or extended
/// glob could match, in any case, dot files included), and every symlink met that leads out of
/// the directory adds its target, with the rest of the pattern, as a path decided on; that is
/// read in turn. Bounded: more than [`MAX_GLOB_ENTRIES`] entries read, [`MAX_GLOB_DEPTH`]
/// directories deep or [`MAX_PATHS`] paths reached is refused, as is a directory that cannot be
/// read.
struct Reach<'a> {
    raw: &'a str,
    /// Entries that may still be read.
    budget: usize,
    /// Where the pattern continues, outside the directories already read: a directory (its real
    /// path) and the components to match below it.
    queue: VecDeque<(PathBuf, Vec<String>)>,
    queued: HashSet<(PathBuf, Vec<String>)>,
    /// (directory, component index) pairs already read below the current root.
    seen: HashSet<(PathBuf, usize)>,
    found: Vec<(String, String)>,
}

impl<'a> Reach<'a> {
    fn new(raw: &'a str) -> Reach<'a> {
        Reach {
            raw,
            budget: MAX_GLOB_ENTRIES,
            queue: VecDeque::new(),
            queued: HashSet::new(),
            seen: HashSet::new(),
            found: Vec::new(),
        }
    }

    /// Reads below each root (a directory, ending in `/`, and the components to match there) and
    /// adds what the pattern reaches out of them to `into`.
    fn run<'r>(
        mut self,
        into: &mut Resolved,
        roots: impl Iterator<Item = (&'r str, Vec<String>)>,
    ) -> Result<(), Unreadable> {
        for (dir, parts) in roots {
            self.push(PathBuf::from(dir), parts);
        }
        while let Some((root, parts)) = self.queue.pop_front() {
            self.seen.clear();
            self.visit(&root, &root, &parts, 0, 0)?;
        }
        for (path, note) in self.found {
            into.add(path);
            into.note(note);
            if into.paths.len() > MAX_PATHS {
                return refuse(format!(
                    "the pattern `{}` reaches more than {MAX_PATHS} paths through symlinks: name a narrower pattern",
                    self.raw
                ));
            }
        }
        Ok(())
    }

    fn push(&mut self, dir: PathBuf, parts: Vec<String>) {
        if self.queued.insert((dir.clone(), parts.clone())) {
            self.queue.push_back((dir, parts));
        }
    }

    /// Matches `parts[at..]` below `dir` (a real directory under `root`).
    fn visit(
        &mut self,
        root: &Path,
        dir: &Path,
        parts: &[String],
        at: usize,
        depth: usize,
    ) -> Result<(), Unreadable> {
        let Some(part) = parts.get(at) else { return Ok(()) };
        if part.is_empty() || part == "." {
            return self.visit(root, dir, parts, at + 1, depth);
        }
        if !self.seen.insert((dir.to_path_buf(), at)) {
            return Ok(());
        }
        if depth > MAX_GLOB_DEPTH {
            return refuse(format!(
                "the pattern `{}` reaches more than {MAX_GLOB_DEPTH} directories deep below `{}`: name a narrower pattern",
                self.raw,
                root.display()
            ));
        }
        let globstar = part == "**";
        if globstar {
            self.visit(root, dir, parts, at + 1, depth)?;
        }
        let raw = self.raw;
        let unreadable = |e: std::io::Error| {
            format!("the pattern `{raw}` reaches `{}`, which cannot be read ({e})", dir.display())
        };
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::NotADirectory) => return Ok(()),
            Err(e) => return refuse(unreadable(e)),
        };
        for entry in entries {
            let entry = entry.map_err(unreadable)?;
            if self.budget == 0 {
                return refuse(format!(
                    "the pattern `{}` needs more than {MAX_GLOB_ENTRIES} directory entries read to see what it reaches: name a narrower pattern",
                    self.raw
                ));
            }
            self.budget -= 1;
            if !globstar && !component_matches(part, &entry.file_name()) {
                continue;
            }
            let kind = entry.file_type().map_err(unreadable)?;
            let path = entry.path();
            let below = if kind.is_symlink() {
                // `**` may match the link and more below it; another component, the link.
                let rest = if globstar { &parts[at..] } else { &parts[at + 1..] };
                self.link(root, &path, rest)?
            } else {
                kind.is_dir().then_some(path)
            };
            let Some(below) = below else { continue };
            if globstar {
                self.visit(root, &below, parts, at, depth + 1)?;
            } else if at + 1 < parts.len() {
                self.visit(root, &below, parts, at + 1, depth + 1)?;
            }
        }
        Ok(())
    }

    /// A symlink the pattern reaches, `rest` the components still to match below it: the
    /// directory it leads to when that lies under `root` (read on), else `None`, its target
    /// (with `rest`) kept as a path reached.
    fn link(&mut self, root: &Path, link: &Path, rest: &[String]) -> Result<Option<PathBuf>, Unreadable> {
        let (to, _) = walk(self.raw, link)?;
        let is_dir = to.ends_with('/');
        let real = PathBuf::from(if to == "/" { "/" } else { to.trim_end_matches('/') });
        if real.starts_with(root) {
            return Ok(is_dir.then_some(real));
        }
        let reached = if is_dir && !rest.is_empty() {
            self.push(real.clone(), rest.to_vec());
            format!("{}/{}", to.trim_end_matches('/'), rest.join("/"))
        } else {
            to.clone()
        };
        let note = format!(
            "the pattern `{}` reaches `{}`, a symlink out of `{}` to `{to}`: `{reached}` is decided too",
            self.raw,
            link.display(),
            root.display()
        );
        self.found.push((reached, note));
        Ok(None)
    }
}

/// Whether a name may match one component of a glob pattern, read generously: a component with
/// a class, braces or an extended glob matches any name; `*` and `?` match as wildcards, in any
/// case; a name that is not UTF-8 matches.
fn component_matches(part: &str, name: &OsStr) -> bool {
    if part.contains(['[', ']', '{', '}', '(', ')']) {
        return true;
    }
    let Some(name) = name.to_str() else { return true };
    let pattern: Vec<char> = part.to_lowercase().chars().collect();
    let name: Vec<char> = name.to_lowercase().chars().collect();
    let (mut p, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        match pattern.get(p) {
            Some('*') => {
                star = Some((p, n));
                p += 1;
            }
            Some(&c) if c == '?' || c == name[n] => {
                p += 1;
                n += 1;
            }
            _ => match star {
                Some((sp, sn)) => {
                    star = Some((sp, sn + 1));
                    p = sp + 1;
                    n = sn + 1;
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|c| *c == '*')
}

/// Whether a component of a pattern holds a wildcard, a class, braces or an extended glob.
fn is_glob(part: &str) -> bool {
    part.contains(['*', '?', '[', ']', '{', '}', '('])
}

/// Every text the braces of `pattern` expand to (`a{b,c}` → `ab`, `ac`; nested alike). Braces
/// without a comma at their top level are text, as glob libraries read them (`{1..3}` is a
/// sequence of digits); braces that do not pair, or braces without a comma holding braces, are
/// an error.
fn expand_braces(pattern: &str) -> Result<Vec<String>, Unreadable> {
    let chars: Vec<char> = pattern.chars().collect();
    let (out, end) = expand_seq(&chars, 0, false)?;
    if end != chars.len() {
        return Err("a `}` closes no `{`".into());
    }
    Ok(out)
}

/// Expands `chars[at..]` up to the end, or (`inside`) up to a top-level `,` or `}`; returns the
/// texts and where it stopped.
fn expand_seq(chars: &[char], mut at: usize, inside: bool) -> Result<(Vec<String>, usize), Unreadable> {
    let mut out = vec![String::new()];
    while at < chars.len() {
        match chars[at] {
            ',' | '}' if inside => break,
            '}' => return Ok((out, at)),
            '{' => {
                let (alternatives, end) = group(chars, at)?;
                let mut next = Vec::with_capacity(out.len() * alternatives.len());
                for head in &out {
                    for tail in &alternatives {
                        next.push(format!("{head}{tail}"));
                    }
                }
                if next.len() > MAX_BRACE_ALTERNATIVES {
                    return refuse(format!(
                        "its braces expand to more than {MAX_BRACE_ALTERNATIVES} patterns"
                    ));
                }
                out = next;
                at = end;
            }
            c => {
                for text in &mut out {
                    text.push(c);
                }
                at += 1;
            }
        }
    }
    Ok((out, at))
}

/// The alternatives of the brace group opening at `chars[open]`, and the index after its `}`.
fn group(chars: &[char], open: usize) -> Result<(Vec<String>, usize), Unreadable> {
    let mut alternatives = Vec::new();
    let mut at = open + 1;
    let mut commas = 0;
    loop {
        let (texts, end) = expand_seq(chars, at, true)?;
        alternatives.extend(texts);
        match chars.get(end) {
            Some(',') => {
                commas += 1;
                at = end + 1;
            }
            Some('}') if commas > 0 => return Ok((alternatives, end + 1)),
            Some('}') => {
                // No comma: text, braces included (a sequence such as `{1..3}`).
                let body: String = chars[open + 1..end].iter().collect();
                if body.contains(['{', '}']) {
                    return Err("braces without alternatives hold braces".into());
                }
                return Ok((vec![format!("{{{body}}}")], end + 1));
            }
            _ => return Err("a `{` is not closed".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::ffi::OsStr;
    use std::path::PathBuf;

    use super::{MAX_GLOB_DEPTH, MAX_PATHS, component_matches, expand_braces, resolve_pattern};
    use crate::hooks::paths::test_support::scratch;

    #[test]
    fn patterns_are_decided_on_the_directory_they_read_under() {
        let cwd = Ok(PathBuf::from("/nonexistent-fm/p"));
        let r = |p: &str| resolve_pattern(p, None, &cwd, false).map(|r| r.paths.join(" "));
        assert_eq!(r("src/**/*.rs").unwrap(), "/nonexistent-fm/p/src/**/*.rs");
        assert_eq!(r("../.ssh/*").unwrap(), "/nonexistent-fm/.ssh/*");
        assert_eq!(r("*.{ts,tsx}").unwrap(), "/nonexistent-fm/p/*.{ts,tsx}");
        assert_eq!(r("/nonexistent-fm/x/*.md").unwrap(), "/nonexistent-fm/x/*.md");
        assert_eq!(r("README.md").unwrap(), "/nonexistent-fm/p/README.md");
        assert_eq!(
            resolve_pattern("*.rs", Some("../q"), &cwd, false).unwrap().paths,
            ["/nonexistent-fm/q/*.rs"],
            "under the tool's directory"
        );
        for climbs in ["*/../../x", "{a,..}/x", "{.,x}{y,.}/k", "a/{b,{c,..}}/*", "*/{,.}./x"] {
            assert!(r(climbs).unwrap_err().contains(".."), "{climbs}");
        }
        assert!(r("{src,/etc}/*").unwrap_err().contains("absolute"));
        assert!(r("a{b/*").unwrap_err().contains("not closed"));
        assert!(r("*\\*").unwrap_err().contains("escape"));
        assert!(r("{1..3}/*").is_ok(), "a sequence is not `..`");
        let many = "{a,b,c,d}".repeat(5) + "*";
        assert!(r(&many).unwrap_err().contains("more than"));
    }

    #[test]
    fn braces_expand_as_glob_libraries_expand_them() {
        assert_eq!(expand_braces("a{b,c}d").unwrap(), ["abd", "acd"]);
        assert_eq!(expand_braces("{a,b{c,d}}").unwrap(), ["a", "bc", "bd"]);
        assert_eq!(expand_braces("x{1..3}").unwrap(), ["x{1..3}"]);
        assert_eq!(expand_braces("{,x}").unwrap(), ["", "x"]);
        assert!(expand_braces("a}").is_err());
    }

    #[test]
    fn components_match_generously() {
        let m = |p: &str, n: &str| component_matches(p, OsStr::new(n));
        assert!(m("k*", "keys") && m("*", ".ssh") && m("K?YS", "keys") && m("*s", "keys"));
        assert!(m("a*b*c", "aXbYbc") && m("**", "x") && m("*.{rs,md}", "anything"));
        assert!(m("[a-c]x", "zz") && m("@(x)", "y"), "classes and extended globs match any name");
        assert!(!m("k*", "src") && !m("a?", "a") && !m("id_rsa", "id_rsa.pub"));
    }

    #[test]
    fn patterns_are_decided_on_what_they_reach_through_symlinks() {
        let (_dir, root) = scratch();
        let project = root.join("p");
        std::fs::create_dir_all(project.join("src/a")).unwrap();
        std::fs::create_dir_all(root.join("out/sub")).unwrap();
        std::fs::write(root.join("out/id_rsa"), "k").unwrap();
        std::os::unix::fs::symlink(root.join("out"), project.join("keys")).unwrap();
        std::os::unix::fs::symlink("src", project.join("source")).unwrap();
        std::os::unix::fs::symlink("..", project.join("src/a/up")).unwrap();
        std::fs::create_dir(root.join("far")).unwrap();
        std::fs::write(root.join("far/passwd"), "x").unwrap();
        std::os::unix::fs::symlink(root.join("far"), root.join("out/sub/far")).unwrap();
        let cwd = Ok(project.clone());
        let p = |rel: &str| format!("{}/{rel}", project.display());
        let out = |rel: &str| format!("{}/out/{rel}", root.display());
        let far = |rel: &str| format!("{}/far/{rel}", root.display());
        let paths = |pattern: &str| resolve_pattern(pattern, None, &cwd, false).unwrap().paths;
        assert_eq!(paths("k*/id_rsa"), [p("k*/id_rsa"), out("id_rsa")]);
        assert_eq!(paths("*/id_rsa"), [p("*/id_rsa"), out("id_rsa")]);
        assert_eq!(paths("**/id_rsa"), [p("**/id_rsa"), out("**/id_rsa"), far("**/id_rsa")]);
        assert_eq!(paths("k*/*/far/passwd"), [p("k*/*/far/passwd"), out("*/far/passwd"), far("passwd")]);
        assert_eq!(paths("*"), [p("*"), out("")], "the link itself");
        // Links that stay under the pattern's directory (loops included) add nothing.
        assert_eq!(paths("s*/**/*.rs"), [p("s*/**/*.rs")]);
        assert_eq!(paths("src/**"), [p("src/**")]);
        let noted = resolve_pattern("k*/id_rsa", None, &cwd, false).unwrap().notes;
        assert!(noted[0].contains(&p("keys")) && noted[0].contains(&out("")), "{noted:?}");
        // A directory read as a whole reaches what is under it.
        let whole = resolve_pattern(".", None, &cwd, true).unwrap().paths;
        assert_eq!(whole, [p(""), out("**"), far("**")]);
        assert_eq!(resolve_pattern(".", None, &cwd, false).unwrap().paths, [p("")]);
    }

    #[test]
    fn patterns_that_reach_too_far_are_refused() {
        let (_dir, root) = scratch();
        let mut deep = root.clone();
        for _ in 0..=MAX_GLOB_DEPTH + 1 {
            deep.push("d");
        }
        std::fs::create_dir_all(&deep).unwrap();
        let cwd = Ok(root.clone());
        let why = resolve_pattern("**/x", None, &cwd, false).unwrap_err();
        assert!(why.contains("directories deep"), "{why}");
        assert!(resolve_pattern("d/*/x", None, &cwd, false).is_ok(), "a bounded pattern reads two levels");
        let many = root.join("many");
        std::fs::create_dir(&many).unwrap();
        for i in 0..=MAX_PATHS {
            std::os::unix::fs::symlink(format!("/nonexistent-fm/{i}"), many.join(i.to_string())).unwrap();
        }
        let why = resolve_pattern("many/*", None, &cwd, false).unwrap_err();
        assert!(why.contains("more than 256 paths"), "{why}");
    }
}
