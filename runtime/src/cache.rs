//! One watch's objects by (namespace, name), as the daemons keep them: [`Cache`] applies kube's
//! watcher events and says what each one touched ([`Touched`]). A re-list (the watch restarted)
//! replaces the objects only when it completes, so objects deleted while the watch was down are
//! dropped then, and the caller gets what it replaced to find them.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Arc;

use kube::runtime::watcher;
use kube::{Resource, ResourceExt};

/// An object's (namespace, name); the namespace is empty for cluster-scoped kinds.
pub type ObjectId = (String, String);

/// What one watch event touched.
#[derive(Debug)]
pub enum Touched<K> {
    /// Nothing yet (a re-list in progress).
    Nothing,
    /// One object was added, changed or deleted; `previous` is what the cache held for it before.
    One {
        /// The object.
        id: ObjectId,
        /// What was cached for it before the event, if anything.
        previous: Option<Arc<K>>,
    },
    /// A re-list completed: every object may have changed. `previous` is what the cache held before
    /// it (the objects missing from the cache now were deleted while the watch was down).
    Relisted {
        /// The objects cached before the re-list.
        previous: BTreeMap<ObjectId, Arc<K>>,
    },
}

impl<K> Touched<K> {
    /// Whether the event changed nothing yet.
    pub fn is_nothing(&self) -> bool {
        matches!(self, Touched::Nothing)
    }
}

/// The objects of one watch, by (namespace, name). See the module documentation.
pub struct Cache<K> {
    objects: BTreeMap<ObjectId, Arc<K>>,
    fresh: Option<BTreeMap<ObjectId, Arc<K>>>,
    synced: bool,
    /// An object's id.
    id: fn(&K) -> ObjectId,
}

impl<K: Resource> Default for Cache<K> {
    fn default() -> Self {
        Self::keyed_by(|obj| (obj.namespace().unwrap_or_default(), obj.name_any()))
    }
}

impl<K> Cache<K> {
    /// An empty cache of objects that are not API resources themselves (a compact form of one), filed
    /// under `id`.
    pub fn keyed_by(id: fn(&K) -> ObjectId) -> Self {
        Self { objects: BTreeMap::new(), fresh: None, synced: false, id }
    }

    /// Applies one watch event.
    pub fn apply(&mut self, ev: watcher::Event<K>) -> Touched<K> {
        match ev {
            watcher::Event::Init => {
                self.fresh = Some(BTreeMap::new());
                Touched::Nothing
            }
            watcher::Event::InitApply(obj) => {
                if let Some(f) = self.fresh.as_mut() {
                    f.insert((self.id)(&obj), Arc::new(obj));
                }
                Touched::Nothing
            }
            watcher::Event::InitDone => {
                let fresh = self.fresh.take().unwrap_or_default();
                self.synced = true;
                Touched::Relisted { previous: std::mem::replace(&mut self.objects, fresh) }
            }
            watcher::Event::Apply(obj) => {
                let id = (self.id)(&obj);
                let previous = self.objects.insert(id.clone(), Arc::new(obj));
                Touched::One { id, previous }
            }
            watcher::Event::Delete(obj) => {
                let id = (self.id)(&obj);
                let previous = self.objects.remove(&id);
                Touched::One { id, previous }
            }
        }
    }

    /// Whether a first list has completed.
    pub fn synced(&self) -> bool {
        self.synced
    }

    /// The object `namespace/name`.
    pub fn get(&self, namespace: &str, name: &str) -> Option<&K> {
        self.get_shared(namespace, name).map(Arc::as_ref)
    }

    /// The object `namespace/name`, shared.
    pub fn get_shared(&self, namespace: &str, name: &str) -> Option<&Arc<K>> {
        self.objects.get(&(namespace.to_string(), name.to_string()))
    }

    /// Whether `id` is cached.
    pub fn contains(&self, id: &ObjectId) -> bool {
        self.objects.contains_key(id)
    }

    /// Every object, by id.
    pub fn iter(&self) -> impl Iterator<Item = (&ObjectId, &Arc<K>)> {
        self.objects.iter()
    }

    /// Every object.
    pub fn values(&self) -> impl Iterator<Item = &K> {
        self.objects.values().map(Arc::as_ref)
    }

    /// Every object's id.
    pub fn ids(&self) -> impl Iterator<Item = &ObjectId> {
        self.objects.keys()
    }

    /// Every object's id after `after` (all of them when `None`), in order: for walking the cache a
    /// slice at a time.
    pub fn ids_after(&self, after: Option<&ObjectId>) -> impl Iterator<Item = &ObjectId> {
        let from = after.map_or(Bound::Unbounded, Bound::Excluded);
        self.objects.range::<ObjectId, _>((from, Bound::Unbounded)).map(|(id, _)| id)
    }

    /// How many objects are cached.
    pub fn len(&self) -> usize {
        self.objects.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.objects.is_empty()
    }
}

/// The watch event `ev` with its object turned into `f`'s: a compact form of it, made as the event
/// arrives, so that the whole object is dropped at once.
pub fn map_event<A, B>(ev: watcher::Event<A>, f: impl FnOnce(A) -> B) -> watcher::Event<B> {
    match ev {
        watcher::Event::Init => watcher::Event::Init,
        watcher::Event::InitApply(obj) => watcher::Event::InitApply(f(obj)),
        watcher::Event::InitDone => watcher::Event::InitDone,
        watcher::Event::Apply(obj) => watcher::Event::Apply(f(obj)),
        watcher::Event::Delete(obj) => watcher::Event::Delete(f(obj)),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::api::ObjectMeta;

    fn cm(name: &str, value: &str) -> ConfigMap {
        ConfigMap {
            metadata: ObjectMeta {
                namespace: Some("ns".into()),
                name: Some(name.into()),
                ..Default::default()
            },
            data: Some([("v".to_string(), value.to_string())].into()),
            ..Default::default()
        }
    }

    fn value(c: &Cache<ConfigMap>, name: &str) -> Option<String> {
        c.get("ns", name).and_then(|m| m.data.as_ref()?.get("v").cloned())
    }

    #[test]
    fn changes_say_what_was_there_before() {
        let mut c = Cache::default();
        let Touched::One { id, previous: None } = c.apply(watcher::Event::Apply(cm("a", "1"))) else {
            panic!("a new object")
        };
        assert_eq!(id, ("ns".to_string(), "a".to_string()));
        let Touched::One { previous: Some(old), .. } = c.apply(watcher::Event::Apply(cm("a", "2"))) else {
            panic!("a changed object")
        };
        assert_eq!(old.data.as_ref().unwrap()["v"], "1");
        assert_eq!(value(&c, "a").as_deref(), Some("2"));
        let Touched::One { previous: Some(_), .. } = c.apply(watcher::Event::Delete(cm("a", "2"))) else {
            panic!("a deleted object")
        };
        assert!(c.is_empty());
        assert!(!c.synced(), "no list has completed");
    }

    #[test]
    fn a_relist_replaces_everything_when_it_completes() {
        let mut c = Cache::default();
        c.apply(watcher::Event::Apply(cm("gone", "1")));
        c.apply(watcher::Event::Apply(cm("kept", "1")));
        assert!(c.apply(watcher::Event::Init).is_nothing());
        assert!(c.apply(watcher::Event::InitApply(cm("kept", "2"))).is_nothing());
        // Until the list completes, the cache still shows what it had.
        assert_eq!(value(&c, "gone").as_deref(), Some("1"));
        let Touched::Relisted { previous } = c.apply(watcher::Event::InitDone) else { panic!("relisted") };
        assert!(c.synced());
        let gone: Vec<&ObjectId> = previous.keys().filter(|id| !c.contains(id)).collect();
        assert_eq!(gone, [&("ns".to_string(), "gone".to_string())]);
        assert_eq!(value(&c, "kept").as_deref(), Some("2"));
        assert_eq!(c.len(), 1);
    }

    #[test]
    fn a_compact_form_is_cached_under_its_own_id() {
        /// (namespace, name, value): a ConfigMap's compact form.
        type Compact = (String, String, String);
        let compact = |m: ConfigMap| {
            let v = m.data.as_ref().and_then(|d| d.get("v").cloned()).unwrap_or_default();
            (m.metadata.namespace.unwrap_or_default(), m.metadata.name.unwrap_or_default(), v)
        };
        let mut c: Cache<Compact> = Cache::keyed_by(|(ns, name, _)| (ns.clone(), name.clone()));
        for ev in [watcher::Event::Init, watcher::Event::InitApply(cm("a", "1")), watcher::Event::InitDone] {
            c.apply(map_event(ev, compact));
        }
        assert!(c.synced());
        assert_eq!(c.get("ns", "a").map(|(_, _, v)| v.as_str()), Some("1"));
        let Touched::One { id, previous: Some(old) } =
            c.apply(map_event(watcher::Event::Apply(cm("a", "2")), compact))
        else {
            panic!("a changed object")
        };
        assert_eq!((id.1.as_str(), old.2.as_str()), ("a", "1"));
        c.apply(map_event(watcher::Event::Delete(cm("a", "2")), compact));
        assert!(c.is_empty());
    }

    #[test]
    fn ids_after_walks_the_cache_in_order_from_a_cursor() {
        let mut c = Cache::default();
        for name in ["c", "a", "b"] {
            c.apply(watcher::Event::Apply(cm(name, "1")));
        }
        let names = |ids: Vec<&ObjectId>| ids.into_iter().map(|(_, n)| n.clone()).collect::<Vec<_>>();
        assert_eq!(names(c.ids_after(None).collect()), ["a", "b", "c"]);
        let a = ("ns".to_string(), "a".to_string());
        assert_eq!(names(c.ids_after(Some(&a)).collect()), ["b", "c"]);
        // A cursor on an object that is gone still walks on from where it was.
        let gone = ("ns".to_string(), "bb".to_string());
        assert_eq!(names(c.ids_after(Some(&gone)).collect()), ["c"]);
    }
}
