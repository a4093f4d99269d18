//! An LBNodeAgent changes what running agents do, at the kernel and on the wire (real namespaces, real
//! agents): with the defaults a local address goes on the elected node's eth0 with a gratuitous ARP and a
//! routed one on kube-lb0 of every node; `extlbint: lb-ext` moves routed addresses to that interface;
//! `sendgarp: false` adds a new local address without any gratuitous ARP; a `localint` that names no
//! interface leaves no node with a LAN, so the former local addresses are no longer local — and not
//! routed either, since their prefix (the LAN's /24) overlaps a subnet connected on every node (routing
//! it would hijack the LAN): they are announced nowhere — while routed ones stay on `extlbint`;
//! deleting the LBNodeAgent brings the defaults back. Until then, no version of any node Lease
//! fails to name eth0 and its subnet (a reconcile's listing once collided with the renewer's, and the
//! Lease said "no LAN"). The LBNodeAgent applies to every agent of the namespace, so this file has its
//! own lab and network.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use std::sync::{Arc, Mutex};

use common::*;
use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Service;
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::watcher;
use purelb_core::api::node_lease::{INTERFACE_ANNOTATION, LEASE_LABEL, SUBNETS_ANNOTATION};
use purelb_core::api::{LBNodeAgent, annotations};
use purelb_lab::{Network, NetworkConfig, TestNamespace, shared};

const NODES: [&str; 2] = ["node1", "node2"];

fn lbnodeagent(localint: &str, extlbint: &str, sendgarp: bool) -> String {
    format!(
        "apiVersion: purelb.io/v1\nkind: LBNodeAgent\nmetadata:\n  name: default\n  namespace: purelb-system\n\
         spec:\n  local:\n    localint: '{localint}'\n    extlbint: {extlbint}\n    sendgarp: {sendgarp}\n"
    )
}

/// Whether the capture holds a gratuitous ARP for `ip`.
fn garp_seen(capture: &Capture, ip: &str) -> bool {
    capture.text().contains(&format!("Request who-has {ip} tell {ip}"))
}

#[tokio::test]
async fn lbnodeagent_settings_take_effect_on_running_agents() {
    let lab = shared().await;
    let _allocator = start_allocator(lab, "settings-allocator", &[], true).await;
    let net = Network::create(lab, NetworkConfig { nodes: 2, ..Default::default() }).await.expect("network");
    // The operator's own interface for routed addresses, present on every node (an ifb: this kernel has
    // no dummy links).
    for n in net.nodes() {
        for args in [["link", "add", "lb-ext", "type", "ifb"].as_slice(), &["link", "set", "lb-ext", "up"]] {
            let out = n.command("ip").args(args).output().unwrap();
            assert!(out.status.success(), "ip {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        }
    }
    let agents = start_agents(lab, &net, &NODES).await;
    let client = lab.admin_client().await.unwrap();
    // Every version of the node Leases, from here on: until localint names no interface, each must name
    // eth0 and its subnets (a Lease saying "no LAN" even once moves local addresses off that node).
    let lease_log = LeaseLog::start(&client);
    let ns = TestNamespace::new(&client, "settings").await.unwrap();
    create_group(
        &client,
        ns.name(),
        &group("s-local", Some(("192.0.2.0/24", "192.0.2.240-192.0.2.249", "default")), None),
    )
    .await;
    create_group(
        &client,
        ns.name(),
        &group("s-routed", Some(("203.0.113.0/24", "203.0.113.0/28", "/32")), None),
    )
    .await;
    let api: Api<Service> = Api::namespaced(client.clone(), ns.name());
    let routed_everywhere = |interface: &'static str| -> Vec<(&'static str, &'static str, u8)> {
        NODES.iter().map(|n| (*n, interface, 32)).collect()
    };

    // Defaults (no LBNodeAgent): local on the winner's eth0, announced with a gratuitous ARP; routed on
    // kube-lb0 of both nodes.
    let capture = Capture::start(&net);
    tokio::time::sleep(Duration::from_millis(300)).await;
    create(&api, &lb_service("l1", 80, &[(annotations::SERVICE_GROUP, "s-local")], "")).await;
    create(&api, &lb_service("r1", 80, &[(annotations::SERVICE_GROUP, "s-routed")], "")).await;
    let l1 = ingress(&wait_ingress(&api, "l1", 1).await)[0].clone();
    let r1 = ingress(&wait_ingress(&api, "r1", 1).await)[0].clone();
    let l1_holders = wait_one_holder(&net, &l1).await;
    wait_holders(&net, &r1, &routed_everywhere("kube-lb0")).await;
    wait_until("a gratuitous ARP for l1 with the defaults", || garp_seen(&capture, &l1)).await;
    drop(capture);

    // extlbint: lb-ext, sendgarp: false. Routed addresses move to lb-ext (and leave kube-lb0).
    lab.apply_yaml(&lbnodeagent("default", "lb-ext", false), "lbnodeagent").await.unwrap();
    wait_holders(&net, &r1, &routed_everywhere("lb-ext")).await;
    // The same settings object carries sendgarp: a new local address, and no gratuitous ARP for it.
    let capture = Capture::start(&net);
    tokio::time::sleep(Duration::from_millis(300)).await;
    create(&api, &lb_service("l2", 80, &[(annotations::SERVICE_GROUP, "s-local")], "")).await;
    let l2 = ingress(&wait_ingress(&api, "l2", 1).await)[0].clone();
    wait_one_holder(&net, &l2).await;
    // The agents send theirs within 3 x 50 ms of adding the address; wait well past that.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!garp_seen(&capture, &l2), "sendgarp: false, yet a gratuitous ARP for {l2}:\n{}", capture.text());
    drop(capture);
    // The local address that was already there stayed where it was.
    assert_eq!(holders(&net, &l1).await, l1_holders);

    lease_log.assert_every_version_names_the_lan();

    // localint that names no interface: no node has a LAN, so no address is local any more; the former
    // local ones would be routed with their group's default aggregation, the LAN's /24, which overlaps
    // eth0's subnet on every node: refused, so they are on no interface at all (none stays on eth0, none
    // goes on lb-ext), while the routed one stays on lb-ext.
    lab.apply_yaml(&lbnodeagent("wlan[0-9]+", "lb-ext", false), "lbnodeagent").await.unwrap();
    wait_holders(&net, &l1, &[]).await;
    wait_holders(&net, &l2, &[]).await;
    wait_holders(&net, &r1, &routed_everywhere("lb-ext")).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(holders(&net, &l1).await, vec![], "{l1} must not be routed: its /24 is the LAN");

    // Deleting it brings the defaults back: local on one eth0 again, routed on kube-lb0.
    let agents_api: Api<LBNodeAgent> = Api::namespaced(client.clone(), "purelb-system");
    agents_api.delete("default", &Default::default()).await.unwrap();
    wait_holders(&net, &r1, &routed_everywhere("kube-lb0")).await;
    // The nodes' LANs return a moment apart and each node knows its own at once but the other's only
    // through the watch, so for a moment both may elect themselves (and both report). Once the holder
    // and the Service's announcing annotation (the sticky election's incumbent) have agreed for a whole
    // second, the election has settled, and then the address stays put.
    for (name, ip) in [("l1", &l1), ("l2", &l2)] {
        let agreed = || async {
            let h = holders(&net, ip).await;
            let svc = api.get(name).await.map_err(|e| e.to_string())?;
            let says = svc.annotations().get(annotations::ANNOUNCING_IPV4).cloned().unwrap_or_default();
            match h.as_slice() {
                [(node, iface, 24)] if iface == "eth0" && says == format!("{node}, eth0") => Ok(h.clone()),
                _ => Err(format!("held {h:?}, annotation {says:?}")),
            }
        };
        let settled = purelb_lab::wait_for(
            &format!("{name}'s holder and annotation agree for 1 s"),
            Duration::from_secs(30),
            || async {
                let first = agreed().await?;
                tokio::time::sleep(Duration::from_secs(1)).await;
                let then = agreed().await?;
                if then == first { Ok(then) } else { Err(format!("{first:?} then {then:?}")) }
            },
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(holders(&net, ip).await, settled, "{name} moved after its election settled");
    }

    ns.cleanup().await.unwrap();
    for a in agents {
        a.child.terminate().await.unwrap();
    }
}

/// Waits until exactly one node holds `ip`, on eth0 with the LAN's /24; returns the holders.
async fn wait_one_holder(net: &Network, ip: &str) -> Vec<(String, String, u8)> {
    let what = format!("{ip} on exactly one node's eth0");
    purelb_lab::wait_for(&what, Duration::from_secs(30), || async move {
        let h = holders(net, ip).await;
        (h.len() == 1 && h[0].1 == "eth0" && h[0].2 == 24).then_some(h)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"))
}

async fn wait_until(what: &str, mut check: impl FnMut() -> bool) {
    purelb_lab::wait_for(what, Duration::from_secs(10), || {
        let ok = check();
        async move { ok.then_some(()) }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
}

/// The node Leases' versions as a watch delivers them: (Lease, interface annotation, subnets annotation).
struct LeaseLog {
    seen: Arc<Mutex<Vec<(String, String, String)>>>,
    task: tokio::task::JoinHandle<()>,
}

impl LeaseLog {
    fn start(client: &kube::Client) -> LeaseLog {
        let api: Api<Lease> = Api::namespaced(client.clone(), "purelb-system");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let task = tokio::spawn(async move {
            let (key, value) = LEASE_LABEL;
            let config = watcher::Config::default().labels(&format!("{key}={value}"));
            let mut events = watcher(api, config).boxed();
            while let Some(event) = events.next().await {
                let (watcher::Event::Apply(lease) | watcher::Event::InitApply(lease)) = event.unwrap() else {
                    continue;
                };
                let a = lease.annotations();
                let get = |k: &str| a.get(k).cloned().unwrap_or_default();
                log.lock().unwrap().push((
                    lease.name_any(),
                    get(INTERFACE_ANNOTATION),
                    get(SUBNETS_ANNOTATION),
                ));
            }
        });
        LeaseLog { seen, task }
    }

    fn assert_every_version_names_the_lan(&self) {
        let seen = self.seen.lock().unwrap();
        assert!(seen.len() >= NODES.len(), "the watch saw only {seen:?}");
        for (lease, interface, subnets) in seen.iter() {
            assert!(
                interface == "eth0" && subnets.contains("192.0.2.0/24"),
                "{lease} said interface {interface:?}, subnets {subnets:?}; every version seen: {seen:?}"
            );
        }
    }
}

impl Drop for LeaseLog {
    fn drop(&mut self) {
        self.task.abort();
    }
}
