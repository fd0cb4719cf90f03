//! How `faramesh hook` reads the paths of a host's file tools: as the host will open them
//! (`docs/hooks.md`, "How paths are read").
//!
//! A path is made absolute against the hook's working directory and walked component by
//! component as the kernel walks it: each symlink is followed where it is met (one whose target
//! is missing through its target text, as a file created through it would be), and `..` applies
//! to the directory reached; only the part that does not exist yet is taken as text. A host that
//! resolves `..` as text before it opens the file (`path.resolve`) opens another file when a `..`
//! follows a symlink, so that reading is decided as well. A glob pattern is decided on the
//! directory before its first wildcard, plus every symlink its wildcards can reach that leads out
//! of that directory. What cannot be read with certainty is an error, and the hook refuses the
//! call.
//!
//! This module reads paths; [`super::glob`] reads glob patterns.

use super::{Unreadable, refuse};
use std::collections::VecDeque;
use std::ffi::OsString;
use std::io::ErrorKind;
use std::path::{Component, Path, PathBuf};

/// The most paths one call may name (a path list, or the files of a patch), and the most one
/// pattern may reach through symlinks.
pub(crate) const MAX_PATHS: usize = 256;
/// The most symlinks one path may pass through (the kernel's own limit).
const MAX_LINKS: usize = 40;

/// What a path (or a glob pattern) names, read as the host will open it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Resolved {
    /// Every path decided on: absolute, symlinks followed, an existing directory ending in `/`.
    /// One, unless a `..` after a symlink reads differently as text, or a pattern reaches out
    /// of its directory through symlinks.
    pub paths: Vec<String>,
    /// What the reader met on the way: a symlink whose target is missing, a `..` after a
    /// symlink, a symlink a pattern reaches out of its directory through.
    pub notes: Vec<String>,
}

impl Resolved {
    pub(crate) fn add(&mut self, path: String) {
        if !self.paths.contains(&path) {
            self.paths.push(path);
        }
    }

    pub(crate) fn note(&mut self, note: String) {
        if !self.notes.contains(&note) {
            self.notes.push(note);
        }
    }
}

/// The directory relative paths are read against: the host's working directory for the call
/// (`given`), else this process's; or why there is none.
pub(crate) fn working_dir(given: Option<&str>) -> Result<PathBuf, Unreadable> {
    match given {
        Some(dir) if dir.contains('\0') => Err("the working directory the host gave holds a NUL byte".into()),
        Some(dir) if !dir.starts_with('/') => {
            refuse(format!("the working directory `{dir}` the host gave is not absolute"))
        }
        Some(dir) => Ok(PathBuf::from(dir)),
        None => match std::env::current_dir() {
            Ok(dir) if dir.is_absolute() => Ok(dir),
            Ok(dir) => refuse(format!("the hook's working directory `{}` is not absolute", dir.display())),
            Err(e) => {
                refuse(format!("the host gave no working directory and the hook's own cannot be read ({e})"))
            }
        },
    }
}

/// `raw` as the host opens it, relative paths read against `cwd`.
pub(crate) fn resolve(raw: &str, cwd: &Result<PathBuf, Unreadable>) -> Result<Resolved, Unreadable> {
    readings(raw, &joined(raw, cwd)?)
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
pub(crate) fn check(raw: &str) -> Result<(), Unreadable> {
    if raw.is_empty() {
        return Err("a path is empty".into());
    }
    if raw.contains('\0') {
        return refuse(format!("the path `{}` holds a NUL byte", raw.escape_debug()));
    }
    if raw.starts_with('~') {
        return refuse(format!(
            "the path `{raw}` starts with `~`, which some hosts expand to a home directory and others do not: name the file by its absolute path"
        ));
    }
    Ok(())
}

/// `raw` made absolute against `cwd`, as written (`.` and `..` kept).
pub(crate) fn joined(raw: &str, cwd: &Result<PathBuf, Unreadable>) -> Result<PathBuf, Unreadable> {
    check(raw)?;
    let path = Path::new(raw);
    if path.is_absolute() {
        return Ok(path.to_path_buf());
    }
    match cwd {
        Ok(dir) => Ok(dir.join(path)),
        Err(why) => refuse(format!("`{raw}` is relative and {why}")),
    }
}

/// An absolute path with `.` and `..` resolved as text (`..` at the root stays at the root).
pub(crate) fn lexical(path: &Path) -> PathBuf {
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

/// The file the absolute `path` names as the kernel walks it and, when it differs, the file a
/// host that resolves `.` and `..` as text before opening it names.
pub(crate) fn readings(raw: &str, path: &Path) -> Result<Resolved, Unreadable> {
    let mut found = Resolved { paths: Vec::new(), notes: Vec::new() };
    for reading in [path.to_path_buf(), lexical(path)] {
        let (real, note) = walk(raw, &reading)?;
        found.add(real);
        found.notes.extend(note);
    }
    if let [kernel, text] = found.paths.as_slice() {
        let note = format!(
            "`{raw}` has a `..` after a symlink: the kernel opens `{kernel}`, a host that resolves `..` as text first opens `{text}`; both are decided"
        );
        found.note(note);
    }
    Ok(found)
}

/// The components of `path` as the kernel reads them (`..` kept, `.` and the root left out).
fn components(path: &Path) -> VecDeque<OsString> {
    path.components()
        .filter_map(|c| match c {
            Component::Normal(name) => Some(name.to_owned()),
            Component::ParentDir => Some(OsString::from("..")),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => None,
        })
        .collect()
}

/// The absolute `path` walked from the root as the kernel walks it, as text: each symlink
/// followed where it is met, through its target text even when that target is missing (where a
/// file created through it lands), `..` applied to the directory reached. What does not exist
/// (yet) is taken as written. An existing directory ends in `/`. Also a note when a symlink's
/// target is missing. A symlink that cannot be read, more than 40 symlinks (a loop), a
/// directory that cannot be searched or a name that is not UTF-8 is an error.
pub(crate) fn walk(raw: &str, path: &Path) -> Result<(String, Option<String>), Unreadable> {
    let mut done = PathBuf::from("/");
    let mut todo = components(path);
    // How many of `done`'s last components do not exist (taken as written).
    let mut missing = 0usize;
    let mut links = 0usize;
    let mut note = None;
    while let Some(part) = todo.pop_front() {
        if part == ".." {
            done.pop();
            missing = missing.saturating_sub(1);
            continue;
        }
        let next = done.join(&part);
        if missing > 0 {
            done = next;
            missing += 1;
            continue;
        }
        let meta = match std::fs::symlink_metadata(&next) {
            Ok(meta) => meta,
            Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::NotADirectory) => {
                done = next;
                missing = 1;
                continue;
            }
            Err(e) => {
                return refuse(format!(
                    "the path `{raw}` cannot be followed: `{}` cannot be read ({e})",
                    next.display()
                ));
            }
        };
        if !meta.file_type().is_symlink() {
            // Below a file nothing opens; as written, a `..` after it comes back.
            missing = usize::from(!meta.is_dir() && !todo.is_empty());
            done = next;
            continue;
        }
        links += 1;
        if links > MAX_LINKS {
            return refuse(format!(
                "the path `{raw}` passes through more than {MAX_LINKS} symlinks (a loop at `{}`), which no host can open",
                next.display()
            ));
        }
        let target = std::fs::read_link(&next).map_err(|e| {
            format!(
                "the path `{raw}` cannot be followed: `{}` is a symlink that cannot be read ({e})",
                next.display()
            )
        })?;
        if target.as_os_str().is_empty() {
            return refuse(format!(
                "the path `{raw}` cannot be followed: `{}` is a symlink to nothing",
                next.display()
            ));
        }
        if note.is_none() && std::fs::metadata(&next).is_err_and(|e| e.kind() == ErrorKind::NotFound) {
            note = Some(format!(
                "`{raw}`: `{}` is a symlink to `{}`, which does not exist: decided on the file it leads to",
                next.display(),
                target.display()
            ));
        }
        if target.is_absolute() {
            done = PathBuf::from("/");
        }
        for part in components(&target).into_iter().rev() {
            todo.push_front(part);
        }
    }
    let Some(text) = done.to_str() else {
        return refuse(format!("the path `{raw}` leads to `{}`, which is not valid UTF-8", done.display()));
    };
    let mut text = text.to_owned();
    if missing == 0 && text != "/" && std::fs::metadata(&done).is_ok_and(|m| m.is_dir()) {
        text.push('/');
    }
    Ok((text, note))
}

#[cfg(test)]
pub(crate) mod test_support {
    use std::path::PathBuf;

    /// A temporary directory (its real path) for links.
    pub(crate) fn scratch() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap();
        (dir, root)
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::test_support::scratch;
    use super::{Resolved, patch_files, resolve, working_dir};

    #[test]
    fn lexical_resolution_is_what_the_hosts_path_resolve_gives() {
        let cwd = Ok(PathBuf::from("/nonexistent-fm/home/me/demo"));
        let r = |p: &str| resolve(p, &cwd).map(|r| r.paths.join(" "));
        assert_eq!(r("../.ssh/id").unwrap(), "/nonexistent-fm/home/me/.ssh/id");
        assert_eq!(r("./a/./b/../c").unwrap(), "/nonexistent-fm/home/me/demo/a/c");
        assert_eq!(r("/../../etc/x").unwrap(), "/etc/x");
        assert_eq!(r("//nonexistent-fm//a/").unwrap(), "/nonexistent-fm/a");
        assert!(r("a\0b").unwrap_err().contains("NUL"));
        assert!(r("~/x").unwrap_err().contains('~'));
        assert!(r("").unwrap_err().contains("empty"));
        let none: Result<PathBuf, super::super::Unreadable> =
            Err("the working directory `x` the host gave is not absolute".into());
        assert!(resolve("a", &none).unwrap_err().contains("not absolute"));
        assert_eq!(resolve("/nonexistent-fm/a", &none).unwrap().paths, ["/nonexistent-fm/a"]);
        assert!(working_dir(Some("demo")).unwrap_err().contains("not absolute"));
    }

    #[test]
    fn patch_headers_name_the_files() {
        let patch = "*** Begin Patch\n*** Update File: src/a.rs\n@@\n-x\n+*** Add File: no\n*** Add File: b.md\n+hi\n*** Delete File: c\n*** Update File: d\n*** Move to: e\n*** End Patch\n";
        assert_eq!(patch_files(patch), ["src/a.rs", "b.md", "c", "d", "e"]);
        assert!(patch_files("--- a/x\n+++ b/x\n").is_empty());
    }

    #[test]
    fn symlinks_are_followed_as_the_kernel_follows_them() {
        let (_dir, root) = scratch();
        std::fs::create_dir_all(root.join("real/deep")).unwrap();
        std::os::unix::fs::symlink(root.join("real"), root.join("link")).unwrap();
        std::os::unix::fs::symlink("real/deep", root.join("rel")).unwrap();
        let cwd = Ok(root.clone());
        let at = |p: &str| format!("{}/{p}", root.display());
        let paths = |p: &str| resolve(p, &cwd).unwrap().paths;
        assert_eq!(
            resolve("link/new/x", &cwd).unwrap(),
            Resolved { paths: vec![at("real/new/x")], notes: vec![] }
        );
        assert_eq!(paths("link"), [at("real/")], "a directory ends in /");
        // `..` after a link applies to where the link leads; the text reading is decided too.
        assert_eq!(paths("rel/../x"), [at("real/x"), at("x")]);
        assert!(resolve("rel/../x", &cwd).unwrap().notes[0].contains("both are decided"));
        assert_eq!(paths("rel/../deep"), [at("real/deep/"), at("deep")]);
        // What does not exist is taken as written, and a `..` out of it comes back to links.
        assert_eq!(paths("new/../link/x"), [at("real/x")]);
        assert_eq!(paths("real/../rel"), [at("real/deep/")]);
    }

    #[test]
    fn dangling_symlinks_lead_where_a_created_file_lands() {
        let (_dir, root) = scratch();
        std::fs::create_dir(root.join("out")).unwrap();
        std::os::unix::fs::symlink(root.join("out/new"), root.join("dangling")).unwrap();
        std::os::unix::fs::symlink("hop", root.join("twice")).unwrap();
        std::os::unix::fs::symlink("out/../out/newer", root.join("hop")).unwrap();
        std::os::unix::fs::symlink(root.join("gone"), root.join("gone-dir")).unwrap();
        let cwd = Ok(root.clone());
        let at = |p: &str| format!("{}/{p}", root.display());
        let dangling = resolve("dangling", &cwd).unwrap();
        assert_eq!(dangling.paths, [at("out/new")]);
        assert!(dangling.notes[0].contains("does not exist"), "{:?}", dangling.notes);
        assert_eq!(resolve("twice", &cwd).unwrap().paths, [at("out/newer")]);
        assert_eq!(resolve("gone-dir/x", &cwd).unwrap().paths, [at("gone/x")]);
        std::os::unix::fs::symlink("loop", root.join("loop")).unwrap();
        assert!(resolve("loop", &cwd).unwrap_err().contains("more than 40 symlinks"));
        assert!(resolve("loop/x", &cwd).unwrap_err().contains("a loop at"));
        // 40 links in a row are followed, as the kernel follows them; 41 are not.
        std::fs::write(root.join("end"), "x").unwrap();
        std::os::unix::fs::symlink("end", root.join("l0")).unwrap();
        for i in 1..=40 {
            std::os::unix::fs::symlink(format!("l{}", i - 1), root.join(format!("l{i}"))).unwrap();
        }
        assert_eq!(resolve("l39", &cwd).unwrap().paths, [at("end")]);
        assert!(resolve("l40", &cwd).is_err());
    }
}
