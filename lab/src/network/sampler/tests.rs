use super::*;

fn holding(ip: &str, node: &str, interface: &str, prefix_len: u8) -> Holding {
    Holding {
        ip: ip.parse().unwrap_or_else(|e| panic!("{ip}: {e}")),
        node: node.to_owned(),
        interface: interface.to_owned(),
        prefix_len,
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
}

fn state(held: &[Holding], routes: &[(&str, &[&str])]) -> State {
    State {
        held: held.iter().cloned().collect(),
        routes: routes
            .iter()
            .map(|(dst, hops)| ((*dst).to_owned(), hops.iter().map(|h| ip(h)).collect()))
            .collect(),
    }
}

fn make_timeline(initial: State) -> Timeline {
    Timeline {
        ips: vec![ip("192.0.2.200")],
        interval: Duration::from_millis(50),
        max: Duration::from_secs(60),
        samples: 1,
        max_gap: Duration::ZERO,
        span: Duration::ZERO,
        reached_max: false,
        last: initial.clone(),
        initial,
        changes: Vec::new(),
        errors: 0,
        kept_errors: Vec::new(),
        kernel_changes: 0,
        reports_lost: 0,
        max_blind_gap: Duration::ZERO,
        reported_last: false,
    }
}

const QUIET: Reported = Reported { changes: 0, lost: false };

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[test]
fn identical_samples_are_no_change() {
    let s = state(&[holding("192.0.2.200", "node1", "eth0", 24)], &[("198.51.100.0/32", &["192.0.2.11"])]);
    assert!(s.diff(&s.clone()).is_empty());
}

#[test]
fn a_moved_address_is_one_disappearance_and_one_appearance() {
    let before = state(&[holding("192.0.2.200", "node1", "eth0", 24)], &[]);
    let after = state(&[holding("192.0.2.200", "node2", "eth0", 24)], &[]);
    assert_eq!(
        before.diff(&after),
        [
            Change::Disappeared(holding("192.0.2.200", "node1", "eth0", 24)),
            Change::Appeared(holding("192.0.2.200", "node2", "eth0", 24)),
        ]
    );
}

#[test]
fn route_changes_are_told_apart() {
    let before = state(
        &[],
        &[("198.51.100.0/32", &["192.0.2.11", "192.0.2.12"]), ("203.0.113.0/24", &["192.0.2.11"])],
    );
    let after =
        state(&[], &[("198.51.100.0/32", &["192.0.2.12"]), ("2001:db8:100::7/128", &["2001:db8:0:1::11"])]);
    let changes = before.diff(&after);
    assert_eq!(
        changes,
        [
            Change::NextHopsChanged {
                dst: "198.51.100.0/32".to_owned(),
                from: vec![ip("192.0.2.11"), ip("192.0.2.12")],
                to: vec![ip("192.0.2.12")],
            },
            Change::RouteDisappeared(RouterRoute {
                dst: "203.0.113.0/24".to_owned(),
                nexthops: vec![ip("192.0.2.11")]
            }),
            Change::RouteAppeared(RouterRoute {
                dst: "2001:db8:100::7/128".to_owned(),
                nexthops: vec![ip("2001:db8:0:1::11")]
            }),
        ]
    );
    let mut replayed = before.clone();
    for change in &changes {
        replayed.apply(change);
    }
    assert_eq!(replayed, after);
}

#[test]
fn records_count_samples_gaps_and_changes() {
    let a = state(&[holding("192.0.2.200", "node1", "eth0", 24)], &[]);
    let b = state(&[], &[]);
    let mut t = make_timeline(a.clone());
    let mut errors = Vec::new();
    t.record(ms(50), ms(50), a.clone(), QUIET, &mut errors);
    t.record(ms(130), ms(80), b, QUIET, &mut errors);
    errors.push("reading node2's addresses: boom".to_owned());
    t.record(ms(180), ms(50), a, QUIET, &mut errors);
    assert_eq!((t.samples(), t.max_gap(), t.duration(), t.changes(), t.errors()), (4, ms(80), ms(180), 2, 1));
    assert_eq!(t.all_changes()[0].at, ms(130));
    assert_eq!(t.holders_at_end(ip("192.0.2.200")), [("node1".to_owned(), "eth0".to_owned(), 24)]);
    assert!(errors.is_empty(), "recorded errors are drained");
}

#[test]
fn double_holding_counts_only_lan_interfaces_of_distinct_nodes() {
    let ip200 = ip("192.0.2.200");
    let one = state(&[holding("192.0.2.200", "node1", "eth0", 24)], &[]);
    let two = state(
        &[holding("192.0.2.200", "node1", "eth0", 24), holding("192.0.2.200", "node2", "eth0", 24)],
        &[],
    );
    // Two nodes, but one of them on kube-lb0 (routed, not answering ARP): not a double holding.
    let routed = state(
        &[holding("192.0.2.200", "node1", "eth0", 24), holding("192.0.2.200", "node2", KUBE_LB0, 32)],
        &[],
    );
    // One node with it on two interfaces: not two holders.
    let twice = state(
        &[holding("192.0.2.200", "node1", "eth0", 24), holding("192.0.2.200", "node1", "eth1", 24)],
        &[],
    );
    let mut t = make_timeline(one.clone());
    let mut errors = Vec::new();
    t.record(ms(100), ms(100), two.clone(), QUIET, &mut errors);
    t.record(ms(150), ms(50), two, QUIET, &mut errors);
    t.record(ms(400), ms(250), one.clone(), QUIET, &mut errors);
    t.record(ms(500), ms(100), routed, QUIET, &mut errors);
    t.record(ms(600), ms(100), twice, QUIET, &mut errors);
    t.record(ms(700), ms(100), one, QUIET, &mut errors);
    assert_eq!(t.double_holding(ip200), ms(300), "from the sample at 100 ms to the one at 400 ms\n{t}");
    assert_eq!(t.double_holding(ip("192.0.2.201")), Duration::ZERO);
    assert_eq!(t.ever_on_interface(ip200, "eth0"), ["node1", "node2"]);
    assert_eq!(t.ever_on_interface(ip200, KUBE_LB0), ["node2"]);
}

#[test]
fn a_double_holding_still_on_at_the_end_counts_until_the_last_sample() {
    let two = state(
        &[holding("192.0.2.200", "node1", "eth0", 24), holding("192.0.2.200", "node2", "eth0", 24)],
        &[],
    );
    let mut t = make_timeline(state(&[], &[]));
    let mut errors = Vec::new();
    t.record(ms(100), ms(100), two.clone(), QUIET, &mut errors);
    t.record(ms(250), ms(150), two, QUIET, &mut errors);
    assert_eq!(t.double_holding(ip("192.0.2.200")), ms(150));
}

#[test]
fn routes_within_prefixes_are_found_in_any_sample() {
    let mut t = make_timeline(state(&[], &[("198.51.100.0/32", &["192.0.2.11"])]));
    let mut errors = Vec::new();
    t.record(ms(50), ms(50), state(&[], &[("192.0.2.200/32", &["192.0.2.12"])]), QUIET, &mut errors);
    t.record(ms(100), ms(50), state(&[], &[("0.0.0.0/0", &["192.0.2.12"])]), QUIET, &mut errors);
    t.record(ms(150), ms(50), state(&[], &[]), QUIET, &mut errors);
    let lan = [Subnet::parse("192.0.2.0/24").unwrap_or_else(|e| panic!("{e}"))];
    let found: Vec<String> = t.router_routes_within(&lan).into_iter().map(|r| r.dst).collect();
    // The host route inside the LAN, and the default route that holds it.
    assert_eq!(found, ["0.0.0.0/0", "192.0.2.200/32"]);
    let v6 = [Subnet::parse("2001:db8:0:1::/64").unwrap_or_else(|e| panic!("{e}"))];
    assert!(t.router_routes_within(&v6).is_empty());
}

#[test]
fn the_display_names_every_change_and_the_states() {
    let mut t = make_timeline(state(
        &[holding("192.0.2.200", "node1", "eth0", 24)],
        &[("198.51.100.0/32", &["192.0.2.11"])],
    ));
    let mut errors = Vec::new();
    t.record(
        ms(1234),
        ms(50),
        state(&[holding("192.0.2.200", "node2", "eth0", 24)], &[]),
        QUIET,
        &mut errors,
    );
    let text = t.to_string();
    for expected in [
        "2 samples over 1.234s",
        "3 changes",
        "192.0.2.200: node1 eth0/24",
        "route 198.51.100.0/32 via 192.0.2.11",
        "+1.234s - 192.0.2.200 on node1 eth0/24",
        "+1.234s + 192.0.2.200 on node2 eth0/24",
        "+1.234s - route 198.51.100.0/32 (was via 192.0.2.11)",
        "192.0.2.200: node2 eth0/24",
        "(no BIRD routes on the router)",
    ] {
        assert!(text.contains(expected), "{expected:?} missing from:\n{text}");
    }
}

#[test]
fn a_long_gap_the_kernel_reported_nothing_in_is_not_blind() {
    let a = state(&[holding("192.0.2.200", "node1", "eth0", 24)], &[]);
    let mut t = make_timeline(a.clone());
    let mut errors = Vec::new();
    t.record(ms(50), ms(50), a.clone(), QUIET, &mut errors);
    t.record(ms(300), ms(250), a.clone(), QUIET, &mut errors);
    t.record(ms(350), ms(50), a, QUIET, &mut errors);
    assert_eq!((t.max_gap(), t.max_blind_gap(), t.kernel_changes()), (ms(250), Duration::ZERO, 0));
}

#[test]
fn a_gap_next_to_a_reported_change_is_blind() {
    let a = state(&[holding("192.0.2.200", "node1", "eth0", 24)], &[]);
    let flicker = Reported { changes: 2, lost: false };
    let mut t = make_timeline(a.clone());
    let mut errors = Vec::new();
    // Reported with the sample that closes the long gap: the change happened in it.
    t.record(ms(200), ms(200), a.clone(), flicker, &mut errors);
    t.record(ms(250), ms(50), a.clone(), QUIET, &mut errors);
    assert_eq!((t.max_blind_gap(), t.kernel_changes(), t.changes()), (ms(200), 2, 0));
    // Reported with the sample that opens it: the change may have happened just after that sample's dumps.
    t.record(ms(300), ms(50), a.clone(), flicker, &mut errors);
    t.record(ms(700), ms(400), a.clone(), QUIET, &mut errors);
    assert_eq!(t.max_blind_gap(), ms(400));
    // Lost reports make a gap blind as a change does.
    t.record(ms(1000), ms(300), a.clone(), QUIET, &mut errors);
    assert_eq!(t.max_blind_gap(), ms(400));
    t.record(ms(1600), ms(600), a, Reported { changes: 0, lost: true }, &mut errors);
    assert_eq!((t.max_blind_gap(), t.reports_lost()), (ms(600), 1));
}
