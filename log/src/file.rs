//! The log's storage backend: redb's own file backend, with the space a growing file gains
//! written out with zeros just ahead of where redb writes.
//!
//! Why: redb grows its file with `set_len`, which leaves a hole. On ext4 (and most file
//! systems) the first write into a hole allocates blocks, so the `fdatasync` of that commit
//! must also commit file-system metadata: on the machines measured that roughly doubles the
//! cost of a durable commit. Overwriting blocks that already exist needs no metadata. So the
//! backend keeps a watermark: everything below it has been written once; a write that reaches
//! past it first writes zeros up to [`ZERO_AHEAD`] beyond its own end (never past the file's
//! length). Holes read as zeros anyway, so what redb reads never changes: only when the blocks
//! get allocated does. Content that was in the file when it was opened is never touched.

use std::fs::{File, OpenOptions};
use std::io;
use std::ops::Bound;
use std::path::Path;
use std::sync::Mutex;

use redb::backends::FileBackend;
use redb::{BackendError, Builder, Database, DatabaseError, StorageBackend};

/// How far past a write the file is filled with zeros.
pub const ZERO_AHEAD: u64 = 1 << 20;

/// Creates a new file readable and writable by its owner only (0600); fails if it exists.
pub fn create_private(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)
}

/// Creates `dir` and its missing parents mode 0700 (set at creation, not changed after); an
/// existing directory is left as it is. The one way the daemon and the CLI make state, socket
/// and TLS directories.
pub fn create_private_dir(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)
}

/// Opens (or creates) a log database on a [`ZeroFilledFile`].
///
/// A new file is created mode 0600 (whichever command creates it): the log holds every call's
/// parameters, redacted or not.
pub fn open_db(path: &Path) -> Result<Database, DatabaseError> {
    open_db_with_cache(path, DEFAULT_CACHE_BYTES)
}

/// Fills `buf` from the kernel's random source (`/dev/urandom`): log ids, signing keys,
/// session ids, login secrets. The one place the daemon and CLI draw randomness.
pub fn random_bytes(buf: &mut [u8]) -> io::Result<()> {
    use std::io::Read;
    File::open(RANDOM_SOURCE)?.read_exact(buf)
}

/// `n` random bytes as lower-case hex.
pub fn random_hex(n: usize) -> io::Result<String> {
    let mut buf = vec![0u8; n];
    random_bytes(&mut buf)?;
    Ok(faramesh_proto::canonical::to_hex(&buf))
}

/// Where [`random_bytes`] reads from.
pub const RANDOM_SOURCE: &str = "/dev/urandom";

/// The page cache redb keeps in memory by default (its own default is 1 GiB, which a per-host
/// sidecar should not grow into): 16 MiB. The soak bench (`scripts/bench.sh soak`) measured the
/// daemon's RSS flat at about 72 MiB from 30,000 to 300,000 decisions with 16 MiB, against
/// 75 → 133 MiB with 64 MiB, for the same listing latency: appends touch only the right edge of
/// the trees, and an indexed listing reads a few pages.
pub const DEFAULT_CACHE_BYTES: usize = 16 << 20;

/// [`open_db`] with a page cache of `cache_bytes`.
pub fn open_db_with_cache(path: &Path, cache_bytes: usize) -> Result<Database, DatabaseError> {
    use std::os::unix::fs::OpenOptionsExt;
    let file =
        OpenOptions::new().read(true).write(true).create(true).truncate(false).mode(0o600).open(path)?;
    Builder::new().set_cache_size(cache_bytes).create_with_backend(ZeroFilledFile::new(file)?)
}

/// redb's file backend, with zeros written ahead of growth (see the module docs).
#[derive(Debug)]
pub struct ZeroFilledFile {
    inner: FileBackend,
    /// Bytes `[0, written)` are known not to be holes.
    written: Mutex<u64>,
}

impl ZeroFilledFile {
    /// Wraps `file`; its current content counts as written.
    pub fn new(file: File) -> Result<ZeroFilledFile, DatabaseError> {
        let len = file.metadata()?.len();
        Ok(ZeroFilledFile { inner: FileBackend::new(file)?, written: Mutex::new(len) })
    }

    /// Fills `[written, min(len, end + ZERO_AHEAD))` with zeros when `end` passes `written`.
    fn fill_before(&self, end: u64) -> io::Result<()> {
        let mut written = self.written.lock().map_err(|_| io::Error::other("zero-fill lock poisoned"))?;
        if end <= *written {
            return Ok(());
        }
        let len = self.inner.len()?;
        let target = end.saturating_add(ZERO_AHEAD).min(len).max(end);
        const CHUNK: usize = 256 << 10;
        let zeros = vec![0u8; CHUNK];
        let mut at = *written;
        while at < target {
            let n = usize::try_from((target - at).min(CHUNK as u64)).unwrap_or(CHUNK);
            self.inner.write(at, &zeros[..n])?;
            at += n as u64;
        }
        *written = target;
        Ok(())
    }
}

impl StorageBackend for ZeroFilledFile {
    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }
    fn read(&self, offset: u64, out: &mut [u8]) -> io::Result<()> {
        self.inner.read(offset, out)
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.inner.set_len(len)?;
        if let Ok(mut written) = self.written.lock() {
            *written = (*written).min(len);
        }
        Ok(())
    }
    fn sync_data(&self) -> io::Result<()> {
        self.inner.sync_data()
    }
    fn write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.fill_before(offset.saturating_add(data.len() as u64))?;
        self.inner.write(offset, data)
    }
    fn close(&self) -> io::Result<()> {
        self.inner.close()
    }
    fn try_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.inner.try_lock_range(start, end)
    }
    fn try_lock_shared_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.inner.try_lock_shared_range(start, end)
    }
    fn lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.inner.lock_range(start, end)
    }
    fn lock_shared_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.inner.lock_shared_range(start, end)
    }
    fn unlock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.inner.unlock_range(start, end)
    }
    fn query_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.inner.query_lock_range(start, end)
    }
}
