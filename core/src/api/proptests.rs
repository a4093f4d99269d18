//! Property tests of reading what users write: random strings (arbitrary Unicode, address-like noise,
//! and valid texts with one character changed) in every pool, subnet and aggregation field of a
//! ServiceGroup (`v4pools`, `v6pools`, `v4pool`, `v6pool`, the legacy fields) and in an LBNodeAgent's
//! `localint`/`extlbint` give a usable group/config or a reason naming the field, never a panic.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use proptest::prelude::*;
use proptest::test_runner::Config;

use super::{LBNodeAgentLocal, PoolSpec, ServiceGroupLocal, ServiceGroupSpec};
use crate::allocate::{AllocationIndex, GroupState};
use crate::announce::settings::AgentConfig;
use crate::pool::{Family, PoolConfig};

/// Cases per property.
pub(crate) const STRING_CASES: u32 = 1024;

/// Valid texts of every field, to be changed by one character.
const SAMPLES: [&str; 16] = [
    "192.0.2.0/24",
    "192.0.2.200-192.0.2.220",
    "192.0.2.7 - 192.0.2.9",
    "2001:db8::/64",
    "2001:db8::1-2001:db8::ffff",
    "2001:db8:0:1::100/120",
    "::/0",
    "0.0.0.0/0",
    "::ffff:192.0.2.1/128",
    "64:ff9b::192.0.2.1-64:ff9b::192.0.2.9",
    "default",
    "/32",
    "/128",
    "/0",
    "eth0|enp1s0",
    "kube-lb0",
];

/// A random text: arbitrary Unicode, address-shaped noise, or a valid text with one character inserted,
/// deleted or replaced.
pub(crate) fn text() -> impl Strategy<Value = String> {
    let mutated = (
        prop::sample::select(SAMPLES.to_vec()),
        any::<prop::sample::Index>(),
        prop::sample::select(vec!['0', '9', 'f', 'g', ':', '.', '/', '-', ' ', ',', '%', '\u{0}', 'é']),
        0..4u8,
    )
        .prop_map(|(sample, at, c, how)| {
            let mut chars: Vec<char> = sample.chars().collect();
            let i = at.index(chars.len() + 1);
            match how {
                0 => chars.insert(i, c),
                1 if i < chars.len() => {
                    chars.remove(i);
                }
                2 if i < chars.len() => chars[i] = c,
                _ => {}
            }
            chars.into_iter().collect()
        });
    prop_oneof![
        2 => any::<String>(),
        3 => "[0-9a-fA-F:./ ,%-]{0,48}",
        5 => mutated,
    ]
}

fn pool_spec() -> impl Strategy<Value = PoolSpec> {
    (text(), text(), text()).prop_map(|(subnet, pool, aggregation)| PoolSpec { subnet, pool, aggregation })
}

fn local() -> impl Strategy<Value = ServiceGroupLocal> {
    (
        prop::collection::vec(pool_spec(), 0..=2),
        prop::collection::vec(pool_spec(), 0..=2),
        prop::option::weighted(0.3, pool_spec()),
        prop::option::weighted(0.3, pool_spec()),
        prop::option::weighted(0.3, text()),
        prop::option::weighted(0.3, text()),
        prop::option::weighted(0.3, text()),
    )
        .prop_map(|(v4pools, v6pools, v4pool, v6pool, subnet, pool, aggregation)| ServiceGroupLocal {
            v4pools,
            v6pools,
            v4pool,
            v6pool,
            subnet,
            pool,
            aggregation,
        })
}

proptest! {
    #![proptest_config(Config { cases: STRING_CASES, failure_persistence: None, ..Config::default() })]

    /// Every field of a group, read as the allocator, the agent and the plugin read it: each pool is
    /// usable or refused with a message naming the input; the group as a whole is usable or invalid
    /// with a message naming the field.
    #[test]
    fn random_group_texts_give_pools_or_a_reason_naming_the_field(local in local()) {
        match local.parsed_pools() {
            Ok(pools) => {
                for (field, parsed) in pools {
                    prop_assert!(field.starts_with("spec.local"), "{field}");
                    if let Err(e) = parsed {
                        prop_assert!(!e.to_string().trim().is_empty(), "{field}: an empty reason");
                    }
                }
            }
            Err(e) => prop_assert!(e.to_string().contains("spec.local."), "{e}"),
        }
        let mut index = AllocationIndex::new();
        index.set_group("ns", "g", &ServiceGroupSpec { local: Some(local.clone()) });
        match index.group("g") {
            Some(GroupState::Usable(slots)) => {
                // Usable means every pool was read; the usage adds up without overflow.
                prop_assert_eq!(slots.len(), local.pools().unwrap().len());
                let usage = index.usage("g").unwrap();
                prop_assert_eq!(usage.allocated, 0);
            }
            Some(GroupState::Invalid(why)) => {
                prop_assert!(why.to_string().contains("spec.local"), "the reason does not name the field: {why}");
            }
            other => prop_assert!(false, "unexpected state {other:?}"),
        }
    }

    /// One pool entry, with and without a declared family: a config whose parts agree, or a reason
    /// that quotes what was written.
    #[test]
    fn random_pool_entries_parse_or_name_the_input(
        subnet in text(), pool in text(), aggregation in text(), family in prop::option::of(prop_oneof![Just(Family::V4), Just(Family::V6)])
    ) {
        match PoolConfig::parse(&subnet, &pool, &aggregation, family) {
            Ok(config) => {
                prop_assert_eq!(config.subnet.family(), config.range.family());
                prop_assert!(config.subnet.contains_range(&config.range));
                prop_assert!(config.range.first() <= config.range.last());
                if let Some(family) = family {
                    prop_assert_eq!(config.family(), family);
                }
            }
            Err(e) => {
                let message = e.to_string();
                prop_assert!(!message.trim().is_empty());
                let quoted = [subnet.as_str(), pool.as_str(), aggregation.as_str()].iter().any(|t| {
                    let t = t.trim();
                    !t.is_empty() && (message.contains(t) || message.contains(&format!("{t:?}")))
                }) || [&subnet, &pool, &aggregation].iter().any(|t| message.contains(&format!("{t:?}")))
                    || message.contains("is empty");
                prop_assert!(quoted, "the reason quotes none of the inputs: {message}");
            }
        }
    }

    /// An LBNodeAgent's interface settings: a config, or a reason naming `localint` and the pattern.
    #[test]
    fn random_agent_settings_give_a_config_or_a_reason(localint in text(), extlbint in text(), sendgarp in any::<bool>()) {
        let local = LBNodeAgentLocal { localint: localint.clone(), extlbint, sendgarp };
        if let Err(e) = AgentConfig::from_local(&local) {
            let message = e.to_string();
            prop_assert!(message.starts_with("localint"), "{message}");
            prop_assert!(!message.contains('\n'), "{message}");
            prop_assert_eq!(e.pattern, localint.trim());
        }
    }
}
