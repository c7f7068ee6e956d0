//! A small ext4 filesystem on a loop device, for the tests of a full disk.

use super::temp_dir;

/// A small ext4 filesystem in a file, loop-mounted for one test; unmounted
/// (and its image removed) when dropped.
pub struct SmallDisk {
    pub mnt: std::path::PathBuf,
    _base: tempfile::TempDir,
}

impl SmallDisk {
    /// `Err` says why it cannot be made here (no root, no loop devices, no
    /// mkfs.ext4).
    pub fn new(mib: u64) -> Result<SmallDisk, String> {
        let base = temp_dir();
        let image = base.path().join("disk.img");
        let mnt = base.path().join("mnt");
        std::fs::create_dir(&mnt).map_err(|e| e.to_string())?;
        std::fs::File::create(&image).and_then(|f| f.set_len(mib << 20)).map_err(|e| e.to_string())?;
        let run = |cmd: &mut std::process::Command| -> Result<(), String> {
            let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
            if out.status.success() {
                Ok(())
            } else {
                Err(format!("{cmd:?}: {}", String::from_utf8_lossy(&out.stderr).trim()))
            }
        };
        run(std::process::Command::new("mkfs.ext4").args(["-q", "-F"]).arg(&image))?;
        run(std::process::Command::new("mount").args(["-o", "loop"]).arg(&image).arg(&mnt))?;
        Ok(SmallDisk { mnt, _base: base })
    }
}

impl SmallDisk {
    /// Takes every free block of the filesystem (a file of allocated
    /// space), so the next write that needs a block fails with ENOSPC.
    pub fn fill(&self) -> std::io::Result<()> {
        use std::os::unix::io::AsRawFd;
        let path = self.mnt.join("fill");
        let f = std::fs::OpenOptions::new().create(true).truncate(true).write(true).open(&path)?;
        // SAFETY: statvfs into a zeroed struct, on a path this test owns.
        let free = unsafe {
            let mut st: libc::statvfs = std::mem::zeroed();
            let c = std::ffi::CString::new(self.mnt.as_os_str().as_encoded_bytes()).expect("no NUL in a temp path");
            if libc::statvfs(c.as_ptr(), &mut st) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            st.f_bavail as u64 * st.f_bsize as u64
        };
        // Allocate in pieces: one call for all may fail whole near the end.
        let mut at = 0u64;
        let step = 1u64 << 20;
        while at < free {
            // SAFETY: posix_fallocate on a descriptor this function owns.
            if unsafe { libc::posix_fallocate(f.as_raw_fd(), at as libc::off_t, step.min(free - at) as libc::off_t) } != 0 {
                break;
            }
            at += step;
        }
        Ok(())
    }

    /// Gives back what [`fill`](Self::fill) took.
    pub fn unfill(&self) {
        let _ = std::fs::remove_file(self.mnt.join("fill"));
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.mnt).status();
    }
}
