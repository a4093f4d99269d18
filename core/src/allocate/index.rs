//! [`AllocationIndex`]: the allocator's whole picture — the ServiceGroups and their pools, which Service
//! holds which address, and who shares what. Fed by watch events (`set_group`, `claim`, `commit`,
//! `release`); it does no I/O. Decisions are made from it by [`AllocationIndex::decide`] (see `decide.rs`).

use std::borrow::Borrow;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use litemap::LiteMap;

use crate::api::ServiceGroupSpec;
use crate::pool::{Family, Pool};

use super::groups::read_pools;
pub use super::groups::{GroupError, GroupState, PoolSlot};
use super::holding::share_check;
pub use super::holding::{HolderInfo, Holding, ShareRefusal};
use super::request::{ServiceKey, ServiceRequest};
use crate::group::GroupKey;

#[derive(Clone, Debug)]
struct GroupEntry {
    /// The definitions of this name, by namespace.
    specs: BTreeMap<String, ServiceGroupSpec>,
    state: GroupState,
}

/// What one Service holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Held {
    /// Its addresses, in the order they were assigned.
    pub addresses: Vec<IpAddr>,
    /// The group they came from (`allocated-from`); `None` when no group contains them any more.
    pub group: Option<GroupKey>,
}

/// A conflict found while claiming addresses Services already hold (allocator start-up, or a Service
/// someone else gave an address): the address is held by another Service without a valid share.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClaimConflict {
    /// The contested address.
    pub address: IpAddr,
    /// The Services that already hold it.
    pub holders: Vec<ServiceKey>,
    /// Why the claim is not a valid share.
    pub why: ShareRefusal,
}

/// Usage of one group, for its status and `kubectl get sg`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupUsage {
    /// The pools, comma separated.
    pub pools: String,
    /// Addresses in use.
    pub allocated: u128,
    /// Addresses free.
    pub available: u128,
}

/// The allocator's index. See the module documentation.
#[derive(Clone, Debug, Default)]
pub struct AllocationIndex {
    groups: BTreeMap<GroupKey, GroupEntry>,
    addresses: BTreeMap<IpAddr, Holding>,
    services: BTreeMap<ServiceKey, Held>,
}

// === impl AllocationIndex ===

impl AllocationIndex {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds or replaces the group `name` defined in `namespace`. Addresses already held stay held.
    pub fn set_group(&mut self, namespace: &str, name: &str, spec: &ServiceGroupSpec) {
        let entry = self
            .groups
            .entry(GroupKey::new(name))
            .or_insert_with(|| GroupEntry { specs: BTreeMap::new(), state: GroupState::Usable(Vec::new()) });
        entry.specs.insert(namespace.to_string(), spec.clone());
        self.rebuild_group(name);
    }

    /// Removes the definition of `name` in `namespace`.
    pub fn remove_group(&mut self, namespace: &str, name: &str) {
        let empty = match self.groups.get_mut(name) {
            Some(entry) => {
                entry.specs.remove(namespace);
                entry.specs.is_empty()
            }
            None => return,
        };
        if empty {
            self.groups.remove(name);
        } else {
            self.rebuild_group(name);
        }
    }

    fn rebuild_group(&mut self, name: &str) {
        let Some(entry) = self.groups.get(name) else { return };
        let state = if entry.specs.len() > 1 {
            GroupState::Duplicate(entry.specs.keys().cloned().collect())
        } else {
            match entry.specs.values().next().map(build_slots) {
                Some(Ok(mut slots)) => {
                    for slot in &mut slots {
                        for ip in self.addresses.keys() {
                            if slot.pool.contains(*ip) {
                                // The address is known to be free in a fresh pool; ignore the impossible error.
                                let _ = slot.pool.reserve(*ip);
                            }
                        }
                    }
                    GroupState::Usable(slots)
                }
                Some(Err(msg)) => GroupState::Invalid(msg),
                None => GroupState::Usable(Vec::new()),
            }
        };
        if let Some(entry) = self.groups.get_mut(name) {
            entry.state = state;
        }
    }

    /// The state of the group `name`, if any namespace defines it.
    pub fn group<Q: Ord + ?Sized>(&self, name: &Q) -> Option<&GroupState>
    where
        GroupKey: Borrow<Q>,
    {
        self.groups.get(name).map(|e| &e.state)
    }

    /// Names of every known group.
    pub fn group_names(&self) -> impl Iterator<Item = &str> {
        self.groups.keys().map(GroupKey::as_str)
    }

    /// Usage of the group `name` (None unless it is usable).
    pub fn usage<Q: Ord + ?Sized>(&self, name: &Q) -> Option<GroupUsage>
    where
        GroupKey: Borrow<Q>,
    {
        let GroupState::Usable(slots) = self.group(name)? else { return None };
        Some(GroupUsage {
            pools: slots.iter().map(|s| s.pool.config().range.to_string()).collect::<Vec<_>>().join(", "),
            allocated: slots.iter().map(|s| s.pool.in_use()).fold(0u128, u128::saturating_add),
            available: slots.iter().map(|s| s.pool.available()).fold(0u128, u128::saturating_add),
        })
    }

    /// The usable pools of every group, by group name.
    pub(super) fn usable_groups(&self) -> impl Iterator<Item = (&GroupKey, &[PoolSlot])> {
        self.groups.iter().filter_map(|(n, e)| match &e.state {
            GroupState::Usable(slots) => Some((n, slots.as_slice())),
            _ => None,
        })
    }

    /// What `key` holds.
    pub fn held(&self, key: &ServiceKey) -> Option<&Held> {
        self.services.get(key)
    }

    /// Who holds `ip`.
    pub fn holding(&self, ip: IpAddr) -> Option<&Holding> {
        self.addresses.get(&ip)
    }

    /// Every Service holding addresses.
    pub fn services(&self) -> impl Iterator<Item = (&ServiceKey, &Held)> {
        self.services.iter()
    }

    /// Addresses held under the sharing key `key`, lowest first.
    pub(super) fn shared_under(&self, key: &str) -> impl Iterator<Item = (IpAddr, &Holding)> {
        self.addresses
            .iter()
            .filter(move |(_, h)| h.sharing_key.as_deref() == Some(key))
            .map(|(ip, h)| (*ip, h))
    }

    /// Records addresses a Service already holds (status written earlier, possibly by a previous
    /// allocator). When another Service holds one of them without a valid share, nothing is recorded
    /// and the conflicts are returned.
    pub fn claim(&mut self, req: &ServiceRequest, ips: &[IpAddr]) -> Vec<ClaimConflict> {
        let mut conflicts = Vec::new();
        let mut kept = Vec::new();
        for ip in ips {
            if let Some(holding) = self.addresses.get(ip) {
                let others: Vec<ServiceKey> =
                    holding.holders.keys().filter(|k| **k != req.key).cloned().collect();
                if !others.is_empty()
                    && let Err(why) = share_check(holding, req, &others)
                {
                    conflicts.push(ClaimConflict { address: *ip, holders: others, why });
                    continue;
                }
            }
            kept.push(*ip);
        }
        // All or nothing: a Service in conflict holds none of its addresses in the index.
        if !conflicts.is_empty() {
            return conflicts;
        }
        // The group PureLB recorded on the Service (`allocated-from`), as it was before a restart (the
        // group's pools may have been edited since; `explain` reports a record that names a group other
        // than the one the addresses lie in); else the group that contains the address; when none does
        // (any more), the one the Service asks for, so that the address is kept rather than renumbered.
        let recorded = req.allocated_from.clone();
        let group = recorded.unwrap_or_else(|| {
            kept.first().and_then(|ip| self.group_of(*ip, &req.group)).unwrap_or_else(|| req.group.clone())
        });
        self.record(req, &kept, Some(group));
        conflicts
    }

    /// Applies a decision taken by [`AllocationIndex::decide`] for `req`: on success `req.key` holds
    /// exactly the decided addresses; on failure it keeps [`Decision::kept`](super::Decision::kept)
    /// (what it held, less what it may no longer hold), recorded with its current ports and policy.
    pub fn apply(&mut self, req: &ServiceRequest, decision: &super::Decision) {
        match &decision.outcome {
            Ok(assignments) => {
                let ips: Vec<IpAddr> = assignments.iter().map(|a| a.address).collect();
                self.commit(req, &ips, decision.group());
            }
            Err(_) => {
                let group = self.services.get(&req.key).and_then(|h| h.group.clone());
                self.record(req, &decision.kept, group);
            }
        }
    }

    /// For a Service whose request cannot be read (`req` is [`ServiceRequest::lenient`]): it keeps what
    /// it holds, less what it may no longer share under what can still be read, recorded with the key,
    /// ports and policy it has now. Returns what it keeps.
    pub fn keep(&mut self, req: &ServiceRequest) -> Vec<IpAddr> {
        let Some(held) = self.services.get(&req.key).cloned() else { return Vec::new() };
        let kept: Vec<IpAddr> =
            held.addresses.iter().copied().filter(|ip| self.still_shareable(req, *ip).is_ok()).collect();
        self.record(req, &kept, held.group);
        kept
    }

    /// Records the outcome of a successful decision: `req.key` now holds exactly `ips`, from `group`.
    pub fn commit(&mut self, req: &ServiceRequest, ips: &[IpAddr], group: Option<&GroupKey>) {
        self.record(req, ips, group.cloned());
    }

    fn record(&mut self, req: &ServiceRequest, ips: &[IpAddr], group: Option<GroupKey>) {
        // An empty name is no group (a kept address no group contains).
        let group = group.filter(|g| !g.as_str().is_empty());
        let previous = self.services.get(&req.key).map(|h| h.addresses.clone()).unwrap_or_default();
        for ip in previous.iter().filter(|ip| !ips.contains(ip)) {
            self.drop_holder(*ip, &req.key);
        }
        if ips.is_empty() {
            self.services.remove(&req.key);
            return;
        }
        let info = HolderInfo { ports: req.ports.clone(), local_traffic_policy: req.local_traffic_policy };
        for ip in ips {
            let fresh = !self.addresses.contains_key(ip);
            // Room for one holder: most addresses have one, and an empty map would grow to four
            // (320 bytes per address).
            let holding = self.addresses.entry(*ip).or_insert_with(|| Holding {
                sharing_key: req.sharing_key.clone(),
                holders: LiteMap::with_capacity(1),
            });
            holding.holders.insert(req.key.clone(), info.clone());
            if holding.holders.len() == 1 {
                holding.sharing_key = req.sharing_key.clone();
            }
            if fresh {
                self.reserve_everywhere(*ip);
            }
        }
        self.services.insert(req.key.clone(), Held { addresses: ips.to_vec(), group });
    }

    /// Forgets everything `key` holds; returns the addresses that became free.
    pub fn release(&mut self, key: &ServiceKey) -> Vec<IpAddr> {
        let Some(held) = self.services.remove(key) else { return Vec::new() };
        held.addresses.into_iter().filter(|ip| self.drop_holder(*ip, key)).collect()
    }

    /// Removes `key` from the holders of `ip`; true when the address became free.
    fn drop_holder(&mut self, ip: IpAddr, key: &ServiceKey) -> bool {
        let Some(holding) = self.addresses.get_mut(&ip) else { return false };
        holding.holders.remove(key);
        if !holding.holders.is_empty() {
            return false;
        }
        self.addresses.remove(&ip);
        for entry in self.groups.values_mut() {
            if let GroupState::Usable(slots) = &mut entry.state {
                for slot in slots.iter_mut().filter(|s| s.pool.contains(ip)) {
                    slot.pool.release(ip);
                }
            }
        }
        true
    }

    fn reserve_everywhere(&mut self, ip: IpAddr) {
        for entry in self.groups.values_mut() {
            if let GroupState::Usable(slots) = &mut entry.state {
                for slot in slots.iter_mut().filter(|s| s.pool.contains(ip)) {
                    // InUse cannot happen for an address not yet in the index; nothing to do either way.
                    let _ = slot.pool.reserve(ip);
                }
            }
        }
    }

    /// The group an address belongs to: `preferred` when it contains it, else the first that does.
    pub(super) fn group_of(&self, ip: IpAddr, preferred: &GroupKey) -> Option<GroupKey> {
        let contains = |slots: &[PoolSlot]| slots.iter().any(|s| s.pool.contains(ip));
        if let Some(GroupState::Usable(slots)) = self.group(preferred)
            && contains(slots)
        {
            return Some(preferred.clone());
        }
        self.usable_groups().find(|(_, slots)| contains(slots)).map(|(n, _)| n.clone())
    }

    /// The pools of `family` among `slots`.
    pub(super) fn family_slots(slots: &[PoolSlot], family: Family) -> impl Iterator<Item = &PoolSlot> {
        slots.iter().filter(move |s| s.pool.config().range.family() == family)
    }

    /// Every address held, with its holders (used by `explain` and by tests).
    pub fn addresses(&self) -> impl Iterator<Item = (&IpAddr, &Holding)> {
        self.addresses.iter()
    }

    /// Namespaces that define `name`.
    pub fn group_namespaces<Q: Ord + ?Sized>(&self, name: &Q) -> BTreeSet<String>
    where
        GroupKey: Borrow<Q>,
    {
        self.groups.get(name).map(|e| e.specs.keys().cloned().collect()).unwrap_or_default()
    }
}

/// Reads every pool of a group spec; the error (the first pool that cannot be used) names the field and
/// the rule broken.
fn build_slots(spec: &ServiceGroupSpec) -> Result<Vec<PoolSlot>, GroupError> {
    let mut slots = Vec::new();
    for read in read_pools(spec)? {
        let config = read.usable()?.clone();
        slots.push(PoolSlot { field: read.field, pool: Pool::new(config) });
    }
    Ok(slots)
}
