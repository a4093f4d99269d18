//! The addresses this node must hold, and what to change in the kernel to get there. Pure: no I/O.
//!
//! - [`DesiredSet`]: the union over every Service of `plan_for_node`'s placements on this node. An
//!   address shared by several Services is held while any of them still places it here. Two Services
//!   cannot place one address differently (the placement depends on the address, its pool and the
//!   nodes), except that `externalTrafficPolicy: Local` may leave it absent for one and present for the
//!   other, which the union resolves to present; if they ever differed anyway, the smallest target wins
//!   (local before non-local, then by interface and prefix), so the choice never depends on order.
//! - [`diff`]: against the addresses the agent owns in the kernel (tagged): what to delete and what to
//!   add. An owned address is kept only when it is on the desired interface with the desired prefix
//!   length; untagged addresses are never listed, so never touched.
//! - [`Announced`]: which (Service, address) pairs this node has taken up, so each take-up is reported
//!   by one event, not one per reconcile.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;

use purelb_core::allocate::ServiceKey;
use purelb_core::announce::{AddressPlan, Placement};

use crate::netlink::OwnedAddress;

/// Local (the LAN interface, one node) or non-local (the external LB interface, for routing).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// On the LAN interface: this node won the address's election.
    Local,
    /// On the external LB interface (`kube-lb0`).
    NonLocal,
}

/// Where one address goes on this node.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Target {
    /// Local or non-local.
    pub kind: Kind,
    /// The interface name.
    pub interface: String,
    /// The prefix length.
    pub prefix_len: u8,
}

impl Target {
    /// The target of a placement, None when absent.
    pub fn of(placement: &Placement) -> Option<Target> {
        match placement {
            Placement::Local { interface, prefix_len } => {
                Some(Target { kind: Kind::Local, interface: interface.clone(), prefix_len: *prefix_len })
            }
            Placement::NonLocal { interface, prefix_len } => {
                Some(Target { kind: Kind::NonLocal, interface: interface.clone(), prefix_len: *prefix_len })
            }
            Placement::Absent => None,
        }
    }
}

/// The union of every Service's placements on this node, kept up to date one Service at a time
/// ([`DesiredSet::set_service`]): each change touches only that Service's addresses.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DesiredSet {
    targets: BTreeMap<IpAddr, Target>,
    users: BTreeMap<IpAddr, BTreeMap<ServiceKey, Target>>,
    by_service: HashMap<ServiceKey, Vec<IpAddr>>,
    changed: bool,
}

impl DesiredSet {
    /// Adds one address plan of Service `svc` (absent plans add nothing).
    pub fn add(&mut self, svc: &ServiceKey, plan: &AddressPlan) {
        let Some(target) = Target::of(&plan.placement) else { return };
        let users = self.users.entry(plan.address).or_default();
        if users.get(svc) == Some(&target) {
            return;
        }
        users.insert(svc.clone(), target);
        let ips = self.by_service.entry(svc.clone()).or_default();
        if !ips.contains(&plan.address) {
            ips.push(plan.address);
        }
        self.changed = true;
        self.settle(plan.address);
    }

    /// Replaces every placement of Service `svc` with those of `plans` (none: the Service is gone or
    /// places nothing here).
    pub fn set_service(&mut self, svc: &ServiceKey, plans: &[AddressPlan]) {
        let wanted: BTreeMap<IpAddr, Target> =
            plans.iter().filter_map(|p| Some((p.address, Target::of(&p.placement)?))).collect();
        for ip in self.by_service.remove(svc).unwrap_or_default() {
            if wanted.contains_key(&ip) {
                continue;
            }
            if let Some(users) = self.users.get_mut(&ip) {
                users.remove(svc);
                if users.is_empty() {
                    self.users.remove(&ip);
                }
            }
            self.changed = true;
            self.settle(ip);
        }
        for plan in plans {
            self.add(svc, plan);
        }
        // `add` re-records the addresses it placed; keep the record of those already in place.
        let ips: Vec<IpAddr> = wanted.keys().copied().collect();
        if ips.is_empty() {
            self.by_service.remove(svc);
        } else {
            self.by_service.insert(svc.clone(), ips);
        }
    }

    /// Re-derives the target of `ip` from its users: the smallest wins, so the choice never depends on
    /// order.
    fn settle(&mut self, ip: IpAddr) {
        match self.users.get(&ip).and_then(|u| u.values().min()) {
            Some(t) => {
                self.targets.insert(ip, t.clone());
            }
            None => {
                self.targets.remove(&ip);
            }
        }
    }

    /// Whether anything changed since the last call (the kernel must be looked at).
    pub fn take_changed(&mut self) -> bool {
        std::mem::take(&mut self.changed)
    }

    /// Every desired address and where it goes.
    pub fn targets(&self) -> &BTreeMap<IpAddr, Target> {
        &self.targets
    }

    /// The Services that place `ip` here.
    pub fn users(&self, ip: &IpAddr) -> impl Iterator<Item = &ServiceKey> {
        self.users.get(ip).into_iter().flat_map(BTreeMap::keys)
    }

    /// The desired addresses of `kind` that are in `in_place`.
    pub fn in_place(&self, kind: Kind, in_place: &BTreeSet<IpAddr>) -> BTreeSet<IpAddr> {
        self.targets
            .iter()
            .filter(|(ip, t)| t.kind == kind && in_place.contains(ip))
            .map(|(ip, _)| *ip)
            .collect()
    }
}

/// What to change in the kernel.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AddressDiff {
    /// Owned addresses to delete (not desired, or on the wrong interface or prefix).
    pub delete: Vec<OwnedAddress>,
    /// Desired addresses to add.
    pub add: Vec<(IpAddr, Target)>,
    /// Desired addresses already in place.
    pub kept: BTreeSet<IpAddr>,
}

/// The changes that turn `owned` (the agent's tagged addresses) into `desired`.
pub fn diff(desired: &BTreeMap<IpAddr, Target>, owned: &[OwnedAddress]) -> AddressDiff {
    let mut out = AddressDiff::default();
    for o in owned {
        let keep = desired
            .get(&o.address)
            .is_some_and(|t| t.interface == o.interface && t.prefix_len == o.prefix_len)
            && !out.kept.contains(&o.address);
        if keep {
            out.kept.insert(o.address);
        } else {
            out.delete.push(o.clone());
        }
    }
    out.add =
        desired.iter().filter(|(ip, _)| !out.kept.contains(ip)).map(|(ip, t)| (*ip, t.clone())).collect();
    out
}

/// The local addresses to announce with GARP/NA: those in place now that were just added, or that were
/// not held after the previous reconcile (a restarted agent finding its own orphan took it over too).
pub fn takeovers(now: &BTreeSet<IpAddr>, before: &BTreeSet<IpAddr>, added: &BTreeSet<IpAddr>) -> Vec<IpAddr> {
    now.iter().filter(|ip| added.contains(ip) || !before.contains(ip)).copied().collect()
}

/// The (Service, address, kind) take-ups this node has reported.
#[derive(Debug, Default)]
pub struct Announced {
    reported: BTreeMap<IpAddr, BTreeMap<ServiceKey, Kind>>,
}

impl Announced {
    /// Brings the reported set to the take-ups of `desired` whose address is in `in_place` and returns
    /// the entries that are new: each is reported once per take-up. An entry that leaves (the address
    /// moved away, or could not be added) is reported again when it comes back. Nothing is copied for
    /// the entries that stay.
    pub fn update(
        &mut self,
        desired: &DesiredSet,
        in_place: &BTreeSet<IpAddr>,
    ) -> Vec<(ServiceKey, IpAddr, Kind)> {
        self.reported.retain(|ip, svcs| {
            let (true, Some(target)) = (in_place.contains(ip), desired.targets.get(ip)) else { return false };
            let users = desired.users.get(ip);
            svcs.retain(|k, kind| *kind == target.kind && users.is_some_and(|u| u.contains_key(k)));
            !svcs.is_empty()
        });
        let mut new = Vec::new();
        for ip in in_place {
            let Some(target) = desired.targets.get(ip) else { continue };
            let reported = self.reported.entry(*ip).or_default();
            for svc in desired.users(ip) {
                if !reported.contains_key(svc) {
                    reported.insert(svc.clone(), target.kind);
                    new.push((svc.clone(), *ip, target.kind));
                }
            }
            if reported.is_empty() {
                self.reported.remove(ip);
            }
        }
        new
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn key(name: &str) -> ServiceKey {
        ServiceKey::new("ns", name)
    }

    fn plan(addr: &str, placement: Placement) -> AddressPlan {
        AddressPlan {
            address: ip(addr),
            placement,
            election: None,
            reset_traffic_policy: false,
            reasons: vec![],
        }
    }

    fn local(addr: &str) -> AddressPlan {
        plan(addr, Placement::Local { interface: "eth0".into(), prefix_len: 24 })
    }

    fn non_local(addr: &str, len: u8) -> AddressPlan {
        plan(addr, Placement::NonLocal { interface: "kube-lb0".into(), prefix_len: len })
    }

    fn owned(iface: &str, addr: &str, len: u8) -> OwnedAddress {
        OwnedAddress {
            index: if iface == "eth0" { 2 } else { 9 },
            interface: iface.into(),
            address: ip(addr),
            prefix_len: len,
        }
    }

    #[test]
    fn a_shared_address_stays_while_any_service_needs_it() {
        let mut d = DesiredSet::default();
        d.add(&key("a"), &non_local("198.51.100.5", 32));
        d.add(&key("b"), &plan("198.51.100.5", Placement::Absent));
        assert!(d.targets().contains_key(&ip("198.51.100.5")));
        let mut only_b = DesiredSet::default();
        only_b.add(&key("b"), &plan("198.51.100.5", Placement::Absent));
        assert!(!only_b.targets().contains_key(&ip("198.51.100.5")));
    }

    #[test]
    fn replacing_a_services_placements_frees_only_what_no_one_else_places() {
        let mut d = DesiredSet::default();
        d.set_service(&key("a"), &[non_local("198.51.100.5", 32), non_local("198.51.100.6", 32)]);
        d.set_service(&key("b"), &[non_local("198.51.100.5", 32)]);
        assert!(d.take_changed());
        // a moves off .6 and off the shared .5; b still places .5.
        d.set_service(&key("a"), &[non_local("198.51.100.7", 32)]);
        assert!(d.take_changed());
        let held: Vec<IpAddr> = d.targets().keys().copied().collect();
        assert_eq!(held, [ip("198.51.100.5"), ip("198.51.100.7")]);
        assert_eq!(d.users(&ip("198.51.100.5")).collect::<Vec<_>>(), [&key("b")]);
        // The same placements again change nothing.
        d.set_service(&key("a"), &[non_local("198.51.100.7", 32)]);
        assert!(!d.take_changed());
        // b goes away: .5 is freed; a prefix change of a is a change.
        d.set_service(&key("b"), &[]);
        d.set_service(&key("a"), &[non_local("198.51.100.7", 24)]);
        assert!(d.take_changed());
        assert_eq!(d.targets().len(), 1);
        assert_eq!(d.targets()[&ip("198.51.100.7")].prefix_len, 24);
        // Built one Service at a time or all at once, the set is the same.
        let mut fresh = DesiredSet::default();
        fresh.add(&key("a"), &non_local("198.51.100.7", 24));
        assert_eq!(d.targets(), fresh.targets());
    }

    #[test]
    fn the_union_does_not_depend_on_order() {
        let (a, b) = (local("192.0.2.200"), non_local("192.0.2.200", 32));
        let mut d1 = DesiredSet::default();
        d1.add(&key("a"), &a);
        d1.add(&key("b"), &b);
        let mut d2 = DesiredSet::default();
        d2.add(&key("b"), &b);
        d2.add(&key("a"), &a);
        assert_eq!(d1, d2);
        assert_eq!(d1.targets()[&ip("192.0.2.200")].kind, Kind::Local);
    }

    #[test]
    fn diff_adds_missing_deletes_stale_and_keeps_the_rest() {
        let mut d = DesiredSet::default();
        d.add(&key("a"), &local("192.0.2.200"));
        d.add(&key("b"), &non_local("198.51.100.5", 32));
        d.add(&key("c"), &non_local("203.0.113.7", 24));
        let have = [
            owned("eth0", "192.0.2.200", 24),      // kept
            owned("kube-lb0", "198.51.100.9", 32), // orphan of a killed agent
            owned("kube-lb0", "203.0.113.7", 32),  // wrong prefix: replaced
        ];
        let out = diff(d.targets(), &have);
        assert_eq!(out.kept, BTreeSet::from([ip("192.0.2.200")]));
        assert_eq!(out.delete, vec![have[1].clone(), have[2].clone()]);
        let added: Vec<(IpAddr, u8)> = out.add.iter().map(|(ip, t)| (*ip, t.prefix_len)).collect();
        assert_eq!(added, [(ip("198.51.100.5"), 32), (ip("203.0.113.7"), 24)]);
    }

    #[test]
    fn diff_moves_an_address_between_interfaces() {
        let mut d = DesiredSet::default();
        d.add(&key("a"), &local("192.0.2.200"));
        let have = [owned("kube-lb0", "192.0.2.200", 32)];
        let out = diff(d.targets(), &have);
        assert_eq!(out.delete, vec![have[0].clone()]);
        assert_eq!(out.add.len(), 1);
        assert_eq!(out.add[0].1.interface, "eth0");
    }

    #[test]
    fn diff_with_nothing_desired_withdraws_everything_owned() {
        let have = [owned("eth0", "192.0.2.200", 24), owned("kube-lb0", "198.51.100.9", 32)];
        let out = diff(&BTreeMap::new(), &have);
        assert_eq!(out.delete.len(), 2);
        assert!(out.add.is_empty());
    }

    #[test]
    fn diff_deletes_a_duplicate_of_a_kept_address() {
        let mut d = DesiredSet::default();
        d.add(&key("a"), &non_local("198.51.100.5", 32));
        let have = [owned("kube-lb0", "198.51.100.5", 32), owned("kube-lb0", "198.51.100.5", 32)];
        assert_eq!(diff(d.targets(), &have).delete.len(), 1);
    }

    #[test]
    fn every_takeover_is_announced_and_nothing_else() {
        let set = |v: &[&str]| v.iter().map(|s| ip(s)).collect::<BTreeSet<_>>();
        // First reconcile after a restart: an orphan kept in place is a takeover too.
        assert_eq!(takeovers(&set(&["192.0.2.200"]), &set(&[]), &set(&[])), [ip("192.0.2.200")]);
        // Held before and still held: nothing.
        assert!(takeovers(&set(&["192.0.2.200"]), &set(&["192.0.2.200"]), &set(&[])).is_empty());
        // Someone removed it and it was added back: announce again.
        assert_eq!(
            takeovers(&set(&["192.0.2.200"]), &set(&["192.0.2.200"]), &set(&["192.0.2.200"])),
            [ip("192.0.2.200")]
        );
    }

    #[test]
    fn each_take_up_is_reported_once() {
        let mut d = DesiredSet::default();
        d.add(&key("a"), &local("192.0.2.200"));
        d.add(&key("b"), &local("192.0.2.200"));
        d.add(&key("c"), &non_local("198.51.100.5", 32));
        let mut announced = Announced::default();
        // 198.51.100.5 could not be added yet: not reported.
        let first = announced.update(&d, &BTreeSet::from([ip("192.0.2.200")]));
        assert_eq!(first.len(), 2);
        assert!(first.iter().all(|(_, _, k)| *k == Kind::Local));
        let all = BTreeSet::from([ip("192.0.2.200"), ip("198.51.100.5")]);
        let second = announced.update(&d, &all);
        assert_eq!(second, vec![(key("c"), ip("198.51.100.5"), Kind::NonLocal)]);
        assert!(announced.update(&d, &all).is_empty(), "nothing new");
        // The address moves away and comes back: a new take-up.
        announced.update(&d, &BTreeSet::new());
        assert_eq!(announced.update(&d, &all).len(), 3);
    }
}
