//! A ServiceGroup as the allocator holds it: usable with its pools, invalid (with the field and the rule),
//! or defined in several namespaces; and the `Valid` condition every surface shows for it (the allocator
//! writes it on the group, `kubectl purelb` reads and prints it).
//!
//! Exposes [`GroupState`], [`GroupError`], [`PoolSlot`], [`GroupCondition`] and [`read_pools`], the one
//! reading of a group's pools (the allocator's, `validate`'s and `sg`'s).

use crate::api::{PoolSpecError, ServiceGroupSpec, conditions};
use crate::pool::{Pool, PoolConfig, PoolError};

use super::{Reason, duplicate_group_message};

/// One pool of a group, with the field it was declared in (for messages).
#[derive(Clone, Debug)]
pub struct PoolSlot {
    /// e.g. `spec.local.v4pools[0]`.
    pub field: String,
    /// The pool and its free space.
    pub pool: Pool,
}

/// Whether a group can be allocated from.
#[derive(Clone, Debug)]
pub enum GroupState {
    /// Valid: its pools.
    Usable(Vec<PoolSlot>),
    /// A pool could not be read; the error names the field and the rule.
    Invalid(GroupError),
    /// The same name is defined in several namespaces; PureLB will not guess which one is meant.
    Duplicate(Vec<String>),
}

/// Why a group's pools cannot be used; each names the field and the rule broken.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum GroupError {
    /// The legacy single-pool fields cannot be read.
    #[error("{0}")]
    Spec(#[from] PoolSpecError),
    /// A pool's subnet, range or aggregation was refused.
    #[error("{field}: {error}")]
    Pool {
        /// e.g. `spec.local.v4pools[0]`.
        field: String,
        /// The rule broken.
        error: PoolError,
    },
    /// Two pools of the group overlap.
    #[error("{field}: pool {range} overlaps {other} ({other_field})")]
    Overlap {
        /// The later pool's field.
        field: String,
        /// Its range.
        range: String,
        /// The earlier pool's range.
        other: String,
        /// The earlier pool's field.
        other_field: String,
    },
}

/// One pool of a group as [`read_pools`] reads it.
#[derive(Clone, Debug)]
pub struct PoolRead {
    /// e.g. `spec.local.v4pools[0]`.
    pub field: String,
    /// The pool, or the rule its subnet, range or aggregation breaks.
    pub parsed: Result<PoolConfig, PoolError>,
    /// The first earlier pool of the group its range overlaps: (field, range).
    pub overlaps: Option<(String, String)>,
}

impl PoolRead {
    /// The pool, if the allocator can use it: parsed, and disjoint from the earlier pools.
    pub fn usable(&self) -> Result<&PoolConfig, GroupError> {
        let config = self
            .parsed
            .as_ref()
            .map_err(|e| GroupError::Pool { field: self.field.clone(), error: e.clone() })?;
        match &self.overlaps {
            None => Ok(config),
            Some((other_field, other)) => Err(GroupError::Overlap {
                field: self.field.clone(),
                range: config.range.to_string(),
                other: other.clone(),
                other_field: other_field.clone(),
            }),
        }
    }
}

/// Every pool of a group spec, in order, each parsed and checked against the earlier ones (the allocator
/// uses the group only when every pool is [`PoolRead::usable`]). Err: the legacy single-pool fields cannot
/// be read at all.
pub fn read_pools(spec: &ServiceGroupSpec) -> Result<Vec<PoolRead>, GroupError> {
    let Some(local) = &spec.local else { return Ok(Vec::new()) };
    let mut read: Vec<PoolRead> = Vec::new();
    for (field, parsed) in local.parsed_pools()? {
        let overlaps = parsed.as_ref().ok().and_then(|config| {
            read.iter().find_map(|earlier| match &earlier.parsed {
                Ok(o) if o.range.overlaps(&config.range) => {
                    Some((earlier.field.clone(), o.range.to_string()))
                }
                _ => None,
            })
        });
        read.push(PoolRead { field, parsed, overlaps });
    }
    Ok(read)
}

/// The `Valid` condition of a ServiceGroup, as the allocator writes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupCondition {
    /// `status` is `"True"`.
    pub valid: bool,
    /// `Valid`, `InvalidServiceGroup` or `DuplicateServiceGroup`.
    pub reason: &'static str,
    /// What is wrong, naming the field and the rule, or that the allocator uses the group.
    pub message: String,
}

impl GroupState {
    /// The `Valid` condition of the group `name` in this state.
    pub fn condition(&self, name: &str) -> GroupCondition {
        match self {
            GroupState::Usable(_) => GroupCondition::usable(),
            GroupState::Invalid(why) => GroupCondition {
                valid: false,
                reason: Reason::InvalidServiceGroup.as_str(),
                message: why.to_string(),
            },
            GroupState::Duplicate(namespaces) => GroupCondition {
                valid: false,
                reason: Reason::DuplicateServiceGroup.as_str(),
                message: duplicate_group_message(name, namespaces),
            },
        }
    }
}

impl GroupCondition {
    /// A group the allocator uses.
    pub fn usable() -> GroupCondition {
        GroupCondition {
            valid: true,
            reason: conditions::GROUP_VALID,
            message: "the allocator uses this group".to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_state_words_its_condition() {
        assert_eq!(GroupState::Usable(Vec::new()).condition("a"), GroupCondition::usable());
        let dup = GroupState::Duplicate(vec!["x".into(), "y".into()]).condition("a");
        assert_eq!((dup.valid, dup.reason), (false, "DuplicateServiceGroup"));
        assert_eq!(dup.message, duplicate_group_message("a", &["x".into(), "y".into()]));
        let bad = GroupState::Invalid(GroupError::Overlap {
            field: "spec.local.v4pools[1]".into(),
            range: "192.0.2.0/25".into(),
            other: "192.0.2.0/24".into(),
            other_field: "spec.local.v4pools[0]".into(),
        })
        .condition("a");
        assert_eq!((bad.valid, bad.reason), (false, "InvalidServiceGroup"));
        assert!(
            bad.message.starts_with("spec.local.v4pools[1]: pool 192.0.2.0/25 overlaps"),
            "{}",
            bad.message
        );
    }
}
