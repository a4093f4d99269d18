//! End-to-end tests of `kubectl purelb` (the kubectl-purelb binary) against a real kube-apiserver: install
//! on a fresh lab and again (nothing changes), the allocator running with the token install's
//! ServiceAccount gets, `sg create` with flags and through a real terminal (tmux), `pools`, `explain` on
//! the seed's four examples (node Leases written by hand: no agent runs here), on a pending Service and
//! offline from the same objects, `validate`, `status`, `version` and kubectl's own plugin completion.
//!
//! One lab for the file; install runs once (the first run is the one that must report `created`).
//! Tests use their own namespaces, group names and address ranges: 203.0.113.0/24 (sg create),
//! 198.51.100.0/24 (pools), and the seed's groups (default, localaddr, virtualsub) for explain.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod plugin_helpers;

use std::time::Duration;

use common::*;
use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, PostParams};
use plugin_helpers::*;
use purelb_core::api::ServiceGroup;
use purelb_lab::{ControlPlane, TestNamespace, shared, wait_for};
use serde_json::Value;
use tokio::sync::OnceCell;

/// What the one-time setup saw and started.
struct Setup {
    first_install: Run,
    _allocator: purelb_lab::Child,
}

static SETUP: OnceCell<Setup> = OnceCell::const_new();
static SEED: OnceCell<()> = OnceCell::const_new();

/// The lab with PureLB installed by the plugin and the allocator running as install's ServiceAccount.
async fn lab() -> &'static ControlPlane {
    let lab = shared().await;
    SETUP
        .get_or_init(|| async {
            let first_install = plugin(lab, &["install"]);
            assert_eq!(first_install.code, 0, "install failed: {first_install:?}");
            let allocator = start_allocator_as_installed(lab).await;
            Setup { first_install, _allocator: allocator }
        })
        .await;
    lab
}

#[tokio::test]
async fn install_creates_everything_then_changes_nothing_and_the_allocator_works_with_its_token() {
    let lab = lab().await;
    let setup = SETUP.get().unwrap();
    let objects = purelb_objects();
    for o in &objects {
        assert!(
            setup.first_install.out.contains(&format!("{o} created")),
            "first install should create {o}:\n{}",
            setup.first_install.out
        );
    }
    assert!(
        !setup.first_install.out.contains(" configured") && !setup.first_install.out.contains(" unchanged")
    );

    let second = plugin(lab, &["install", "-o", "json"]);
    assert_eq!(second.code, 0, "{second:?}");
    let results: Value = serde_json::from_str(&second.out).unwrap();
    let results = results.as_array().unwrap();
    assert_eq!(results.len(), objects.len(), "{results:?}");
    for r in results {
        assert_eq!(r["result"], "unchanged", "a second install changed {r}");
    }

    // Everything is there, as the API server sees it.
    for (args, want) in [
        (vec!["get", "crd", "servicegroups.purelb.io", "lbnodeagents.purelb.io", "-o", "name"], 2),
        (
            vec![
                "get",
                "-n",
                "purelb-system",
                "serviceaccounts",
                "purelb-allocator",
                "purelb-agent",
                "-o",
                "name",
            ],
            2,
        ),
        (
            vec![
                "get",
                "-n",
                "purelb-system",
                "deployment/purelb-allocator",
                "daemonset/purelb-agent",
                "-o",
                "name",
            ],
            2,
        ),
        (vec!["get", "clusterrole", "purelb:allocator", "purelb:agent", "-o", "name"], 2),
    ] {
        let out = kubectl(lab, &args);
        assert_eq!(out.lines().count(), want, "{args:?}: {out}");
    }

    // The allocator, authenticated as the ServiceAccount install created, allocates.
    let client = lab.admin_client().await.unwrap();
    let ns = TestNamespace::new(&client, "plugin-install").await.unwrap();
    let made = plugin(
        lab,
        &["sg", "create", "installsg", "-n", ns.name(), "--v4-pool", "198.51.100.240/29", "--yes"],
    );
    assert_eq!(made.code, 0, "{made:?}");
    let api: Api<Service> = Api::namespaced(client.clone(), ns.name());
    create(&api, &lb_service("web", 80, &[("purelb.io/service-group", "installsg")], "")).await;
    let svc = wait_ingress(&api, "web", 1).await;
    assert_eq!(ingress(&svc), ["198.51.100.240"]);

    // status says what runs and what cannot: the lab's kube-controller-manager creates the Deployment's
    // pods, but no scheduler or kubelet runs them, so none is ever ready.
    let mut status = plugin(lab, &["status"]);
    for _ in 0..60 {
        if status.out.contains("Deployment purelb-allocator: 0/2 ready, 0 available") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        status = plugin(lab, &["status"]);
    }
    assert_eq!(status.code, 0, "{status:?}");
    for want in [
        "ok CRD servicegroups.purelb.io: established",
        "Deployment purelb-allocator: 0/2 ready, 0 available",
        "allocator leader Lease: held by allocator-plugin",
        "installsg",
    ] {
        assert!(status.out.contains(want), "status lacks {want:?}:\n{}", status.out);
    }
    let version = plugin(lab, &["version"]);
    assert!(version.out.contains(&format!("kubectl-purelb {}", env!("CARGO_PKG_VERSION"))), "{version:?}");
    assert!(
        version.out.contains("server v1.36")
            && version.out.contains("installed ghcr.io/purelb-rs/purelb-allocator:"),
        "{version:?}"
    );
    ns.cleanup().await.unwrap();
}

#[tokio::test]
async fn sg_create_with_flags_creates_the_group_and_refuses_an_overlap() {
    let lab = lab().await;
    let client = lab.admin_client().await.unwrap();
    let ns = TestNamespace::new(&client, "plugin-sg").await.unwrap();

    let dry = plugin(
        lab,
        &[
            "sg",
            "create",
            "flagsg",
            "-n",
            ns.name(),
            "--v4-pool",
            "203.0.113.0/28",
            "--dry-run",
            "-o",
            "yaml",
        ],
    );
    assert_eq!(dry.code, 0, "{dry:?}");
    assert!(
        dry.out.contains("pool: 203.0.113.0/28") && dry.out.contains("subnet: 203.0.113.0/28"),
        "{dry:?}"
    );
    let groups: Api<ServiceGroup> = Api::namespaced(client.clone(), ns.name());
    assert!(groups.get_opt("flagsg").await.unwrap().is_none(), "--dry-run creates nothing");

    let made = plugin(
        lab,
        &[
            "sg",
            "create",
            "flagsg",
            "-n",
            ns.name(),
            "--v4-pool",
            "203.0.113.0/28",
            "--aggregation",
            "/32",
            "--v6-pool",
            "2001:db8:203::/120",
        ],
    );
    assert_eq!(made.code, 0, "{made:?}");
    let g = groups.get("flagsg").await.unwrap();
    let local = g.spec.local.unwrap();
    assert_eq!(
        (
            local.v4pools[0].subnet.as_str(),
            local.v4pools[0].pool.as_str(),
            local.v4pools[0].aggregation.as_str()
        ),
        ("203.0.113.0/28", "203.0.113.0/28", "/32")
    );
    assert_eq!(local.v6pools[0].pool, "2001:db8:203::/120");

    let overlap = plugin(lab, &["sg", "create", "other", "-n", ns.name(), "--v4-pool", "203.0.113.8/30"]);
    assert_eq!(overlap.code, 1, "{overlap:?}");
    assert!(
        overlap.err.contains("overlaps pool 203.0.113.0/28 of ServiceGroup") && overlap.err.contains("hint:"),
        "{overlap:?}"
    );
    let taken = plugin(lab, &["sg", "create", "flagsg", "-n", "default", "--v4-pool", "203.0.113.100/30"]);
    assert_eq!(taken.code, 1, "{taken:?}");
    assert!(taken.err.contains("a ServiceGroup named flagsg exists in namespace"), "{taken:?}");

    let listed = plugin(lab, &["sg", "list", "-n", ns.name()]);
    assert!(listed.out.contains("flagsg") && listed.out.contains("203.0.113.0/28"), "{listed:?}");
    let deleted = plugin(lab, &["sg", "delete", "flagsg", "-n", ns.name()]);
    assert_eq!(deleted.code, 0, "{deleted:?}");
    assert!(groups.get_opt("flagsg").await.unwrap().is_none());
    ns.cleanup().await.unwrap();
}

#[tokio::test]
async fn sg_create_on_a_terminal_asks_checks_each_answer_and_creates_what_was_answered() {
    let lab = lab().await;
    let client = lab.admin_client().await.unwrap();
    let ns = TestNamespace::new(&client, "plugin-pty").await.unwrap();
    let term = Terminal::start(lab, &["sg", "create", "-n", ns.name()]);
    term.expect("ServiceGroup name");
    term.send_line("ptysg");
    term.expect("Add an IPv4 pool?");
    term.send_keys("y");
    term.expect("IPv4 subnet");
    term.send_line("203.0.113.64/27");
    term.expect("IPv4 pool inside 203.0.113.64/27");
    term.send_line("198.51.100.200-198.51.100.210");
    term.expect("pool 198.51.100.200-198.51.100.210 is not inside subnet 203.0.113.64/27");
    term.send_line("203.0.113.70-203.0.113.80");
    term.expect("Aggregation");
    term.send_line("");
    term.expect("Add an IPv6 pool?");
    term.send_keys("n");
    term.expect("Create ServiceGroup ptysg in namespace");
    term.send_keys("y");
    term.expect("EXIT=0");
    let screen = term.screen();
    assert!(screen.contains("pool: 203.0.113.70-203.0.113.80"), "the YAML was shown:\n{screen}");

    let g = Api::<ServiceGroup>::namespaced(client.clone(), ns.name()).get("ptysg").await.unwrap();
    let p = &g.spec.local.unwrap().v4pools[0];
    assert_eq!(
        (p.subnet.as_str(), p.pool.as_str(), p.aggregation.as_str()),
        ("203.0.113.64/27", "203.0.113.70-203.0.113.80", "default")
    );
    ns.cleanup().await.unwrap();
}

#[tokio::test]
async fn pools_counts_what_the_allocator_handed_out() {
    let lab = lab().await;
    let client = lab.admin_client().await.unwrap();
    let ns = TestNamespace::new(&client, "plugin-pools").await.unwrap();
    let made = plugin(
        lab,
        &[
            "sg",
            "create",
            "poolsg",
            "-n",
            ns.name(),
            "--v4-pool",
            "198.51.100.0/29",
            "--aggregation",
            "/32",
            "--yes",
        ],
    );
    assert_eq!(made.code, 0, "{made:?}");
    let api: Api<Service> = Api::namespaced(client.clone(), ns.name());
    for name in ["a", "b", "c"] {
        create(&api, &lb_service(name, 80, &[("purelb.io/service-group", "poolsg")], "")).await;
    }
    for name in ["a", "b", "c"] {
        wait_ingress(&api, name, 1).await;
    }
    let run = plugin(lab, &["pools", "--show-services", "-o", "json"]);
    assert_eq!(run.code, 0, "{run:?}");
    let report: Value = serde_json::from_str(&run.out).unwrap();
    let g = report["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["name"] == "poolsg")
        .expect("poolsg listed")
        .clone();
    assert_eq!(
        (g["size"].as_str(), g["used"].as_u64(), g["free"].as_str()),
        (Some("8"), Some(3), Some("5")),
        "{g}"
    );
    assert_eq!(g["utilisation"].as_f64(), Some(37.5));
    let holders: Vec<String> = g["pools"][0]["holders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["services"][0].as_str().unwrap().to_string())
        .collect();
    let n = ns.name();
    assert_eq!(holders, [format!("{n}/a"), format!("{n}/b"), format!("{n}/c")]);
    let table = plugin(lab, &["pools"]);
    assert!(
        table
            .out
            .lines()
            .any(|l| l.starts_with("poolsg") && l.contains("198.51.100.0/29") && l.contains("37.5%")),
        "{table:?}"
    );
    ns.cleanup().await.unwrap();
}

#[tokio::test]
async fn explain_names_group_address_reason_and_nodes_for_the_seeds_examples() {
    let lab = lab().await;
    seed_world(lab).await;

    // echoserver: no annotation -> group default; lowest free; 172.30.250.0/24 is on no node -> kube-lb0.
    let e = explain_json(lab, &["explain", "svc/echoserver-service", "-n", "test"]);
    assert_eq!(e["group"]["name"], "default");
    assert_eq!(e["group"]["source"], "default");
    let a = &e["addresses"][0];
    assert_eq!(
        (a["address"].as_str(), a["how"].as_str(), a["local"].as_bool()),
        (Some("172.30.250.53"), Some("lowestFree"), Some(false))
    );
    assert_eq!(
        strings(&a["announcedBy"]),
        [
            "node1 on kube-lb0 as 172.30.250.53/24",
            "node2 on kube-lb0 as 172.30.250.53/24",
            "node3 on kube-lb0 as 172.30.250.53/24"
        ]
    );
    assert_eq!(e["recorded"]["allocated"]["reason"], "Allocated");

    // servicetest: annotation -> localaddr; 192.0.2.200 is local; the winner is core's election.
    let e = explain_json(lab, &["explain", "service/servicetest", "-n", "servicetest"]);
    assert_eq!(e["group"]["name"], "localaddr");
    assert_eq!(e["group"]["source"], "annotation");
    let a = &e["addresses"][0];
    assert_eq!(
        (a["address"].as_str(), a["how"].as_str(), a["local"].as_bool()),
        (Some("192.0.2.200"), Some("lowestFree"), Some(true))
    );
    let winner = expected_winner("192.0.2.200");
    assert_eq!(a["winner"].as_str(), Some(winner.as_str()));
    assert_eq!(strings(&a["announcedBy"]), [format!("{winner} on eth0 as 192.0.2.200/24")]);
    assert_eq!(a["election"].as_array().unwrap().len(), 3);

    // specificaddress: requested by spec.loadBalancerIP, routed with the group's /32.
    let e = explain_json(lab, &["explain", "specificaddress", "-n", "servicetest"]);
    assert_eq!(e["group"]["name"], "virtualsub");
    let a = &e["addresses"][0];
    assert_eq!((a["address"].as_str(), a["how"].as_str()), (Some("172.31.1.225"), Some("requested")));
    assert_eq!(a["why"], "requested by spec.loadBalancerIP");
    assert_eq!(strings(&a["announcedBy"]).len(), 3);
    assert!(strings(&a["announcedBy"])[0].ends_with("on kube-lb0 as 172.31.1.225/32"));

    // -A finds the Service in whichever namespace holds it.
    assert_eq!(
        explain_json(lab, &["explain", "specificaddress", "-A"])["service"],
        "servicetest/specificaddress"
    );

    // endpoints: externalTrafficPolicy Local -> only the node with an endpoint announces.
    let e = explain_json(lab, &["explain", "svc/endpoints", "-n", "servicetest"]);
    assert_eq!(strings(&e["endpointNodes"]), ["node2"]);
    let a = &e["addresses"][0];
    assert_eq!((a["address"].as_str(), a["how"].as_str()), (Some("172.31.1.0"), Some("lowestFree")));
    assert_eq!(strings(&a["announcedBy"]), ["node2 on kube-lb0 as 172.31.1.0/32"]);

    // The words say the same.
    let text = plugin(lab, &["explain", "svc/servicetest", "-n", "servicetest"]);
    assert_eq!(text.code, 0, "{text:?}");
    for want in [
        "Group localaddr",
        "why: annotation purelb.io/service-group: localaddr",
        "Address 192.0.2.200 (IPv4)",
        "local: it lies in the LAN subnet of",
        &format!("winner: {winner}"),
        "node liveness is read once here",
    ] {
        assert!(text.out.contains(want), "explain text lacks {want:?}:\n{}", text.out);
    }
}

#[tokio::test]
async fn explain_names_the_reason_a_service_is_pending() {
    let lab = lab().await;
    let client = lab.admin_client().await.unwrap();
    let ns = TestNamespace::new(&client, "plugin-pending").await.unwrap();
    let api: Api<Service> = Api::namespaced(client.clone(), ns.name());
    create(&api, &lb_service("lost", 80, &[("purelb.io/service-group", "no-such-group")], "")).await;
    wait_reason(&api, "lost", "NoServiceGroup").await;
    let run = plugin(lab, &["explain", "svc/lost", "-n", ns.name()]);
    assert_eq!(run.code, 0, "{run:?}");
    for want in [
        "Pending: NoServiceGroup",
        "no ServiceGroup is named \"no-such-group\"",
        "to fix: create the group (kubectl purelb sg create NAME)",
    ] {
        assert!(run.out.contains(want), "explain lacks {want:?}:\n{}", run.out);
    }
    let e = explain_json(lab, &["explain", "lost", "-n", ns.name()]);
    assert_eq!(e["pending"]["reason"], "NoServiceGroup");
    assert_eq!(e["replay"]["reason"], "NoServiceGroup");
    let missing = plugin(lab, &["explain", "svc/nope", "-n", ns.name()]);
    assert_eq!(missing.code, 1);
    assert!(
        missing.err.contains(&format!("Service {}/nope not found", ns.name()))
            && missing.err.contains("hint:"),
        "{missing:?}"
    );
    ns.cleanup().await.unwrap();
}

#[tokio::test]
async fn offline_explain_matches_online_explain_for_the_same_objects() {
    let lab = lab().await;
    seed_world(lab).await;
    let dir = tempdir("offline");
    let dump = |file: &str, args: &[&str]| {
        let path = dir.join(file);
        std::fs::write(&path, kubectl(lab, args)).unwrap();
        path.to_str().unwrap().to_string()
    };
    let services = dump("services.yaml", &["get", "services", "-A", "-o", "yaml"]);
    let groups = dump("groups.yaml", &["get", "servicegroups", "-A", "-o", "yaml"]);
    let nodes = dump("nodes.yaml", &["get", "nodes", "-o", "yaml"]);
    let leases = dump("leases.yaml", &["get", "leases", "-n", "purelb-system", "-o", "yaml"]);
    let slices = dump("slices.yaml", &["get", "endpointslices", "-n", "servicetest", "-o", "yaml"]);
    for (name, ns) in
        [("servicetest", "servicetest"), ("endpoints", "servicetest"), ("echoserver-service", "test")]
    {
        let online = explain_json(lab, &["explain", name, "-n", ns]);
        let offline = explain_json(
            lab,
            &[
                "explain", name, "-n", ns, "-f", &services, "-f", &slices, "--groups", &groups, "--nodes",
                &nodes, "--nodes", &leases,
            ],
        );
        assert_eq!(offline["source"], "files");
        assert_eq!(comparable(online), comparable(offline), "{name}: online and offline explain differ");
    }
    // The simple node list answers too.
    let simple = dir.join("simple-nodes.yaml");
    std::fs::write(&simple, "nodes:\n- name: a\n  interface: eth9\n  subnets: [192.0.2.0/24]\n").unwrap();
    let e = explain_json(
        lab,
        &[
            "explain",
            "servicetest",
            "-n",
            "servicetest",
            "-f",
            &services,
            "--groups",
            &groups,
            "--nodes",
            simple.to_str().unwrap(),
        ],
    );
    assert_eq!(strings(&e["addresses"][0]["announcedBy"]), ["a on eth9 as 192.0.2.200/24"]);
}

#[tokio::test]
async fn validate_catches_each_bad_configuration_with_its_exit_code() {
    let lab = lab().await;
    let dir = tempdir("validate");
    let write = |name: &str, text: &str| {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p.to_str().unwrap().to_string()
    };
    let sg = |name: &str, ns: &str, subnet: &str, pool: &str, agg: &str| {
        format!(
            "---\napiVersion: purelb.io/v1\nkind: ServiceGroup\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  local:\n    v4pools:\n    - {{subnet: '{subnet}', pool: '{pool}', aggregation: '{agg}'}}\n"
        )
    };
    let good = sg("default", "purelb-system", "10.9.0.0/24", "10.9.0.0/28", "default");
    let cases: Vec<(&str, String, &[&str], i32, &str)> = vec![
        ("good", good.clone(), &[], 0, "0 error(s), 0 warning(s)"),
        (
            "outside",
            good.clone() + &sg("bad", "a", "192.0.2.0/24", "198.51.100.0/28", "default"),
            &[],
            1,
            "pool 198.51.100.0/28 is not inside subnet 192.0.2.0/24",
        ),
        (
            "overlap",
            good.clone() + &sg("x", "a", "10.9.0.0/24", "10.9.0.8/29", "default"),
            &[],
            1,
            "pool 10.9.0.0/28 overlaps pool 10.9.0.8/29",
        ),
        (
            "duplicate",
            good.clone()
                + &sg("x", "a", "10.8.0.0/24", "10.8.0.0/28", "default")
                + &sg("x", "b", "10.8.0.0/24", "10.8.0.16/28", "default"),
            &[],
            1,
            "ServiceGroup \"x\" is defined in namespaces a, b",
        ),
        (
            "localint",
            good.clone()
                + "---\napiVersion: purelb.io/v1\nkind: LBNodeAgent\nmetadata: {name: default, namespace: purelb-system}\nspec:\n  local: {localint: 'eth[0-9'}\n",
            &[],
            1,
            "is not a regular expression the agent can compile",
        ),
        (
            "nodefault",
            sg("web", "a", "10.9.0.0/24", "10.9.0.0/28", "default"),
            &[],
            0,
            "no ServiceGroup is named default",
        ),
        (
            "nodefault-strict",
            sg("web", "a", "10.9.0.0/24", "10.9.0.0/28", "default"),
            &["--strict"],
            1,
            "no ServiceGroup is named default",
        ),
        (
            "no-node-subnet",
            good.clone() + "---\nnodes:\n- {name: n1, interface: eth0, subnets: [192.0.2.0/24]}\n",
            &["--strict"],
            1,
            "subnet 10.9.0.0/24 of pool 10.9.0.0/28 is on no node",
        ),
    ];
    for (name, text, extra, code, want) in cases {
        let file = write(&format!("{name}.yaml"), &text);
        let mut args = vec!["validate", "-f", file.as_str()];
        args.extend(extra);
        let run = plugin(lab, &args);
        assert_eq!(run.code, code, "{name}: {run:?}");
        assert!(run.out.contains(want), "{name}: output lacks {want:?}:\n{}", run.out);
    }

    // In the cluster: one group name in two namespaces.
    let client = lab.admin_client().await.unwrap();
    let (a, b) = (
        TestNamespace::new(&client, "plugin-dup").await.unwrap(),
        TestNamespace::new(&client, "plugin-dup").await.unwrap(),
    );
    for (ns, pool) in [(&a, "198.51.100.64/30"), (&b, "198.51.100.68/30")] {
        let g: ServiceGroup =
            yaml(&sg("dupsg", ns.name(), "198.51.100.0/24", pool, "/32").replace("---\n", ""));
        Api::<ServiceGroup>::namespaced(client.clone(), ns.name())
            .create(&PostParams::default(), &g)
            .await
            .unwrap();
    }
    let run = plugin(lab, &["validate"]);
    assert_eq!(run.code, 1, "{run:?}");
    let mut names = [a.name().to_string(), b.name().to_string()];
    names.sort();
    assert!(
        run.out
            .contains(&format!("ServiceGroup \"dupsg\" is defined in namespaces {}, {}", names[0], names[1])),
        "{run:?}"
    );
    a.cleanup().await.unwrap();
    b.cleanup().await.unwrap();
}

#[tokio::test]
async fn kubectl_completes_the_plugin_through_its_companion() {
    let lab = lab().await;
    let bin = purelb_lab::binary("kubectl-purelb").unwrap();
    let dir = bin.parent().unwrap().to_path_buf();
    assert!(
        dir.join("kubectl_complete-purelb").is_file(),
        "the companion binary is built next to the plugin"
    );
    let path = format!("{}:{}", dir.display(), std::env::var("PATH").unwrap_or_default());
    let out =
        lab.kubectl_command().env("PATH", &path).args(["__complete", "purelb", "sg", ""]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    for want in ["create", "delete", "list"] {
        assert!(text.lines().any(|l| l.starts_with(want)), "kubectl's completion lacks {want}:\n{text}");
    }
    // Service names come from the cluster.
    seed_world(lab).await;
    let out = lab
        .kubectl_command()
        .env("PATH", &path)
        .args(["__complete", "purelb", "explain", "-n", "servicetest", "spec"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.lines().any(|l| l.starts_with("specificaddress")),
        "kubectl's completion lacks the Service:\n{text}"
    );
    let script = plugin(lab, &["completion", "bash"]);
    assert!(script.code == 0 && script.out.contains("kubectl-purelb"), "{script:?}");
}

/// The seed's world, once: namespaces test and servicetest, three Nodes on the LAN with the Leases their
/// agents would write, the seed's groups and Services (examples/), an endpoint of `endpoints` on node2.
async fn seed_world(lab: &'static ControlPlane) {
    SEED.get_or_init(|| async {
        let client = lab.admin_client().await.unwrap();
        for ns in ["test", "servicetest"] {
            kubectl(lab, &["create", "namespace", ns]);
        }
        for (i, node) in ["node1", "node2", "node3"].iter().enumerate() {
            create_node(&client, node, &format!("192.0.2.{}", 11 + i)).await;
            create_node_lease(&client, node, "eth0", "192.0.2.0/24").await;
        }
        for f in ["servicegroup-default.yaml", "servicegroup-localaddr.yaml"] {
            kubectl(lab, &["apply", "-f", example(f).to_str().unwrap()]);
        }
        kubectl(lab, &["apply", "-n", "test", "-f", example("echoserver-service.yaml").to_str().unwrap()]);
        for f in ["servicetest.yaml", "specificaddress.yaml", "endpoints.yaml"] {
            kubectl(lab, &["apply", "-f", example(f).to_str().unwrap()]);
        }
        let slices: Api<k8s_openapi::api::discovery::v1::EndpointSlice> =
            Api::namespaced(client.clone(), "servicetest");
        slices.create(&PostParams::default(), &endpoint_slice("endpoints", &["node2"])).await.unwrap();
        let test: Api<Service> = Api::namespaced(client.clone(), "test");
        wait_ingress(&test, "echoserver-service", 1).await;
        let st: Api<Service> = Api::namespaced(client.clone(), "servicetest");
        for name in ["servicetest", "specificaddress", "endpoints"] {
            wait_ingress(&st, name, 1).await;
        }
        // The allocator writes the condition with the ingress; wait until each shows it.
        for (api, name) in [
            (&test, "echoserver-service"),
            (&st, "servicetest"),
            (&st, "specificaddress"),
            (&st, "endpoints"),
        ] {
            wait_for(&format!("condition on {name}"), Duration::from_secs(30), || async {
                api.get(name).await.ok().and_then(|s| allocated_condition(&s)).map(|_| ())
            })
            .await
            .unwrap();
        }
    })
    .await;
}
