//! The narrow file-system interface under the log, so tests can inject faults.
//!
//! [`FsStorage`] is the real implementation. [`FaultyStorage`] wraps any storage and fails
//! writes once a byte budget is spent (a full disk) or fails every fdatasync on request.

use std::fmt::Debug;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;

/// One open file of a segment or index.
pub trait StorageFile: Send + Sync + Debug {
    /// Reads up to `buf.len()` bytes at `position`; returns how many were read (0 at end).
    fn read_at(&self, buf: &mut [u8], position: u64) -> io::Result<usize>;
    /// Writes all of `buf` at `position`.
    fn write_all_at(&self, buf: &[u8], position: u64) -> io::Result<()>;
    /// Writes the concatenation of `bufs` at `position`; the real file system does it in one
    /// system call where it can.
    fn write_all_vectored_at(&self, bufs: &[&[u8]], position: u64) -> io::Result<()> {
        let mut at = position;
        for buf in bufs {
            self.write_all_at(buf, at)?;
            at += buf.len() as u64;
        }
        Ok(())
    }
    /// Forces written data to disk (fdatasync).
    fn sync_data(&self) -> io::Result<()>;
    /// Current length in bytes.
    fn len(&self) -> io::Result<u64>;
    /// True when the file holds no bytes.
    fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }
    /// Truncates or extends to `len` bytes.
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// The file's descriptor, where it has one: lets a reader send file bytes to a socket
    /// without copying them through user space (sendfile). `None` makes readers copy.
    fn as_fd(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        None
    }
    /// Starts writing `len` bytes from `position` back to disk without waiting (a later
    /// sync then has less to write). A hint: storage without it does nothing.
    fn start_writeback(&self, position: u64, len: u64) -> io::Result<()> {
        let _ = (position, len);
        Ok(())
    }

    /// Reads exactly `buf.len()` bytes at `position`, or fails with `UnexpectedEof`.
    fn read_exact_at(&self, mut buf: &mut [u8], mut position: u64) -> io::Result<()> {
        while !buf.is_empty() {
            match self.read_at(buf, position)? {
                0 => return Err(io::ErrorKind::UnexpectedEof.into()),
                n => {
                    buf = &mut buf[n..];
                    position += n as u64;
                }
            }
        }
        Ok(())
    }
}

/// Directory-level operations the log needs.
pub trait Storage: Send + Sync + Debug {
    /// Creates a directory and its parents.
    fn create_dir_all(&self, path: &Path) -> io::Result<()>;
    /// Names of the entries of a directory.
    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>>;
    /// Opens a file for reading and writing, creating it when `create` is set.
    fn open(&self, path: &Path, create: bool) -> io::Result<Arc<dyn StorageFile>>;
    /// Deletes a file.
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Deletes a directory and everything in it.
    fn remove_dir_all(&self, path: &Path) -> io::Result<()>;
    /// Atomically renames a file.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Makes a directory's entries durable (fsync on the directory).
    fn sync_dir(&self, path: &Path) -> io::Result<()>;
    /// True when the path exists.
    fn exists(&self, path: &Path) -> bool;
    /// Opens an existing file for writes that are on disk when they return: direct I/O with
    /// `O_DSYNC` where the file system allows it (writes must then be aligned to 4 KiB in
    /// memory, position and length), otherwise a write followed by fdatasync. For the
    /// journal, whose files are preallocated so such writes change no metadata.
    fn open_durable(&self, path: &Path) -> io::Result<Arc<dyn StorageFile>>;
    /// Makes every file of the file system holding `path` durable (syncfs): one call where
    /// many files would each need an fdatasync.
    fn sync_file_system(&self, path: &Path) -> io::Result<()>;
    /// Bytes an unprivileged writer may still use on the file system holding `path`.
    fn available_bytes(&self, path: &Path) -> io::Result<u64>;
    /// Size of the file system holding `path`; unsupported unless a storage knows it.
    fn total_bytes(&self, path: &Path) -> io::Result<u64> {
        let _ = path;
        Err(io::ErrorKind::Unsupported.into())
    }
}

/// The real file system.
#[derive(Debug, Default, Clone, Copy)]
pub struct FsStorage;

#[derive(Debug)]
struct FsFile(File);

impl StorageFile for FsFile {
    fn read_at(&self, buf: &mut [u8], position: u64) -> io::Result<usize> {
        loop {
            match self.0.read_at(buf, position) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => return other,
            }
        }
    }
    fn write_all_at(&self, buf: &[u8], position: u64) -> io::Result<()> {
        self.0.write_all_at(buf, position)
    }
    fn write_all_vectored_at(&self, bufs: &[&[u8]], position: u64) -> io::Result<()> {
        pwritev_all(&self.0, bufs, position)
    }
    fn sync_data(&self) -> io::Result<()> {
        self.0.sync_data()
    }
    fn len(&self) -> io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }
    fn as_fd(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        Some(std::os::fd::AsFd::as_fd(&self.0))
    }
    /// `POSIX_FADV_DONTNEED`: Linux starts writeback of the range's dirty pages without
    /// waiting, and drops only pages that are already clean. Called on freshly appended
    /// (dirty) ranges, it starts their writeback and leaves them cached.
    fn start_writeback(&self, position: u64, len: u64) -> io::Result<()> {
        let Some(len) = std::num::NonZeroU64::new(len) else {
            return Ok(());
        };
        rustix::fs::fadvise(&self.0, position, Some(len), rustix::fs::Advice::DontNeed)
            .map_err(io::Error::from)
    }
}

/// A file opened by [`Storage::open_durable`].
#[derive(Debug)]
struct DurableFile {
    file: File,
    /// Opened with `O_DIRECT | O_DSYNC`: each write is durable on return.
    direct: bool,
}

impl StorageFile for DurableFile {
    fn read_at(&self, buf: &mut [u8], position: u64) -> io::Result<usize> {
        self.file.read_at(buf, position)
    }
    fn write_all_at(&self, buf: &[u8], position: u64) -> io::Result<()> {
        self.file.write_all_at(buf, position)?;
        if self.direct {
            Ok(())
        } else {
            self.file.sync_data()
        }
    }
    fn sync_data(&self) -> io::Result<()> {
        if self.direct {
            Ok(())
        } else {
            self.file.sync_data()
        }
    }
    fn len(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.file.set_len(len)
    }
}

/// `O_DSYNC` (rustix's `OFlags::DSYNC` is `O_SYNC`, which would also sync timestamps).
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64", target_arch = "riscv64"))]
const O_DSYNC: i32 = 0o10000;
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64", target_arch = "riscv64")))]
const O_DSYNC: i32 = rustix::fs::OFlags::DSYNC.bits() as i32;

fn open_durable(path: &Path) -> io::Result<DurableFile> {
    use std::os::unix::fs::OpenOptionsExt;
    let direct = rustix::fs::OFlags::DIRECT.bits() as i32 | O_DSYNC;
    match OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(direct)
        .open(path)
    {
        Ok(file) => Ok(DurableFile { file, direct: true }),
        // A file system without direct I/O (tmpfs): write, then fdatasync.
        Err(e) if e.raw_os_error() == Some(rustix::io::Errno::INVAL.raw_os_error()) => {
            let file = OpenOptions::new().read(true).write(true).open(path)?;
            Ok(DurableFile { file, direct: false })
        }
        Err(e) => Err(e),
    }
}

/// Slices per `pwritev` call (Linux's IOV_MAX is 1024).
const IOV_MAX: usize = 1024;

/// `pwritev` until every byte of `bufs` is written (a call may write less).
fn pwritev_all(file: &File, bufs: &[&[u8]], position: u64) -> io::Result<()> {
    let mut slices: Vec<&[u8]> = bufs.iter().copied().filter(|b| !b.is_empty()).collect();
    let mut at = position;
    let mut first = 0;
    // Each pass writes at least one byte or fails: bounded by the bytes given.
    while first < slices.len() {
        let end = slices.len().min(first + IOV_MAX);
        let iov: Vec<io::IoSlice<'_>> = slices[first..end].iter().map(|b| io::IoSlice::new(b)).collect();
        let written = match rustix::io::pwritev(file, &iov, at) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => n,
            Err(e) if e == rustix::io::Errno::INTR => continue,
            Err(e) => return Err(e.into()),
        };
        at += written as u64;
        let mut left = written;
        while left > 0 {
            let len = slices[first].len();
            if left >= len {
                left -= len;
                first += 1;
            } else {
                slices[first] = &slices[first][left..];
                left = 0;
            }
        }
    }
    Ok(())
}

impl Storage for FsStorage {
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        fs::create_dir_all(path)
    }
    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in fs::read_dir(path)? {
            names.push(entry?.file_name().to_string_lossy().into_owned());
        }
        names.sort();
        Ok(names)
    }
    fn open(&self, path: &Path, create: bool) -> io::Result<Arc<dyn StorageFile>> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(create)
            .truncate(false)
            .open(path)?;
        Ok(Arc::new(FsFile(file)))
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }
    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        fs::remove_dir_all(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }
    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        File::open(path)?.sync_all()
    }
    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }
    fn open_durable(&self, path: &Path) -> io::Result<Arc<dyn StorageFile>> {
        Ok(Arc::new(open_durable(path)?))
    }
    fn sync_file_system(&self, path: &Path) -> io::Result<()> {
        let dir = File::open(path)?;
        rustix::fs::syncfs(&dir).map_err(io::Error::from)
    }
    fn available_bytes(&self, path: &Path) -> io::Result<u64> {
        let stat = rustix::fs::statvfs(path)?;
        Ok(stat.f_bavail.saturating_mul(stat.f_frsize))
    }
    fn total_bytes(&self, path: &Path) -> io::Result<u64> {
        let stat = rustix::fs::statvfs(path)?;
        Ok(stat.f_blocks.saturating_mul(stat.f_frsize))
    }
}

/// Shared switches of a [`FaultyStorage`].
#[derive(Debug)]
pub struct Faults {
    /// Bytes that may still be written before writes fail with ENOSPC; negative = unlimited.
    pub write_budget_bytes: AtomicI64,
    /// When set, every fdatasync fails with EIO.
    pub fail_sync: AtomicBool,
}

impl Faults {
    /// Sets the remaining write budget; `None` removes the limit.
    pub fn set_write_budget(&self, bytes: Option<u64>) {
        let v = bytes.map_or(-1, |b| b.min(i64::MAX as u64) as i64);
        self.write_budget_bytes.store(v, Ordering::SeqCst);
    }
}

/// Storage that fails on demand; for tests.
#[derive(Debug, Clone)]
pub struct FaultyStorage {
    inner: Arc<dyn Storage>,
    faults: Arc<Faults>,
}

impl FaultyStorage {
    /// Wraps `inner` with no faults active.
    pub fn new(inner: Arc<dyn Storage>) -> FaultyStorage {
        FaultyStorage {
            inner,
            faults: Arc::new(Faults {
                write_budget_bytes: AtomicI64::new(-1),
                fail_sync: AtomicBool::new(false),
            }),
        }
    }

    /// The switches that control the faults.
    pub fn faults(&self) -> Arc<Faults> {
        self.faults.clone()
    }
}

#[derive(Debug)]
struct FaultyFile {
    inner: Arc<dyn StorageFile>,
    faults: Arc<Faults>,
    /// Opened by `open_durable`: a write is also a sync, and fails when syncs do.
    durable_writes: bool,
}

impl StorageFile for FaultyFile {
    fn read_at(&self, buf: &mut [u8], position: u64) -> io::Result<usize> {
        self.inner.read_at(buf, position)
    }
    fn write_all_at(&self, buf: &[u8], position: u64) -> io::Result<()> {
        if self.durable_writes && self.faults.fail_sync.load(Ordering::SeqCst) {
            return Err(io::Error::from_raw_os_error(5));
        }
        let len = buf.len() as i64;
        let taken = self
            .faults
            .write_budget_bytes
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |b| {
                if b < 0 {
                    Some(b)
                } else if b >= len {
                    Some(b - len)
                } else {
                    None
                }
            });
        match taken {
            Ok(_) => self.inner.write_all_at(buf, position),
            Err(remaining) => {
                // A full disk usually accepts a prefix of the write: model that torn write.
                let prefix = remaining.max(0) as usize;
                self.faults.write_budget_bytes.store(0, Ordering::SeqCst);
                self.inner.write_all_at(&buf[..prefix], position)?;
                Err(io::Error::from_raw_os_error(28))
            }
        }
    }
    fn sync_data(&self) -> io::Result<()> {
        if self.faults.fail_sync.load(Ordering::SeqCst) {
            return Err(io::Error::from_raw_os_error(5));
        }
        self.inner.sync_data()
    }
    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.inner.set_len(len)
    }
    fn as_fd(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        self.inner.as_fd()
    }
    fn start_writeback(&self, position: u64, len: u64) -> io::Result<()> {
        self.inner.start_writeback(position, len)
    }
}

impl Storage for FaultyStorage {
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        self.inner.create_dir_all(path)
    }
    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        self.inner.list_dir(path)
    }
    fn open(&self, path: &Path, create: bool) -> io::Result<Arc<dyn StorageFile>> {
        Ok(Arc::new(FaultyFile {
            inner: self.inner.open(path, create)?,
            faults: self.faults.clone(),
            durable_writes: false,
        }))
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.inner.remove_file(path)
    }
    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        self.inner.remove_dir_all(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.inner.rename(from, to)
    }
    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        self.inner.sync_dir(path)
    }
    fn exists(&self, path: &Path) -> bool {
        self.inner.exists(path)
    }
    fn open_durable(&self, path: &Path) -> io::Result<Arc<dyn StorageFile>> {
        Ok(Arc::new(FaultyFile {
            inner: self.inner.open_durable(path)?,
            faults: self.faults.clone(),
            durable_writes: true,
        }))
    }
    fn sync_file_system(&self, path: &Path) -> io::Result<()> {
        if self.faults.fail_sync.load(Ordering::SeqCst) {
            return Err(io::Error::from_raw_os_error(5));
        }
        self.inner.sync_file_system(path)
    }
    fn available_bytes(&self, path: &Path) -> io::Result<u64> {
        let real = self.inner.available_bytes(path)?;
        let budget = self.faults.write_budget_bytes.load(Ordering::SeqCst);
        Ok(if budget < 0 { real } else { real.min(budget as u64) })
    }
    fn total_bytes(&self, path: &Path) -> io::Result<u64> {
        self.inner.total_bytes(path)
    }
}

/// Path of a file inside a directory, named by a zero-padded base offset.
pub(crate) fn offset_file(dir: &Path, base_offset: i64, suffix: &str) -> PathBuf {
    dir.join(format!("{base_offset:020}{suffix}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vectored_writes_put_every_slice_in_order_past_iov_max() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = FsStorage.open(&dir.path().join("f"), true).expect("open");
        let slices: Vec<Vec<u8>> = (0..3_000u32)
            .map(|i| i.to_be_bytes()[..(i % 4 + 1) as usize].to_vec())
            .collect();
        let refs: Vec<&[u8]> = slices.iter().map(Vec::as_slice).chain([&b""[..]]).collect();
        file.write_all_vectored_at(&refs, 7).expect("write");
        let expected: Vec<u8> = slices.concat();
        let mut back = vec![0u8; expected.len()];
        file.read_exact_at(&mut back, 7).expect("read");
        assert_eq!(back, expected);
        assert_eq!(file.len().expect("len"), 7 + expected.len() as u64);
    }
}
