//! The Helm chart (deploy/helm/purelb) tested with a real helm (helm.sh/helm/v4, built by
//! lab/helm/build.sh; its path in `PURELB_HELM`) against the lab's real API server:
//! - rendered with default values it is exactly what `kubectl purelb install` applies
//!   (`kubectl_purelb::manifests::objects()`), Helm's standard labels aside; values reach the objects
//!   (images as the plugin's `--image-registry`/`--version` rewrite them, daemon flags the daemons accept);
//! - `helm lint` passes, and fails on broken values (so lint really runs the schema and the templates);
//! - the lifecycle on one lab: `helm template` accepted by a server-side dry run; `helm install`; the
//!   allocator and an agent per node run as the kubelet would run the installed containers (their args
//!   and env, the chart's ServiceAccounts' tokens) and allocate and announce the seed's examples (a
//!   routed address on kube-lb0 of every node and at the router, a local one on the elected node's eth0);
//!   `helm upgrade` changes the Deployment and the DaemonSet (a restarted agent runs with the new flag);
//!   a plain `helm uninstall` (the agents' RBAC goes with it; their SIGTERM then withdraws every address)
//!   deletes every object the release made and keeps exactly the two CRDs of crds/ (Helm's policy).
//!
//! One lab for the file, used by the lifecycle test alone (the chart's objects have fixed names, so one
//! release per cluster). The release record lives in a test namespace; addresses are the seed's own
//! (172.30.250.53-99 routed, 192.0.2.200-220 local).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use k8s_openapi::api::core::v1::Service;
use kube::api::Api;
use purelb_core::announce::{NodeFacts, elect};
use purelb_core::pool::Subnet;
use purelb_lab::{ControlPlane, TestNamespace, shared, wait_for};
use serde_json::{Value, json};

/// Helm's standard labels: the only difference between the chart and deploy/ (stripped before comparing).
const HELM_LABELS: [&str; 4] = [
    "helm.sh/chart",
    "app.kubernetes.io/managed-by",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/version",
];
const RELEASE: &str = "purelb";

/// The helm binary: `$PURELB_HELM`, set by scripts/test.sh from lab/helm/build.sh.
fn helm_bin() -> PathBuf {
    let Some(path) = std::env::var_os("PURELB_HELM") else {
        panic!(
            "PURELB_HELM is not set: these tests need helm. Build it with `bash lab/helm/build.sh` (needs Go) \
             and run `PURELB_HELM=$(bash lab/helm/build.sh) cargo test -p purelb-lab --test helm` \
             (scripts/test.sh does both)"
        );
    };
    let path = PathBuf::from(path);
    assert!(
        path.is_file(),
        "PURELB_HELM={} does not exist: rebuild it with `bash lab/helm/build.sh`",
        path.display()
    );
    path
}

fn chart() -> String {
    purelb_lab::workspace_root().join("deploy/helm/purelb").to_str().unwrap().to_string()
}

/// What one run of helm did.
struct Run {
    ok: bool,
    out: String,
    err: String,
}

impl std::fmt::Debug for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ok {}\n--- stdout ---\n{}\n--- stderr ---\n{}", self.ok, self.out, self.err)
    }
}

/// Runs helm with its own config/cache/data directories (nothing of the user's), against the lab's API
/// server as its admin when `lab` is given.
fn helm(lab: Option<&ControlPlane>, args: &[&str]) -> Run {
    let home = std::env::temp_dir().join(format!("purelb-helm-test-{}", std::process::id()));
    let mut command = Command::new(helm_bin());
    command
        .args(args)
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_DATA_HOME", home.join("data"))
        .stdin(Stdio::null());
    match lab {
        Some(lab) => command.env("KUBECONFIG", lab.admin_kubeconfig()),
        None => command.env("KUBECONFIG", home.join("no-cluster")),
    };
    let out = command.output().expect("running helm");
    Run {
        ok: out.status.success(),
        out: String::from_utf8_lossy(&out.stdout).into_owned(),
        err: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `helm template` with `args`, CRDs included: every object it renders.
fn render(args: &[&str]) -> Vec<Value> {
    let chart = chart();
    let mut all = vec!["template", RELEASE, chart.as_str(), "--include-crds"];
    all.extend(args);
    let run = helm(None, &all);
    assert!(run.ok, "helm template {args:?}: {run:?}");
    parse_objects(&run.out)
}

fn parse_objects(yaml: &str) -> Vec<Value> {
    let docs: Vec<Value> =
        serde_saphyr::from_multiple(yaml).unwrap_or_else(|e| panic!("helm printed bad YAML ({e}):\n{yaml}"));
    docs.into_iter().filter(|d| !d.is_null()).collect()
}

/// `Kind namespace/name` (or `Kind name`), as `Object::describe` says it.
fn describe(o: &Value) -> String {
    let kind = o["kind"].as_str().unwrap_or("?");
    let name = o["metadata"]["name"].as_str().unwrap_or("?");
    match o["metadata"]["namespace"].as_str() {
        Some(ns) => format!("{kind} {ns}/{name}"),
        None => format!("{kind} {name}"),
    }
}

/// Removes Helm's standard labels from the object's and its pod template's labels (an emptied map goes
/// too); returns how many it removed.
fn strip_helm_labels(o: &mut Value) -> usize {
    let mut removed = 0;
    for pointer in ["/metadata/labels", "/spec/template/metadata/labels"] {
        let Some(labels) = o.pointer_mut(pointer).and_then(Value::as_object_mut) else { continue };
        for key in HELM_LABELS {
            removed += usize::from(labels.remove(key).is_some());
        }
    }
    removed
}

/// The first container of a workload.
fn container(o: &Value) -> &Value {
    &o["spec"]["template"]["spec"]["containers"][0]
}

fn args_of(o: &Value) -> Vec<String> {
    container(o)["args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap().to_string()).collect()
}

fn find<'a>(objects: &'a [Value], kind: &str) -> &'a Value {
    objects.iter().find(|o| o["kind"] == kind).unwrap_or_else(|| panic!("no {kind} rendered"))
}

#[test]
fn default_values_render_exactly_the_plugins_manifests() {
    let rendered = render(&[]);
    let mut from_chart: BTreeMap<String, Value> = BTreeMap::new();
    for mut o in rendered {
        let removed = strip_helm_labels(&mut o);
        if o["kind"] == "CustomResourceDefinition" {
            assert_eq!(removed, 0, "crds/ are the generated file, unlabelled: {}", describe(&o));
        } else {
            // Workloads carry them on the pod template too.
            let want = if o.pointer("/spec/template").is_some() { 8 } else { 4 };
            assert_eq!(removed, want, "Helm's standard labels on {}", describe(&o));
        }
        assert!(from_chart.insert(describe(&o), o).is_none(), "rendered twice");
    }
    let plugin: BTreeMap<String, Value> =
        kubectl_purelb::manifests::objects().unwrap().into_iter().map(|o| (o.describe(), o.body)).collect();
    let (have, want): (BTreeSet<&String>, BTreeSet<&String>) =
        (from_chart.keys().collect(), plugin.keys().collect());
    assert_eq!(have, want, "the chart and deploy/ hold different objects");
    for (key, body) in &plugin {
        assert_eq!(
            &from_chart[key],
            body,
            "{key} differs between the chart and deploy/:\n--- chart ---\n{}\n--- deploy/ ---\n{}",
            serde_json::to_string_pretty(&from_chart[key]).unwrap(),
            serde_json::to_string_pretty(body).unwrap()
        );
    }
    for key in [
        "Namespace purelb-system",
        "Deployment purelb-system/purelb-allocator",
        "DaemonSet purelb-system/purelb-agent",
    ] {
        assert!(plugin.contains_key(key), "{want:?}");
    }

    // The chart's version is the workspace's, its appVersion the tag deploy/ references.
    let meta: Value =
        serde_saphyr::from_str(&std::fs::read_to_string(Path::new(&chart()).join("Chart.yaml")).unwrap())
            .unwrap();
    assert_eq!(meta["version"], env!("CARGO_PKG_VERSION"));
    let image = container(&plugin["Deployment purelb-system/purelb-allocator"])["image"].as_str().unwrap();
    assert_eq!(image.rsplit_once(':').unwrap().1, meta["appVersion"].as_str().unwrap());
}

#[test]
fn values_reach_the_objects_and_the_daemons_accept_every_flag() {
    let o = render(&[
        "--set",
        "image.registry=mirror.example/purelb/,image.tag=v9.9.9,image.pullPolicy=Always",
        "--set",
        "allocator.replicas=3,allocator.ignoreClassless=true,allocator.groupsInNamespaceOnly=true",
        "--set",
        "allocator.leaseDurationSeconds=7,allocator.leaseRenewMs=700,allocator.extraArgs={--log-format=text}",
        "--set",
        "agent.leaseDurationMs=5000,agent.leaseRenewMs=900,agent.garpCount=4,agent.garpIntervalMs=20",
        "--set",
        "agent.handoverTimeoutMs=1500,agent.nodeSelector.role=lb,agent.tolerations=null",
        "--set",
        "namespace.name=lb-system,defaultServiceGroup.enabled=true,lbNodeAgent.enabled=true",
        "--set",
        "defaultServiceGroup.spec.local.v4pools[0].subnet=192.0.2.0/24,defaultServiceGroup.spec.local.v4pools[0].pool=192.0.2.240/28",
        "--set",
        "lbNodeAgent.localint=eth1,allocator.extraEnv[0].name=RUST_LOG,allocator.extraEnv[0].value=debug",
    ]);
    let (deployment, daemonset) = (find(&o, "Deployment"), find(&o, "DaemonSet"));
    // Images as `kubectl purelb install --image-registry mirror.example/purelb --version v9.9.9` has them.
    for w in [deployment, daemonset] {
        let mut plugin = kubectl_purelb::manifests::objects().unwrap();
        kubectl_purelb::manifests::rewrite_images(&mut plugin, Some("v9.9.9"), Some("mirror.example/purelb"));
        let theirs = plugin.iter().find(|p| p.kind == w["kind"]).unwrap();
        assert_eq!(container(w)["image"], container(&theirs.body)["image"]);
        assert_eq!(container(w)["imagePullPolicy"], "Always");
        assert_eq!(w["metadata"]["namespace"], "lb-system");
    }
    assert_eq!(deployment["spec"]["replicas"], 3);
    assert_eq!(
        args_of(deployment),
        [
            "--namespace=$(POD_NAMESPACE)",
            "--ignore-classless",
            "--groups-in-namespace-only",
            "--lease-duration=7",
            "--lease-renew-ms=700",
            "--log-format=text"
        ]
    );
    assert_eq!(container(deployment)["env"][2], json!({"name": "RUST_LOG", "value": "debug"}));
    assert_eq!(
        args_of(daemonset),
        [
            "--namespace=$(POD_NAMESPACE)",
            "--node-name=$(NODE_NAME)",
            "--lease-duration-ms=5000",
            "--lease-renew-ms=900",
            "--garp-count=4",
            "--garp-interval-ms=20",
            "--handover-timeout-ms=1500"
        ]
    );
    let pod = &daemonset["spec"]["template"]["spec"];
    assert_eq!(pod["nodeSelector"], json!({"role": "lb"}));
    assert!(pod.get("tolerations").is_none(), "{pod}");
    let sg = find(&o, "ServiceGroup");
    assert_eq!(
        (sg["metadata"]["name"].as_str(), sg["metadata"]["namespace"].as_str()),
        (Some("default"), Some("lb-system"))
    );
    assert_eq!(sg["spec"]["local"]["v4pools"][0]["pool"], "192.0.2.240/28");
    let lbna = find(&o, "LBNodeAgent");
    assert_eq!(lbna["spec"]["local"], json!({"localint": "eth1", "extlbint": "kube-lb0", "sendgarp": true}));
    // Every RoleBinding subject and namespaced object follows namespace.name.
    for x in &o {
        if x["kind"] != "CustomResourceDefinition" && x["kind"] != "Namespace" {
            let subjects = x["subjects"].as_array().cloned().unwrap_or_default();
            assert!(subjects.iter().all(|s| s["namespace"] == "lb-system"), "{}", describe(x));
        }
    }

    // Each flag the chart can pass is one the daemon defines (a renamed flag fails here, not in a cluster).
    for (w, binary) in [(deployment, "purelb-allocator"), (daemonset, "purelb-agent")] {
        let bin = purelb_lab::binary(binary).expect("cargo build --workspace --bins");
        let help = Command::new(&bin).arg("--help").output().unwrap();
        let help = String::from_utf8_lossy(&help.stdout);
        for arg in args_of(w) {
            let flag = arg.split('=').next().unwrap();
            assert!(
                help.split_whitespace().any(|word| word == flag || word.starts_with(&format!("{flag}="))),
                "{binary} has no flag {flag}:\n{help}"
            );
        }
    }
}

#[test]
fn lint_passes_and_fails_on_broken_values() {
    let chart = chart();
    let good = helm(None, &["lint", "--strict", &chart]);
    assert!(good.ok && good.out.contains("1 chart(s) linted, 0 chart(s) failed"), "{good:?}");
    // The same with the optional objects on.
    let on = helm(
        None,
        &[
            "lint",
            "--strict",
            &chart,
            "--set",
            "lbNodeAgent.enabled=true,defaultServiceGroup.enabled=true",
            "--set",
            "defaultServiceGroup.spec.local.v4pools[0].subnet=192.0.2.0/24,defaultServiceGroup.spec.local.v4pools[0].pool=192.0.2.240/28",
        ],
    );
    assert!(on.ok, "{on:?}");
    for (set, want) in [
        ("allocator.replicas=two", "replicas"),
        ("image.pullPolicy=Sometimes", "pullPolicy"),
        ("allocator.replicaCount=1", "replicaCount"),
        ("defaultServiceGroup.enabled=true", "missing property 'local'"),
    ] {
        let bad = helm(None, &["lint", &chart, "--set", set]);
        let text = format!("{}{}", bad.out, bad.err);
        assert!(!bad.ok && text.contains("1 chart(s) failed") && text.contains(want), "--set {set}: {bad:?}");
    }
}

/// The lab nodes as core's election sees them (all live on the LAN).
fn lab_nodes() -> Vec<NodeFacts> {
    ["node1", "node2", "node3"]
        .iter()
        .map(|n| NodeFacts {
            name: n.to_string(),
            subnets: vec![
                Subnet::parse("192.0.2.0/24").unwrap(),
                Subnet::parse("2001:db8:0:1::/64").unwrap(),
            ],
            interface: "eth0".into(),
            live: true,
            excluded: false,
            shutting_down: false,
        })
        .collect()
}

/// How the kubelet would start the workload's container: its args with `$(VAR)` expanded from its env,
/// and that env (fieldRefs resolved from `fields`, fieldPath -> value).
fn as_kubelet_would(workload: &Value, fields: &[(&str, &str)]) -> (Vec<String>, Vec<(String, String)>) {
    let mut env = Vec::new();
    for e in container(workload)["env"].as_array().unwrap() {
        let name = e["name"].as_str().unwrap().to_string();
        let value =
            match (e["value"].as_str(), e.pointer("/valueFrom/fieldRef/fieldPath").and_then(Value::as_str)) {
                (Some(v), _) => v.to_string(),
                (None, Some(path)) => fields
                    .iter()
                    .find(|(p, _)| *p == path)
                    .map(|(_, v)| v.to_string())
                    .unwrap_or_else(|| panic!("no value for fieldRef {path}")),
                _ => panic!("unsupported env {e}"),
            };
        env.push((name, value));
    }
    let args = args_of(workload)
        .into_iter()
        .map(|a| env.iter().fold(a, |a, (k, v)| a.replace(&format!("$({k})"), v)))
        .collect();
    (args, env)
}

/// The installed Deployment or DaemonSet, as the API server holds it.
fn installed(lab: &ControlPlane, resource: &str) -> Value {
    serde_json::from_str(&kubectl(lab, &["get", "-n", NS, resource, "-o", "json"])).unwrap()
}

fn service_account(workload: &Value) -> &str {
    workload["spec"]["template"]["spec"]["serviceAccountName"].as_str().unwrap()
}

/// Starts the allocator as its installed Deployment's container, with its ServiceAccount's token; the
/// only addition is `--admin-addr` on loopback (a pod has its own network namespace; this runs on the
/// host). Waits for /readyz.
async fn start_installed_allocator(lab: &ControlPlane) -> purelb_lab::Child {
    let deployment = installed(lab, "deployment/purelb-allocator");
    let pod = "purelb-allocator-helm-0";
    let (mut args, env) =
        as_kubelet_would(&deployment, &[("metadata.name", pod), ("metadata.namespace", NS)]);
    let port = free_port();
    args.push(format!("--admin-addr=127.0.0.1:{port}"));
    let kubeconfig = lab.service_account_kubeconfig(NS, service_account(&deployment)).await.unwrap();
    let mut command = Command::new(purelb_lab::binary("purelb-allocator").unwrap());
    command.args(&args).envs(env).env("KUBECONFIG", &kubeconfig).current_dir(lab.dir());
    let child = purelb_lab::spawn_supervised(command, pod, &lab.dir().join(format!("{pod}.log"))).unwrap();
    wait_ready_at(&format!("127.0.0.1:{port}"), &child).await;
    child
}

/// Starts an agent in each node's namespace as its installed DaemonSet's container (host network: the
/// node's namespace), with its ServiceAccount's token; waits for each one's first reconcile.
async fn start_installed_agents(lab: &ControlPlane, net: &purelb_lab::Network) -> Vec<Agent> {
    let mut agents = Vec::new();
    for node in net.nodes() {
        agents.push(start_installed_agent(lab, net, node.name(), "").await);
    }
    agents
}

/// One agent, on `node`, as the installed DaemonSet (read now) says; `suffix` tells its log apart.
async fn start_installed_agent(
    lab: &ControlPlane,
    net: &purelb_lab::Network,
    node: &str,
    suffix: &str,
) -> Agent {
    let daemonset = installed(lab, "daemonset/purelb-agent");
    let sa = lab.service_account_kubeconfig(NS, service_account(&daemonset)).await.unwrap();
    let kubeconfig = net.kubeconfig_for_nodes(&sa).unwrap();
    let (args, env) = as_kubelet_would(&daemonset, &[("spec.nodeName", node), ("metadata.namespace", NS)]);
    let mut command = net.node(node).unwrap().command(purelb_lab::binary("purelb-agent").unwrap());
    command.args(&args).envs(env).env("KUBECONFIG", &kubeconfig).current_dir(lab.dir());
    let name = format!("purelb-agent-helm-{node}{suffix}");
    let child = purelb_lab::spawn_supervised(command, &name, &lab.dir().join(format!("{name}.log"))).unwrap();
    let agent = Agent { node: node.to_string(), child, admin: String::new() };
    wait_agent_ready(&agent).await;
    agent
}

/// The values the lifecycle installs with: the seed's `default` group (examples/servicegroup-default.yaml)
/// and the LBNodeAgent example (examples/lbnodeagent.yaml) as the chart's optional objects.
fn lab_values(dir: &Path) -> PathBuf {
    let read = |f: &str| -> Value { yaml(&std::fs::read_to_string(example(f)).unwrap()) };
    let (group, agent) = (read("servicegroup-default.yaml"), read("lbnodeagent.yaml"));
    assert_eq!(group["metadata"]["name"], "default");
    let values = json!({
        "defaultServiceGroup": {"enabled": true, "name": group["metadata"]["name"], "spec": group["spec"]},
        "lbNodeAgent": {
            "enabled": true,
            "name": agent["metadata"]["name"],
            "localint": agent["spec"]["local"]["localint"],
            "extlbint": agent["spec"]["local"]["extlbint"],
            "sendgarp": agent["spec"]["local"]["sendgarp"],
        },
    });
    let path = dir.join("lab-values.yaml");
    std::fs::write(&path, serde_json::to_string_pretty(&values).unwrap()).unwrap();
    path
}

/// Whether the API server still has the object (`kubectl get` by kind and name).
fn exists(lab: &ControlPlane, o: &Value) -> bool {
    let kind = format!(
        "{}.{}",
        o["kind"].as_str().unwrap().to_lowercase(),
        o["apiVersion"].as_str().unwrap().rsplit_once('/').map_or("", |(g, _)| g)
    );
    let kind = kind.trim_end_matches('.');
    let name = o["metadata"]["name"].as_str().unwrap();
    let mut args = vec!["get", kind, name, "-o", "name"];
    if let Some(ns) = o["metadata"]["namespace"].as_str() {
        args.extend(["-n", ns]);
    }
    let (ok, out) = kubectl_try(lab, &args);
    assert!(ok || out.contains("NotFound"), "kubectl get {kind} {name}: {out}");
    ok
}

#[tokio::test]
async fn install_runs_the_daemons_as_installed_then_upgrade_changes_and_uninstall_leaves_only_the_crds() {
    let lab = shared().await;
    let client = lab.admin_client().await.unwrap();
    let chart = chart();
    let release_ns = TestNamespace::new(&client, "helm-release").await.unwrap();
    let dir = std::env::temp_dir().join(format!("purelb-helm-lab-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let values = lab_values(&dir);
    let values = values.to_str().unwrap();

    // helm template, accepted by the API server (server-side dry run, the lab's kubectl). A dry run
    // persists nothing, so the namespaced objects need an existing namespace: rendered into the
    // release's test namespace (the CRDs, ClusterRoles and bindings are dry-run creations).
    let rendered = helm(
        None,
        &[
            "template",
            RELEASE,
            &chart,
            "--include-crds",
            "--set",
            &format!("namespace.name={}", release_ns.name()),
        ],
    );
    assert!(rendered.ok, "{rendered:?}");
    let file = dir.join("rendered.yaml");
    std::fs::write(&file, &rendered.out).unwrap();
    let dry = kubectl(lab, &["apply", "--server-side", "--dry-run=server", "-f", file.to_str().unwrap()]);
    let objects = parse_objects(&rendered.out);
    for o in &objects {
        let kind = o["kind"].as_str().unwrap().to_lowercase();
        let name = o["metadata"]["name"].as_str().unwrap();
        assert!(
            dry.lines().any(|l| l.contains(&kind) && l.contains(name) && l.ends_with("(server dry run)")),
            "the dry run did not accept {}:\n{dry}",
            describe(o)
        );
    }
    assert!(!exists(lab, find(&objects, "CustomResourceDefinition")), "a dry run created a CRD");

    // helm install, the release record in its own namespace; the chart makes purelb-system.
    let install = helm(Some(lab), &["install", RELEASE, &chart, "-n", release_ns.name(), "-f", values]);
    assert!(install.ok, "{install:?}");
    let manifest = helm(Some(lab), &["get", "manifest", RELEASE, "-n", release_ns.name()]);
    assert!(manifest.ok, "{manifest:?}");
    let made = parse_objects(&manifest.out);
    // What the templates render with these values (the optional ServiceGroup and LBNodeAgent included);
    // the CRDs are not part of a release's manifest.
    let templated: BTreeSet<String> = render(&["-f", values])
        .iter()
        .filter(|o| o["kind"] != "CustomResourceDefinition")
        .map(describe)
        .collect();
    assert_eq!(made.iter().map(describe).collect::<BTreeSet<_>>(), templated);
    assert!(
        templated.contains("ServiceGroup purelb-system/default")
            && templated.contains("LBNodeAgent purelb-system/default")
    );
    for o in &made {
        assert!(exists(lab, o), "{} was not created", describe(o));
    }
    let crds: Vec<Value> =
        render(&[]).into_iter().filter(|o| o["kind"] == "CustomResourceDefinition").collect();
    assert_eq!(crds.len(), 2);
    for crd in &crds {
        assert!(exists(lab, crd), "{} was not installed", describe(crd));
    }

    // The daemons as the kubelet would run the installed containers.
    let allocator = start_installed_allocator(lab).await;
    let net = purelb_lab::Network::create(lab, purelb_lab::NetworkConfig { nodes: 3, ..Default::default() })
        .await
        .expect("network");
    let agents = start_installed_agents(lab, &net).await;

    // The seed's examples: echoserver-service from the chart's `default` group (routed), servicetest
    // from localaddr (local).
    kubectl(lab, &["apply", "-f", example("servicegroup-localaddr.yaml").to_str().unwrap()]);
    let test = TestNamespace::new(&client, "helm-seed").await.unwrap();
    kubectl(lab, &["apply", "-n", test.name(), "-f", example("echoserver-service.yaml").to_str().unwrap()]);
    kubectl(lab, &["create", "namespace", "servicetest"]);
    kubectl(lab, &["apply", "-f", example("servicetest.yaml").to_str().unwrap()]);
    let routed = ingress(
        &wait_ingress(&Api::<Service>::namespaced(client.clone(), test.name()), "echoserver-service", 1)
            .await,
    );
    let local = ingress(
        &wait_ingress(&Api::<Service>::namespaced(client.clone(), "servicetest"), "servicetest", 1).await,
    );
    assert_eq!((routed[0].as_str(), local[0].as_str()), ("172.30.250.53", "192.0.2.200"));
    let every =
        |len| vec![("node1", "kube-lb0", len), ("node2", "kube-lb0", len), ("node3", "kube-lb0", len)];
    wait_holders(&net, "172.30.250.53", &every(24)).await;
    wait_route(&net, "172.30.250.0/24", &["192.0.2.11", "192.0.2.12", "192.0.2.13"]).await;
    let winner = elect("192.0.2.200".parse().unwrap(), &lab_nodes()).winner.unwrap();
    wait_holders(&net, "192.0.2.200", &[(&winner, "eth0", 24)]).await;

    // helm upgrade: one value each for the allocator and the agent, and the objects change.
    assert_eq!(installed(lab, "deployment/purelb-allocator")["spec"]["replicas"], 2);
    assert!(
        !args_of(&installed(lab, "daemonset/purelb-agent"))
            .iter()
            .any(|a| a.starts_with("--handover-timeout-ms"))
    );
    let upgrade = helm(
        Some(lab),
        &[
            "upgrade",
            RELEASE,
            &chart,
            "-n",
            release_ns.name(),
            "--reuse-values",
            "--set",
            "allocator.replicas=1,agent.handoverTimeoutMs=1500",
        ],
    );
    assert!(upgrade.ok, "{upgrade:?}");
    assert_eq!(installed(lab, "deployment/purelb-allocator")["spec"]["replicas"], 1);
    // --reuse-values kept the install's values: the chart's ServiceGroup and LBNodeAgent are still there.
    for o in made.iter().filter(|o| o["kind"] == "ServiceGroup" || o["kind"] == "LBNodeAgent") {
        assert!(exists(lab, o), "the upgrade removed {}", describe(o));
    }
    let daemonset = installed(lab, "daemonset/purelb-agent");
    assert!(
        args_of(&daemonset).contains(&"--handover-timeout-ms=1500".to_string()),
        "{:?}",
        args_of(&daemonset)
    );
    let history = helm(Some(lab), &["history", RELEASE, "-n", release_ns.name(), "-o", "json"]);
    let history: Value = serde_json::from_str(&history.out).unwrap_or_else(|e| panic!("{e}: {history:?}"));
    assert_eq!(history.as_array().map(Vec::len), Some(2), "{history}");
    // The upgraded agent runs with the new flag: restart node1's (SIGTERM: the DaemonSet exists, so its
    // routed address stays) and it comes back to hold what it held.
    let mut agents = agents;
    let old = agents.remove(0);
    old.child.terminate().await.unwrap();
    let restarted = start_installed_agent(lab, &net, "node1", "-upgraded").await;
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", restarted.child.pid())).unwrap();
    assert!(
        cmdline.split(|b| *b == 0).any(|a| a == b"--handover-timeout-ms=1500"),
        "{:?}",
        String::from_utf8_lossy(&cmdline)
    );
    wait_holders(&net, "172.30.250.53", &every(24)).await;
    wait_holders(&net, "192.0.2.200", &[(&winner, "eth0", 24)]).await;
    agents.push(restarted);

    // A plain `helm uninstall` while the agents still run: it deletes the DaemonSet and the agents' RBAC
    // at once. The kubelet would then stop the agents (SIGTERM here); each finds its DaemonSet gone or is
    // refused (403: its RBAC is gone) and takes that for an uninstall: it withdraws every address,
    // routed ones included. (The Deployment's deletion would stop the allocator; here it is a process.)
    allocator.terminate().await.unwrap();
    let uninstall = helm(
        Some(lab),
        &["uninstall", RELEASE, "-n", release_ns.name(), "--wait=watcher", "--timeout", "120s"],
    );
    for a in &agents {
        a.child.terminate().await.unwrap();
    }
    wait_holders(&net, "172.30.250.53", &[]).await;
    wait_holders(&net, "192.0.2.200", &[]).await;
    assert!(uninstall.ok, "{uninstall:?}");
    // Every object the release made is gone (the namespace last: the lab's kube-controller-manager
    // empties it, Leases and the localaddr group included) ...
    wait_for("every object of the release to be gone", Duration::from_secs(90), || async {
        let left: Vec<String> = made.iter().filter(|o| exists(lab, o)).map(describe).collect();
        if left.is_empty() { Ok(()) } else { Err(format!("left: {left:?}")) }
    })
    .await
    .unwrap();
    let status = helm(Some(lab), &["status", RELEASE, "-n", release_ns.name()]);
    assert!(!status.ok && status.err.contains("not found"), "the release record is left: {status:?}");
    let (_, secrets) = kubectl_try(lab, &["get", "secrets", "-n", release_ns.name(), "-o", "name"]);
    assert!(!secrets.contains("sh.helm.release"), "{secrets}");
    // ... and exactly the CRDs of crds/ stay, by Helm's policy.
    let left = kubectl(lab, &["get", "crd", "-o", "name"]);
    let mut purelb: Vec<&str> = left.lines().filter(|l| l.contains("purelb.io")).collect();
    purelb.sort();
    assert_eq!(
        purelb,
        [
            "customresourcedefinition.apiextensions.k8s.io/lbnodeagents.purelb.io",
            "customresourcedefinition.apiextensions.k8s.io/servicegroups.purelb.io"
        ]
    );
    for kind in ["clusterrole", "clusterrolebinding"] {
        let out = kubectl(lab, &["get", kind, "-o", "name"]);
        assert!(!out.contains("purelb"), "{kind} left: {out}");
    }
    test.cleanup().await.unwrap();
    release_ns.cleanup().await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
