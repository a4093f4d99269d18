//! The lab's working directories: `<root>/lab-<pid>-<start time>-<n>`, one per control plane, under
//! `$PURELB_LAB_DIR` (default `/tmp/purelb-lab`).
//!
//! The owner's pid and start time (from `/proc/<pid>/stat`, so a reused pid is not mistaken for the
//! owner) are in the name, so a new lab can remove the directories of labs whose process died without
//! cleaning up. A directory holding a `KEPT` file (left by `PURELB_LAB_KEEP=1`) is never removed.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use crate::LabError;

pub const ROOT_ENV: &str = "PURELB_LAB_DIR";
pub const DEFAULT_ROOT: &str = "/tmp/purelb-lab";
/// Marks a directory kept for inspection.
pub const KEPT_MARKER: &str = "KEPT";

pub fn root() -> PathBuf {
    std::env::var_os(ROOT_ENV).map_or_else(|| PathBuf::from(DEFAULT_ROOT), PathBuf::from)
}

/// Creates a new, empty lab directory owned by this process.
pub fn create() -> Result<PathBuf, LabError> {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let root = root();
    std::fs::create_dir_all(&root).map_err(|e| LabError::io(format!("creating {}", root.display()), e))?;
    let pid = std::process::id();
    let start = start_time(pid).unwrap_or(0);
    loop {
        let dir = root.join(format!("lab-{pid}-{start}-{}", NEXT.fetch_add(1, Ordering::Relaxed)));
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(LabError::io(format!("creating {}", dir.display()), e)),
        }
    }
}

/// Removes lab directories under the root whose owner process is gone. Best effort.
pub fn remove_stale() {
    let root = root();
    let Ok(entries) = std::fs::read_dir(&root) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        let Some((pid, start)) = owner(&path) else { continue };
        if is_alive(pid, start) || path.join(KEPT_MARKER).exists() {
            continue;
        }
        match std::fs::remove_dir_all(&path) {
            Ok(()) => tracing::info!(dir = %path.display(), pid, "removed stale lab directory"),
            Err(e) => {
                tracing::warn!(dir = %path.display(), error = %e, "could not remove stale lab directory")
            }
        }
    }
}

/// The (pid, start time) a lab directory's name encodes.
fn owner(dir: &Path) -> Option<(u32, u64)> {
    let name = dir.file_name()?.to_str()?;
    let mut parts = name.strip_prefix("lab-")?.split('-');
    let pid = parts.next()?.parse().ok()?;
    let start = parts.next()?.parse().ok()?;
    Some((pid, start))
}

/// Whether the process that created a directory still runs. Start time 0 means it could not be read
/// at creation; then a live process with that pid counts as the owner.
pub(crate) fn is_alive(pid: u32, start: u64) -> bool {
    match start_time(pid) {
        Some(now) => start == 0 || now == start,
        None => false,
    }
}

/// The start time (clock ticks since boot, field 22 of `/proc/<pid>/stat`) of a live process.
pub(crate) fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses; fields after its closing ')' do not.
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().nth(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_a_start_time() {
        assert!(start_time(std::process::id()).is_some());
    }

    #[test]
    fn owner_is_read_from_the_name() {
        assert_eq!(owner(Path::new("/tmp/x/lab-42-1234-0")), Some((42, 1234)));
        assert_eq!(owner(Path::new("/tmp/x/other")), None);
    }
}
