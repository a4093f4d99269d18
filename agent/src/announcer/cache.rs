//! The objects of one watch, by (namespace, name), with re-list handling (objects missing from a
//! fresh list are dropped when it completes), and what each watch event touched.

use std::collections::BTreeMap;
use std::sync::Arc;

use kube::runtime::watcher;
use kube::{Resource, ResourceExt};

/// What a watch event touched.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Touched {
    Nothing,
    One(String, String),
    All,
}

/// The objects of one watch, by (namespace, name), with re-list handling: objects missing from a
/// fresh list are dropped when it completes.
pub(super) struct Cache<K> {
    objects: BTreeMap<(String, String), Arc<K>>,
    fresh: Option<BTreeMap<(String, String), Arc<K>>>,
    pub(super) synced: bool,
}

impl<K> Default for Cache<K> {
    fn default() -> Self {
        Self { objects: BTreeMap::new(), fresh: None, synced: false }
    }
}

impl<K: Resource> Cache<K> {
    fn id(obj: &K) -> (String, String) {
        (obj.namespace().unwrap_or_default(), obj.name_any())
    }

    pub(super) fn apply(&mut self, ev: watcher::Event<K>) -> Touched {
        match ev {
            watcher::Event::Init => {
                self.fresh = Some(BTreeMap::new());
                Touched::Nothing
            }
            watcher::Event::InitApply(obj) => {
                if let Some(f) = self.fresh.as_mut() {
                    f.insert(Self::id(&obj), Arc::new(obj));
                }
                Touched::Nothing
            }
            watcher::Event::InitDone => {
                self.objects = self.fresh.take().unwrap_or_default();
                self.synced = true;
                Touched::All
            }
            watcher::Event::Apply(obj) => {
                let id = Self::id(&obj);
                self.objects.insert(id.clone(), Arc::new(obj));
                Touched::One(id.0, id.1)
            }
            watcher::Event::Delete(obj) => {
                let id = Self::id(&obj);
                self.objects.remove(&id);
                Touched::One(id.0, id.1)
            }
        }
    }

    pub(super) fn get(&self, namespace: &str, name: &str) -> Option<&K> {
        self.objects.get(&(namespace.to_string(), name.to_string())).map(Arc::as_ref)
    }

    pub(super) fn values(&self) -> impl Iterator<Item = &K> {
        self.objects.values().map(Arc::as_ref)
    }

    pub(super) fn len(&self) -> usize {
        self.objects.len()
    }
}
