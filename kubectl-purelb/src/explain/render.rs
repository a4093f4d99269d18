//! [`render`]: an explanation in plain words, section by section (Service, group, addresses and their
//! nodes, what the agents should report, pending, disagreements, notes).

use std::fmt::Write as _;

use purelb_core::api::{annotations, conditions};

use super::report::Explanation;
use crate::style::{bad, bold, dim, good, warn};

/// The explanation in plain words.
pub fn render(e: &Explanation) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "{} {}", bold("Service"), bold(&e.service));
    if !e.ours {
        let _ = writeln!(o, "  not PureLB's: {}", e.ours_why);
        render_disagreements(&mut o, e);
        return o;
    }
    let _ = writeln!(o, "  PureLB's: {}", e.ours_why);
    let _ = writeln!(o, "  externalTrafficPolicy: {}", e.external_traffic_policy);

    let _ = writeln!(o, "\n{} {}", bold("Group"), bold(&e.group.name));
    let _ = writeln!(o, "  why: {}", e.group.why);
    match &e.group.problem {
        None => {
            let _ = writeln!(
                o,
                "  defined in namespace {}; pools: {}",
                e.group.defined_in.join(", "),
                if e.group.pools.is_empty() { "none".to_string() } else { e.group.pools.join(", ") }
            );
        }
        Some(p) => {
            let _ = writeln!(o, "  {}: {p}", bad(&e.group.state));
        }
    }

    if let Some(p) = &e.pending {
        let _ = writeln!(o, "\n{} {}", bold("Pending:"), bad(&p.reason));
        let _ = writeln!(o, "  {}", p.message);
        let _ = writeln!(o, "  to fix: {}", p.fix);
    }

    for a in &e.addresses {
        let _ = writeln!(o, "\n{} {} ({})", bold("Address"), bold(&a.address), a.family);
        let from = match (&a.pool, &a.group) {
            (Some(p), Some(g)) => format!("pool {p} of group {g}"),
            (None, Some(g)) => format!("group {g}"),
            _ => "no group".to_string(),
        };
        let _ = writeln!(o, "  from {from}: {}", a.why);
        if !a.shared_with.is_empty() || a.sharing_key.is_some() {
            let others: Vec<String> = a
                .shared_with
                .iter()
                .map(|h| {
                    format!(
                        "{} ({})",
                        h.service,
                        if h.ports.is_empty() { "no ports".into() } else { h.ports.join(", ") }
                    )
                })
                .collect();
            let _ = writeln!(
                o,
                "  sharing key {}; also held by: {}",
                a.sharing_key.as_deref().unwrap_or("(none)"),
                if others.is_empty() { "nobody else".into() } else { others.join(", ") }
            );
        }
        if a.local {
            let _ = writeln!(o, "  local: it lies in the LAN subnet of {}", a.lan_nodes.join(", "));
            let _ = writeln!(o, "  election (lowest sha256(node#address) among eligible nodes wins):");
            for (rank, c) in a.election.iter().flatten().enumerate() {
                let mark = if c.eligible { good("eligible") } else { warn("not eligible") };
                let _ = writeln!(
                    o,
                    "    {}. {}  {mark}: {}  {}",
                    rank + 1,
                    c.node,
                    c.why,
                    dim(&c.hash[..12.min(c.hash.len())])
                );
            }
            match &a.winner {
                Some(w) => {
                    let _ = writeln!(o, "  winner: {}", bold(w));
                }
                None => {
                    let _ =
                        writeln!(o, "  winner: {}", bad("none — no node is eligible, nobody announces it"));
                }
            }
            if a.reset_traffic_policy {
                let _ = writeln!(
                    o,
                    "  externalTrafficPolicy: Local is not supported for a local address: the agent resets it to Cluster"
                );
            }
        } else if !e.nodes.is_empty() {
            let _ =
                writeln!(o, "  not local: no node's LAN subnet holds it; it is routed (kube-lb0 and BGP)");
        }
        if a.announced_by.is_empty() {
            if !e.nodes.is_empty() {
                let _ = writeln!(o, "  announced by: {}", warn("no node"));
            }
        } else {
            let _ = writeln!(o, "  announced by: {}", a.announced_by.join("; "));
        }
        for p in a.per_node.iter().filter(|p| p.placement == "absent" && !a.local) {
            let _ = writeln!(o, "    {}: {}", p.node, p.reasons.join("; "));
        }
        if let Some(report) = &a.agents_report {
            let _ = writeln!(o, "  agents report: {report}");
        }
    }

    if let Some(nodes) = &e.endpoint_nodes {
        let _ = writeln!(
            o,
            "\n{} nodes with a ready endpoint: {}",
            bold("externalTrafficPolicy: Local —"),
            if nodes.is_empty() { "none".to_string() } else { nodes.join(", ") }
        );
    }

    let _ = writeln!(o, "\n{}", bold("Recorded"));
    let r = &e.recorded;
    let _ =
        writeln!(o, "  ingress: {}", if r.ingress.is_empty() { "none".into() } else { r.ingress.join(", ") });
    for (k, v) in [
        (annotations::ALLOCATED_BY, &r.allocated_by),
        (annotations::ALLOCATED_FROM, &r.allocated_from),
        (annotations::ANNOUNCING_IPV4, &r.announcing_ipv4),
        (annotations::ANNOUNCING_IPV6, &r.announcing_ipv6),
    ] {
        if let Some(v) = v {
            let _ = writeln!(o, "  {k}: {v}");
        }
    }
    for (t, c) in [(conditions::ALLOCATED, &r.allocated), (conditions::ANNOUNCED, &r.announced)] {
        match c {
            Some(c) => {
                let status = if c.status == "True" { good(&c.status) } else { bad(&c.status) };
                let _ = writeln!(
                    o,
                    "  {t}: {status} {} — {} (since {})",
                    c.reason, c.message, c.last_transition_time
                );
            }
            None => {
                let _ = writeln!(o, "  {t}: {}", dim("not set"));
            }
        }
    }

    let x = &e.agents_should_report;
    if !x.annotations.is_empty() || x.announced.is_some() {
        let _ = writeln!(
            o,
            "  {}",
            dim(&format!(
                "from the Leases read now the agents should report (the agent on {} writes it):",
                x.reporter.as_deref().unwrap_or("no live node")
            ))
        );
        for (k, v) in &x.annotations {
            let _ = writeln!(o, "    {k}: {v}");
        }
        if let Some(c) = &x.announced {
            let _ = writeln!(o, "    {}: {} {} — {}", conditions::ANNOUNCED, c.status, c.reason, c.message);
        }
    }

    let _ = writeln!(o, "\n{}", bold("Replayed with purelb-core on the objects read now"));
    let _ = writeln!(o, "  {}: {}", e.replay.reason, e.replay.message);
    for step in &e.replay.trace {
        let _ = writeln!(o, "    - {step}");
    }
    for c in &e.replay.rejected {
        let _ = writeln!(o, "    rejected {}: {}", c.what, c.why);
    }

    if !e.nodes.is_empty() {
        let _ = writeln!(
            o,
            "\n{} {}",
            bold("Nodes"),
            dim(&format!(
                "(agent settings: {}; extlbint {})",
                e.agent_settings.from.as_deref().unwrap_or("defaults, no LBNodeAgent"),
                e.agent_settings.extlbint
            ))
        );
        if let Some(problem) = &e.agent_settings.problem {
            let _ = writeln!(o, "  {}", warn(&format!("LBNodeAgent unusable: {problem}")));
        }
        for n in &e.nodes {
            let live = if n.live { good("live") } else { warn("not live") };
            let lan = if n.subnets.is_empty() {
                "no LAN subnets".to_string()
            } else {
                format!("{} {}", n.interface, n.subnets.join(","))
            };
            let excluded = if n.excluded {
                format!(", {}", warn("excluded by label"))
            } else if n.shutting_down {
                format!(", {}", warn("shutting down"))
            } else {
                String::new()
            };
            let _ = writeln!(o, "  {}  {live}{excluded}  {lan}  {}", n.name, dim(&n.why));
        }
    }
    render_disagreements(&mut o, e);
    for n in &e.notes {
        let _ = writeln!(o, "{}", dim(&format!("note: {n}")));
    }
    o
}

fn render_disagreements(o: &mut String, e: &Explanation) {
    if e.disagreements.is_empty() {
        if e.ours {
            let _ = writeln!(o, "\n{}", good("The record and the replay agree."));
        }
        return;
    }
    let _ = writeln!(o, "\n{}", warn("The record and the replay disagree:"));
    for d in &e.disagreements {
        let _ = writeln!(o, "  - {d}");
    }
}
