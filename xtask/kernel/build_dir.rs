//! One build folder for the project's kernels that outlives them, so that a restarted kernel is warm.
//!
//! evcxr builds a kernel's cells in a crate folder of its own, a fresh temporary one unless `EVCXR_TMPDIR`
//! names one. A fresh folder starts cold: even with every dependency in evcxr's compiled-crate cache, cargo
//! restores some 300 crates into it before the first cell runs (about 20 s on 2 cores). A folder kept between
//! kernels skips that. Two kernels building in one folder at once would corrupt each other's builds, so the
//! folder is claimed with a lock file holding the kernel's process id; a kernel that finds it claimed by a
//! live process builds in a temporary folder as before.

use std::io::Write;
use std::path::{Path, PathBuf};

/// The lock on a build folder; dropping it releases the folder.
#[derive(Debug)]
pub struct Claim {
    lock: PathBuf,
}

impl Drop for Claim {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.lock);
    }
}

/// The lock file of `dir`.
pub fn lock_file(dir: &Path) -> PathBuf {
    dir.join("dlhist-kernel.lock")
}

/// Claims `dir` (creating it) for this process, or returns `None` when a live process holds it. A lock left by
/// a process that is gone (a killed kernel) is taken over.
pub fn claim(dir: &Path) -> std::io::Result<Option<Claim>> {
    std::fs::create_dir_all(dir)?;
    let lock = lock_file(dir);
    // The lock appears with its process id already in it (a hard link to a finished file is atomic), so a
    // reader never sees a half-written one.
    let ours = dir.join(format!("dlhist-kernel.lock.{}", std::process::id()));
    std::fs::File::create(&ours)?.write_all(format!("{}\n", std::process::id()).as_bytes())?;
    let result = try_claim(&lock, &ours);
    let _ = std::fs::remove_file(&ours);
    result
}

fn try_claim(lock: &Path, ours: &Path) -> std::io::Result<Option<Claim>> {
    for _ in 0..2 {
        match std::fs::hard_link(ours, lock) {
            Ok(()) => return Ok(Some(Claim { lock: lock.to_path_buf() })),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => match holder_is_alive(lock) {
                Some(false) => {
                    let _ = std::fs::remove_file(lock);
                }
                // Alive, or no way to tell: leave the folder to its holder.
                Some(true) | None => return Ok(None),
            },
            Err(e) => return Err(e),
        }
    }
    Ok(None)
}

/// Whether the process named in `lock` still runs: `None` where that cannot be told (no `/proc`, an
/// unreadable lock). A lock without a process id in it is stale.
fn holder_is_alive(lock: &Path) -> Option<bool> {
    let text = std::fs::read_to_string(lock).ok()?;
    let Ok(pid) = text.trim().parse::<u32>() else { return Some(false) };
    if !Path::new("/proc/self").exists() {
        return None;
    }
    Some(Path::new(&format!("/proc/{pid}")).exists())
}
