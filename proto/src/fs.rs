//! The one way the daemon and its clients make their private directories (state, socket, TLS,
//! the hooks' pending calls).

use std::io;
use std::path::Path;

/// Creates `dir` and its missing parents mode 0700 (set at creation, not changed after); an
/// existing directory is left as it is.
pub fn create_private_dir(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::create_private_dir;

    #[test]
    fn private_dirs_are_made_0700_with_their_parents_and_existing_ones_kept() {
        let tmp = std::env::temp_dir().join(format!("faramesh-proto-fs-{}", std::process::id()));
        let dir = tmp.join("a/b");
        create_private_dir(&dir).unwrap();
        for d in [&tmp.join("a"), &dir] {
            assert_eq!(std::fs::metadata(d).unwrap().permissions().mode() & 0o777, 0o700, "{}", d.display());
        }
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o750)).unwrap();
        create_private_dir(&dir).unwrap();
        assert_eq!(std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777, 0o750);
        std::fs::remove_dir_all(&tmp).unwrap();
    }
}
