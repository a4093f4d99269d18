//! The programs the lab's network is built and observed with (`ip`, `sysctl`, `bird`, `birdc`), found
//! once per network, and a bounded way to run them.
//!
//! Exposes [`Tools`].

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncWriteExt;

use crate::LabError;

/// How long one `ip`/`sysctl`/`birdc` run may take before the lab gives up on it (and kills it).
const RUN_TIMEOUT: Duration = Duration::from_secs(30);

/// Where programs are looked for besides `$PATH` (root's tools live in sbin, often not on a user's PATH).
const EXTRA_DIRS: &[&str] = &["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"];

/// Absolute paths of the programs the lab's network needs.
#[derive(Debug, Clone)]
pub(crate) struct Tools {
    pub ip: PathBuf,
    pub sysctl: PathBuf,
    pub bird: PathBuf,
    pub birdc: PathBuf,
}

impl Tools {
    /// Finds every program, or says which is missing and which Debian package brings it.
    pub fn locate() -> Result<Tools, LabError> {
        Ok(Tools {
            ip: find("ip", "iproute2")?,
            sysctl: find("sysctl", "procps")?,
            bird: find("bird", "bird2")?,
            birdc: find("birdc", "bird2")?,
        })
    }

    /// Runs `ip -n <netns> -batch -` with `commands`, one per line; the error names the failing line.
    pub async fn ip_batch(&self, netns: &str, commands: &[String]) -> Result<(), LabError> {
        let mut stdin = commands.join("\n");
        stdin.push('\n');
        let args = ["-n", netns, "-batch", "-"];
        run(&self.ip, args, Some(stdin), &format!("configuring network namespace {netns}")).await.map(drop)
    }

    /// Runs `ip <args>` and returns its stdout.
    pub async fn ip<I, S>(&self, args: I, what: &str) -> Result<String, LabError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        run(&self.ip, args, None, what).await
    }

    /// Sets kernel parameters (`name=value`) inside a network namespace.
    pub async fn sysctl(&self, netns: &str, settings: &[&str]) -> Result<(), LabError> {
        let mut args: Vec<&OsStr> = vec!["netns".as_ref(), "exec".as_ref(), netns.as_ref()];
        args.extend([self.sysctl.as_os_str(), "-q".as_ref(), "-w".as_ref()]);
        args.extend(settings.iter().map(OsStr::new));
        run(&self.ip, args, None, &format!("setting {settings:?} in network namespace {netns}"))
            .await
            .map(drop)
    }

    /// Runs `birdc -s <socket> <args>` and returns what BIRD answered.
    pub async fn birdc(&self, socket: &Path, args: &[&str]) -> Result<String, LabError> {
        let mut all: Vec<&OsStr> = vec!["-s".as_ref(), socket.as_os_str()];
        all.extend(args.iter().map(OsStr::new));
        let what = format!("birdc -s {} {}", socket.display(), args.join(" "));
        let out = run(&self.birdc, all, None, &what).await?;
        // birdc exits 0 even when it cannot reach BIRD.
        if out.contains("Unable to connect to server control socket") {
            return Err(LabError::io(what, std::io::Error::other(out.trim().to_owned())));
        }
        Ok(out)
    }
}

/// Runs `program` to completion (at most [`RUN_TIMEOUT`]), feeding it `stdin`; returns stdout, or an error
/// quoting stderr when it fails.
pub(crate) async fn run<I, S>(
    program: &Path,
    args: I,
    stdin: Option<String>,
    what: &str,
) -> Result<String, LabError>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut command = tokio::process::Command::new(program);
    command
        .args(args)
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let error = |e| LabError::io(what.to_owned(), e);
    let mut child = command.spawn().map_err(error)?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes()).await.map_err(error)?;
        drop(pipe);
    }
    let output = tokio::time::timeout(RUN_TIMEOUT, child.wait_with_output())
        .await
        .map_err(|_| error(std::io::Error::other(format!("no answer within {RUN_TIMEOUT:?}"))))?
        .map_err(error)?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        let stderr = String::from_utf8_lossy(&output.stderr);
        Err(error(std::io::Error::other(format!(
            "{} failed ({}): {}",
            program.display(),
            output.status,
            stderr.trim()
        ))))
    }
}

/// The absolute path of `name`, from `$PATH` or the usual system directories.
pub(crate) fn find(name: &str, package: &str) -> Result<PathBuf, LabError> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(EXTRA_DIRS.iter().map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
        .ok_or_else(|| LabError::Prerequisite {
            what: format!("`{name}` is not installed (looked in $PATH and {})", EXTRA_DIRS.join(", ")),
            hint: format!("install the Debian package {package} (.ci/run lists what the lab needs)"),
        })
}
