//! A simulated storage device for crash testing.
//!
//! Every write goes to a volatile cache and reaches "stable media" only at
//! fdatasync; directory entries (create, rename, unlink) become durable only at
//! a directory fsync. [`SimStorage::crash_image`] produces what a power loss
//! could leave behind: for every 512-byte sector touched by unsynced writes,
//! any one of its versions (the durable one or any later one, independently
//! per sector, so writes can be torn, dropped or reordered), garbage in sectors
//! that never held durable bytes (no write to them was followed by an
//! fdatasync: beyond the durable end, or only allocated), and a prefix of the
//! unsynced directory operations (a journalling file system commits them in
//! order). A sector that holds durable bytes keeps them or takes a later
//! version, whatever they are: zeros a write made durable are data like any
//! other (DESIGN, "What recovery trusts", sector atomicity).
//!
//! [`SimStorage::crash_after`] makes every operation from the n-th on fail, as
//! if the process died there, freezing the state for the crash image.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::io::{DirEntry, FileImage, FileKind, FileStat, OpenMode, Storage, StorageFile};

/// Sector size of the simulated device: the unit that is written atomically.
pub const SECTOR: usize = 512;

#[derive(Debug, Clone, Default)]
struct Inode {
    /// Content on stable media.
    durable: Vec<u8>,
    /// Per sector: whether it holds durable bytes, i.e. a write to it was
    /// followed by an fdatasync. Only sectors that do not may come back as
    /// garbage. Not "the durable sector is all zeros": a record's last bytes
    /// and its padding can fill a sector with zeros that were written and
    /// made durable (an encrypted record whose tag ends in a zero byte did).
    held: Vec<bool>,
    /// Changes since the last fdatasync, oldest first.
    pending: Vec<Pending>,
    /// Content as the running process sees it.
    current: Vec<u8>,
}

/// A change of an inode's content not yet on stable media.
#[derive(Debug, Clone)]
struct Pending {
    off: u64,
    bytes: Vec<u8>,
    /// A write (false: space allocated, which reads as zeros but was never
    /// written, so its sectors hold no durable bytes even once synced).
    write: bool,
}

impl Pending {
    /// The sectors it touches.
    fn sectors(&self) -> std::ops::Range<u64> {
        self.off / SECTOR as u64..(self.off + self.bytes.len() as u64).div_ceil(SECTOR as u64)
    }
}

impl Inode {
    /// Whether sector `s` holds durable bytes.
    fn held(&self, s: u64) -> bool {
        self.held.get(s as usize).copied().unwrap_or(false)
    }

    fn mark_held(&mut self, s: u64) {
        let s = s as usize;
        if self.held.len() <= s {
            self.held.resize(s + 1, false);
        }
        self.held[s] = true;
    }
}

#[derive(Debug, Clone)]
enum DirOp {
    Link(PathBuf, usize),
    Unlink(PathBuf),
    /// Atomic, as a journalling file system makes it.
    Rename(PathBuf, PathBuf, usize),
}

#[derive(Debug, Clone, Default)]
struct State {
    inodes: Vec<Inode>,
    /// Durable directory entries.
    durable_dir: BTreeMap<PathBuf, usize>,
    /// Directory entries as the process sees them.
    dir: BTreeMap<PathBuf, usize>,
    /// Directory operations since the last directory fsync, oldest first.
    pending_dir: Vec<DirOp>,
    /// Operations performed so far.
    ops: u64,
    /// Operation number at which the simulated process dies.
    crash_at: Option<u64>,
    /// Operation number that fails once with this OS error.
    fail_at: Option<(u64, i32)>,
    /// Completed file fdatasyncs (device flushes) and bytes written.
    data_syncs: u64,
    bytes_written: u64,
}

impl State {
    /// Counts an operation; fails once the crash point is reached.
    fn tick(&mut self) -> io::Result<()> {
        if let Some(at) = self.crash_at
            && self.ops >= at
        {
            return Err(io::Error::other("simulated crash"));
        }
        self.ops += 1;
        if let Some((at, errno)) = self.fail_at
            && self.ops - 1 == at
        {
            return Err(io::Error::from_raw_os_error(errno));
        }
        Ok(())
    }
}

/// The simulated device. Cheap to clone (clones share the device).
#[derive(Debug, Clone, Default)]
pub struct SimStorage {
    state: Arc<Mutex<State>>,
}

struct SimFile {
    state: Arc<Mutex<State>>,
    inode: usize,
}

fn lock(m: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, format!("{} not found", path.display()))
}

impl SimStorage {
    /// An empty device.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every operation from the `n`-th (counting from 0) on fails.
    pub fn crash_after(&self, n: u64) {
        lock(&self.state).crash_at = Some(n);
    }

    /// Operation `n` (counting from 0) fails once with OS error `errno` and
    /// has no effect; the device keeps working afterwards.
    pub fn fail_once_at(&self, n: u64, errno: i32) {
        lock(&self.state).fail_at = Some((n, errno));
    }

    /// Operations performed so far.
    pub fn ops(&self) -> u64 {
        lock(&self.state).ops
    }

    /// File fdatasyncs completed so far (device cache flushes).
    pub fn data_syncs(&self) -> u64 {
        lock(&self.state).data_syncs
    }

    /// Bytes of file writes completed so far.
    pub fn bytes_written(&self) -> u64 {
        lock(&self.state).bytes_written
    }

    /// What a power loss now could leave on the device, as a fresh device with
    /// everything durable. `rand` supplies randomness (any 64-bit generator).
    pub fn crash_image(&self, rand: &mut dyn FnMut() -> u64) -> SimStorage {
        let st = lock(&self.state);
        // Directory: the durable entries plus a prefix of the pending operations.
        let mut dir = st.durable_dir.clone();
        let keep = (rand() % (st.pending_dir.len() as u64 + 1)) as usize;
        for op in &st.pending_dir[..keep] {
            match op {
                DirOp::Link(p, i) => {
                    dir.insert(p.clone(), *i);
                }
                DirOp::Unlink(p) => {
                    dir.remove(p);
                }
                DirOp::Rename(from, to, i) => {
                    dir.remove(from);
                    dir.insert(to.clone(), *i);
                }
            }
        }
        let mut inodes: Vec<Inode> = Vec::with_capacity(st.inodes.len());
        for ino in &st.inodes {
            inodes.push(crash_inode(ino, rand));
        }
        SimStorage {
            state: Arc::new(Mutex::new(State { inodes, durable_dir: dir.clone(), dir, ..Default::default() })),
        }
    }

    /// Every file name and its size, as the process sees them (for tests).
    pub fn listing(&self) -> Vec<(String, usize)> {
        let st = lock(&self.state);
        st.dir.iter().map(|(p, &i)| (p.display().to_string(), st.inodes[i].current.len())).collect()
    }

    /// Content of a file as the process sees it (for tests).
    pub fn read(&self, path: &Path) -> Option<Vec<u8>> {
        let st = lock(&self.state);
        st.dir.get(path).map(|&i| st.inodes[i].current.clone())
    }
}

/// One possible post-crash state of an inode: all of it durable, its
/// sectors held where they were or where a write's version landed.
fn crash_inode(ino: &Inode, rand: &mut dyn FnMut() -> u64) -> Inode {
    let mut out = Inode { durable: ino.durable.clone(), held: ino.held.clone(), ..Default::default() };
    // Versions of each touched sector, in write order, and whether a write
    // (not only allocations) reached the sector by then.
    let mut versions: BTreeMap<u64, Vec<(Vec<u8>, bool)>> = BTreeMap::new();
    let mut image = ino.durable.clone();
    for p in &ino.pending {
        apply(&mut image, p.off, &p.bytes);
        for s in p.sectors() {
            let vs = versions.entry(s).or_default();
            let written = p.write || vs.last().is_some_and(|v| v.1);
            vs.push((sector(&image, s), written));
        }
    }
    for (s, vs) in versions {
        let never_durable = !ino.held(s);
        let pick = rand() % (vs.len() as u64 + 1 + u64::from(never_durable));
        let (content, written) = match pick as usize {
            0 => continue, // the durable version stays
            k if k <= vs.len() => vs[k - 1].clone(),
            // Garbage only where no durable bytes were; the device holds it now.
            _ => ((0..SECTOR).map(|_| rand() as u8).collect(), true),
        };
        apply(&mut out.durable, s * SECTOR as u64, &content);
        if written {
            out.mark_held(s);
        }
    }
    out.current = out.durable.clone();
    out
}

fn sector(b: &[u8], s: u64) -> Vec<u8> {
    let start = (s as usize * SECTOR).min(b.len());
    let end = (start + SECTOR).min(b.len());
    let mut v = b[start..end].to_vec();
    v.resize(SECTOR, 0);
    v
}

fn apply(b: &mut Vec<u8>, off: u64, bytes: &[u8]) {
    let off = off as usize;
    if b.len() < off + bytes.len() {
        b.resize(off + bytes.len(), 0);
    }
    b[off..off + bytes.len()].copy_from_slice(bytes);
}

impl StorageFile for SimFile {
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        let mut st = lock(&self.state);
        st.tick()?;
        st.bytes_written += buf.len() as u64;
        let ino = &mut st.inodes[self.inode];
        ino.pending.push(Pending { off: offset, bytes: buf.to_vec(), write: true });
        apply(&mut ino.current, offset, buf);
        Ok(())
    }

    fn sync_data(&self) -> io::Result<()> {
        let mut st = lock(&self.state);
        st.tick()?;
        st.data_syncs += 1;
        let ino = &mut st.inodes[self.inode];
        ino.durable = ino.current.clone();
        for p in std::mem::take(&mut ino.pending) {
            if p.write {
                p.sectors().for_each(|s| ino.mark_held(s));
            }
        }
        Ok(())
    }

    /// Modelled as a pending write of zeros beyond the current end (it may be
    /// lost, in any part, at a crash, like any unsynced change). Its sectors
    /// hold no durable bytes even once synced, like an unwritten extent: a
    /// torn write to them may leave garbage.
    fn allocate(&self, offset: u64, len: u64) -> io::Result<()> {
        let mut st = lock(&self.state);
        st.tick()?;
        let ino = &mut st.inodes[self.inode];
        let cur = ino.current.len() as u64;
        let end = offset.saturating_add(len);
        if end > cur {
            let zeros = vec![0u8; (end - cur.max(offset)) as usize];
            let at = cur.max(offset);
            apply(&mut ino.current, at, &zeros);
            ino.pending.push(Pending { off: at, bytes: zeros, write: false });
        }
        Ok(())
    }

    /// One name per file: the simulator has no hard links.
    fn stat(&self) -> io::Result<Option<FileStat>> {
        let st = lock(&self.state);
        Ok(Some(FileStat { regular: true, links: 1, len: st.inodes[self.inode].current.len() as u64 }))
    }
}

impl Storage for SimStorage {
    fn create_dir_all(&self, _dir: &Path) -> io::Result<()> {
        lock(&self.state).tick()
    }

    fn list_dir(&self, dir: &Path) -> io::Result<Vec<DirEntry>> {
        let mut st = lock(&self.state);
        st.tick()?;
        Ok(st
            .dir
            .keys()
            .filter(|p| p.parent() == Some(dir))
            .filter_map(|p| p.file_name()?.to_str().map(str::to_owned))
            .map(|name| DirEntry { name, kind: FileKind::File })
            .collect())
    }

    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Box<dyn StorageFile>> {
        let mut st = lock(&self.state);
        st.tick()?;
        let inode = match (st.dir.get(path).copied(), mode.create) {
            (Some(i), false) => i,
            (None, false) => return Err(not_found(path)),
            (_, true) => {
                // O_CREAT|O_TRUNC: a new, empty inode under this name.
                st.inodes.push(Inode::default());
                let i = st.inodes.len() - 1;
                st.dir.insert(path.to_owned(), i);
                st.pending_dir.push(DirOp::Link(path.to_owned(), i));
                i
            }
        };
        Ok(Box::new(SimFile { state: self.state.clone(), inode }))
    }

    fn read_image(&self, path: &Path) -> io::Result<FileImage> {
        let mut st = lock(&self.state);
        st.tick()?;
        let &i = st.dir.get(path).ok_or_else(|| not_found(path))?;
        Ok(FileImage::from_bytes(Arc::from(st.inodes[i].current.as_slice())))
    }

    fn read_range(&self, path: &Path, offset: u64, len: usize, _direct: bool) -> io::Result<Vec<u8>> {
        let mut st = lock(&self.state);
        st.tick()?;
        let &i = st.dir.get(path).ok_or_else(|| not_found(path))?;
        let c = &st.inodes[i].current;
        let start = (offset as usize).min(c.len());
        Ok(c[start..(start + len).min(c.len())].to_vec())
    }

    fn file_len(&self, path: &Path) -> io::Result<u64> {
        let mut st = lock(&self.state);
        st.tick()?;
        let &i = st.dir.get(path).ok_or_else(|| not_found(path))?;
        Ok(st.inodes[i].current.len() as u64)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut st = lock(&self.state);
        st.tick()?;
        let i = st.dir.remove(from).ok_or_else(|| not_found(from))?;
        st.dir.insert(to.to_owned(), i);
        st.pending_dir.push(DirOp::Rename(from.to_owned(), to.to_owned(), i));
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut st = lock(&self.state);
        st.tick()?;
        st.dir.remove(path).ok_or_else(|| not_found(path))?;
        st.pending_dir.push(DirOp::Unlink(path.to_owned()));
        Ok(())
    }

    fn sync_dir(&self, _dir: &Path) -> io::Result<()> {
        let mut st = lock(&self.state);
        st.tick()?;
        st.durable_dir = st.dir.clone();
        st.pending_dir.clear();
        Ok(())
    }

    fn lock_dir(&self, _dir: &Path) -> io::Result<Box<dyn Send + Sync>> {
        lock(&self.state).tick()?;
        Ok(Box::new(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsynced_writes_and_directory_entries_can_vanish_synced_ones_cannot() {
        let sim = SimStorage::new();
        let dir = Path::new("/d");
        let a = dir.join("a");
        let f = sim.open(&a, OpenMode { create: true, direct: false }).unwrap();
        f.write_all_at(&[1u8; 1024], 0).unwrap();
        f.sync_data().unwrap();
        f.write_all_at(&[2u8; 1024], 1024).unwrap();
        let mut x = 1u64;
        let mut rand = || {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            x >> 33
        };
        let mut lost_entry = 0;
        let mut lost_tail = 0;
        for _ in 0..200 {
            let img = sim.crash_image(&mut rand);
            match img.read(&a) {
                None => lost_entry += 1, // directory never fsynced
                Some(c) => {
                    assert_eq!(&c[..1024], &[1u8; 1024]);
                    if c.len() < 2048 || c[1024..2048] != [2u8; 1024] {
                        lost_tail += 1;
                    }
                }
            }
        }
        assert!(lost_entry > 0 && lost_tail > 0);
        sim.sync_dir(dir).unwrap();
        for _ in 0..50 {
            assert_eq!(&sim.crash_image(&mut rand).read(&a).unwrap()[..1024], &[1u8; 1024]);
        }
    }

    /// Zeros a write made durable are data: a crash leaves them or a later
    /// version, never garbage (sector atomicity). Space that was only
    /// allocated, or never synced, holds no durable bytes and may.
    #[test]
    fn durable_zero_sectors_never_turn_to_garbage_allocated_ones_may() {
        let sim = SimStorage::new();
        let dir = Path::new("/d");
        let a = dir.join("a");
        let f = sim.open(&a, OpenMode { create: true, direct: false }).unwrap();
        // Sector 0 data, sector 1 written zeros (a record's zero tail and
        // padding), sectors 2 and 3 allocated.
        let mut first = vec![0u8; 1024];
        first[..512].fill(1);
        f.write_all_at(&first, 0).unwrap();
        f.allocate(1024, 1024).unwrap();
        f.sync_data().unwrap();
        sim.sync_dir(dir).unwrap();
        // The tail rewrite: the same durable bytes, new ones after them, and
        // sector 4 beyond the durable end.
        let again = [&first[..], &[2u8; 1536][..]].concat();
        f.write_all_at(&again, 0).unwrap();
        let mut x = 7u64;
        let mut rand = || {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            x >> 33
        };
        let (mut garbage_allocated, mut garbage_beyond) = (0, 0);
        for _ in 0..300 {
            let c = sim.crash_image(&mut rand).read(&a).unwrap();
            assert_eq!(&c[..1024], &first[..], "durable sectors keep their bytes, zeros included");
            let other = |s: &[u8]| s != [0u8; 512] && s != [2u8; 512];
            garbage_allocated += c[1024..2048].chunks(512).filter(|s| other(s)).count();
            garbage_beyond += c.get(2048..2560).is_some_and(other) as usize;
        }
        assert!(garbage_allocated > 0 && garbage_beyond > 0, "{garbage_allocated} {garbage_beyond}");
    }
}
