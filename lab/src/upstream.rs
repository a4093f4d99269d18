//! Where the lab's programs come from: the upstream programs (etcd, kube-apiserver,
//! kube-controller-manager, kube-proxy, kubectl) built by `lab/upstream/build.sh`, and the workspace's own
//! binaries in the cargo target directory.
//!
//! Exposes [`workspace_root`], [`binary`] and [`UpstreamBinaries::locate`].

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::LabError;

/// Overrides where the upstream binaries are (skips `build.sh`).
pub const BIN_DIR_ENV: &str = "PURELB_LAB_BIN_DIR";

/// The repository root (the directory holding the workspace `Cargo.toml`).
pub fn workspace_root() -> PathBuf {
    let lab = Path::new(env!("CARGO_MANIFEST_DIR"));
    lab.parent().unwrap_or(lab).to_owned()
}

/// Where [`binary`] takes the workspace's executables from when set.
pub const DAEMON_DIR_ENV: &str = "PURELB_LAB_DAEMON_DIR";

/// A binary of this workspace (e.g. `purelb-allocator`) from `$PURELB_LAB_DAEMON_DIR` when set, else from
/// the cargo target directory that the running test executable lives in (`target/debug` or
/// `target/release`).
pub fn binary(name: &str) -> Result<PathBuf, LabError> {
    let dir = match std::env::var_os(DAEMON_DIR_ENV) {
        Some(dir) => PathBuf::from(dir),
        None => {
            let exe =
                std::env::current_exe().map_err(|e| LabError::io("locating the running executable", e))?;
            let mut dir = exe.parent().map(Path::to_owned).unwrap_or_default();
            // Test executables live in <target>/<profile>/deps; binaries one level up.
            if dir.file_name().is_some_and(|n| n == "deps") {
                dir.pop();
            }
            dir
        }
    };
    let path = dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    if path.is_file() {
        Ok(path)
    } else {
        Err(LabError::Prerequisite {
            what: format!("workspace binary `{name}` ({} does not exist)", path.display()),
            hint: "run `cargo build --workspace --bins` first (scripts/test.sh does)".to_owned(),
        })
    }
}

/// The upstream control-plane programs the lab runs.
#[derive(Debug, Clone)]
pub struct UpstreamBinaries {
    pub dir: PathBuf,
    pub etcd: PathBuf,
    pub kube_apiserver: PathBuf,
    pub kube_controller_manager: PathBuf,
    /// Not started by the control plane: the lab's network runs one per node.
    pub kube_proxy: PathBuf,
    pub kubectl: PathBuf,
}

impl UpstreamBinaries {
    /// Uses `$PURELB_LAB_BIN_DIR` when set, else runs `lab/upstream/build.sh` (which builds them once into
    /// a cache and prints the directory). Blocking: the first build takes many minutes.
    pub fn locate() -> Result<UpstreamBinaries, LabError> {
        let dir = match std::env::var_os(BIN_DIR_ENV) {
            Some(dir) => PathBuf::from(dir),
            None => build()?,
        };
        let found = UpstreamBinaries {
            etcd: dir.join("etcd"),
            kube_apiserver: dir.join("kube-apiserver"),
            kube_controller_manager: dir.join("kube-controller-manager"),
            kube_proxy: dir.join("kube-proxy"),
            kubectl: dir.join("kubectl"),
            dir,
        };
        let programs = [
            &found.etcd,
            &found.kube_apiserver,
            &found.kube_controller_manager,
            &found.kube_proxy,
            &found.kubectl,
        ];
        for program in programs {
            if !program.is_file() {
                // A cache filled before a program joined the list lacks just that one; build.sh adds it.
                return Err(LabError::Prerequisite {
                    what: format!("upstream binary {} does not exist", program.display()),
                    hint: format!(
                        "run lab/upstream/build.sh (it builds etcd, kube-apiserver, kube-controller-manager, \
                         kube-proxy and kubectl, adding any missing from an existing cache), or point \
                         {BIN_DIR_ENV} at a directory holding them"
                    ),
                });
            }
        }
        Ok(found)
    }
}

fn build() -> Result<PathBuf, LabError> {
    let script = workspace_root().join("lab/upstream/build.sh");
    // stderr is inherited so a first-time build shows its progress; stdout is the directory.
    let output = Command::new("bash")
        .arg(&script)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| LabError::io(format!("running {}", script.display()), e))?;
    let printed = String::from_utf8_lossy(&output.stdout);
    let dir = printed.lines().rev().find(|l| !l.trim().is_empty()).map(|l| l.trim().to_owned());
    match dir {
        Some(dir) if output.status.success() => Ok(PathBuf::from(dir)),
        _ => Err(LabError::Prerequisite {
            what: format!("{} failed ({})", script.display(), output.status),
            hint: "it needs the Go toolchain (`go` on PATH) and the Go module proxy; its stderr above \
                   says what went wrong"
                .to_owned(),
        }),
    }
}
