//! kubectl-purelb: the `kubectl purelb` plugin. It depends on purelb-core (never on the agent) and on
//! nothing platform-specific, so it builds for Linux, macOS and Windows.
//!
//! - [`cli`]: the command line; [`run`] dispatches to the commands.
//! - Pure reports over a [`snapshot::Snapshot`] (from the cluster or from files): [`explain`], [`pools`],
//!   [`validate`], built on [`facts`] (objects → core's inputs).
//! - I/O: [`cluster`] (client, snapshot), [`install`] (install/uninstall), [`sg`], [`status`].
//! - [`manifests`] (deploy/ embedded at build time), [`complete`] (shell and kubectl completion),
//!   [`style`] (formats, colour, tables), [`error`] (messages with hints).

pub mod cli;
pub mod cluster;
pub mod complete;
pub mod error;
pub mod explain;
pub mod facts;
pub mod install;
pub mod manifests;
pub mod pools;
pub mod sg;
pub mod snapshot;
pub mod status;
pub mod style;
pub mod validate;

#[cfg(test)]
mod testing;

use std::path::PathBuf;

use anyhow::Result;
use purelb_core::allocate::ServiceKey;

use cli::{Cli, Command, Global, SgCommand};
use error::{Exit, hinted};
use style::Format;

/// `service/NAME`, `svc/NAME`, `services/NAME` or `NAME`.
pub fn parse_target(target: &str) -> Result<String> {
    let name = match target.split_once('/') {
        Some(("service" | "services" | "svc", name)) => name,
        Some((kind, _)) => {
            return Err(hinted(
                format!("{target}: explain answers for Services, not {kind}"),
                "kubectl purelb explain service/NAME (or svc/NAME, or NAME)",
            ));
        }
        None => target,
    };
    if name.is_empty() {
        return Err(hinted(format!("{target}: no name"), "kubectl purelb explain service/NAME"));
    }
    Ok(name.to_string())
}

fn join_keys(keys: &[ServiceKey]) -> String {
    keys.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
}

fn offline_namespace(g: &Global) -> String {
    g.namespace.clone().unwrap_or_else(|| "default".into())
}

/// Runs one command.
pub async fn run(cli: Cli) -> Result<()> {
    let g = &cli.global;
    let classless_ours = !g.ignore_classless;
    match &cli.command {
        Command::Explain(a) => {
            let name = a.target.as_deref().map(parse_target).transpose()?;
            let files: Vec<PathBuf> = a.files.iter().chain(&a.groups).chain(&a.nodes).cloned().collect();
            let (snap, key) = if files.is_empty() {
                let Some(name) = name else {
                    return Err(hinted(
                        "which Service?",
                        "kubectl purelb explain service/NAME [-n NAMESPACE]",
                    ));
                };
                let c = cluster::connect(g).await?;
                let mut key = ServiceKey::new(c.namespace.clone(), name.clone());
                if g.all_namespaces {
                    // -A: the Service of that name in whichever namespace holds it.
                    let all: Vec<k8s_openapi::api::core::v1::Service> = c.list_all("Services").await?;
                    let found: Vec<ServiceKey> =
                        all.iter().map(ServiceKey::of).filter(|k| k.name == name).collect();
                    key = match found.as_slice() {
                        [one] => one.clone(),
                        [] => {
                            return Err(hinted(
                                format!("no Service named {name} in any namespace"),
                                "kubectl get svc -A",
                            ));
                        }
                        many => {
                            return Err(hinted(
                                format!("Services named {name} in several namespaces: {}", join_keys(many)),
                                "say which with -n",
                            ));
                        }
                    };
                }
                (c.snapshot(classless_ours, Some(&key)).await?, Some(key))
            } else {
                let snap = cluster::snapshot_from_files(
                    &files,
                    &offline_namespace(g),
                    &g.purelb_namespace,
                    classless_ours,
                )?;
                let key = match name {
                    None => None,
                    Some(name) if g.namespace.is_some() => Some(ServiceKey::new(offline_namespace(g), name)),
                    Some(name) => {
                        let matching: Vec<ServiceKey> =
                            snap.services.iter().map(ServiceKey::of).filter(|k| k.name == name).collect();
                        match matching.as_slice() {
                            [one] => Some(one.clone()),
                            [] => Some(ServiceKey::new(offline_namespace(g), name)),
                            many => {
                                return Err(hinted(
                                    format!(
                                        "Services named {name} in several namespaces: {}",
                                        join_keys(many)
                                    ),
                                    "say which with -n",
                                ));
                            }
                        }
                    }
                };
                (snap, key)
            };
            let svc = explain::find_target(&snap, key.as_ref())
                .map_err(|e| hinted(e.to_string(), "check the name and -n (kubectl get svc -A)"))?;
            let e = explain::explain(&snap, svc);
            match style::structured(&e, g.output)? {
                Some(text) => style::print(&text),
                None => style::print(&explain::render(&e)),
            }
        }
        Command::Pools(a) => {
            let snap = if a.files.is_empty() {
                cluster::connect(g).await?.snapshot(classless_ours, None).await?
            } else {
                cluster::snapshot_from_files(
                    &a.files,
                    &offline_namespace(g),
                    &g.purelb_namespace,
                    classless_ours,
                )?
            };
            let r = pools::report(&snap, a.show_services);
            match style::structured(&r, g.output)? {
                Some(text) => style::print(&text),
                None => style::print(&pools::render(&r, g.output, a.show_services)),
            }
        }
        Command::Validate(a) => {
            let snap = if a.files.is_empty() {
                cluster::connect(g).await?.snapshot(classless_ours, None).await?
            } else {
                cluster::snapshot_from_files(
                    &a.files,
                    &offline_namespace(g),
                    &g.purelb_namespace,
                    classless_ours,
                )?
            };
            let r = validate::validate(&snap);
            match style::structured(&r, g.output)? {
                Some(text) => style::print(&text),
                None => style::print(&validate::render(&r, g.output)),
            }
            if r.fails(a.strict) {
                return Err(Exit(1).into());
            }
        }
        Command::Install(a) => {
            let wants_yaml = a.dry_run || g.output == Format::Yaml;
            if wants_yaml {
                install::install(None, a, g.output).await?;
            } else {
                let c = cluster::connect(g).await?;
                install::install(Some(&c), a, g.output).await?;
            }
        }
        Command::Uninstall(a) => {
            let c = cluster::connect(g).await?;
            install::uninstall(&c, a, g.output).await?;
        }
        Command::Sg(sg_cmd) => {
            let c = cluster::connect(g).await?;
            match sg_cmd {
                SgCommand::Create(a) => sg::create(&c, a, g.output).await?,
                SgCommand::List => sg::list(&c, g.output).await?,
                SgCommand::Delete(a) => sg::delete(&c, a).await?,
            }
        }
        Command::Status => {
            let c = cluster::connect(g).await?;
            status::status(&c, classless_ours, g.output).await?;
        }
        Command::Version(a) => {
            let c = if a.client { None } else { cluster::connect(g).await.ok() };
            status::version(c.as_ref(), g.output).await?;
        }
        Command::Completion(a) => style::print(&complete::script(a.shell)),
        Command::Complete { words } => style::print(&complete::cobra_output_with_cluster(words).await),
    }
    Ok(())
}

/// Prints an error the way kubectl does (message, then a hint) and returns the exit code.
pub fn report_error(e: &anyhow::Error) -> i32 {
    if let Some(Exit(code)) = e.downcast_ref::<Exit>() {
        return *code;
    }
    match e.downcast_ref::<error::Hinted>() {
        Some(h) => style::eprint(&format!(
            "{} {}\n{} {}\n",
            style::bad("error:"),
            h.message,
            style::dim("hint:"),
            h.hint
        )),
        None => style::eprint(&format!("{} {e:#}\n", style::bad("error:"))),
    }
    1
}
