//! The node Lease: how this agent tells the others it is alive and which LAN it is on, and how it judges
//! theirs.
//!
//! - One `coordination.k8s.io/v1` Lease per node, `purelb-node-<node>` in the install namespace, labelled
//!   [`LEASE_LABEL`], written only by that node's agent (server-side apply, field manager
//!   `purelb-lbnodeagent`): `holderIdentity: <node>`, `leaseDurationSeconds`, `renewTime`, and the
//!   annotations [`SUBNETS_ANNOTATION`] (the LAN interface's subnets, comma-separated CIDRs, host bits
//!   masked, IPv4 and IPv6) and [`INTERFACE_ANNOTATION`] (the LAN interface's name). [`Renewer`] renews
//!   it every `--lease-renew-ms`, and at once when the configuration changes. When the kernel cannot be
//!   read, the Lease keeps the LAN it last named (only an answer that no interface is usable empties
//!   it). Node names longer than 241 characters do not fit in a Lease name and are not supported.
//! - [`NodeLeases`] turns the watched Leases into `NodeFacts`. Another node is live while its Lease
//!   keeps changing: `purelb_core::lease::LeaseObservation` on this process's monotonic clock, never
//!   comparing the writer's `renewTime` with our clock. This node is live while its own last successful
//!   renewal is younger than the Lease duration (measured from when the write was sent, so it expires
//!   here no later than the others see it expire). A node without a Lease is not live.
//! - Fail-static (the rule: silence from the API server is never evidence that an address should move;
//!   only positive evidence is: another node's valid Lease and announcement, a deleted Lease, a deleted
//!   Service, a changed group). This node is always live in its own eyes: a failed renewal withdraws
//!   nothing (the other nodes judge our Lease; if they take an address over while we are cut off, their
//!   gratuitous ARP / NA tells us, see `conflict`). Another node's Lease unchanged for its duration is
//!   expired only when proven so ([`NodeLeases::wants_proof`], `proven`): one of our own renewals,
//!   sent after that Lease's deadline, has come back through the watch — the watch delivers the
//!   namespace's Lease changes in order, so had the other node renewed before it, we would have seen
//!   it. An API server that is paused, or our path to it cut, proves nothing, so nothing expires. When
//!   a Lease passes its deadline the announcer asks the renewer to renew at once, so the proof costs no
//!   more than one API round trip. When this agent has not seen its own Lease change for a whole
//!   duration its view is stale ([`NodeLeases::stale`]): the time spent stale does not count towards
//!   the other Leases' expiry (their observations restart), so after the API returns each node has a
//!   whole duration to renew before anyone takes its addresses.
//! - This node's facts come from what its renewer last published successfully ([`Renewal`]), not from
//!   the watched copy of its Lease, so a stale or re-listed watch never changes its own eligibility.
//! - The LAN interface: when the kernel no longer shows a usable LAN (interface down, default route
//!   gone, addresses flushed by a link flap) and the configuration did not change, the Lease keeps the
//!   LAN it last named, and says so (log, `purelb_agent_lan_kept`). A restarted agent that finds no LAN
//!   takes the one its own Lease still names. Only a changed configuration (LBNodeAgent) publishes a
//!   smaller or empty LAN.
//!
//! Exposes [`Renewal`], [`LanFacts`], [`lease_body`], [`duration_seconds`] and [`delete`] here;
//! [`NodeLeases`] (the other nodes' Leases, judged) in `peers`; [`Renewer`] and `KnownLan` (this
//! node's Lease, renewed) in `renew`.

mod peers;
mod renew;

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams};
use purelb_core::pool::Subnet;
use serde_json::json;

pub use peers::NodeLeases;
pub use purelb_core::api::node_lease::{
    INTERFACE_ANNOTATION, LEASE_LABEL, LEASE_PREFIX, SUBNETS_ANNOTATION, format_subnets, lease_name,
    parse_subnets,
};
pub use renew::Renewer;

/// Field manager of the Lease writes.
pub const MANAGER: &str = purelb_core::api::AGENT_COMPONENT;

/// A successful renewal: when it was sent and the LAN it published.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Renewal {
    /// When the write was sent.
    pub at: Instant,
    /// The resourceVersion the API server gave it.
    pub version: String,
    /// The LAN the Lease names.
    pub lan: LanFacts,
}

/// The LAN as this node reports it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LanFacts {
    /// The LAN interface; empty when none is usable.
    pub interface: String,
    /// Its subnets.
    pub subnets: Vec<Subnet>,
}

/// The server-side apply body of `node`'s Lease.
pub fn lease_body(
    node: &str,
    namespace: &str,
    lan: &LanFacts,
    duration: Duration,
    acquired: &MicroTime,
) -> serde_json::Value {
    json!({
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {
            "name": lease_name(node),
            "namespace": namespace,
            "labels": {LEASE_LABEL.0: LEASE_LABEL.1},
            "annotations": {
                SUBNETS_ANNOTATION: format_subnets(&lan.subnets),
                INTERFACE_ANNOTATION: lan.interface,
            },
        },
        "spec": {
            "holderIdentity": node,
            "leaseDurationSeconds": duration_seconds(duration),
            "acquireTime": acquired,
            "renewTime": MicroTime(Timestamp::now()),
        },
    })
}

/// `leaseDurationSeconds` for a duration: whole seconds, rounded up, at least 1.
pub fn duration_seconds(d: Duration) -> i32 {
    i32::try_from(d.as_millis().div_ceil(1000)).unwrap_or(i32::MAX).max(1)
}

/// Deletes this node's Lease (after the addresses were withdrawn) so the next winner takes over at
/// once. Best effort, bounded by `timeout`.
pub async fn delete(api: &Api<Lease>, node: &str, timeout: Duration) {
    let name = lease_name(node);
    match tokio::time::timeout(timeout, api.delete(&name, &DeleteParams::default())).await {
        Ok(Ok(_)) => tracing::info!(lease = %name, "deleted the node Lease"),
        Ok(Err(kube::Error::Api(e))) if e.code == 404 => {}
        Ok(Err(e)) => tracing::warn!(error = %e, lease = %name, "could not delete the node Lease"),
        Err(_) => tracing::warn!(lease = %name, "deleting the node Lease timed out"),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn subnets_round_trip_and_bad_entries_are_reported() {
        let (s, bad) = parse_subnets(" 192.0.2.7/24, 2001:db8:0:1::11/64,,nonsense,192.0.2.0/24");
        assert_eq!(format_subnets(&s), "192.0.2.0/24,2001:db8:0:1::/64");
        assert_eq!(bad, ["nonsense"]);
        assert_eq!(parse_subnets(""), (vec![], vec![]));
    }

    #[test]
    fn lease_duration_rounds_up_to_seconds() {
        assert_eq!(duration_seconds(Duration::from_millis(4000)), 4);
        assert_eq!(duration_seconds(Duration::from_millis(2500)), 3);
        assert_eq!(duration_seconds(Duration::from_millis(10)), 1);
    }

    #[test]
    fn lease_body_carries_annotations_and_holder() {
        let lan = LanFacts { interface: "eth0".into(), subnets: parse_subnets("192.0.2.0/24").0 };
        let b =
            lease_body("node1", "purelb-system", &lan, Duration::from_secs(4), &MicroTime(Timestamp::now()));
        assert_eq!(b["metadata"]["name"], "purelb-node-node1");
        assert_eq!(b["metadata"]["annotations"][SUBNETS_ANNOTATION], "192.0.2.0/24");
        assert_eq!(b["metadata"]["annotations"][INTERFACE_ANNOTATION], "eth0");
        assert_eq!(b["metadata"]["labels"][LEASE_LABEL.0], LEASE_LABEL.1);
        assert_eq!(b["spec"]["holderIdentity"], "node1");
        assert_eq!(b["spec"]["leaseDurationSeconds"], 4);
    }
}
