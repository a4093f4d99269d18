//! What makes a reconcile incremental: the Services a batch of watch events touched ([`Pending`]),
//! and the indexes that say which other Services a change reaches ([`Index`]): our Services by
//! address (a Service sharing an address is re-planned with it, since the node announcing it now
//! keeps it) and the ready endpoint nodes per Service, kept up to date from each EndpointSlice event.
//!
//! A reconcile re-plans only the touched Services and those sharing their addresses; everything is
//! re-planned when what every Service depends on changes (this node's facts, the pools, the settings,
//! the connected subnets), after a re-list, and once a minute as a backstop (a sixtieth each second).
//! When only other nodes' facts change (a Lease expires, is deleted or comes back), only the Services
//! whose view here the change can reach (core's `announce::change::view_may_change`: placements, and
//! the report when this node is or may become their reporter) are re-planned.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;

use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::ResourceExt;
use purelb_core::allocate::ServiceKey;
use purelb_core::announce::facts::{self, SERVICE_NAME_LABEL};
use purelb_core::service::CachedService;

use purelb_runtime::Cache;

/// What the next reconcile must look at.
#[derive(Debug)]
pub(super) struct Pending {
    /// Re-plan every Service.
    pub(super) all: bool,
    /// Re-plan these Services (and those sharing their addresses).
    pub(super) services: BTreeSet<ServiceKey>,
    /// List the kernel's addresses and repair any drift, even if no placement changed.
    pub(super) kernel: bool,
    /// Read the subnets connected on this node again.
    pub(super) connected: bool,
}

impl Default for Pending {
    /// The first reconcile looks at everything.
    fn default() -> Self {
        Self { all: true, services: BTreeSet::new(), kernel: true, connected: true }
    }
}

/// Our Services by address and the endpoint nodes per Service. See the module documentation.
#[derive(Debug, Default)]
pub(super) struct Index {
    /// The addresses of each of our Services, as last planned.
    addresses: HashMap<ServiceKey, Vec<IpAddr>>,
    by_address: HashMap<IpAddr, BTreeSet<ServiceKey>>,
    /// Each EndpointSlice's Service, and each Service's EndpointSlices.
    slice_owner: HashMap<(String, String), ServiceKey>,
    slices_of: HashMap<ServiceKey, BTreeSet<String>>,
    /// The nodes with a ready endpoint, per Service.
    pub(super) endpoints: BTreeMap<ServiceKey, BTreeSet<String>>,
}

impl Index {
    /// Every Service the index knows of (to re-plan all, including those gone from the cache).
    pub(super) fn known(&self) -> impl Iterator<Item = &ServiceKey> {
        self.addresses.keys()
    }

    /// Every address of our Services, as last planned.
    pub(super) fn all_addresses(&self) -> impl Iterator<Item = &IpAddr> {
        self.by_address.keys()
    }

    /// The Services that hold one of `ips`.
    pub(super) fn sharers<'a>(&'a self, ips: impl IntoIterator<Item = &'a IpAddr>) -> BTreeSet<ServiceKey> {
        ips.into_iter().filter_map(|ip| self.by_address.get(ip)).flatten().cloned().collect()
    }

    /// The addresses `key` had when last planned.
    pub(super) fn addresses(&self, key: &ServiceKey) -> &[IpAddr] {
        self.addresses.get(key).map_or(&[], Vec::as_slice)
    }

    /// Records the addresses of `key` (none: not ours, or gone).
    pub(super) fn set_addresses(&mut self, key: &ServiceKey, ips: Vec<IpAddr>) {
        for ip in self.addresses.remove(key).unwrap_or_default() {
            if let Some(keys) = self.by_address.get_mut(&ip) {
                keys.remove(key);
                if keys.is_empty() {
                    self.by_address.remove(&ip);
                }
            }
        }
        if ips.is_empty() {
            return;
        }
        for ip in &ips {
            self.by_address.entry(*ip).or_default().insert(key.clone());
        }
        self.addresses.insert(key.clone(), ips);
    }

    /// Who announces each of `ips` now, read from every Service of ours holding it (as
    /// `facts::incumbents` reads all of them).
    pub(super) fn incumbents(
        &self,
        ips: &BTreeSet<IpAddr>,
        services: &Cache<CachedService>,
    ) -> facts::Incumbents {
        let holders = self.sharers(ips);
        let objects = holders.iter().filter_map(|k| services.get(&k.namespace, &k.name));
        let mut all = facts::incumbents(objects);
        all.retain(|ip, _| ips.contains(ip));
        all
    }

    /// One EndpointSlice changed or went away: re-reads the endpoints of its Service (and of the
    /// Service it belonged to before, if its label changed). Returns the Services touched.
    pub(super) fn slice_changed(
        &mut self,
        slices: &Cache<EndpointSlice>,
        namespace: &str,
        name: &str,
    ) -> Vec<ServiceKey> {
        let id = (namespace.to_string(), name.to_string());
        let before = self.slice_owner.remove(&id);
        let now = slices.get(namespace, name).and_then(owner);
        let mut touched = Vec::new();
        if let Some(key) = before {
            if let Some(names) = self.slices_of.get_mut(&key) {
                names.remove(name);
                if names.is_empty() {
                    self.slices_of.remove(&key);
                }
            }
            touched.push(key);
        }
        if let Some(key) = now {
            self.slices_of.entry(key.clone()).or_default().insert(name.to_string());
            self.slice_owner.insert(id, key.clone());
            if !touched.contains(&key) {
                touched.push(key);
            }
        }
        for key in &touched {
            self.read_endpoints(slices, key);
        }
        touched
    }

    /// The EndpointSlices were listed again: rebuilds the endpoint index from them.
    pub(super) fn slices_listed(&mut self, slices: &Cache<EndpointSlice>) {
        self.slice_owner.clear();
        self.slices_of.clear();
        for slice in slices.values() {
            if let Some(key) = owner(slice) {
                self.slices_of.entry(key.clone()).or_default().insert(slice.name_any());
                self.slice_owner.insert((key.namespace.clone(), slice.name_any()), key);
            }
        }
        self.endpoints = facts::endpoint_nodes(slices.values());
    }

    fn read_endpoints(&mut self, slices: &Cache<EndpointSlice>, key: &ServiceKey) {
        let names = self.slices_of.get(key).into_iter().flatten();
        let objects = names.filter_map(|n| slices.get(&key.namespace, n));
        match facts::endpoint_nodes(objects).remove(key) {
            Some(nodes) => self.endpoints.insert(key.clone(), nodes),
            None => self.endpoints.remove(key),
        };
    }
}

/// The Service an EndpointSlice belongs to.
fn owner(slice: &EndpointSlice) -> Option<ServiceKey> {
    let svc = slice.labels().get(SERVICE_NAME_LABEL)?;
    Some(ServiceKey::new(slice.namespace().unwrap_or_default(), svc.clone()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use kube::runtime::watcher;
    use serde_json::json;

    fn slice(name: &str, service: &str, nodes: &[&str]) -> EndpointSlice {
        let endpoints: Vec<_> = nodes
            .iter()
            .map(|n| json!({"addresses": ["10.0.0.1"], "nodeName": n, "conditions": {"ready": true}}))
            .collect();
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "t", "labels": {SERVICE_NAME_LABEL: service}},
            "addressType": "IPv4", "endpoints": endpoints,
        }))
        .unwrap()
    }

    fn key(name: &str) -> ServiceKey {
        ServiceKey::new("t", name)
    }

    #[test]
    fn endpoints_follow_each_slice_event_as_a_full_read_would() {
        let mut cache = Cache::default();
        let mut index = Index::default();
        for s in [slice("a-1", "a", &["n1"]), slice("a-2", "a", &["n2"]), slice("b-1", "b", &["n3"])] {
            let name = s.name_any();
            cache.apply(watcher::Event::Apply(s));
            index.slice_changed(&cache, "t", &name);
        }
        assert_eq!(index.endpoints, facts::endpoint_nodes(cache.values()));
        // A slice moves from a to b, another is deleted.
        cache.apply(watcher::Event::Apply(slice("a-2", "b", &["n4"])));
        assert_eq!(index.slice_changed(&cache, "t", "a-2"), [key("a"), key("b")]);
        cache.apply(watcher::Event::Delete(slice("a-1", "a", &[])));
        assert_eq!(index.slice_changed(&cache, "t", "a-1"), [key("a")]);
        assert_eq!(index.endpoints, facts::endpoint_nodes(cache.values()));
        assert!(!index.endpoints.contains_key(&key("a")));
        let mut relisted = Index::default();
        relisted.slices_listed(&cache);
        assert_eq!(relisted.endpoints, index.endpoints);
    }

    #[test]
    fn sharers_follow_the_recorded_addresses() {
        let ip = |s: &str| -> IpAddr { s.parse().unwrap() };
        let mut index = Index::default();
        index.set_addresses(&key("a"), vec![ip("192.0.2.1"), ip("192.0.2.2")]);
        index.set_addresses(&key("b"), vec![ip("192.0.2.2")]);
        assert_eq!(index.sharers(&[ip("192.0.2.2")]), BTreeSet::from([key("a"), key("b")]));
        index.set_addresses(&key("a"), vec![]);
        assert_eq!(index.sharers(&[ip("192.0.2.1"), ip("192.0.2.2")]), BTreeSet::from([key("b")]));
        assert_eq!(index.known().count(), 1);
    }
}
