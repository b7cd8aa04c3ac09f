//! The file layer: every byte the embedded log reads or writes goes through
//! [`FileSystem`] and [`FileHandle`].
//!
//! Two implementations: [`OsFs`] (the real one) and [`SimFs`] (in memory,
//! with fault injection: power loss that forgets unsynced writes, `EIO` on
//! fsync, `ENOSPC` after a byte budget). Keeping the surface this small is
//! what makes the crash tests able to cover every sync point.

mod os;
mod sim;

pub use os::OsFs;
pub use sim::{SimFs, SimFsStats};

use std::any::Any;
use std::fmt::Debug;
use std::io;
use std::path::Path;
use std::sync::Arc;

/// An open file. Positional I/O only: the log tracks its own write position,
/// so a failed write can be cut back with [`FileHandle::set_len`].
#[allow(clippy::len_without_is_empty)] // a file's length, not a collection's
pub trait FileHandle: Send + Sync + Debug {
    /// Fills `buf` from `offset`; a short file is `UnexpectedEof`.
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
    /// Writes all of `buf` at `offset`.
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;
    /// `fdatasync`: the data written so far (and the file's length) is durable.
    fn sync_data(&self) -> io::Result<()>;
    fn len(&self) -> io::Result<u64>;
    fn set_len(&self, len: u64) -> io::Result<()>;
}

/// A directory tree of files.
pub trait FileSystem: Send + Sync + Debug + 'static {
    /// Opens a file for reading and writing, creating it if `create`.
    fn open(&self, path: &Path, create: bool) -> io::Result<Arc<dyn FileHandle>>;
    /// Names of the entries directly in `dir`.
    fn list(&self, dir: &Path) -> io::Result<Vec<String>>;
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// `fsync` on a directory: creations, renames and deletions in it are durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    fn exists(&self, path: &Path) -> bool;
    /// Takes an exclusive lock on `dir` for this process; the guard releases it.
    /// `Err(WouldBlock)` when another process holds it.
    fn lock_dir(&self, dir: &Path) -> io::Result<Box<dyn Any + Send + Sync>>;
}

/// Reads a whole file.
pub fn read_file(fs: &dyn FileSystem, path: &Path) -> io::Result<Vec<u8>> {
    let file = fs.open(path, false)?;
    let len = file.len()? as usize;
    let mut buf = vec![0; len];
    file.read_exact_at(&mut buf, 0)?;
    Ok(buf)
}

/// Replaces `path` with `contents` crash-safely: write a temporary file, fsync
/// it, rename it over `path`, fsync the directory. After a crash either the
/// old or the new contents are there, whole.
pub fn write_file_atomic(fs: &dyn FileSystem, path: &Path, contents: &[u8]) -> io::Result<()> {
    let dir = path
        .parent()
        .expect("an atomic write targets a file in a directory");
    let tmp = path.with_extension("tmp");
    if fs.exists(&tmp) {
        fs.remove_file(&tmp)?;
    }
    let file = fs.open(&tmp, true)?;
    file.write_all_at(contents, 0)?;
    file.sync_data()?;
    drop(file);
    fs.rename(&tmp, path)?;
    fs.sync_dir(dir)
}
