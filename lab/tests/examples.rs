//! The examples/ files do what their comments and the README say, applied with the lab's kubectl against
//! a lab with the allocator running: dual-stack (one address of each family, in ipFamilies order, from the
//! `dualstack` group), sharing (two Services, one address), `purelb.io/addresses` (exactly the pair
//! asked for), IPv6 single-stack, `allocateLoadBalancerNodePorts: false`, `loadBalancerClass`, and the
//! LBNodeAgent example (accepted, and equal to the defaults). The BIRD router example is checked by
//! `bird -p` (a parse; BIRD is a lab prerequisite). The seed's own examples are applied verbatim by the
//! allocator and agent tests.
//!
//! One lab for the file; the examples' own addresses (198.51.100.10-19, 2001:db8:100::10-1f) are used by
//! no other example, and each test runs in its own namespace.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;

use common::*;
use k8s_openapi::api::core::v1::Service;
use kube::api::Api;
use purelb_lab::{ControlPlane, TestNamespace, shared};
use tokio::sync::OnceCell;

static SETUP: OnceCell<Allocator> = OnceCell::const_new();

/// The lab with deploy/ installed, the allocator running and examples/servicegroup-dualstack.yaml applied.
async fn lab() -> &'static ControlPlane {
    let lab = shared().await;
    SETUP
        .get_or_init(|| async {
            let allocator = start_allocator(lab, "examples-allocator", &[], true).await;
            let file = example("servicegroup-dualstack.yaml");
            kubectl(lab, &["apply", "-f", file.to_str().unwrap()]);
            allocator
        })
        .await;
    lab
}

fn apply_in(lab: &ControlPlane, ns: &str, file: &Path) -> String {
    kubectl(lab, &["apply", "-n", ns, "-f", file.to_str().unwrap()])
}

/// Whether `ip` is in the dualstack group's IPv4 pool, 198.51.100.10-198.51.100.19.
fn in_v4_pool(ip: &std::net::IpAddr) -> bool {
    matches!(ip, std::net::IpAddr::V4(v4) if v4.octets()[..3] == [198, 51, 100] && (10..=19).contains(&v4.octets()[3]))
}

fn annotation(svc: &Service, key: &str) -> Option<String> {
    svc.metadata.annotations.as_ref()?.get(key).cloned()
}

#[tokio::test]
async fn dual_stack_example_gets_one_address_of_each_family_in_order() {
    let lab = lab().await;
    let client = lab.admin_client().await.unwrap();
    let ns = TestNamespace::new(&client, "ex-dualstack").await.unwrap();
    apply_in(lab, ns.name(), &example("dualstack-service.yaml"));
    let api: Api<Service> = Api::namespaced(client.clone(), ns.name());
    let svc = wait_ingress(&api, "dualstack", 2).await;
    // The sharing test allocates from the same group at the same time: any address of each pool.
    let ips: Vec<std::net::IpAddr> = ingress(&svc).iter().map(|s| s.parse().unwrap()).collect();
    assert!(ips[0].is_ipv4() && ips[1].is_ipv6(), "ipFamilies order is IPv4, IPv6: {ips:?}");
    assert!(in_v4_pool(&ips[0]), "{ips:?}");
    let v6: std::net::Ipv6Addr = "2001:db8:100::10".parse().unwrap();
    let last: std::net::Ipv6Addr = "2001:db8:100::1f".parse().unwrap();
    assert!(ips[1] >= std::net::IpAddr::V6(v6) && ips[1] <= std::net::IpAddr::V6(last), "{ips:?}");
    assert_eq!(annotation(&svc, "purelb.io/allocated-by").as_deref(), Some("PureLB"));
    assert_eq!(annotation(&svc, "purelb.io/allocated-from").as_deref(), Some("dualstack"));
    let cond = allocated_condition(&svc).expect("Allocated condition");
    assert_eq!((cond.status.as_str(), cond.reason.as_str()), ("True", "Allocated"), "{cond:?}");
    ns.cleanup().await.unwrap();
}

#[tokio::test]
async fn sharing_example_gives_both_services_one_address() {
    let lab = lab().await;
    let client = lab.admin_client().await.unwrap();
    let ns = TestNamespace::new(&client, "ex-sharing").await.unwrap();
    apply_in(lab, ns.name(), &example("sharing-services.yaml"));
    let api: Api<Service> = Api::namespaced(client.clone(), ns.name());
    let http = wait_ingress(&api, "web-http", 1).await;
    let https = wait_ingress(&api, "web-https", 1).await;
    assert_eq!(ingress(&http), ingress(&https), "the two Services should share one address");
    let ip: std::net::IpAddr = ingress(&http)[0].parse().unwrap();
    assert!(ip.is_ipv4(), "{ip}");
    assert!(in_v4_pool(&ip), "{ip} outside the dualstack group's v4 pool");
    for svc in [&http, &https] {
        assert_eq!(annotation(svc, "purelb.io/allocated-from").as_deref(), Some("dualstack"));
        assert_eq!(allocated_condition(svc).map(|c| c.reason), Some("Allocated".to_string()));
    }
    ns.cleanup().await.unwrap();
}

#[test]
fn bird_router_example_parses() {
    let conf = example("bird-router.conf");
    assert!(conf.is_file());
    // BIRD is a lab prerequisite (.ci/run installs bird2): missing, the test fails rather than skips.
    let out = std::process::Command::new("bird")
        .arg("-p")
        .arg("-c")
        .arg(&conf)
        .output()
        .expect("bird is not installed: run .ci/run (it installs bird2)");
    assert!(out.status.success(), "bird -p: {}", String::from_utf8_lossy(&out.stderr));
}

/// Applies `file` in a fresh namespace and waits for `name` to have `n` addresses; the namespace is
/// returned for clean-up.
async fn apply_and_wait(prefix: &str, file: &str, name: &str, n: usize) -> (TestNamespace, Service) {
    let lab = lab().await;
    let client = lab.admin_client().await.unwrap();
    let ns = TestNamespace::new(&client, prefix).await.unwrap();
    apply_in(lab, ns.name(), &example(file));
    let api: Api<Service> = Api::namespaced(client, ns.name());
    let svc = wait_ingress(&api, name, n).await;
    assert_eq!(annotation(&svc, "purelb.io/allocated-by").as_deref(), Some("PureLB"), "{file}");
    assert_eq!(annotation(&svc, "purelb.io/allocated-from").as_deref(), Some("dualstack"), "{file}");
    (ns, svc)
}

#[tokio::test]
async fn addresses_example_gets_exactly_the_requested_pair() {
    let (ns, svc) = apply_and_wait("ex-addresses", "addresses-service.yaml", "pinned", 2).await;
    assert_eq!(ingress(&svc), ["198.51.100.19", "2001:db8:100::1f"]);
    let cond = allocated_condition(&svc).expect("Allocated condition");
    assert_eq!((cond.status.as_str(), cond.reason.as_str()), ("True", "Allocated"), "{cond:?}");
    ns.cleanup().await.unwrap();
}

#[tokio::test]
async fn ipv6_example_gets_one_address_from_the_v6_pool() {
    let (ns, svc) = apply_and_wait("ex-ipv6", "ipv6-service.yaml", "ipv6-only", 1).await;
    let ip: std::net::Ipv6Addr = ingress(&svc)[0].parse().unwrap();
    let first: std::net::Ipv6Addr = "2001:db8:100::10".parse().unwrap();
    let last: std::net::Ipv6Addr = "2001:db8:100::1f".parse().unwrap();
    assert!(ip >= first && ip <= last, "{ip} outside the dualstack group's v6 pool");
    assert_eq!(ingress(&svc).len(), 1, "SingleStack: one address");
    ns.cleanup().await.unwrap();
}

#[tokio::test]
async fn no_nodeports_example_is_allocated_without_node_ports() {
    let (ns, svc) = apply_and_wait("ex-nonodeports", "no-nodeports-service.yaml", "no-nodeports", 1).await;
    assert!(in_v4_pool(&ingress(&svc)[0].parse().unwrap()), "{:?}", ingress(&svc));
    let spec = svc.spec.as_ref().unwrap();
    assert_eq!(spec.allocate_load_balancer_node_ports, Some(false));
    let ports = spec.ports.as_ref().unwrap();
    assert!(ports.iter().all(|p| p.node_port.is_none()), "no NodePort expected: {ports:?}");
    ns.cleanup().await.unwrap();
}

#[tokio::test]
async fn loadbalancerclass_example_is_purelbs() {
    let (ns, svc) = apply_and_wait("ex-class", "loadbalancerclass-service.yaml", "classy", 1).await;
    assert!(in_v4_pool(&ingress(&svc)[0].parse().unwrap()), "{:?}", ingress(&svc));
    assert_eq!(svc.spec.as_ref().unwrap().load_balancer_class.as_deref(), Some("purelb.io/purelb"));
    ns.cleanup().await.unwrap();
}

/// The LBNodeAgent example is accepted by the API server and spells out exactly the defaults the agents
/// use without one (what its comment says).
#[tokio::test]
async fn lbnodeagent_example_is_accepted_and_equals_the_defaults() {
    use purelb_core::api::{LBNodeAgent, LBNodeAgentLocal};
    let lab = lab().await;
    kubectl(lab, &["apply", "-f", example("lbnodeagent.yaml").to_str().unwrap()]);
    let client = lab.admin_client().await.unwrap();
    let api: Api<LBNodeAgent> = Api::namespaced(client, "purelb-system");
    let stored = api.get("default").await.unwrap();
    assert_eq!(stored.spec.local, Some(LBNodeAgentLocal::default()));
    api.delete("default", &Default::default()).await.unwrap();
}

/// The README's guide shows example files inline: every ```yaml block that starts with
/// `# examples/<file>` must be that file exactly, and every `*.yaml` / `*.conf` name the README gives in
/// backticks must exist in examples/ or deploy/. A copy that drifted from the tested file fails here.
#[test]
fn readme_shows_the_example_files_as_they_are() {
    let root = purelb_lab::workspace_root();
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let mut checked = 0;
    let mut rest = readme.as_str();
    while let Some(start) = rest.find("```yaml\n") {
        let body = &rest[start + "```yaml\n".len()..];
        let end = body.find("\n```").expect("unterminated ```yaml block in README.md");
        let block = &body[..end];
        rest = &body[end..];
        let Some((first, content)) = block.split_once('\n') else { continue };
        let Some(name) = first.strip_prefix("# examples/") else { continue };
        let file = std::fs::read_to_string(example(name)).unwrap_or_else(|e| panic!("examples/{name}: {e}"));
        assert_eq!(
            content,
            file.trim_end_matches('\n'),
            "README.md's copy of examples/{name} differs from the file"
        );
        checked += 1;
    }
    assert!(checked >= 4, "expected the guide to show at least 4 example files, found {checked}");
    // Inline code spans, outside fenced blocks.
    let mut prose = String::new();
    let mut fenced = false;
    for line in readme.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
        } else if !fenced {
            prose.push_str(line);
            prose.push('\n');
        }
    }
    let mut names = 0;
    for piece in prose.split('`').skip(1).step_by(2) {
        let bare = piece.trim();
        let is_file = !bare.contains(char::is_whitespace)
            && (bare.ends_with(".yaml") || bare.ends_with(".conf"))
            && !bare.contains('*');
        if !is_file {
            continue;
        }
        let found = [root.join(bare), root.join("examples").join(bare), root.join("deploy").join(bare)]
            .iter()
            .any(|p| p.is_file());
        assert!(
            found,
            "README.md names `{bare}`, which is in neither the repository root, examples/ nor deploy/"
        );
        names += 1;
    }
    assert!(names >= 10, "expected the README to name at least 10 files, found {names}");
}
