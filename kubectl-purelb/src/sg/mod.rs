//! `sg create | list | delete`.
//!
//! `create` asks (dialoguer, on stderr) for what the flags do not give when stdin and stderr are
//! terminals and `--yes` is not set; otherwise it takes the flags as they are. Every answer and every
//! flag goes through [`draft`]'s checks — core's own pool parser and the overlap with existing groups —
//! before the next question; the YAML is shown and confirmed before anything is created.

pub mod draft;
mod prompt;

use std::io::IsTerminal as _;

use anyhow::Result;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, PostParams};
use purelb_core::api::{PoolSpec, ServiceGroup, annotations};
use purelb_core::pool::Family;

use crate::cli::{SgCreateArgs, SgDeleteArgs};
use crate::cluster::Cluster;
use crate::error::{Exit, hinted, kube as kube_err};
use crate::install::MANAGER;
use crate::style::{self, Format, bad, good, table, warn};
use draft::Draft;

/// `kubectl purelb sg create`.
pub async fn create(cluster: &Cluster, args: &SgCreateArgs, format: Format) -> Result<()> {
    let existing = cluster.groups().await?;
    let nodes: Vec<k8s_openapi::api::core::v1::Node> = cluster.list_all("Nodes").await.unwrap_or_default();
    let v4_nodes = draft::node_subnets(&nodes, Family::V4);
    let v6_nodes = draft::node_subnets(&nodes, Family::V6);
    let interactive = !args.yes && std::io::stdin().is_terminal() && std::io::stderr().is_terminal();
    let draft = if interactive {
        prompt::ask(args, &cluster.namespace, &existing, &v4_nodes, &v6_nodes)?
    } else {
        from_flags(args, &cluster.namespace, &existing, &v4_nodes, &v6_nodes)?
    };
    let group = draft.group();
    let yaml = serde_saphyr::to_string(&group)?;
    if args.dry_run {
        match style::structured(&group, format)? {
            Some(text) => style::print(&text),
            None => style::print(&yaml),
        }
        return Ok(());
    }
    if interactive && !prompt::confirm(&yaml, &draft)? {
        style::eprint("Nothing created.\n");
        return Err(Exit(1).into());
    }
    let api: Api<ServiceGroup> = Api::namespaced(cluster.client.clone(), &draft.namespace);
    let pp = PostParams { dry_run: false, field_manager: Some(MANAGER.into()) };
    match api.create(&pp, &group).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 409 => {
            return Err(hinted(
                format!("ServiceGroup {}/{} already exists", draft.namespace, draft.name),
                "pick another name, or kubectl purelb sg delete it first",
            ));
        }
        Err(kube::Error::Api(s)) if s.code == 422 => {
            return Err(hinted(
                format!("the API server refused ServiceGroup {}: {}", draft.name, s.message),
                "the CRD's validation rules name the field",
            ));
        }
        Err(e) => {
            return Err(kube_err(format!("creating ServiceGroup {}/{}", draft.namespace, draft.name), e));
        }
    }
    style::print(&format!(
        "servicegroup.purelb.io/{} {} in namespace {}\n",
        draft.name,
        good("created"),
        draft.namespace
    ));
    Ok(())
}

/// The draft the flags describe, each value checked.
pub fn from_flags(
    args: &SgCreateArgs,
    namespace: &str,
    existing: &[ServiceGroup],
    v4_nodes: &[purelb_core::pool::Subnet],
    v6_nodes: &[purelb_core::pool::Subnet],
) -> Result<Draft> {
    let Some(name) = args.name.clone() else {
        return Err(hinted(
            "no name given",
            "kubectl purelb sg create NAME --v4-pool ... (or run it on a terminal to be asked)",
        ));
    };
    draft::check_name(&name, existing).map_err(|e| hinted(e.to_string(), "choose another name"))?;
    if args.v4_pool.is_none() && args.v6_pool.is_none() {
        return Err(hinted("no pool given", "give --v4-pool and/or --v6-pool (a CIDR or a range a-b)"));
    }
    let mut draft = Draft { name, namespace: namespace.to_string(), v4: None, v6: None };
    for (family, pool, subnet, agg, nodes) in [
        (Family::V4, &args.v4_pool, &args.v4_subnet, &args.v4_aggregation, v4_nodes),
        (Family::V6, &args.v6_pool, &args.v6_subnet, &args.v6_aggregation, v6_nodes),
    ] {
        let Some(pool) = pool else {
            if subnet.is_some() || agg.is_some() {
                return Err(hinted(
                    format!("a {family} subnet or aggregation without a {family} pool"),
                    "add the pool flag",
                ));
            }
            continue;
        };
        let flag = if family == Family::V4 { "--v4-pool" } else { "--v6-pool" };
        let subnet = match subnet {
            Some(s) => s.clone(),
            None => {
                let (s, why) = draft::default_subnet(pool, family, nodes)
                    .map_err(|e| hinted(e.to_string(), format!("check {flag}")))?;
                style::eprint(&format!("{family} subnet {s}: {why}\n"));
                s
            }
        };
        let aggregation =
            agg.clone().or_else(|| args.aggregation.clone()).unwrap_or_else(|| "default".into());
        let config = draft::check_pool(&subnet, pool, &aggregation, family, existing)
            .map_err(|e| hinted(e.to_string(), format!("check {flag} and its subnet/aggregation")))?;
        let spec = PoolSpec { subnet: config.subnet.to_string(), pool: pool.trim().to_string(), aggregation };
        match family {
            Family::V4 => draft.v4 = Some(spec),
            Family::V6 => draft.v6 = Some(spec),
        }
    }
    Ok(draft)
}

/// `kubectl purelb sg list`.
pub async fn list(cluster: &Cluster, format: Format) -> Result<()> {
    let mut groups = cluster.groups().await?;
    if cluster.namespace_given {
        groups.retain(|g| g.namespace().as_deref() == Some(cluster.namespace.as_str()));
    }
    groups.sort_by_key(|g| (g.name_any(), g.namespace()));
    if let Some(text) = style::structured(&groups, format)? {
        style::print(&text);
        return Ok(());
    }
    if groups.is_empty() {
        style::print("No ServiceGroups. Create one: kubectl purelb sg create NAME\n");
        return Ok(());
    }
    let rows: Vec<Vec<String>> = groups
        .iter()
        .map(|g| {
            let pools: Vec<String> = match crate::facts::group_pools(g) {
                Err(_) => vec![bad("spec.local: invalid")],
                Ok(pools) => pools
                    .into_iter()
                    .map(|read| match read.parsed {
                        Ok(p) if format == Format::Wide => {
                            format!("{} in {} agg {}", p.range, p.subnet, p.aggregation)
                        }
                        Ok(p) => p.range.to_string(),
                        Err(_) => bad(&format!("{}: invalid", read.field)),
                    })
                    .collect(),
            };
            let status = g.status.clone().unwrap_or_default();
            let valid =
                status.conditions.iter().find(|c| c.type_ == purelb_core::api::conditions::GROUP_VALID);
            let valid = match valid {
                Some(c) if c.status == "True" => good("True"),
                Some(c) => bad(&c.reason),
                None => warn("unknown (no status: is the allocator running?)"),
            };
            vec![
                g.name_any(),
                g.namespace().unwrap_or_default(),
                pools.join(", "),
                status.allocated.map(|a| a.to_string()).unwrap_or_else(|| "-".into()),
                status.available.unwrap_or_else(|| "-".into()),
                valid,
            ]
        })
        .collect();
    style::print(&table(&["NAME", "NAMESPACE", "POOLS", "ALLOCATED", "AVAILABLE", "VALID"], &rows));
    Ok(())
}

/// `kubectl purelb sg delete`.
pub async fn delete(cluster: &Cluster, args: &SgDeleteArgs) -> Result<()> {
    let groups = cluster.groups().await?;
    let mut found: Vec<&ServiceGroup> = groups.iter().filter(|g| g.name_any() == args.name).collect();
    if cluster.namespace_given {
        found.retain(|g| g.namespace().as_deref() == Some(cluster.namespace.as_str()));
    }
    let g = match found.as_slice() {
        [] => return Err(hinted(format!("no ServiceGroup named {}", args.name), "kubectl purelb sg list")),
        [one] => *one,
        many => {
            let nss: Vec<String> = many.iter().filter_map(|g| g.namespace()).collect();
            return Err(hinted(
                format!("ServiceGroup {} is defined in namespaces {}", args.name, nss.join(", ")),
                "say which with -n",
            ));
        }
    };
    let ns = g.namespace().unwrap_or_default();
    let users: Vec<String> = cluster
        .allocated_services()
        .await?
        .into_iter()
        .filter(|(_, s)| crate::facts::annotation(s, annotations::ALLOCATED_FROM) == Some(args.name.as_str()))
        .map(|(k, _)| k.to_string())
        .collect();
    if !users.is_empty() && !args.force {
        style::eprint(&format!(
            "{} Services hold addresses from {}: {}\n\
             They would keep them (the allocator never takes a working address away), but new Services could not use the group and its usage would no longer be reported.\n\
             hint: run again with --force to delete it anyway\n",
            bad("refusing:"),
            args.name,
            users.join(", ")
        ));
        return Err(Exit(1).into());
    }
    let api: Api<ServiceGroup> = Api::namespaced(cluster.client.clone(), &ns);
    api.delete(&args.name, &DeleteParams::default())
        .await
        .map_err(|e| kube_err(format!("deleting ServiceGroup {ns}/{}", args.name), e))?;
    style::print(&format!("servicegroup.purelb.io/{} {} from namespace {ns}\n", args.name, good("deleted")));
    Ok(())
}
