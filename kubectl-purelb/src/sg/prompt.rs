//! The questions `sg create` asks on a terminal (dialoguer, on stderr). Each answer is checked by
//! [`super::draft`] before the next question: a refused answer shows the reason and is asked again.

use anyhow::Result;
use dialoguer::theme::{ColorfulTheme, SimpleTheme, Theme};
use dialoguer::{Confirm, Input};
use purelb_core::api::{PoolSpec, ServiceGroup};
use purelb_core::pool::{Family, Subnet};

use super::draft::{self, Draft};
use crate::cli::SgCreateArgs;

fn theme() -> Box<dyn Theme> {
    if std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty()) {
        Box::new(SimpleTheme)
    } else {
        Box::new(ColorfulTheme::default())
    }
}

/// Asks for the name (unless given and valid) and for the pools (unless flags give them).
pub fn ask(
    args: &SgCreateArgs,
    namespace: &str,
    existing: &[ServiceGroup],
    v4_nodes: &[Subnet],
    v6_nodes: &[Subnet],
) -> Result<Draft> {
    let theme = theme();
    let name = match &args.name {
        Some(n) if draft::check_name(n, existing).is_ok() => n.clone(),
        given => {
            let mut input = Input::<String>::with_theme(theme.as_ref())
                .with_prompt(format!("ServiceGroup name (created in namespace {namespace})"))
                .validate_with(|s: &String| draft::check_name(s, existing));
            let suggestion = given.clone().or_else(|| {
                (!existing.iter().any(|g| kube::ResourceExt::name_any(g) == purelb_core::api::DEFAULT_GROUP))
                    .then(|| purelb_core::api::DEFAULT_GROUP.to_string())
            });
            if let Some(s) = suggestion {
                input = input.default(s);
            }
            input.interact_text()?
        }
    };
    if args.v4_pool.is_some() || args.v6_pool.is_some() {
        let mut flags = args.clone();
        flags.name = Some(name);
        return super::from_flags(&flags, namespace, existing, v4_nodes, v6_nodes);
    }
    loop {
        let v4 = ask_pool(theme.as_ref(), Family::V4, true, existing, v4_nodes)?;
        let v6 = ask_pool(theme.as_ref(), Family::V6, !v6_nodes.is_empty(), existing, v6_nodes)?;
        if v4.is_some() || v6.is_some() {
            return Ok(Draft { name, namespace: namespace.to_string(), v4, v6 });
        }
        crate::style::eprint("A ServiceGroup needs at least one pool.\n");
    }
}

fn ask_pool(
    theme: &dyn Theme,
    family: Family,
    default_yes: bool,
    existing: &[ServiceGroup],
    nodes: &[Subnet],
) -> Result<Option<PoolSpec>> {
    if !Confirm::with_theme(theme)
        .with_prompt(format!("Add an {family} pool?"))
        .default(default_yes)
        .interact()?
    {
        return Ok(None);
    }
    let mut subnet_input = Input::<String>::with_theme(theme)
        .with_prompt(match nodes.first() {
            Some(s) => format!("{family} subnet (a CIDR; the nodes' InternalIP addresses are in {s})"),
            None => format!("{family} subnet (a CIDR)"),
        })
        .validate_with(|s: &String| draft::check_subnet(s, family).map(|_| ()));
    if let Some(s) = nodes.first() {
        subnet_input = subnet_input.default(s.to_string());
    }
    let subnet = subnet_input.interact_text()?;
    let subnet = subnet.trim().to_string();
    let (example_cidr, example_range) = match draft::check_subnet(&subnet, family) {
        Ok(s) => draft::example_pools(&s),
        Err(_) => (subnet.clone(), subnet.clone()),
    };
    let pool = Input::<String>::with_theme(theme)
        .with_prompt(format!(
            "{family} pool inside {subnet} (a CIDR such as {example_cidr} or a range such as {example_range})"
        ))
        .validate_with(|p: &String| draft::check_pool(&subnet, p, "default", family, existing).map(|_| ()))
        .interact_text()?;
    let aggregation = Input::<String>::with_theme(theme)
        .with_prompt(format!(
            "Aggregation: the prefix a non-local address is announced with (default = the subnet's /{}, or /NN)",
            draft::check_subnet(&subnet, family).map(|s| s.prefix_len()).unwrap_or(0)
        ))
        .default("default".to_string())
        .validate_with(|a: &String| draft::check_pool(&subnet, &pool, a, family, existing).map(|_| ()))
        .interact_text()?;
    Ok(Some(PoolSpec { subnet, pool: pool.trim().to_string(), aggregation: aggregation.trim().to_string() }))
}

/// Shows the YAML and asks whether to create it.
pub fn confirm(yaml: &str, draft: &Draft) -> Result<bool> {
    crate::style::eprint(&format!("\n{yaml}\n"));
    Ok(Confirm::with_theme(theme().as_ref())
        .with_prompt(format!("Create ServiceGroup {} in namespace {}?", draft.name, draft.namespace))
        .default(true)
        .interact()?)
}
