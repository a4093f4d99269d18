//! purelb-core: every decision PureLB makes, as pure functions over plain data.
//!
//! - [`api`]: the CRD types (`ServiceGroup`, `LBNodeAgent`), annotation keys, event and condition reasons.
//! - [`pool`]: address pools (CIDRs and `a-b` ranges, IPv4 and IPv6) with O(log n) allocation.
//! - [`allocate`]: which address(es) a Service gets, from which group, and why (or why not).
//! - [`announce`]: where each address goes (local election, kube-lb0, ETP Local) and why.
//! - [`service`]: the fields of a Service every decision reads ([`service::ServiceFields`]), for the whole object
//!   and for the daemons' compact [`service::CachedService`]; a Service's key and ingress IPs.
//! - [`group`]: a ServiceGroup's key ([`group::GroupKey`]), as Services name it.
//! - [`lease`]: when a Lease held by someone else counts as expired (monotonic, skew-safe).
//!
//! Nothing here talks to the network or the API server: the allocator, the agent and the plugin feed
//! these functions the objects they watched and apply the answers.

pub mod allocate;
pub mod announce;
pub mod api;
pub mod group;
pub mod lease;
pub mod pool;
pub mod service;
