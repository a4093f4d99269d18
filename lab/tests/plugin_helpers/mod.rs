//! Helpers for the `kubectl purelb` e2e tests (plugin.rs, plugin_uninstall.rs): run the plugin binary
//! as the lab's admin, start the allocator with the token of the ServiceAccount install created, write
//! Nodes and node Leases by hand (no kubelet, no agent here), and drive a real terminal through tmux.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams, PostParams};
use purelb_lab::ControlPlane;
use serde_json::{Value, json};

/// What one run of the plugin did.
pub struct Run {
    pub code: i32,
    pub out: String,
    pub err: String,
}

impl std::fmt::Debug for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit {}\n--- stdout ---\n{}\n--- stderr ---\n{}", self.code, self.out, self.err)
    }
}

/// Runs `kubectl-purelb args` as the lab's admin (KUBECONFIG), without a terminal and without colour.
pub fn plugin(lab: &ControlPlane, args: &[&str]) -> Run {
    let bin = purelb_lab::binary("kubectl-purelb").expect("kubectl-purelb binary (cargo build --bins)");
    let out = Command::new(bin)
        .args(args)
        .env("KUBECONFIG", lab.admin_kubeconfig())
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .output()
        .expect("running kubectl-purelb");
    Run {
        code: out.status.code().unwrap_or(-1),
        out: String::from_utf8_lossy(&out.stdout).into_owned(),
        err: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `kubectl purelb <args> -o json`, parsed; panics when it fails.
pub fn explain_json(lab: &ControlPlane, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.extend(["-o", "json"]);
    let run = plugin(lab, &all);
    assert_eq!(run.code, 0, "{args:?}: {run:?}");
    serde_json::from_str(&run.out).unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}): {run:?}"))
}

/// A JSON array of strings.
pub fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_string)).collect())
        .unwrap_or_default()
}

/// An explanation without what legitimately differs between online and offline (source, notes).
pub fn comparable(mut v: Value) -> Value {
    if let Some(o) = v.as_object_mut() {
        o.remove("source");
        o.remove("notes");
    }
    v
}

/// `Kind namespace/name` of every object in deploy/*.yaml, as install reports them.
pub fn purelb_objects() -> Vec<String> {
    let deploy = purelb_lab::workspace_root().join("deploy");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(deploy).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "yaml") {
            continue;
        }
        let docs: Vec<Value> = serde_saphyr::from_multiple(&std::fs::read_to_string(&path).unwrap()).unwrap();
        for d in docs.into_iter().filter(|d| !d.is_null()) {
            let kind = d["kind"].as_str().unwrap();
            let name = d["metadata"]["name"].as_str().unwrap();
            out.push(match d["metadata"]["namespace"].as_str() {
                Some(ns) => format!("{kind} {ns}/{name}"),
                None => format!("{kind} {name}"),
            });
        }
    }
    out
}

/// Starts purelb-allocator with the token of the ServiceAccount `kubectl purelb install` created.
pub async fn start_allocator_as_installed(lab: &ControlPlane) -> purelb_lab::Child {
    let kubeconfig = lab
        .service_account_kubeconfig("purelb-system", "purelb-allocator")
        .await
        .expect("token of install's ServiceAccount");
    let port = crate::common::free_port();
    let args: Vec<String> = vec![
        "--namespace=purelb-system".into(),
        "--identity=allocator-plugin".into(),
        format!("--admin-addr=127.0.0.1:{port}"),
        "--lease-duration=3".into(),
        "--lease-renew-ms=500".into(),
    ];
    let bin = purelb_lab::binary("purelb-allocator").expect("purelb-allocator binary");
    let child = lab.spawn(&bin, &args, &kubeconfig, "allocator-plugin").expect("spawn allocator");
    crate::common::wait_ready_at(&format!("127.0.0.1:{port}"), &child).await;
    child
}

/// A Node (no kubelet: the object only) with one InternalIP address.
pub async fn create_node(client: &kube::Client, name: &str, ip: &str) {
    let nodes: Api<Node> = Api::all(client.clone());
    let node: Node =
        serde_json::from_value(json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}}))
            .unwrap();
    nodes.create(&PostParams::default(), &node).await.unwrap_or_else(|e| panic!("creating Node {name}: {e}"));
    let status = json!({"status": {"addresses": [{"type": "InternalIP", "address": ip}, {"type": "Hostname", "address": name}]}});
    nodes.patch_status(name, &PatchParams::default(), &Patch::Merge(&status)).await.unwrap();
}

/// The Lease an agent on `node` would write: holder, an hour's duration renewed now, LAN facts.
pub async fn create_node_lease(client: &kube::Client, node: &str, interface: &str, subnets: &str) {
    let leases: Api<Lease> = Api::namespaced(client.clone(), "purelb-system");
    let now = k8s_openapi::jiff::Timestamp::now();
    let lease: Lease = serde_json::from_value(json!({
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {
            "name": format!("purelb-node-{node}"),
            "labels": {"purelb.io/lease": "node"},
            "annotations": {"purelb.io/subnets": subnets, "purelb.io/interface": interface},
        },
        "spec": {
            "holderIdentity": node,
            "leaseDurationSeconds": 3600,
            "renewTime": k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(now),
        },
    }))
    .unwrap();
    leases
        .create(&PostParams::default(), &lease)
        .await
        .unwrap_or_else(|e| panic!("creating the Lease of {node}: {e}"));
}

/// The node core elects for a local `ip` among node1..node3, all live on 192.0.2.0/24.
pub fn expected_winner(ip: &str) -> String {
    let nodes: Vec<purelb_core::announce::NodeFacts> = ["node1", "node2", "node3"]
        .iter()
        .map(|n| purelb_core::announce::NodeFacts {
            name: n.to_string(),
            subnets: vec![purelb_core::pool::Subnet::parse("192.0.2.0/24").unwrap()],
            interface: "eth0".into(),
            live: true,
            excluded: false,
            shutting_down: false,
        })
        .collect();
    purelb_core::announce::elect(ip.parse().unwrap(), &nodes).winner.unwrap()
}

/// A fresh directory for a test's files.
pub fn tempdir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("purelb-plugin-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The plugin running in a real terminal: a tmux session on its own server, read with capture-pane and
/// typed into with send-keys. The server is killed on drop.
pub struct Terminal {
    socket: String,
}

impl Terminal {
    /// Starts `kubectl-purelb args` in a 200x50 terminal as the lab's admin; `EXIT=<code>` is printed
    /// when it ends.
    pub fn start(lab: &ControlPlane, args: &[&str]) -> Terminal {
        let bin = purelb_lab::binary("kubectl-purelb").unwrap();
        let socket =
            format!("purelb-test-{}-{}", std::process::id(), args.join("-").replace(['/', ' '], "_"));
        let command = format!("{} {}; echo EXIT=$?; sleep 600", bin.display(), args.join(" "));
        let status = Command::new("tmux")
            .args(["-L", &socket, "-f", "/dev/null", "new-session", "-d", "-s", "t", "-x", "200", "-y", "50"])
            .args([
                "-e",
                &format!("KUBECONFIG={}", lab.admin_kubeconfig().display()),
                "-e",
                "NO_COLOR=1",
                &command,
            ])
            .status()
            .expect("tmux (Debian package tmux) is needed for the terminal tests");
        assert!(status.success(), "tmux new-session failed");
        Terminal { socket }
    }

    /// The screen and its scrollback.
    pub fn screen(&self) -> String {
        let out = Command::new("tmux")
            .args(["-L", &self.socket, "capture-pane", "-p", "-J", "-S", "-200", "-t", "t"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Waits (30 s at most) until the screen shows `text`.
    pub fn expect(&self, text: &str) {
        let start = Instant::now();
        loop {
            let screen = self.screen();
            if screen.contains(text) {
                return;
            }
            if start.elapsed() > Duration::from_secs(30) {
                panic!("the terminal never showed {text:?}; it shows:\n{screen}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Types `keys` (no Enter).
    pub fn send_keys(&self, keys: &str) {
        assert!(
            Command::new("tmux")
                .args(["-L", &self.socket, "send-keys", "-t", "t", "-l", keys])
                .status()
                .unwrap()
                .success()
        );
    }

    /// Types `line` and Enter.
    pub fn send_line(&self, line: &str) {
        if !line.is_empty() {
            self.send_keys(line);
        }
        assert!(
            Command::new("tmux")
                .args(["-L", &self.socket, "send-keys", "-t", "t", "Enter"])
                .status()
                .unwrap()
                .success()
        );
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        let _ = Command::new("tmux").args(["-L", &self.socket, "kill-server"]).status();
    }
}
