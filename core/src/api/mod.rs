//! The user-facing contract: CRD types of group `purelb.io` version `v1`, the annotation keys PureLB
//! reads and writes, the load balancer class, event reasons and condition types/reasons.

mod lb_node_agent;
pub mod node_lease;
#[cfg(test)]
pub(crate) mod proptests;
mod service_group;

pub use lb_node_agent::{DEFAULT_EXTLBINT, DEFAULT_LOCALINT, LBNodeAgent, LBNodeAgentLocal, LBNodeAgentSpec};
pub use service_group::{
    DeclaredFamily, ParsedPool, PoolSpec, PoolSpecError, ServiceGroup, ServiceGroupLocal, ServiceGroupSpec,
    ServiceGroupStatus,
};

/// The API group of PureLB's CRDs.
pub const GROUP: &str = "purelb.io";
/// The `apiVersion` of PureLB's CRDs.
pub const API_VERSION: &str = "purelb.io/v1";
/// The prefix of every annotation (and label) PureLB reads or writes.
pub const ANNOTATION_PREFIX: &str = "purelb.io/";
/// The `spec.loadBalancerClass` PureLB answers to.
pub const LOAD_BALANCER_CLASS: &str = "purelb.io/purelb";
/// The group used when a Service names none.
pub const DEFAULT_GROUP: &str = "default";
/// Value of [`annotations::ALLOCATED_BY`].
pub const ALLOCATED_BY_VALUE: &str = "PureLB";
/// Event source component of the allocator.
pub const ALLOCATOR_COMPONENT: &str = "purelb-allocator";
/// Event source component of the node agent.
pub const AGENT_COMPONENT: &str = "purelb-lbnodeagent";
/// The Node label that keeps a node out of load-balancer announcements (Kubernetes' own).
pub const EXCLUDE_LABEL: &str = "node.kubernetes.io/exclude-from-external-load-balancers";

/// The objects an install creates (the manifests in `deploy/`, the chart, `kubectl purelb install`), by
/// the names the daemons and the plugin look them up with.
pub mod install {
    /// The namespace PureLB is installed in unless told otherwise.
    pub const DEFAULT_NAMESPACE: &str = "purelb-system";
    /// The allocator's Deployment and ServiceAccount, and its leader-election Lease.
    pub const ALLOCATOR: &str = "purelb-allocator";
    /// The agents' DaemonSet and ServiceAccount.
    pub const AGENT: &str = "purelb-agent";
}

/// Annotation keys, read (user) and written (PureLB).
pub mod annotations {
    /// User: the ServiceGroup to allocate from.
    pub const SERVICE_GROUP: &str = "purelb.io/service-group";
    /// User: sharing key; Services with the same key may share an address on disjoint ports.
    pub const ALLOW_SHARED_IP: &str = "purelb.io/allow-shared-ip";
    /// User: requested addresses, a comma list of at most one IPv4 and one IPv6 address.
    pub const ADDRESSES: &str = "purelb.io/addresses";
    /// Written: `PureLB` on every Service whose address PureLB allocated.
    pub const ALLOCATED_BY: &str = "purelb.io/allocated-by";
    /// Written: the ServiceGroup the address came from.
    pub const ALLOCATED_FROM: &str = "purelb.io/allocated-from";
    /// Written by the agent: `<node>, <interface>` announcing the local IPv4 address.
    pub const ANNOUNCING_IPV4: &str = "purelb.io/announcing-IPv4";
    /// Written by the agent: `<node>, <interface>` announcing the local IPv6 address.
    pub const ANNOUNCING_IPV6: &str = "purelb.io/announcing-IPv6";

    /// Every annotation PureLB reads or writes on Services.
    pub const ALL: [&str; 7] = [
        SERVICE_GROUP,
        ALLOW_SHARED_IP,
        ADDRESSES,
        ALLOCATED_BY,
        ALLOCATED_FROM,
        ANNOUNCING_IPV4,
        ANNOUNCING_IPV6,
    ];
}

/// Event reasons (the `reason` field of Kubernetes events).
pub mod events {
    /// Normal: `Assigned IP <ip> from pool <group>`.
    pub const IP_ALLOCATED: &str = "IPAllocated";
    /// Normal: the Service no longer holds a PureLB address.
    pub const IP_RELEASED: &str = "IPReleased";
    /// Warning: the allocation failed; the message says why and what to change.
    pub const ALLOCATION_FAILED: &str = "AllocationFailed";
    /// Warning: two Services claim one address without a valid share.
    pub const ADDRESS_CONFLICT: &str = "AddressConflict";
    /// Warning: a ServiceGroup is unusable (duplicate name, invalid pool).
    pub const INVALID_SERVICE_GROUP: &str = "InvalidServiceGroup";
    /// Normal (agent): `Node <node> announcing <ip> on interface <if>`.
    pub const ANNOUNCING_LOCAL: &str = "AnnouncingLocal";
    /// Normal (agent): `Announcing <ip> from node <node> interface kube-lb0`.
    pub const ANNOUNCING_NON_LOCAL: &str = "AnnouncingNonLocal";
    /// Warning (agent): a local address's `externalTrafficPolicy: Local` was reset to `Cluster`.
    pub const TRAFFIC_POLICY_RESET: &str = "ExternalTrafficPolicyReset";
    /// Warning (agent): an LBNodeAgent cannot be used (e.g. `localint` does not compile); the previous
    /// configuration stays.
    pub const INVALID_LB_NODE_AGENT: &str = "InvalidLBNodeAgent";
    /// Normal (agent, on its Node; allocator, on its leader Lease): the daemon reaches the API server
    /// again after running on its last known state (fail-static), and for how long it did.
    pub const API_SERVER_REACHABLE: &str = "APIServerReachable";

    /// Every event reason PureLB emits (the README's reference is checked against this list).
    pub const ALL: [&str; 10] = [
        IP_ALLOCATED,
        IP_RELEASED,
        ALLOCATION_FAILED,
        ADDRESS_CONFLICT,
        INVALID_SERVICE_GROUP,
        ANNOUNCING_LOCAL,
        ANNOUNCING_NON_LOCAL,
        TRAFFIC_POLICY_RESET,
        INVALID_LB_NODE_AGENT,
        API_SERVER_REACHABLE,
    ];
}

/// Service status condition types written by PureLB.
pub mod conditions {
    /// The allocator's decision: `True` with reason `Allocated`, or `False` with a failure reason.
    pub const ALLOCATED: &str = "purelb.io/Allocated";
    /// The agents' announcement state.
    pub const ANNOUNCED: &str = "purelb.io/Announced";

    /// Every Service condition type PureLB writes.
    pub const ALL: [&str; 2] = [ALLOCATED, ANNOUNCED];

    /// [`ANNOUNCED`] reason: every address is announced by some node.
    pub const ANNOUNCED_REASON: &str = "Announced";
    /// [`ANNOUNCED`] reason: some address is announced by no node.
    pub const NOT_ANNOUNCED_REASON: &str = "NotAnnounced";

    /// The ServiceGroup condition the allocator writes: `True` with reason [`GROUP_VALID`] when it uses
    /// the group, `False` with `InvalidServiceGroup` or `DuplicateServiceGroup`.
    pub const GROUP_VALID: &str = "Valid";
}

#[cfg(test)]
mod reference_tests;
