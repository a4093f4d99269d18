//! Supervised child processes that never outlive the lab.
//!
//! Every child is started by one long-lived spawner thread with `PR_SET_PDEATHSIG(SIGKILL)`: Linux sends
//! that signal when the *thread* that forked the child exits, so forking from a test's own thread would
//! kill shared children as soon as that test ends. The spawner thread lives as long as the process, so the
//! children die exactly when the process does — however it dies. Each child leads its own process group,
//! and signals go to the group, so helpers it started go with it.
//!
//! Exposes [`Child`] and [`spawn_supervised`].

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::LabError;

/// How long [`Child::terminate`] waits after SIGTERM before it sends SIGKILL.
const TERMINATE_GRACE: Duration = Duration::from_secs(10);

/// How many log lines error messages quote.
pub(crate) const LOG_TAIL_LINES: usize = 20;

// === impl Child ===

/// A process started by the lab. Its stdout and stderr go to [`Child::log_path`]; dropping it kills it.
#[derive(Debug)]
pub struct Child {
    name: String,
    pid: u32,
    log: PathBuf,
    process: Mutex<std::process::Child>,
}

impl Child {
    /// The name the process was started under (its log file's stem).
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Where the process's stdout and stderr go.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The last `lines` lines of the process's log.
    pub fn log_tail(&self, lines: usize) -> String {
        log_tail(&self.log, lines)
    }

    /// [`LabError::NotReady`] for this process: it waited `waited`, the last check said `last`.
    pub(crate) fn not_ready(&self, waited: Duration, last: String) -> LabError {
        LabError::NotReady {
            process: self.name.clone(),
            waited,
            last,
            log: self.log.clone(),
            tail: self.log_tail(LOG_TAIL_LINES),
        }
    }

    /// [`LabError::ProcessExited`] for this process, which exited with `status` `during` something.
    pub(crate) fn exited(&self, status: ExitStatus, during: &str) -> LabError {
        LabError::ProcessExited {
            process: self.name.clone(),
            status,
            during: during.to_owned(),
            log: self.log.clone(),
            tail: self.log_tail(LOG_TAIL_LINES),
        }
    }

    /// The exit status, if the process has exited (reaping it).
    pub fn try_wait(&self) -> Result<Option<ExitStatus>, LabError> {
        self.process()
            .try_wait()
            .map_err(|e| LabError::io(format!("checking whether {} (pid {}) exited", self.name, self.pid), e))
    }

    /// True while the process has not exited.
    pub fn is_running(&self) -> bool {
        matches!(self.try_wait(), Ok(None))
    }

    /// Waits up to `timeout` for the process to exit by itself.
    pub async fn wait(&self, timeout: Duration) -> Result<ExitStatus, LabError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_wait()? {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                return Err(self.not_ready(timeout, "still running, expected it to exit".to_owned()));
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Sends SIGTERM, waits up to 10 s for the process to exit, then SIGKILLs it. Returns how it exited.
    pub async fn terminate(&self) -> Result<ExitStatus, LabError> {
        if let Some(status) = self.try_wait()? {
            return Ok(status);
        }
        self.signal(Signal::SIGTERM);
        let deadline = Instant::now() + TERMINATE_GRACE;
        while Instant::now() < deadline {
            if let Some(status) = self.try_wait()? {
                return Ok(status);
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        tracing::warn!(process = %self.name, pid = self.pid, "did not exit within 10 s of SIGTERM; killing it");
        self.kill()
    }

    /// Sends SIGKILL and reaps the process. Returns how it exited.
    pub fn kill(&self) -> Result<ExitStatus, LabError> {
        let mut process = self.process();
        if let Some(status) = process.try_wait().map_err(|e| {
            LabError::io(format!("checking whether {} (pid {}) exited", self.name, self.pid), e)
        })? {
            return Ok(status);
        }
        self.signal(Signal::SIGKILL);
        process.wait().map_err(|e| LabError::io(format!("reaping {} (pid {})", self.name, self.pid), e))
    }

    /// Signals the child's process group (the child leads it), or the child itself when it left the
    /// group. Never both: a daemon that sees SIGTERM twice takes the second as "abort now".
    pub(crate) fn signal(&self, signal: Signal) {
        if let Ok(pid) = i32::try_from(self.pid) {
            // Errors mean "already gone", which is what we want anyway.
            if kill(Pid::from_raw(-pid), signal).is_err() {
                let _ = kill(Pid::from_raw(pid), signal);
            }
        }
    }

    fn process(&self) -> MutexGuard<'_, std::process::Child> {
        self.process.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// SIGKILL without waiting for the lock: used at process exit, where a lock holder may never return.
    pub(crate) fn kill_at_exit(&self) {
        match self.process.try_lock() {
            Ok(mut process) => {
                if let Ok(None) = process.try_wait() {
                    self.signal(Signal::SIGKILL);
                    let _ = process.wait();
                }
            }
            Err(_) => self.signal(Signal::SIGKILL),
        }
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if let Err(e) = self.kill() {
            tracing::warn!(process = %self.name, pid = self.pid, error = %e, "could not kill child");
        }
    }
}

// === spawning ===

/// Starts `command` as a supervised child named `name`, appending its stdout and stderr to `log`.
///
/// The child gets no stdin, leads its own process group and is SIGKILLed when this process dies.
pub fn spawn_supervised(mut command: Command, name: &str, log: &Path) -> Result<Child, LabError> {
    let program = command.get_program().to_string_lossy().into_owned();
    let out = OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(|e| LabError::io(format!("opening log {} for {name}", log.display()), e))?;
    let err = out.try_clone().map_err(|e| LabError::io(format!("duplicating log handle for {name}"), e))?;
    command.stdin(Stdio::null()).stdout(out).stderr(err).process_group(0);
    die_with_parent(&mut command);
    let process = spawner()
        .spawn(command)
        .map_err(|e| LabError::io(format!("starting {name} ({program}); log {}", log.display()), e))?;
    tracing::debug!(name, pid = process.id(), log = %log.display(), "started child");
    Ok(Child { name: name.to_owned(), pid: process.id(), log: log.to_owned(), process: Mutex::new(process) })
}

/// Arranges for the child to get SIGKILL when the thread that forks it (the spawner thread) exits.
#[allow(unsafe_code)]
fn die_with_parent(command: &mut Command) {
    let parent = std::process::id();
    // SAFETY: `pre_exec` runs between fork and exec, where only async-signal-safe calls are allowed.
    // The closure only makes the prctl and getppid system calls and builds an `io::Error` from an errno,
    // which does not allocate; it touches no locks and no heap.
    unsafe {
        command.pre_exec(move || {
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(std::io::Error::from)?;
            // The parent may have died before prctl took effect; then nobody would ever signal us.
            if nix::unistd::getppid().as_raw() != i32::try_from(parent).unwrap_or(-1) {
                return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
}

struct SpawnRequest {
    command: Command,
    reply: SyncSender<std::io::Result<std::process::Child>>,
}

/// The handle to the process-wide spawner thread.
struct Spawner {
    requests: Mutex<SyncSender<SpawnRequest>>,
}

impl Spawner {
    fn spawn(&self, command: Command) -> std::io::Result<std::process::Child> {
        let (reply, answer) = sync_channel(1);
        let gone = || std::io::Error::other("the lab's spawner thread is gone");
        self.requests
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .send(SpawnRequest { command, reply })
            .map_err(|_| gone())?;
        answer.recv().map_err(|_| gone())?
    }
}

fn spawner() -> &'static Spawner {
    static SPAWNER: OnceLock<Spawner> = OnceLock::new();
    SPAWNER.get_or_init(|| {
        let (requests, incoming) = sync_channel::<SpawnRequest>(0);
        let started = std::thread::Builder::new()
            .name("purelb-lab-spawner".to_owned())
            .spawn(move || serve_spawn_requests(incoming));
        if let Err(e) = started {
            // Without the thread every spawn reports "spawner thread is gone", which names the problem.
            tracing::error!(error = %e, "could not start the lab's spawner thread");
        }
        Spawner { requests: Mutex::new(requests) }
    })
}

fn serve_spawn_requests(incoming: Receiver<SpawnRequest>) {
    for SpawnRequest { mut command, reply } in incoming {
        let _ = reply.send(command.spawn());
    }
}

// === logs ===

/// The last `lines` lines of the file at `path` (at most its last 64 KiB), or a note why there are none.
pub fn log_tail(path: &Path, lines: usize) -> String {
    const WINDOW: u64 = 64 * 1024;
    let read = || -> std::io::Result<String> {
        let mut file = File::open(path)?;
        let len = file.metadata()?.len();
        file.seek(SeekFrom::Start(len.saturating_sub(WINDOW)))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    };
    match read() {
        Ok(text) => {
            let all: Vec<&str> = text.lines().collect();
            let tail = &all[all.len().saturating_sub(lines)..];
            if tail.is_empty() { "(log is empty)".to_owned() } else { tail.join("\n") }
        }
        Err(e) => format!("(cannot read log: {e})"),
    }
}
