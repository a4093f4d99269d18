//! The lab's network namespaces: names that carry their owner, creation and deletion, the sweep of
//! namespaces left behind by labs whose process died, and running a closure inside a namespace.
//!
//! A namespace is named `plb-<pid>-<start time>-<instance>-<role>`: the owner's pid and start time (field
//! 22 of `/proc/<pid>/stat`, so a reused pid is not mistaken for the owner) let a later lab find
//! namespaces whose owner is gone ([`sweep_stale`]), however that owner died. A live owner deletes its
//! own namespaces when their [`Namespaces`] guard drops, and at process exit whatever is still registered.
//!
//! Deleting a namespace first SIGKILLs every process still inside it, then does what `ip netns delete`
//! does (detach the bind mount, remove the file); the kernel frees the namespace with its last user.

use std::collections::BTreeSet;
use std::fs::File;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};

use nix::mount::{MntFlags, umount2};
use nix::sched::CloneFlags;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::tools::Tools;
use crate::LabError;
use crate::labdir::{is_alive, start_time};

/// Where `ip netns` keeps its named namespaces (bind mounts of namespace files).
pub(crate) const NETNS_DIR: &str = "/var/run/netns";
const NAME_PREFIX: &str = "plb-";

/// A new instance prefix `plb-<pid>-<start>-<n>` for one network's namespaces, and its number `n`.
pub(crate) fn new_instance() -> (u32, String) {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let pid = std::process::id();
    (n, format!("{NAME_PREFIX}{pid}-{}-{n}", start_time(pid).unwrap_or(0)))
}

// === impl Namespaces ===

/// The namespaces of one network; dropping it deletes them (last created first).
#[derive(Debug, Default)]
pub(crate) struct Namespaces {
    names: Vec<String>,
}

impl Namespaces {
    /// Creates the named namespace (`ip netns add`) and takes charge of deleting it.
    pub async fn add(&mut self, tools: &Tools, name: &str) -> Result<(), LabError> {
        tools
            .ip(["netns", "add", name], &format!("creating network namespace {name} (the lab needs root)"))
            .await?;
        self.names.push(name.to_owned());
        live().lock().unwrap_or_else(|poisoned| poisoned.into_inner()).insert(name.to_owned());
        remove_at_exit();
        Ok(())
    }

    pub fn names(&self) -> &[String] {
        &self.names
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        for name in self.names.iter().rev() {
            if let Err(e) = remove(name) {
                tracing::warn!(netns = %name, error = %e, "could not delete network namespace");
            }
            live().lock().unwrap_or_else(|poisoned| poisoned.into_inner()).remove(name);
        }
    }
}

// === deletion ===

/// Kills every process inside the namespace, then removes its name. Deleting a name that is not there
/// is not an error.
pub(crate) fn remove(name: &str) -> Result<(), String> {
    let path = Path::new(NETNS_DIR).join(name);
    if !path.exists() {
        return Ok(());
    }
    for pid in pids_in(&path) {
        // An error means it is already gone.
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    }
    match umount2(&path, MntFlags::MNT_DETACH) {
        // EINVAL: not a mount point (a half-made name); the file still has to go.
        Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => {}
        Err(e) => return Err(format!("unmounting {}: {e}", path.display())),
    }
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(format!("removing {}: {e}", path.display())),
    }
}

/// The pids of the processes whose network namespace is the one bound at `path` (what `ip netns pids`
/// reports), never this process.
pub(crate) fn pids_in(path: &Path) -> Vec<i32> {
    let Ok(target) = std::fs::metadata(path) else { return Vec::new() };
    let me = i32::try_from(std::process::id()).unwrap_or(-1);
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| pid != me)
        .filter(|pid| {
            std::fs::metadata(format!("/proc/{pid}/ns/net"))
                .is_ok_and(|ns| ns.ino() == target.ino() && ns.dev() == target.dev())
        })
        .collect()
}

/// Deletes the lab namespaces whose owner process is gone. Best effort: failures are logged.
pub(crate) fn sweep_stale() {
    let Ok(entries) = std::fs::read_dir(NETNS_DIR) else { return };
    for entry in entries.flatten() {
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else { continue };
        let Some((pid, start)) = owner(&name) else { continue };
        if is_alive(pid, start) {
            continue;
        }
        match remove(&name) {
            Ok(()) => tracing::info!(netns = %name, pid, "removed stale lab network namespace"),
            Err(e) => {
                tracing::warn!(netns = %name, error = %e, "could not remove stale lab network namespace")
            }
        }
    }
}

/// The (pid, start time) a lab namespace's name encodes.
pub(crate) fn owner(name: &str) -> Option<(u32, u64)> {
    let mut parts = name.strip_prefix(NAME_PREFIX)?.split('-');
    let pid = parts.next()?.parse().ok()?;
    let start = parts.next()?.parse().ok()?;
    let _instance: u32 = parts.next()?.parse().ok()?;
    parts.next()?;
    Some((pid, start))
}

// === at exit ===

/// The namespaces of networks of this process that have not been dropped yet.
fn live() -> &'static Mutex<BTreeSet<String>> {
    static LIVE: OnceLock<Mutex<BTreeSet<String>>> = OnceLock::new();
    LIVE.get_or_init(Mutex::default)
}

/// A network kept in a static is never dropped: delete its namespaces when the process exits (its BIRDs
/// die with the process anyway). A SIGKILLed process leaves them to the next [`sweep_stale`].
fn remove_at_exit() {
    static REGISTERED: OnceLock<()> = OnceLock::new();
    REGISTERED.get_or_init(|| register_at_exit(remove_live_namespaces));
}

extern "C" fn remove_live_namespaces() {
    // try_lock: a thread that held the lock when exit began will never release it.
    if let Ok(names) = live().try_lock() {
        for name in names.iter() {
            let _ = remove(name);
        }
    }
}

#[allow(unsafe_code)]
fn register_at_exit(handler: extern "C" fn()) {
    // SAFETY: `atexit` only stores the pointer to a plain `extern "C" fn` with no captured state; the
    // handler (`remove_live_namespaces`) panics nowhere (errors are ignored), takes no lock it could wait
    // for (`try_lock`) and touches only a static and the file system.
    let registered = unsafe { libc::atexit(handler) };
    if registered != 0 {
        tracing::warn!(
            "could not register the lab network's exit handler; a later lab will sweep its namespaces"
        );
    }
}

// === entering a namespace ===

/// Runs `f` on a new thread that has entered the named network namespace, so sockets `f` creates
/// belong to that namespace (they stay there when handed to other threads). The calling thread and the
/// rest of the process stay where they are.
pub(crate) fn in_netns<T, F>(name: &str, f: F) -> io::Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> io::Result<T> + Send + 'static,
{
    let thread = spawn_in_netns(name, "purelb-lab-netns", f)?;
    thread.join().map_err(|_| io::Error::other("the thread that entered the network namespace panicked"))?
}

/// Like [`in_netns`], without waiting: `f` runs on a new thread named `thread_name` that has entered the
/// named network namespace (failing with an error when it cannot), and the handle is returned at once.
pub(crate) fn spawn_in_netns<T, F>(
    name: &str,
    thread_name: &str,
    f: F,
) -> io::Result<std::thread::JoinHandle<io::Result<T>>>
where
    T: Send + 'static,
    F: FnOnce() -> io::Result<T> + Send + 'static,
{
    let path: PathBuf = Path::new(NETNS_DIR).join(name);
    std::thread::Builder::new().name(thread_name.to_owned()).spawn(move || {
        let namespace = File::open(&path)
            .map_err(|e| io::Error::new(e.kind(), format!("opening {}: {e}", path.display())))?;
        nix::sched::setns(&namespace, CloneFlags::CLONE_NEWNET)
            .map_err(|e| io::Error::other(format!("entering {}: {e}", path.display())))?;
        f()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_owner_is_read_from_the_name() {
        assert_eq!(owner("plb-42-1234-0-lan"), Some((42, 1234)));
        assert_eq!(owner("plb-42-1234-3-n12"), Some((42, 1234)));
        assert_eq!(owner("plb-42-1234-0"), None);
        assert_eq!(owner("plb-x-1234-0-lan"), None);
        assert_eq!(owner("other"), None);
    }

    #[test]
    fn a_new_instance_names_this_process() {
        let (_, prefix) = new_instance();
        let name = format!("{prefix}-lan");
        assert_eq!(owner(&name).map(|(pid, _)| pid), Some(std::process::id()));
        assert!(owner(&name).is_some_and(|(pid, start)| is_alive(pid, start)));
    }
}
