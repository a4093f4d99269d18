//! A process that starts a lab and one supervised child, reports their pids, then waits to be killed.
//! The lab's own test `killing_the_test_process_kills_its_lab` SIGKILLs it and checks that nothing of
//! the lab survives. Usage: `purelb-lab-fixture REPORT_FILE`; the report line is
//! `<etcd pid> <apiserver pid> <child pid> <lab dir>`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use purelb_lab::ControlPlane;

#[tokio::main]
async fn main() -> Result<()> {
    let report = PathBuf::from(std::env::args_os().nth(1).context("usage: purelb-lab-fixture REPORT_FILE")?);
    let lab = ControlPlane::start().await?;
    let sleeper =
        lab.spawn(Path::new("/bin/sleep"), &["600".to_owned()], lab.admin_kubeconfig(), "sleeper")?;
    let line =
        format!("{} {} {} {}", lab.etcd().pid(), lab.apiserver().pid(), sleeper.pid(), lab.dir().display());
    let partial = report.with_extension("partial");
    std::fs::write(&partial, line)?;
    std::fs::rename(&partial, &report)?;
    tokio::time::sleep(Duration::from_secs(600)).await;
    Ok(())
}
