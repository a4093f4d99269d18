//! The README's first command, end to end: `purelb-lab up` (what `scripts/lab-up.sh` execs after
//! building) brings up its own control plane, three nodes and a router, installs PureLB with
//! `kubectl purelb install`, gives the seed's `echoserver-service` an address from the `default` group,
//! prints the answer a client behind the router got from an echoserver pod through that address (and the
//! `curl` that gets it), `kubectl purelb explain` for it and the commands to look around; every printed
//! command works
//! (the kubeconfig, `ip netns exec <node>`, the router's `birdc` socket), the address is on `kube-lb0` of
//! all three nodes and the router routes it via all three; SIGTERM stops everything and removes the lab's
//! network namespaces. Without root, `scripts/lab-up.sh` and `purelb-lab up` say they need it and stop.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The seed's first example: the lowest address of examples/servicegroup-default.yaml's pool.
const ADDRESS: &str = "172.30.250.53";

/// What `purelb-lab up` printed up to "the lab is up" and the commands after it.
struct Printed {
    all: String,
    kubeconfig: String,
    node_netns: Vec<String>,
    router_socket: String,
}

/// Reads the child's stdout until the last line of the "how to play" block (the `Stop:` line), at most
/// `timeout`; every line read is kept for failure messages.
fn read_until_up(lines: &mpsc::Receiver<String>, timeout: Duration) -> Printed {
    let deadline = Instant::now() + timeout;
    let mut all = String::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) => {
                all.push_str(&line);
                all.push('\n');
                if line.starts_with("Stop: ") {
                    break;
                }
            }
            Err(e) => {
                panic!("purelb-lab up did not finish starting within {timeout:?} ({e}); it printed:\n{all}")
            }
        }
    }
    let after = |prefix: &str| -> Vec<String> {
        all.lines().filter_map(|l| l.trim().strip_prefix(prefix)).map(str::to_owned).collect()
    };
    let kubeconfig = after("export KUBECONFIG=").pop().expect("no `export KUBECONFIG=` line");
    let node_netns: Vec<String> = after("ip netns exec ")
        .iter()
        .filter(|rest| rest.contains("ip addr show"))
        .filter_map(|rest| rest.split_whitespace().next().map(str::to_owned))
        .collect();
    let router_socket = after("birdc -s ")
        .pop()
        .and_then(|rest| rest.split_whitespace().next().map(str::to_owned))
        .expect("no `birdc -s` line");
    Printed { all, kubeconfig, node_netns, router_socket }
}

fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program).args(args).output().unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {}: {}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn netns_list() -> String {
    run("ip", &["netns", "list"])
}

/// Polls `check` every 200 ms until it returns true or `timeout` passes; the last value it saw.
fn eventually(timeout: Duration, mut check: impl FnMut() -> (bool, String)) -> (bool, String) {
    let deadline = Instant::now() + timeout;
    loop {
        let (ok, seen) = check();
        if ok || Instant::now() >= deadline {
            return (ok, seen);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn lab_up_serves_the_echoserver_and_tears_down_on_sigterm() {
    let bin = purelb_lab::binary("purelb-lab").unwrap();
    let kubectl = purelb_lab::UpstreamBinaries::locate().unwrap().kubectl;
    let child = Command::new(&bin)
        .arg("up")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let pid = child.id();
    // Whatever happens below, the lab goes: SIGTERM first (its own clean-up), SIGKILL if it hangs.
    let mut lab = LabGuard(child);
    let stdout = lab.0.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        // Reads to the end even when the test has stopped listening, so the lab never writes to a
        // closed pipe while it cleans up.
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });

    let printed = read_until_up(&rx, Duration::from_secs(180));
    let p = &printed.all;
    for must in [
        "==> kubectl purelb install",
        &format!("Service default/echoserver-service got {ADDRESS}"),
        "==> kubectl purelb explain service/echoserver-service",
        "kubectl purelb explain service/echoserver-service",
        "get svc -A",
        // A real request from the client behind the router, through BGP and kube-proxy, to a pod.
        &format!("curl -s http://{ADDRESS}/"),
        "  answered by pod echoserver-",
    ] {
        assert!(p.contains(must), "`{must}` missing from what purelb-lab up printed:\n{p}");
    }
    // explain names the group, the address and the routed interface (the pool is not on the nodes' LAN).
    let explain = p.split("==> kubectl purelb explain").nth(1).unwrap_or_default();
    for must in [ADDRESS, "default", "kube-lb0"] {
        assert!(explain.contains(must), "explain output lacks `{must}`:\n{explain}");
    }

    // The printed kubeconfig works with kubectl and shows the Service's address.
    let svc = run(
        kubectl.to_str().unwrap(),
        &[
            "--kubeconfig",
            &printed.kubeconfig,
            "get",
            "svc",
            "echoserver-service",
            "-n",
            "default",
            "-o",
            "jsonpath={.status.loadBalancer.ingress[*].ip}",
        ],
    );
    assert_eq!(svc.trim(), ADDRESS);

    // The printed node namespaces hold the address on kube-lb0 (all three: ETP Cluster, routed pool).
    assert_eq!(printed.node_netns.len(), 3, "three `ip netns exec` lines expected:\n{p}");
    for ns in &printed.node_netns {
        let (ok, seen) = eventually(Duration::from_secs(20), || {
            let out = run("ip", &["-n", ns, "-o", "addr", "show", "dev", "kube-lb0"]);
            (out.contains(&format!("inet {ADDRESS}/24")), out)
        });
        assert!(ok, "{ADDRESS}/24 not on kube-lb0 in {ns}: {seen}");
    }
    // The printed router socket answers, and the router routes the aggregated /24 via all three nodes.
    let (ok, seen) = eventually(Duration::from_secs(30), || {
        let out = run("birdc", &["-s", &printed.router_socket, "show", "route", "for", ADDRESS, "all"]);
        let hops = out.lines().filter(|l| l.contains("via 192.0.2.")).count();
        (out.contains("172.30.250.0/24") && hops == 3, out)
    });
    assert!(ok, "router route for {ADDRESS} via 3 nodes expected:\n{seen}");

    // SIGTERM: a clean stop, nothing left behind.
    let before = netns_list();
    let prefix = format!("plb-{pid}-");
    assert!(before.contains(&prefix), "no namespace of pid {pid} in:\n{before}");
    signal(pid, "TERM");
    let (stopped, _) =
        eventually(Duration::from_secs(60), || (lab.0.try_wait().ok().flatten().is_some(), String::new()));
    assert!(stopped, "purelb-lab up still running 60 s after SIGTERM");
    let status = lab.0.wait().unwrap();
    let rest: Vec<String> = rx.try_iter().collect();
    reader.join().unwrap();
    assert!(
        status.success(),
        "purelb-lab up exited with {status}; it printed after start:\n{}",
        rest.join("\n")
    );
    assert!(rest.iter().any(|l| l == "==> lab stopped"), "no `==> lab stopped`:\n{}", rest.join("\n"));
    let after = netns_list();
    assert!(!after.contains(&prefix), "namespaces of pid {pid} left behind:\n{after}");
}

fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill").arg(format!("-{sig}")).arg(pid.to_string()).status();
}

/// Stops `purelb-lab up` if the test fails before its own SIGTERM: SIGTERM, then SIGKILL after 30 s (the
/// lab's sweeper removes namespaces whose owner died).
struct LabGuard(std::process::Child);

impl Drop for LabGuard {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_some() {
            return;
        }
        signal(self.0.id(), "TERM");
        let (stopped, _) = eventually(Duration::from_secs(30), || {
            (self.0.try_wait().ok().flatten().is_some(), String::new())
        });
        if !stopped {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Run as anyone but root, the README's first command and the binary it execs say they need root, and do
/// nothing else. (Copies of both in a directory anyone may read: the checkout may be in root's home.)
#[test]
fn lab_up_refuses_clearly_without_root() {
    use std::os::unix::fs::PermissionsExt;
    let root = purelb_lab::workspace_root();
    let dir = std::env::temp_dir().join(format!("purelb-lab-up-nonroot-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("scripts")).unwrap();
    let script = dir.join("scripts/lab-up.sh");
    let bin = dir.join("purelb-lab");
    std::fs::copy(root.join("scripts/lab-up.sh"), &script).unwrap();
    std::fs::copy(purelb_lab::binary("purelb-lab").unwrap(), &bin).unwrap();
    for p in [dir.as_path(), &dir.join("scripts"), &script, &bin] {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    for (program, arg) in [("bash", script.to_str().unwrap()), (bin.to_str().unwrap(), "up")] {
        let out = Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", program, arg])
            .current_dir("/")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{program} {arg}: {stderr}");
        assert!(stderr.contains("must run as root"), "{program} {arg} said: {stderr}");
        assert!(String::from_utf8_lossy(&out.stdout).trim().is_empty(), "{program} printed on stdout");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
