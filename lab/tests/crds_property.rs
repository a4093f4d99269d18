//! The ServiceGroup CRD's CEL rules and the Rust parser agree, with the lab's real kube-apiserver as
//! the oracle: a fixed-seed sample of generated pool texts (valid ones and near misses: host bits set,
//! reversed or mixed ranges, dotted IPv6 ranges, blanks, leading zeros, out-of-range prefixes, pools in
//! the other family's list, the legacy fields) is created as ServiceGroups, and for each one "the API
//! server accepted it" must equal "the allocator can use it" (`AllocationIndex::set_group` gives a
//! usable group). Every disagreement is printed before the test fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use kube::api::{Api, PostParams};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use purelb_core::allocate::{AllocationIndex, GroupState};
use purelb_core::api::{PoolSpec, ServiceGroup, ServiceGroupLocal, ServiceGroupSpec};
use purelb_lab::{TestNamespace, shared};

/// How many groups the sample holds, and its seed (fixed: the same sample every run).
const SAMPLE: usize = 200;
const SEED: [u8; 32] = *b"purelb-rs crds_property sample 1";

/// Where the pool goes in `spec.local`.
#[derive(Clone, Copy, Debug)]
enum Place {
    V4Pools,
    V6Pools,
    V4Pool,
    V6Pool,
    Legacy,
}

/// Valid (subnet, pools inside it) of each family, and near misses of each field; a sample text is a
/// valid triple with, half of the time, one field (or the place) swapped for a near miss.
const V4_VALID: &[(&str, &[&str])] = &[
    (
        "192.0.2.0/24",
        &[
            "192.0.2.0/28",
            "192.0.2.200-192.0.2.220",
            "192.0.2.7-192.0.2.7",
            "192.0.2.200 - 192.0.2.220",
            " 192.0.2.1-192.0.2.9",
            "192.0.2.0/32",
            "192.0.2.5/28",
        ],
    ),
    ("10.0.0.0/8", &["10.0.0.9-10.0.0.10", "10.1.255.255-10.2.0.0", "10.0.0.0/8"]),
    ("0.0.0.0/0", &["0.0.0.0-255.255.255.255", "198.51.100.0/24"]),
    ("192.0.2.5/24", &["192.0.2.0/25"]),
];
const V6_VALID: &[(&str, &[&str])] = &[
    (
        "2001:db8::/64",
        &[
            "2001:db8::/120",
            "2001:db8::1-2001:db8::ffff",
            "2001:DB8::A-2001:db8::b",
            "2001:db8::1 - 2001:db8::2",
            "2001:db8::100/120",
            "2001:db8::5/128",
        ],
    ),
    ("::/0", &["::-::1", "::2:3:4:5:6:7:8-1::", "1:2:3:4:5:6:7::-1:2:3:4:5:6:7:8"]),
    ("64:ff9b::/96", &["64:ff9b::c000:201-64:ff9b::c000:209", "64:ff9b::192.0.2.0/120"]),
    ("2001:DB8:0:1::/64", &["2001:db8:0:1::/64"]),
];
const V4_SUBNET_MISSES: &[&str] = &[
    "192.0.2.0/33",
    "192.0.2.0/024",
    "192.0.2.0",
    "192.0.2.0/24 ",
    " 192.0.2.0/24",
    "192.0.2.00/24",
    "192.0.2.0/-1",
    "192.0.2/24",
    "192.0.2.0/ 24",
    "198.51.100.0/24",
];
const V6_SUBNET_MISSES: &[&str] = &[
    "2001:db8::/129",
    "2001:db8::/064",
    "2001:db8::",
    "::ffff:192.0.2.0/120",
    "fe80::%eth0/64",
    "2001:db8:::/64",
    "2001:db8:1::/64",
    " 2001:db8::/64",
];
const V4_POOL_MISSES: &[&str] = &[
    "192.0.2.20-192.0.2.10",
    "192.0.2.0/28 ",
    "192.0.2.1",
    "192.0.2.1-192.0.2.2-192.0.2.3",
    "192.0.2.250-192.0.3.5",
    "198.51.100.0/26",
    "192.0.2.1-2001:db8::1",
    "192.0.2.01-192.0.2.9",
    "192.0.2.0/33",
    "192.0.2.1-",
    "-192.0.2.1",
    "192.0.2.0/028",
    "192.0.2.1 -192.0.2. 9",
];
const V6_POOL_MISSES: &[&str] = &[
    "2001:db8::ff-2001:db8::f",
    "2001:db8::1:0-2001:db8::ffff",
    "2001:db8:1::/120",
    "64:ff9b::192.0.2.1-64:ff9b::192.0.2.9",
    "::ffff:192.0.2.0/124",
    "::ffff:192.0.2.1-::ffff:192.0.2.9",
    "2001:db8::1",
    "2001:db8::/129",
    "2001:db8::g-2001:db8::1",
    "2001:db8::/120 ",
    "2001:db8::/0120",
];
const V4_AGGREGATIONS: &[&str] = &["default", "/32", "/24", "/0"];
const V6_AGGREGATIONS: &[&str] = &["default", "/128", "/64", "/0", "/32"];
const AGGREGATION_MISSES: &[&str] =
    &["/33", "/129", "32", "/032", "default ", "DEFAULT", "/", "/3 2", " /24", "/00"];

fn place() -> impl Strategy<Value = Place> {
    prop_oneof![
        4 => Just(Place::V4Pools),
        4 => Just(Place::V6Pools),
        1 => Just(Place::V4Pool),
        1 => Just(Place::V6Pool),
        2 => Just(Place::Legacy),
    ]
}

/// One family's (subnet, pool, aggregation): valid, or with one field a near miss.
fn triple(
    valid: &'static [(&'static str, &'static [&'static str])],
    aggregations: &'static [&'static str],
    subnet_misses: &'static [&'static str],
    pool_misses: &'static [&'static str],
) -> impl Strategy<Value = (String, String, Option<String>)> {
    (
        prop::sample::select(valid),
        any::<prop::sample::Index>(),
        prop::option::weighted(0.85, prop::sample::select(aggregations)),
        0..8u8,
        prop::sample::select(subnet_misses),
        prop::sample::select(pool_misses),
        prop::sample::select(AGGREGATION_MISSES),
    )
        .prop_map(
            move |((subnet, pools), i, aggregation, miss, bad_subnet, bad_pool, bad_aggregation)| {
                let (mut subnet, mut pool, mut aggregation) =
                    (subnet.to_string(), i.get(pools).to_string(), aggregation.map(str::to_string));
                match miss {
                    0 => subnet = bad_subnet.to_string(),
                    1 | 2 => pool = bad_pool.to_string(),
                    3 => aggregation = Some(bad_aggregation.to_string()),
                    _ => {}
                }
                (subnet, pool, aggregation)
            },
        )
}

/// (place, subnet, pool, aggregation); a place of the other family now and then (the family rules).
fn pool_text() -> impl Strategy<Value = (Place, String, String, Option<String>)> {
    let v4 = triple(V4_VALID, V4_AGGREGATIONS, V4_SUBNET_MISSES, V4_POOL_MISSES);
    let v6 = triple(V6_VALID, V6_AGGREGATIONS, V6_SUBNET_MISSES, V6_POOL_MISSES);
    (prop_oneof![v4.prop_map(|t| (false, t)), v6.prop_map(|t| (true, t))], place(), prop::bool::weighted(0.1))
        .prop_map(|((v6, (subnet, pool, aggregation)), place, other_family)| {
            let place = match (place, v6 != other_family) {
                (Place::V4Pools | Place::V6Pools, false) => Place::V4Pools,
                (Place::V4Pools | Place::V6Pools, true) => Place::V6Pools,
                (Place::V4Pool | Place::V6Pool, false) => Place::V4Pool,
                (Place::V4Pool | Place::V6Pool, true) => Place::V6Pool,
                (Place::Legacy, _) => Place::Legacy,
            };
            (place, subnet, pool, aggregation)
        })
}

fn group(name: &str, place: Place, subnet: &str, pool: &str, aggregation: Option<&str>) -> ServiceGroup {
    let spec = || PoolSpec {
        subnet: subnet.into(),
        pool: pool.into(),
        aggregation: aggregation.unwrap_or("default").into(),
    };
    let local = match place {
        Place::V4Pools => ServiceGroupLocal { v4pools: vec![spec()], ..Default::default() },
        Place::V6Pools => ServiceGroupLocal { v6pools: vec![spec()], ..Default::default() },
        Place::V4Pool => ServiceGroupLocal { v4pool: Some(spec()), ..Default::default() },
        Place::V6Pool => ServiceGroupLocal { v6pool: Some(spec()), ..Default::default() },
        Place::Legacy => ServiceGroupLocal {
            subnet: Some(subnet.into()),
            pool: Some(pool.into()),
            aggregation: aggregation.map(str::to_string),
            ..Default::default()
        },
    };
    ServiceGroup::new(name, ServiceGroupSpec { local: Some(local) })
}

/// Whether the allocator can use the group, and if not why.
fn rust_verdict(sg: &ServiceGroup) -> Result<(), String> {
    let mut index = AllocationIndex::new();
    index.set_group("ns", "g", &sg.spec);
    match index.group("g") {
        Some(GroupState::Usable(_)) => Ok(()),
        Some(GroupState::Invalid(why)) => Err(why.to_string()),
        other => Err(format!("unexpected state {other:?}")),
    }
}

#[tokio::test]
async fn cel_rules_and_the_rust_parser_agree_on_a_sample_of_pool_texts() {
    let mut runner =
        TestRunner::new_with_rng(Config::default(), TestRng::from_seed(RngAlgorithm::ChaCha, &SEED));
    let strategy = pool_text();
    let sample: Vec<(Place, String, String, Option<String>)> =
        (0..SAMPLE).map(|_| strategy.new_tree(&mut runner).unwrap().current()).collect();

    let lab = shared().await;
    install(lab).await;
    let client = lab.admin_client().await.unwrap();
    let ns = TestNamespace::new(&client, "crdprop").await.unwrap();
    let api: Api<ServiceGroup> = Api::namespaced(client.clone(), ns.name());

    let (mut accepted, mut disagreements) = (0, Vec::new());
    for (n, (place, subnet, pool, aggregation)) in sample.iter().enumerate() {
        let sg = group(&format!("p{n}"), *place, subnet, pool, aggregation.as_deref());
        let server = match api.create(&PostParams::default(), &sg).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(status)) if status.code == 422 => Err(status.message),
            Err(e) => panic!("group {n}: creating it failed for another reason than validation: {e}"),
        };
        let rust = rust_verdict(&sg);
        accepted += usize::from(server.is_ok());
        if server.is_ok() != rust.is_ok() {
            disagreements.push(format!(
                "{place:?} subnet {subnet:?} pool {pool:?} aggregation {aggregation:?}\n    API server: {}\n    Rust:       {}",
                server.err().unwrap_or_else(|| "accepted".into()),
                rust.err().unwrap_or_else(|| "accepted".into()),
            ));
        }
    }
    println!("{SAMPLE} groups: {accepted} accepted by the API server, {} disagreements", disagreements.len());
    for d in &disagreements {
        println!("  {d}");
    }
    // A sample that is all valid or all invalid would prove little.
    assert!(
        (SAMPLE / 5..=SAMPLE * 4 / 5).contains(&accepted),
        "the sample is lopsided: {accepted} of {SAMPLE} accepted"
    );
    assert!(disagreements.is_empty(), "{} disagreements:\n{}", disagreements.len(), disagreements.join("\n"));
    ns.cleanup().await.unwrap();
}
