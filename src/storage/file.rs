//! The seam between the storage engine and glommio's direct-I/O files.
//! Everything that names a glommio file type lives here, so a change of
//! runtime touches one file.

use std::io;
use std::path::{Path, PathBuf};

/// An aligned buffer that can be written with O_DIRECT.
pub type IoBuf = glommio::io::DmaBuffer;
/// The result of a direct read: an aligned buffer, sliced to what was asked.
pub type ReadBuf = glommio::io::ReadResult;

/// Allocates an aligned buffer of `len` bytes for direct writes. Its
/// contents are unspecified: a caller writes every byte it sends to disk
/// (the write buffer zeroes its padding when it seals). Zeroing a whole
/// write buffer on every flush cost more CPU than everything else a small
/// produce does.
pub fn alloc(len: usize) -> IoBuf {
    glommio::allocate_dma_buffer(len)
}

/// A file opened with O_DIRECT for reading and writing.
#[derive(Debug)]
pub struct DirectFile {
    file: glommio::io::DmaFile,
    path: PathBuf,
}

impl DirectFile {
    /// Opens (creating if needed) `path` for direct reads and writes.
    pub async fn open(path: &Path) -> io::Result<Self> {
        if let Some(dir) = path.parent() {
            prime_device(dir).await?;
        }
        let file = glommio::io::OpenOptions::new().read(true).write(true).create(true).dma_open(path).await?;
        Ok(DirectFile { file, path: path.to_path_buf() })
    }

    /// Opens an existing file for direct reads and writes.
    pub async fn open_existing(path: &Path) -> io::Result<Self> {
        if let Some(dir) = path.parent() {
            prime_device(dir).await?;
        }
        let file = glommio::io::OpenOptions::new().read(true).write(true).dma_open(path).await?;
        Ok(DirectFile { file, path: path.to_path_buf() })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The alignment direct I/O needs for positions and lengths.
    pub fn alignment(&self) -> u64 {
        self.file.alignment()
    }

    pub async fn size(&self) -> io::Result<u64> {
        Ok(self.file.file_size().await?)
    }

    /// Writes the whole of `buf` at `pos`; both must be aligned.
    pub async fn write_at(&self, buf: IoBuf, pos: u64) -> io::Result<()> {
        debug_assert_eq!(pos % self.alignment(), 0);
        let len = buf.len();
        let began = std::time::Instant::now();
        let n = self.file.write_at(buf, pos).await?;
        crate::metrics::count(|c| c.disk_write.observe(began.elapsed()));
        if n != len {
            return Err(io::Error::new(io::ErrorKind::WriteZero, format!("short direct write: {n} of {len} bytes")));
        }
        Ok(())
    }

    /// Reads up to `len` bytes at any position (aligned internally).
    pub async fn read_at(&self, pos: u64, len: usize) -> io::Result<ReadBuf> {
        Ok(self.file.read_at(pos, len).await?)
    }

    pub async fn sync(&self) -> io::Result<()> {
        let began = std::time::Instant::now();
        self.file.fdatasync().await?;
        crate::metrics::count(|c| c.disk_sync.observe(began.elapsed()));
        Ok(())
    }

    pub async fn truncate(&self, len: u64) -> io::Result<()> {
        Ok(self.file.truncate(len).await?)
    }

    pub async fn close(self) -> io::Result<()> {
        Ok(self.file.close().await?)
    }
}

thread_local! {
    static PRIMED: std::cell::RefCell<Vec<u64>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Makes glommio's per-thread probe of the device's polled-I/O support
/// read real data.
///
/// glommio probes by reading the first file it opens on a device; when that
/// file is empty the read succeeds without reaching the device, the device
/// is wrongly taken as pollable, and every later read fails with
/// EOPNOTSUPP. Opening a file that holds a block first gives the probe a
/// true answer, which glommio then caches for this thread.
async fn prime_device(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let dev = std::fs::metadata(dir)?.dev();
    if PRIMED.with(|p| p.borrow().contains(&dev)) {
        return Ok(());
    }
    let probe = dir.join(format!(".probe-{}", std::process::id()));
    std::fs::write(&probe, [0u8; 4096])?;
    let opened = glommio::io::OpenOptions::new().read(true).dma_open(&probe).await;
    let _ = std::fs::remove_file(&probe);
    opened?.close().await?;
    PRIMED.with(|p| p.borrow_mut().push(dev));
    Ok(())
}

/// Makes a new directory entry durable.
pub async fn sync_dir(dir: &Path) -> io::Result<()> {
    // glommio's directory open fails on relative paths (EBADF).
    let dir = std::fs::canonicalize(dir)?;
    let d = glommio::io::Directory::open(&dir).await?;
    d.sync().await?;
    d.close().await?;
    Ok(())
}

/// Writes a small file atomically: a temporary file, synced, then renamed.
pub async fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let f = DirectFile::open(&tmp).await?;
    let align = f.alignment() as usize;
    let mut buf = alloc(bytes.len().div_ceil(align).max(1) * align);
    buf.as_bytes_mut()[..bytes.len()].copy_from_slice(bytes);
    buf.as_bytes_mut()[bytes.len()..].fill(0);
    f.write_at(buf, 0).await?;
    f.truncate(bytes.len() as u64).await?;
    f.sync().await?;
    f.close().await?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// Makes sure `path` holds `bytes` of allocated disk space (a reserve that
/// deleting gives back when the disk is full). Metadata only: the blocks
/// are allocated, not written.
pub fn ensure_reserve(path: &Path, bytes: u64) -> io::Result<()> {
    use std::os::unix::io::AsRawFd;
    if std::fs::metadata(path).is_ok_and(|m| m.len() >= bytes) {
        return Ok(());
    }
    let f = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(path)?;
    // SAFETY: posix_fallocate on a file descriptor this function owns.
    let r = unsafe { libc::posix_fallocate(f.as_raw_fd(), 0, bytes as libc::off_t) };
    if r != 0 {
        let e = io::Error::from_raw_os_error(r);
        drop(f);
        let _ = std::fs::remove_file(path);
        return Err(e);
    }
    f.sync_all()
}

/// Deletes a reserve made by [`ensure_reserve`]; true if there was one.
pub fn release_reserve(path: &Path) -> bool {
    std::fs::remove_file(path).is_ok()
}

/// Whether an error says the disk is full.
pub fn is_disk_full(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::ENOSPC) || e.raw_os_error() == Some(libc::EDQUOT)
}

/// Reads a whole small file; `None` if it does not exist.
pub async fn read_whole(path: &Path, max_bytes: u64) -> io::Result<Option<Vec<u8>>> {
    if !path.exists() {
        return Ok(None);
    }
    if let Some(dir) = path.parent() {
        prime_device(dir).await?;
    }
    let f = glommio::io::OpenOptions::new().read(true).dma_open(path).await?;
    let size = f.file_size().await?;
    if size > max_bytes {
        return Err(io::Error::new(io::ErrorKind::InvalidData, format!("{} is {size} bytes, over {max_bytes}", path.display())));
    }
    let r = f.read_at(0, size as usize).await?;
    let out = r.to_vec();
    f.close().await?;
    Ok(Some(out))
}
