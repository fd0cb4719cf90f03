//! How `faramesh hook` reads the paths of a host's file tools: as the host will open them
//! (`docs/hooks.md`, "How paths are read").
//!
//! A path is made absolute against the hook's working directory, `.` and `..` are resolved
//! lexically (as the hosts' own `path.resolve` does before they open a file), then symlinks are
//! followed as far as the file, or its nearest existing ancestor, exists. A symlink that cannot
//! be followed (its target missing, or unreadable) leaves the rest of the path as written, with a
//! note saying so. What cannot be read with certainty is an error, and the hook refuses the call.

use std::ffi::OsString;
use std::io::ErrorKind;
use std::path::{Component, Path, PathBuf};

/// The most paths one call may name (a path list, or the files of a patch).
pub(crate) const MAX_PATHS: usize = 256;
/// The most alternatives the braces of one glob pattern may expand to.
const MAX_BRACE_ALTERNATIVES: usize = 256;

/// A path as the host will open it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Resolved {
    /// Absolute, `.` and `..` resolved, symlinks followed; an existing directory ends in `/`.
    pub path: String,
    /// Why part of the path is as written rather than followed, when it is.
    pub note: Option<String>,
}

/// The directory relative paths are read against: the host's working directory for the call
/// (`given`), else this process's; or why there is none.
pub(crate) fn working_dir(given: Option<&str>) -> Result<PathBuf, String> {
    match given {
        Some(dir) if dir.contains('\0') => Err("the working directory the host gave holds a NUL byte".into()),
        Some(dir) if !dir.starts_with('/') => {
            Err(format!("the working directory `{dir}` the host gave is not absolute"))
        }
        Some(dir) => Ok(PathBuf::from(dir)),
        None => match std::env::current_dir() {
            Ok(dir) if dir.is_absolute() => Ok(dir),
            Ok(dir) => Err(format!("the hook's working directory `{}` is not absolute", dir.display())),
            Err(e) => {
                Err(format!("the host gave no working directory and the hook's own cannot be read ({e})"))
            }
        },
    }
}

/// `raw` as the host opens it, relative paths read against `cwd`.
pub(crate) fn resolve(raw: &str, cwd: &Result<PathBuf, String>) -> Result<Resolved, String> {
    let absolute = absolute(raw, cwd)?;
    finish(raw, &absolute)
}

/// A glob pattern (`src/**/*.rs`, `../notes/*.md`) under `dir` (else `cwd`): the part before the
/// first wildcard is resolved as a directory, and the pattern after it appended as written, so
/// every file the pattern can match lies under the path decided on. A pattern whose wildcard
/// part could leave that directory (a `..` component, an absolute alternative in braces), or
/// that the hook cannot read (escapes, unpaired braces), is refused. A pattern without
/// wildcards is a path.
pub(crate) fn resolve_pattern(
    raw: &str,
    dir: Option<&str>,
    cwd: &Result<PathBuf, String>,
) -> Result<Resolved, String> {
    let parts: Vec<&str> = raw.split('/').collect();
    let Some(first) = parts.iter().position(|p| is_glob(p)) else {
        return match dir {
            Some(dir) if !raw.starts_with('/') => {
                let dir = absolute(dir, cwd)?;
                check(raw)?;
                finish(raw, &lexical(&dir.join(raw)))
            }
            _ => resolve(raw, cwd),
        };
    };
    check(raw)?;
    if raw.contains('\\') {
        return Err(format!("the pattern `{raw}` holds a `\\` escape, which the hook does not read"));
    }
    let literal = parts[..first].join("/");
    let rest = parts[first..].join("/");
    let under = match (raw.starts_with('/'), dir) {
        (true, _) => PathBuf::from("/"),
        (false, Some(dir)) => absolute(dir, cwd)?,
        (false, None) => match cwd {
            Ok(c) => c.clone(),
            Err(why) => return Err(format!("`{raw}` is relative and {why}")),
        },
    };
    let base = lexical(&under.join(&literal));
    for alternative in expand_braces(&rest).map_err(|why| format!("the pattern `{raw}`: {why}"))? {
        if alternative.starts_with('/') {
            return Err(format!("the pattern `{raw}` names an absolute path inside its braces"));
        }
        if alternative.split('/').any(|c| c == "..") {
            return Err(format!(
                "the pattern `{raw}` climbs out of `{}` with `..` in its wildcard part: name the directory it reads",
                base.display()
            ));
        }
    }
    let base = finish(raw, &base)?;
    let path = format!("{}/{rest}", base.path.trim_end_matches('/'));
    Ok(Resolved { path, note: base.note })
}

/// The files a patch names (`*** Add File: …`, `*** Update File: …`, `*** Delete File: …`,
/// `*** Move to: …`, the patch format of Codex-style `apply_patch` tools), in order.
pub(crate) fn patch_files(text: &str) -> Vec<String> {
    const HEADERS: [&str; 4] = ["*** Add File:", "*** Update File:", "*** Delete File:", "*** Move to:"];
    text.lines()
        .filter_map(|line| {
            let line = line.trim_start();
            HEADERS.iter().find_map(|h| line.strip_prefix(h)).map(|p| p.trim().to_owned())
        })
        .collect()
}

/// What no host can open as written.
fn check(raw: &str) -> Result<(), String> {
    if raw.is_empty() {
        return Err("a path is empty".into());
    }
    if raw.contains('\0') {
        return Err(format!("the path `{}` holds a NUL byte", raw.escape_debug()));
    }
    if raw.starts_with('~') {
        return Err(format!(
            "the path `{raw}` starts with `~`, which some hosts expand to a home directory and others do not: name the file by its absolute path"
        ));
    }
    Ok(())
}

/// `raw` made absolute against `cwd`, `.` and `..` resolved lexically.
fn absolute(raw: &str, cwd: &Result<PathBuf, String>) -> Result<PathBuf, String> {
    check(raw)?;
    let path = Path::new(raw);
    if path.is_absolute() {
        return Ok(lexical(path));
    }
    match cwd {
        Ok(dir) => Ok(lexical(&dir.join(path))),
        Err(why) => Err(format!("`{raw}` is relative and {why}")),
    }
}

/// An absolute path with `.` and `..` resolved as text (`..` at the root stays at the root).
fn lexical(path: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for part in path.components() {
        match part {
            Component::Normal(name) => out.push(name),
            Component::ParentDir => {
                out.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    out
}

/// A lexically resolved absolute path with its symlinks followed, as text.
fn finish(raw: &str, path: &Path) -> Result<Resolved, String> {
    let (real, note) = follow(path);
    let Some(text) = real.to_str() else {
        return Err(format!("the path `{raw}` leads to `{}`, which is not valid UTF-8", real.display()));
    };
    let mut text = text.to_owned();
    if text != "/" && std::fs::metadata(&real).is_ok_and(|m| m.is_dir()) {
        text.push('/');
    }
    let note = note.map(|n| format!("`{raw}`: {n}: the path from there is decided as written"));
    Ok(Resolved { path: text, note })
}

/// `path` with the symlinks of its longest existing prefix followed (the rest appended as
/// written), and why the prefix stopped short when a link or directory there could not be read.
fn follow(path: &Path) -> (PathBuf, Option<String>) {
    let mut base = path.to_path_buf();
    let mut rest: Vec<OsString> = Vec::new();
    let mut note = None;
    loop {
        match std::fs::canonicalize(&base) {
            Ok(mut real) => {
                for part in rest.iter().rev() {
                    real.push(part);
                }
                return (real, note);
            }
            Err(e) => {
                // Going up: the note kept is the one nearest the root, where following stopped.
                if let Some(why) = unfollowable(&base, &e) {
                    note = Some(why);
                }
                match (base.parent(), base.file_name()) {
                    (Some(parent), Some(name)) => {
                        rest.push(name.to_owned());
                        base = parent.to_path_buf();
                    }
                    _ => return (path.to_path_buf(), note),
                }
            }
        }
    }
}

/// Why `path` exists but could not be resolved (`e`): a symlink whose target is missing or
/// cannot be followed, or a directory that cannot be read. `None` when it simply does not exist.
fn unfollowable(path: &Path, e: &std::io::Error) -> Option<String> {
    let shown = path.display();
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => Some(match std::fs::read_link(path) {
            Ok(target) if e.kind() == ErrorKind::NotFound => {
                format!("`{shown}` is a symlink to `{}`, which does not exist", target.display())
            }
            Ok(target) => {
                format!("`{shown}` is a symlink to `{}`, which cannot be followed ({e})", target.display())
            }
            Err(why) => format!("`{shown}` is a symlink that cannot be read ({why})"),
        }),
        Ok(_) => Some(format!("`{shown}` cannot be resolved ({e})")),
        Err(why) if why.kind() == ErrorKind::NotFound => None,
        Err(why) => Some(format!("`{shown}` cannot be read ({why})")),
    }
}

/// Whether a component of a pattern holds a wildcard, a class, braces or an extended glob.
fn is_glob(part: &str) -> bool {
    part.contains(['*', '?', '[', ']', '{', '}', '('])
}

/// Every text the braces of `pattern` expand to (`a{b,c}` → `ab`, `ac`; nested alike). Braces
/// without a comma at their top level are text, as glob libraries read them (`{1..3}` is a
/// sequence of digits); braces that do not pair, or braces without a comma holding braces, are
/// an error.
fn expand_braces(pattern: &str) -> Result<Vec<String>, String> {
    let chars: Vec<char> = pattern.chars().collect();
    let (out, end) = expand_seq(&chars, 0, false)?;
    if end != chars.len() {
        return Err("a `}` closes no `{`".into());
    }
    Ok(out)
}

/// Expands `chars[at..]` up to the end, or (`inside`) up to a top-level `,` or `}`; returns the
/// texts and where it stopped.
fn expand_seq(chars: &[char], mut at: usize, inside: bool) -> Result<(Vec<String>, usize), String> {
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
                    return Err(format!("its braces expand to more than {MAX_BRACE_ALTERNATIVES} patterns"));
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
fn group(chars: &[char], open: usize) -> Result<(Vec<String>, usize), String> {
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
    use super::*;

    #[test]
    fn lexical_resolution_is_what_the_hosts_path_resolve_gives() {
        let cwd = Ok(PathBuf::from("/nonexistent-fm/home/me/demo"));
        let r = |p: &str| resolve(p, &cwd).map(|r| r.path);
        assert_eq!(r("../.ssh/id").unwrap(), "/nonexistent-fm/home/me/.ssh/id");
        assert_eq!(r("./a/./b/../c").unwrap(), "/nonexistent-fm/home/me/demo/a/c");
        assert_eq!(r("/../../etc/x").unwrap(), "/etc/x");
        assert_eq!(r("//nonexistent-fm//a/").unwrap(), "/nonexistent-fm/a");
        assert!(r("a\0b").unwrap_err().contains("NUL"));
        assert!(r("~/x").unwrap_err().contains('~'));
        assert!(r("").unwrap_err().contains("empty"));
        let none: Result<PathBuf, String> =
            Err("the working directory `x` the host gave is not absolute".into());
        assert!(resolve("a", &none).unwrap_err().contains("not absolute"));
        assert_eq!(resolve("/nonexistent-fm/a", &none).unwrap().path, "/nonexistent-fm/a");
        assert!(working_dir(Some("demo")).unwrap_err().contains("not absolute"));
    }

    #[test]
    fn patterns_are_decided_on_the_directory_they_read_under() {
        let cwd = Ok(PathBuf::from("/nonexistent-fm/p"));
        let r = |p: &str| resolve_pattern(p, None, &cwd).map(|r| r.path);
        assert_eq!(r("src/**/*.rs").unwrap(), "/nonexistent-fm/p/src/**/*.rs");
        assert_eq!(r("../.ssh/*").unwrap(), "/nonexistent-fm/.ssh/*");
        assert_eq!(r("*.{ts,tsx}").unwrap(), "/nonexistent-fm/p/*.{ts,tsx}");
        assert_eq!(r("/nonexistent-fm/x/*.md").unwrap(), "/nonexistent-fm/x/*.md");
        assert_eq!(r("README.md").unwrap(), "/nonexistent-fm/p/README.md");
        assert_eq!(
            resolve_pattern("*.rs", Some("../q"), &cwd).unwrap().path,
            "/nonexistent-fm/q/*.rs",
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
    fn patch_headers_name_the_files() {
        let patch = "*** Begin Patch\n*** Update File: src/a.rs\n@@\n-x\n+*** Add File: no\n*** Add File: b.md\n+hi\n*** Delete File: c\n*** Update File: d\n*** Move to: e\n*** End Patch\n";
        assert_eq!(patch_files(patch), ["src/a.rs", "b.md", "c", "d", "e"]);
        assert!(patch_files("--- a/x\n+++ b/x\n").is_empty());
    }

    #[test]
    fn symlinks_are_followed_and_dangling_ones_noted() {
        let dir = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap();
        std::fs::create_dir(root.join("real")).unwrap();
        std::os::unix::fs::symlink(root.join("real"), root.join("link")).unwrap();
        std::os::unix::fs::symlink(root.join("gone"), root.join("dangling")).unwrap();
        let cwd = Ok(root.clone());
        let at = |p: &str| format!("{}/{p}", root.display());
        assert_eq!(resolve("link/new/x", &cwd).unwrap(), Resolved { path: at("real/new/x"), note: None });
        assert_eq!(resolve("link", &cwd).unwrap().path, at("real/"), "a directory ends in /");
        let dangling = resolve("dangling/x", &cwd).unwrap();
        assert_eq!(dangling.path, at("dangling/x"));
        assert!(dangling.note.unwrap().contains("does not exist"));
        std::os::unix::fs::symlink("loop", root.join("loop")).unwrap();
        let looped = resolve("loop", &cwd).unwrap();
        assert_eq!(looped.path, at("loop"));
        assert!(looped.note.unwrap().contains("cannot be followed"));
    }
}
