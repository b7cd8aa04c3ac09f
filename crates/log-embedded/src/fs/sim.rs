//! An in-memory file system that simulates power loss and storage faults.
//!
//! Each file keeps two images: what has been written and what has been made
//! durable by `sync_data`. Directory entries likewise: a creation, rename or
//! deletion is durable only after `sync_dir` on its directory. A crash
//! ([`SimFs::crash_at_sync`]) freezes the file system at a chosen sync point;
//! [`SimFs::crash_image`] then returns what a disk would hold after power
//! loss: durable data, plus (chosen by a seed) a prefix of each file's
//! unsynced appended bytes, as a torn write leaves them.

use super::{FileHandle, FileSystem};
use std::any::Any;
use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

#[derive(Debug, Default)]
struct Inode {
    data: Vec<u8>,
    durable: Vec<u8>,
}

type InodeRef = Arc<Mutex<Inode>>;

#[derive(Debug, Default)]
struct State {
    names: BTreeMap<PathBuf, InodeRef>,
    durable_names: BTreeMap<PathBuf, InodeRef>,
    dirs: BTreeSet<PathBuf>,
    locked: BTreeSet<PathBuf>,
    syncs: u64,
    bytes_written: u64,
    crash_at_sync: Option<u64>,
    fail_sync_at: Option<u64>,
    write_budget: Option<u64>,
    crashed: bool,
}

/// Counters a test can read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SimFsStats {
    /// File and directory syncs attempted so far.
    pub syncs: u64,
    pub bytes_written: u64,
    pub crashed: bool,
}

/// The simulated file system. Cloning shares it.
#[derive(Clone, Debug, Default)]
pub struct SimFs {
    state: Arc<Mutex<State>>,
}

fn power_loss() -> io::Error {
    io::Error::other("simulated power loss: the file system is gone")
}

impl SimFs {
    pub fn new() -> Self {
        SimFs::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().expect("sim fs lock")
    }

    fn live(&self) -> io::Result<MutexGuard<'_, State>> {
        let state = self.lock();
        if state.crashed {
            return Err(power_loss());
        }
        Ok(state)
    }

    /// Power is lost at the `n`-th sync (1-based): that sync does not happen,
    /// it and every later operation fail.
    pub fn crash_at_sync(&self, n: u64) {
        self.lock().crash_at_sync = Some(n);
    }

    /// The `n`-th sync (1-based) fails with `EIO` and makes nothing durable.
    pub fn fail_sync_at(&self, n: u64) {
        self.lock().fail_sync_at = Some(n);
    }

    /// Writes fail with `ENOSPC` once `bytes` more have been written (a write
    /// that crosses the budget writes the part that fits). `None` frees space.
    pub fn set_write_budget(&self, bytes: Option<u64>) {
        let mut state = self.lock();
        state.write_budget = bytes.map(|b| state.bytes_written + b);
    }

    /// Loses power now.
    pub fn crash(&self) {
        self.lock().crashed = true;
    }

    pub fn stats(&self) -> SimFsStats {
        let state = self.lock();
        SimFsStats {
            syncs: state.syncs,
            bytes_written: state.bytes_written,
            crashed: state.crashed,
        }
    }

    /// What the disk holds after power loss: durable names and data, plus for
    /// each file a seed-chosen prefix of its unsynced appended bytes.
    pub fn crash_image(&self, seed: u64) -> SimFs {
        let state = self.lock();
        let mut rng = seed ^ 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let mut image = State {
            dirs: state.dirs.clone(),
            ..State::default()
        };
        for (path, inode) in &state.durable_names {
            let inode = inode.lock().expect("inode lock");
            let mut bytes = inode.durable.clone();
            if inode.data.len() > bytes.len() && inode.data.starts_with(&bytes) {
                let unsynced = &inode.data[bytes.len()..];
                let keep = match next() % 3 {
                    0 => 0,
                    1 => unsynced.len(),
                    _ => (next() % (unsynced.len() as u64 + 1)) as usize,
                };
                bytes.extend_from_slice(&unsynced[..keep]);
            }
            let copy = Arc::new(Mutex::new(Inode {
                data: bytes.clone(),
                durable: bytes,
            }));
            image.names.insert(path.clone(), copy.clone());
            image.durable_names.insert(path.clone(), copy);
        }
        SimFs {
            state: Arc::new(Mutex::new(image)),
        }
    }

    /// Test hook: direct access to a file's bytes (to flip bits, cut tails).
    pub fn with_file_bytes<R>(&self, path: &Path, f: impl FnOnce(&mut Vec<u8>) -> R) -> R {
        let state = self.lock();
        let inode = state
            .names
            .get(path)
            .unwrap_or_else(|| panic!("no file {}", path.display()));
        let mut inode = inode.lock().expect("inode lock");
        let r = f(&mut inode.data);
        inode.durable = inode.data.clone();
        r
    }

    /// Every file path, for tests.
    pub fn files(&self) -> Vec<PathBuf> {
        self.lock().names.keys().cloned().collect()
    }

    /// Counts a sync and applies any injected fault. `Ok(true)`: go ahead.
    fn sync_point(state: &mut State) -> io::Result<()> {
        state.syncs += 1;
        if state.crash_at_sync == Some(state.syncs) {
            state.crashed = true;
            return Err(power_loss());
        }
        if state.fail_sync_at == Some(state.syncs) {
            return Err(io::Error::from_raw_os_error(5)); // EIO
        }
        Ok(())
    }
}

#[derive(Debug)]
struct SimFile {
    fs: SimFs,
    inode: InodeRef,
}

impl FileHandle for SimFile {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        // Reads keep working after a crash is scheduled but not after it happened.
        let _state = self.fs.live()?;
        let inode = self.inode.lock().expect("inode lock");
        let start = offset as usize;
        let end = start
            .checked_add(buf.len())
            .ok_or(io::ErrorKind::InvalidInput)?;
        if end > inode.data.len() {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        buf.copy_from_slice(&inode.data[start..end]);
        Ok(())
    }

    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        let mut state = self.fs.live()?;
        let mut inode = self.inode.lock().expect("inode lock");
        let mut len = buf.len();
        let mut full = false;
        if let Some(budget) = state.write_budget {
            let room = budget.saturating_sub(state.bytes_written) as usize;
            if room < len {
                len = room;
                full = true;
            }
        }
        let start = offset as usize;
        if inode.data.len() < start + len {
            inode.data.resize(start + len, 0);
        }
        inode.data[start..start + len].copy_from_slice(&buf[..len]);
        state.bytes_written += len as u64;
        if full {
            return Err(io::Error::from_raw_os_error(28)); // ENOSPC
        }
        Ok(())
    }

    fn sync_data(&self) -> io::Result<()> {
        let mut state = self.fs.live()?;
        SimFs::sync_point(&mut state)?;
        let mut inode = self.inode.lock().expect("inode lock");
        inode.durable = inode.data.clone();
        Ok(())
    }

    fn len(&self) -> io::Result<u64> {
        let _state = self.fs.live()?;
        Ok(self.inode.lock().expect("inode lock").data.len() as u64)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        let _state = self.fs.live()?;
        self.inode
            .lock()
            .expect("inode lock")
            .data
            .resize(len as usize, 0);
        Ok(())
    }
}

struct SimLock {
    fs: SimFs,
    dir: PathBuf,
}

impl Drop for SimLock {
    fn drop(&mut self) {
        self.fs.lock().locked.remove(&self.dir);
    }
}

impl FileSystem for SimFs {
    fn open(&self, path: &Path, create: bool) -> io::Result<Arc<dyn FileHandle>> {
        let mut state = self.live()?;
        let inode = match state.names.get(path) {
            Some(inode) => inode.clone(),
            None if create => {
                let parent = path.parent().unwrap_or(Path::new(""));
                if !state.dirs.contains(parent) {
                    return Err(io::ErrorKind::NotFound.into());
                }
                let inode = InodeRef::default();
                state.names.insert(path.to_path_buf(), inode.clone());
                inode
            }
            None => return Err(io::ErrorKind::NotFound.into()),
        };
        Ok(Arc::new(SimFile {
            fs: self.clone(),
            inode,
        }))
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let state = self.live()?;
        if !state.dirs.contains(dir) {
            return Err(io::ErrorKind::NotFound.into());
        }
        let files = state.names.keys();
        let dirs = state.dirs.iter();
        let mut names: Vec<String> = files
            .chain(dirs)
            .filter(|p| p.parent() == Some(dir))
            .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect();
        names.sort();
        names.dedup();
        Ok(names)
    }

    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        let mut state = self.live()?;
        for ancestor in dir.ancestors() {
            state.dirs.insert(ancestor.to_path_buf());
        }
        Ok(())
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut state = self.live()?;
        let inode = state
            .names
            .remove(from)
            .ok_or(io::Error::from(io::ErrorKind::NotFound))?;
        state.names.insert(to.to_path_buf(), inode);
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut state = self.live()?;
        state
            .names
            .remove(path)
            .map(|_| ())
            .ok_or(io::Error::from(io::ErrorKind::NotFound))
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut state = self.live()?;
        SimFs::sync_point(&mut state)?;
        let in_dir = |p: &PathBuf| p.parent() == Some(dir);
        state.durable_names.retain(|p, _| !in_dir(p));
        let current: Vec<(PathBuf, InodeRef)> = state
            .names
            .iter()
            .filter(|(p, _)| in_dir(p))
            .map(|(p, i)| (p.clone(), i.clone()))
            .collect();
        state.durable_names.extend(current);
        Ok(())
    }

    fn exists(&self, path: &Path) -> bool {
        let state = self.lock();
        state.names.contains_key(path) || state.dirs.contains(path)
    }

    fn lock_dir(&self, dir: &Path) -> io::Result<Box<dyn Any + Send + Sync>> {
        let mut state = self.live()?;
        if !state.locked.insert(dir.to_path_buf()) {
            return Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                "another log in this process",
            ));
        }
        Ok(Box::new(SimLock {
            fs: self.clone(),
            dir: dir.to_path_buf(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsynced_names_and_data_are_lost_at_power_loss() {
        let fs = SimFs::new();
        let dir = Path::new("/d");
        fs.create_dir_all(dir).unwrap();
        let a = fs.open(&dir.join("a"), true).unwrap();
        a.write_all_at(b"hello", 0).unwrap();
        a.sync_data().unwrap();
        // Name not durable yet: the file vanishes.
        assert!(!fs.crash_image(1).exists(&dir.join("a")));
        fs.sync_dir(dir).unwrap();
        a.write_all_at(b" world", 5).unwrap();
        for seed in 0..20 {
            let image = fs.crash_image(seed);
            let bytes = super::super::read_file(&image, &dir.join("a")).unwrap();
            assert!(bytes.starts_with(b"hello"), "durable prefix kept");
            assert!(
                b"hello world".starts_with(&bytes),
                "only a prefix of the tail"
            );
        }
    }

    #[test]
    fn injected_faults_fire_at_the_chosen_point() {
        let fs = SimFs::new();
        fs.create_dir_all(Path::new("/d")).unwrap();
        let f = fs.open(Path::new("/d/f"), true).unwrap();
        fs.fail_sync_at(2);
        f.sync_data().unwrap();
        assert_eq!(f.sync_data().unwrap_err().raw_os_error(), Some(5));
        fs.set_write_budget(Some(3));
        let err = f.write_all_at(b"abcdef", 0).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(28));
        assert_eq!(f.len().unwrap(), 3);
        fs.set_write_budget(None);
        f.write_all_at(b"abcdef", 0).unwrap();
        fs.crash_at_sync(3);
        assert!(f.sync_data().is_err());
        assert!(fs.stats().crashed);
        assert!(f.write_all_at(b"x", 0).is_err());
    }
}
