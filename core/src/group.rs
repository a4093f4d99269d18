//! How a Service names the ServiceGroup it allocates from ([`GroupKey`]), in one type: group names
//! are cluster-wide today (a name defined in two namespaces is `DuplicateServiceGroup`), and scoping
//! them by namespace would change this type and its constructors, not every place that carries one.

use std::borrow::Borrow;
use std::fmt;
use std::sync::Arc;

/// The name of a ServiceGroup as Services choose it (`purelb.io/service-group`, `allocated-from`).
/// Cheap to clone: every Service of a group shares one allocation of its name.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GroupKey(Arc<str>);

impl GroupKey {
    /// The key of the group named `name`.
    pub fn new(name: &str) -> Self {
        Self(Arc::from(name))
    }

    /// The group's name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for GroupKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// As its name's: `{:?}` in a message quotes the name, as it did when keys were strings.
impl fmt::Debug for GroupKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl Borrow<str> for GroupKey {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for GroupKey {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl From<&str> for GroupKey {
    fn from(name: &str) -> Self {
        Self::new(name)
    }
}

impl PartialEq<str> for GroupKey {
    fn eq(&self, other: &str) -> bool {
        &*self.0 == other
    }
}

impl PartialEq<&str> for GroupKey {
    fn eq(&self, other: &&str) -> bool {
        &*self.0 == *other
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn a_key_is_its_name_and_looks_up_by_it() {
        let k = GroupKey::new("localaddr");
        assert_eq!(k.to_string(), "localaddr");
        assert_eq!(format!("{k:?}"), "\"localaddr\"");
        assert_eq!(k, "localaddr");
        assert_ne!(k, "default");
        let map: BTreeMap<GroupKey, u8> = [(k.clone(), 1)].into();
        assert_eq!(map.get("localaddr"), Some(&1));
        assert_eq!(map.get("other"), None);
    }

    #[test]
    fn clones_share_the_name() {
        let k = GroupKey::new("routed");
        let c = k.clone();
        assert!(std::ptr::eq(k.as_str(), c.as_str()));
    }
}
