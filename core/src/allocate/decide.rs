//! [`AllocationIndex::decide`]: the allocation decision for one Service, with its trace and rejected
//! candidates, read-only over the index (the caller commits it). The sharing rule is [`super::holding`].

use std::net::IpAddr;

use super::holding::{ShareRefusal, share_check};
use super::index::{AllocationIndex, GroupState, PoolSlot};
use super::request::{FamilyPolicy, GroupSource, ServiceKey, ServiceRequest};
use super::{Assignment, Candidate, Decision, Failure, GroupKey, How, Reason};
use crate::api::annotations;
use crate::pool::Family;

struct Decider<'a> {
    index: &'a AllocationIndex,
    req: &'a ServiceRequest,
    current: Vec<IpAddr>,
    trace: Vec<String>,
    rejected: Vec<Candidate>,
}

// === impl AllocationIndex (decide) ===

impl AllocationIndex {
    /// Decides the addresses for `req`. Pure: the index is not changed; commit the decision with
    /// [`AllocationIndex::commit`] when it is applied.
    pub fn decide(&self, req: &ServiceRequest) -> Decision {
        let held = self.held(&req.key).map(|h| h.addresses.clone()).unwrap_or_default();
        let mut trace = Vec::new();
        // An address shared with Services that the request no longer fits (its key, ports or traffic
        // policy changed) is given up, never kept: two holders without a valid share are a conflict.
        let mut current = Vec::new();
        for ip in held {
            match self.still_shareable(req, ip) {
                Ok(()) => current.push(ip),
                Err(why) => trace.push(format!("{ip} is no longer validly shared: {why}; giving it up")),
            }
        }
        let mut d = Decider { index: self, req, current, trace, rejected: Vec::new() };
        let outcome = d.run();
        let kept = if outcome.is_err() { d.keepable() } else { Vec::new() };
        Decision {
            key: req.key.clone(),
            asked_group: req.group.clone(),
            outcome,
            kept,
            trace: d.trace,
            rejected: d.rejected,
        }
    }

    /// Whether `req` may go on holding `ip` with the other Services that hold it.
    pub(super) fn still_shareable(&self, req: &ServiceRequest, ip: IpAddr) -> Result<(), ShareRefusal> {
        let Some(holding) = self.holding(ip) else { return Ok(()) };
        let others: Vec<ServiceKey> = holding.holders.keys().filter(|k| **k != req.key).cloned().collect();
        if others.is_empty() {
            return Ok(());
        }
        share_check(holding, req, &others)
    }
}

// === impl Decider ===

impl<'a> Decider<'a> {
    fn run(&mut self) -> Result<Vec<Assignment>, Failure> {
        let req = self.req;
        self.trace.push(match req.group_source {
            GroupSource::Annotation => {
                format!("group {} (annotation {})", req.group, annotations::SERVICE_GROUP)
            }
            GroupSource::Default => {
                format!("group {} (no {} annotation)", req.group, annotations::SERVICE_GROUP)
            }
        });
        let fams: Vec<String> = req.families.iter().map(ToString::to_string).collect();
        self.trace.push(format!("families {} ({})", fams.join(", "), req.policy));

        if req.local_traffic_policy && req.sharing_key.is_some() {
            return Err(fail(
                Reason::SharingRefusedWithLocalPolicy,
                format!(
                    "externalTrafficPolicy: Local does not support address sharing; remove {} or use externalTrafficPolicy: Cluster",
                    annotations::ALLOW_SHARED_IP
                ),
            ));
        }
        for (ip, source) in &req.requested {
            if !req.families.contains(&Family::of(*ip)) {
                return Err(fail(
                    Reason::InvalidRequest,
                    format!(
                        "{source} asks for {ip} ({}) but the Service's ipFamilies are {} ({}); change ipFamilies/ipFamilyPolicy or the address",
                        Family::of(*ip),
                        fams.join(", "),
                        req.policy
                    ),
                ));
            }
        }

        let mut assigned = Vec::new();
        let mut failures = Vec::new();
        for family in req.families.clone() {
            match self.one_family(family) {
                Ok(a) => {
                    self.trace.push(format!("{family}: {} ({})", a.address, a.how));
                    assigned.push(a);
                }
                Err(f) => {
                    self.trace.push(format!("{family}: none: {}", f.message));
                    failures.push((family, f));
                }
            }
        }
        match (req.policy, failures.into_iter().next()) {
            (_, None) => Ok(assigned),
            (FamilyPolicy::PreferDualStack, Some((family, f))) if !assigned.is_empty() => {
                self.trace.push(format!("PreferDualStack: continuing without {family} ({})", f.reason));
                Ok(assigned)
            }
            (FamilyPolicy::RequireDualStack, Some((family, f))) => Err(Failure {
                reason: f.reason,
                message: format!("RequireDualStack needs an {family} address: {}", f.message),
            }),
            (_, Some((_, f))) => Err(f),
        }
    }

    /// What a failed decision leaves the Service: what it validly holds, except that a Service asking
    /// for both families keeps both or neither (never half a dual-stack allocation).
    fn keepable(&mut self) -> Vec<IpAddr> {
        if self.req.policy == FamilyPolicy::RequireDualStack
            && !self.req.families.iter().all(|f| self.held_of(*f).is_some())
            && !self.current.is_empty()
        {
            let held: Vec<String> = self.current.iter().map(ToString::to_string).collect();
            self.trace.push(format!(
                "RequireDualStack: giving up {} rather than holding one family only",
                held.join(", ")
            ));
            return Vec::new();
        }
        self.current.clone()
    }

    fn one_family(&mut self, family: Family) -> Result<Assignment, Failure> {
        match self.req.requested_for(family) {
            Some((ip, source)) => self.requested(ip, How::Requested(source)),
            None => self.group_address(family),
        }
    }

    fn held_of(&self, family: Family) -> Option<IpAddr> {
        self.current.iter().copied().find(|ip| Family::of(*ip) == family)
    }

    fn kept(&self, ip: IpAddr) -> Assignment {
        // The group asked for when it holds the address (the Service moved to a group that contains
        // what it holds); else the one it was recorded under.
        let in_asked = matches!(self.index.group(&self.req.group),
            Some(GroupState::Usable(slots)) if slots.iter().any(|s| s.pool.contains(ip)));
        // No group at all when none records or contains it (an empty `allocated-from`, as before).
        let group = Some(self.req.group.clone())
            .filter(|_| in_asked)
            .or_else(|| self.index.held(&self.req.key).and_then(|h| h.group.clone()))
            .or_else(|| self.index.group_of(ip, &self.req.group))
            .unwrap_or_else(|| GroupKey::new(""));
        Assignment { address: ip, pool: self.pool_text(&group, ip), group, how: How::Kept }
    }

    fn pool_text(&self, group: &GroupKey, ip: IpAddr) -> String {
        match self.index.group(group) {
            Some(GroupState::Usable(slots)) => slots
                .iter()
                .find(|s| s.pool.contains(ip))
                .map(|s| s.pool.config().range.to_string())
                .unwrap_or_default(),
            _ => String::new(),
        }
    }

    /// A specific address: it must lie in a pool of some group and be free or validly shared.
    fn requested(&mut self, ip: IpAddr, how: How) -> Result<Assignment, Failure> {
        let source = match &how {
            How::Requested(s) => s.to_string(),
            _ => String::new(),
        };
        if self.current.contains(&ip) {
            return Ok(self.kept(ip));
        }
        let Some(group) = self.index.group_of(ip, &self.req.group) else {
            let mut names = Vec::new();
            for (name, slots) in self.index.usable_groups() {
                let pools: Vec<String> = slots.iter().map(|s| s.pool.config().range.to_string()).collect();
                self.rejected.push(Candidate {
                    what: format!("group {name}"),
                    why: format!("{ip} is not in its pools ({})", pools.join(", ")),
                });
                names.push(name.to_string());
            }
            return Err(fail(
                Reason::AddressNotInAnyGroup,
                format!(
                    "{ip} ({source}) is not in any pool of any ServiceGroup (checked: {}); add a pool that contains it or request another address",
                    if names.is_empty() { "no usable groups".to_string() } else { names.join(", ") }
                ),
            ));
        };
        if group != self.req.group {
            self.trace.push(format!("{ip} is not in group {}; it lies in group {group}", self.req.group));
        }
        let pool = self.pool_text(&group, ip);
        match self.index.holding(ip) {
            None => Ok(Assignment { address: ip, group, pool, how }),
            Some(holding) => {
                let others: Vec<ServiceKey> =
                    holding.holders.keys().filter(|k| **k != self.req.key).cloned().collect();
                match share_check(holding, self.req, &others) {
                    Ok(()) => Ok(Assignment {
                        address: ip,
                        group,
                        pool,
                        how: How::Shared {
                            key: holding.sharing_key.clone().unwrap_or_default(),
                            with: others,
                        },
                    }),
                    Err(ShareRefusal { reason, why }) => {
                        self.rejected.push(Candidate { what: format!("address {ip}"), why: why.clone() });
                        Err(fail(reason, format!("{ip} ({source}) cannot be used: {why}")))
                    }
                }
            }
        }
    }

    /// The pools of the Service's group, or why the group cannot be used.
    fn usable_slots(&self) -> Result<&'a [PoolSlot], Failure> {
        let req = self.req;
        match self.index.group(&req.group) {
            Some(GroupState::Usable(slots)) => Ok(slots),
            None => {
                let known: Vec<&str> = self.index.group_names().collect();
                Err(fail(
                    Reason::NoServiceGroup,
                    format!(
                        "no ServiceGroup is named {:?}{}; create it or set {} to one of: {}",
                        req.group,
                        if req.group_source == GroupSource::Default { " (the default)" } else { "" },
                        annotations::SERVICE_GROUP,
                        if known.is_empty() { "(none exist)".to_string() } else { known.join(", ") }
                    ),
                ))
            }
            Some(GroupState::Duplicate(namespaces)) => Err(fail(
                Reason::DuplicateServiceGroup,
                super::duplicate_group_message(req.group.as_str(), namespaces),
            )),
            Some(GroupState::Invalid(why)) => Err(fail(
                Reason::InvalidServiceGroup,
                format!("ServiceGroup {:?} is invalid: {why}", req.group),
            )),
        }
    }

    /// No specific address: keep what is held, join a sharer, or take the lowest free address.
    fn group_address(&mut self, family: Family) -> Result<Assignment, Failure> {
        let req = self.req;
        let held = self.held_of(family);
        let slots = match self.usable_slots() {
            Ok(slots) => slots,
            Err(failure) => {
                if let Some(ip) = held {
                    self.trace.push(format!("{}; keeping {ip}", failure.message));
                    return Ok(self.kept(ip));
                }
                return Err(failure);
            }
        };
        let fam_slots: Vec<&PoolSlot> = AllocationIndex::family_slots(slots, family).collect();
        if let Some(ip) = held {
            if fam_slots.iter().any(|s| s.pool.contains(ip)) {
                return Ok(self.kept(ip));
            }
            if self.index.held(&req.key).and_then(|h| h.group.as_ref()) == Some(&req.group) {
                // The group was edited under a working address: keep it rather than renumber Services.
                self.trace.push(format!(
                    "{ip} is no longer in a pool of group {}; keeping it (recreate the Service to move it)",
                    req.group
                ));
                return Ok(self.kept(ip));
            }
            self.trace.push(format!("{ip} is not in group {}; choosing anew", req.group));
        }
        if fam_slots.is_empty() {
            return Err(fail(
                Reason::FamilyUnavailable,
                format!("ServiceGroup {:?} has no {family} pool", req.group),
            ));
        }
        if let Some(key) = req.sharing_key.as_deref() {
            for (ip, holding) in self.index.shared_under(key) {
                if Family::of(ip) != family || !fam_slots.iter().any(|s| s.pool.contains(ip)) {
                    continue;
                }
                let others: Vec<ServiceKey> =
                    holding.holders.keys().filter(|k| **k != req.key).cloned().collect();
                if others.is_empty() {
                    continue;
                }
                match share_check(holding, req, &others) {
                    Ok(()) => {
                        let pool = self.pool_text(&req.group, ip);
                        return Ok(Assignment {
                            address: ip,
                            group: req.group.clone(),
                            pool,
                            how: How::Shared { key: key.to_string(), with: others },
                        });
                    }
                    Err(ShareRefusal { why, .. }) => {
                        self.rejected.push(Candidate { what: format!("shared address {ip}"), why });
                    }
                }
            }
        }
        for slot in &fam_slots {
            match slot.pool.lowest_free() {
                Some(ip) => {
                    return Ok(Assignment {
                        address: ip,
                        group: req.group.clone(),
                        pool: slot.pool.config().range.to_string(),
                        how: How::LowestFree,
                    });
                }
                None => self.rejected.push(Candidate {
                    what: format!(
                        "pool {} ({}) of group {}",
                        slot.pool.config().range,
                        slot.field,
                        req.group
                    ),
                    why: format!("all {} addresses are in use", slot.pool.size()),
                }),
            }
        }
        let pools: Vec<String> = fam_slots
            .iter()
            .map(|s| format!("{} {}/{}", s.pool.config().range, s.pool.in_use(), s.pool.size()))
            .collect();
        Err(fail(
            Reason::PoolExhausted,
            format!(
                "every {family} address of ServiceGroup {:?} is in use ({}); free an address or add a pool",
                req.group,
                pools.join(", ")
            ),
        ))
    }
}

fn fail(reason: Reason, message: String) -> Failure {
    Failure { reason, message }
}
