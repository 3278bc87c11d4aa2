//! Tests of the LPM table: fixed cases, a property test against a naive reference, and a
//! concurrent readers-vs-writer stress test in the spirit of DPDK's test_lpm test21.

use super::rules::mask;
use super::table::{COMMIT_BYTES, TBL24_BYTES};
use super::*;
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::sync::atomic::{fence, AtomicBool, AtomicUsize};

fn net(s: &str) -> Ipv4Net {
    s.parse().expect("test prefix")
}

fn ip(s: &str) -> u32 {
    u32::from(s.parse::<Ipv4Addr>().expect("test address"))
}

fn lookup(reader: &LpmReader, addr: &str) -> Option<NextHopId> {
    reader.pin().lookup(ip(addr))
}

/// The obvious LPM: every rule in a map, longest length first.
#[derive(Debug, Clone, Default)]
struct Naive(BTreeMap<(u32, u8), NextHopId>);

impl Naive {
    fn key(prefix: Ipv4Net) -> (u32, u8) {
        let p = prefix.trunc();
        (u32::from(p.network()), p.prefix_len())
    }

    fn insert(&mut self, prefix: Ipv4Net, nh: NextHopId) -> Option<NextHopId> {
        self.0.insert(Naive::key(prefix), nh)
    }

    fn remove(&mut self, prefix: Ipv4Net) -> Option<NextHopId> {
        self.0.remove(&Naive::key(prefix))
    }

    fn lookup(&self, addr: u32) -> Option<NextHopId> {
        (0..=32u8)
            .rev()
            .find_map(|d| self.0.get(&(addr & mask(d), d)).copied())
    }

    fn long_slash24s(&self) -> usize {
        let mut s: Vec<u32> = self
            .0
            .keys()
            .filter(|(_, d)| *d > 24)
            .map(|(a, _)| a >> 8)
            .collect();
        s.dedup();
        s.len()
    }
}

// ---------------------------------------------------------------------------------------
// Fixed cases

#[test]
fn empty_table_has_no_route_for_any_address() {
    let (w, r) = new(LpmConfig::default());
    assert!(w.is_empty());
    for a in ["0.0.0.0", "10.1.2.3", "255.255.255.255"] {
        assert_eq!(lookup(&r, a), None);
    }
}

#[test]
fn default_route_matches_every_address() {
    let (mut w, r) = new(LpmConfig::default());
    w.insert(net("0.0.0.0/0"), 7).unwrap();
    for a in ["0.0.0.0", "10.1.2.3", "128.0.0.0", "255.255.255.255"] {
        assert_eq!(lookup(&r, a), Some(7));
    }
    assert_eq!(w.remove(net("0.0.0.0/0")), Some(7));
    assert_eq!(lookup(&r, "10.1.2.3"), None);
}

#[test]
fn host_route_matches_only_its_own_address() {
    let (mut w, r) = new(LpmConfig::default());
    w.insert(net("10.1.2.3/32"), 5).unwrap();
    assert_eq!(lookup(&r, "10.1.2.3"), Some(5));
    assert_eq!(lookup(&r, "10.1.2.2"), None);
    assert_eq!(lookup(&r, "10.1.2.4"), None);
    w.insert(net("255.255.255.255/32"), 6).unwrap();
    assert_eq!(lookup(&r, "255.255.255.255"), Some(6));
    assert_eq!(lookup(&r, "255.255.255.254"), None);
}

#[test]
fn slash24_covers_exactly_its_256_addresses() {
    let (mut w, r) = new(LpmConfig::default());
    w.insert(net("10.244.1.0/24"), 1).unwrap();
    assert_eq!(lookup(&r, "10.244.0.255"), None);
    assert_eq!(lookup(&r, "10.244.1.0"), Some(1));
    assert_eq!(lookup(&r, "10.244.1.255"), Some(1));
    assert_eq!(lookup(&r, "10.244.2.0"), None);
    assert_eq!(w.tbl8_groups(), 0, "a /24 needs no tbl8 group");
}

#[test]
fn slash25_splits_its_slash24_without_touching_the_other_half() {
    let (mut w, r) = new(LpmConfig::default());
    w.insert(net("10.244.1.0/24"), 1).unwrap();
    w.insert(net("10.244.1.128/25"), 2).unwrap();
    assert_eq!(w.tbl8_groups(), 1);
    assert_eq!(lookup(&r, "10.244.1.0"), Some(1));
    assert_eq!(lookup(&r, "10.244.1.127"), Some(1));
    assert_eq!(lookup(&r, "10.244.1.128"), Some(2));
    assert_eq!(lookup(&r, "10.244.1.255"), Some(2));
    assert_eq!(lookup(&r, "10.244.2.0"), None);
    assert_eq!(lookup(&r, "10.244.0.255"), None);
}

#[test]
fn long_route_without_a_covering_route_leaves_the_rest_of_its_slash24_unrouted() {
    let (mut w, r) = new(LpmConfig::default());
    w.insert(net("10.0.0.64/26"), 3).unwrap();
    assert_eq!(lookup(&r, "10.0.0.63"), None);
    assert_eq!(lookup(&r, "10.0.0.64"), Some(3));
    assert_eq!(lookup(&r, "10.0.0.127"), Some(3));
    assert_eq!(lookup(&r, "10.0.0.128"), None);
}

#[test]
fn longest_of_overlapping_prefixes_wins() {
    let (mut w, r) = new(LpmConfig::default());
    w.insert(net("0.0.0.0/0"), 1).unwrap();
    w.insert(net("10.0.0.0/8"), 2).unwrap();
    w.insert(net("10.244.0.0/16"), 3).unwrap();
    w.insert(net("10.244.1.0/24"), 4).unwrap();
    w.insert(net("10.244.1.16/28"), 5).unwrap();
    w.insert(net("10.244.1.17/32"), 6).unwrap();
    assert_eq!(lookup(&r, "11.0.0.0"), Some(1));
    assert_eq!(lookup(&r, "10.1.0.0"), Some(2));
    assert_eq!(lookup(&r, "10.244.2.1"), Some(3));
    assert_eq!(lookup(&r, "10.244.1.15"), Some(4));
    assert_eq!(lookup(&r, "10.244.1.16"), Some(5));
    assert_eq!(lookup(&r, "10.244.1.17"), Some(6));
    assert_eq!(lookup(&r, "10.244.1.31"), Some(5));
    assert_eq!(lookup(&r, "10.244.1.32"), Some(4));
}

#[test]
fn shorter_prefix_added_later_does_not_override_longer_ones() {
    let (mut w, r) = new(LpmConfig::default());
    w.insert(net("10.244.1.16/28"), 5).unwrap();
    w.insert(net("10.244.1.0/24"), 4).unwrap();
    w.insert(net("10.0.0.0/8"), 2).unwrap();
    assert_eq!(lookup(&r, "10.244.1.16"), Some(5));
    assert_eq!(lookup(&r, "10.244.1.0"), Some(4));
    assert_eq!(lookup(&r, "10.9.9.9"), Some(2));
}

#[test]
fn removing_a_prefix_restores_the_covering_route() {
    let (mut w, r) = new(LpmConfig::default());
    w.insert(net("10.0.0.0/8"), 2).unwrap();
    w.insert(net("10.244.0.0/16"), 3).unwrap();
    w.insert(net("10.244.1.0/24"), 4).unwrap();
    w.insert(net("10.244.1.128/25"), 5).unwrap();
    w.insert(net("10.244.1.130/32"), 6).unwrap();

    assert_eq!(w.remove(net("10.244.1.128/25")), Some(5));
    assert_eq!(lookup(&r, "10.244.1.129"), Some(4));
    assert_eq!(
        lookup(&r, "10.244.1.130"),
        Some(6),
        "a more specific rule survives"
    );

    assert_eq!(w.remove(net("10.244.1.0/24")), Some(4));
    assert_eq!(lookup(&r, "10.244.1.129"), Some(3));
    assert_eq!(lookup(&r, "10.244.1.130"), Some(6));

    assert_eq!(w.remove(net("10.244.0.0/16")), Some(3));
    assert_eq!(lookup(&r, "10.244.1.129"), Some(2));
    assert_eq!(w.remove(net("10.244.1.130/32")), Some(6));
    assert_eq!(lookup(&r, "10.244.1.130"), Some(2));
    assert_eq!(w.remove(net("10.0.0.0/8")), Some(2));
    assert_eq!(lookup(&r, "10.244.1.130"), None);
    assert!(w.is_empty());
}

#[test]
fn removing_the_last_long_route_of_a_slash24_gives_back_its_tbl8_group() {
    let (mut w, r) = new(LpmConfig::default());
    w.insert(net("10.244.1.0/24"), 4).unwrap();
    w.insert(net("10.244.1.128/25"), 5).unwrap();
    w.insert(net("10.244.1.7/32"), 6).unwrap();
    assert_eq!(w.tbl8_groups(), 1);
    w.remove(net("10.244.1.128/25"));
    assert_eq!(w.tbl8_groups(), 1, "the /32 still needs the group");
    w.remove(net("10.244.1.7/32"));
    assert_eq!(w.tbl8_groups(), 0);
    assert_eq!(lookup(&r, "10.244.1.7"), Some(4));
    assert_eq!(lookup(&r, "10.244.1.200"), Some(4));
}

#[test]
fn insert_returns_the_next_hop_it_replaced() {
    let (mut w, r) = new(LpmConfig::default());
    assert_eq!(w.insert(net("10.244.1.0/24"), 1).unwrap(), None);
    assert_eq!(w.insert(net("10.244.1.0/24"), 2).unwrap(), Some(1));
    assert_eq!(w.insert(net("10.244.1.9/32"), 3).unwrap(), None);
    assert_eq!(w.insert(net("10.244.1.9/32"), 4).unwrap(), Some(3));
    assert_eq!(lookup(&r, "10.244.1.1"), Some(2));
    assert_eq!(lookup(&r, "10.244.1.9"), Some(4));
    assert_eq!(w.len(), 2);
}

#[test]
fn removing_an_absent_prefix_changes_nothing() {
    let (mut w, r) = new(LpmConfig::default());
    w.insert(net("10.244.1.0/24"), 1).unwrap();
    assert_eq!(w.remove(net("10.244.0.0/16")), None);
    assert_eq!(w.remove(net("10.244.1.0/25")), None);
    assert_eq!(lookup(&r, "10.244.1.1"), Some(1));
    assert_eq!(w.len(), 1);
}

#[test]
fn host_bits_of_a_prefix_are_ignored() {
    let (mut w, r) = new(LpmConfig::default());
    w.insert(net("10.244.1.77/24"), 1).unwrap();
    assert_eq!(lookup(&r, "10.244.1.0"), Some(1));
    assert_eq!(
        w.routes().collect::<Vec<_>>(),
        vec![(net("10.244.1.0/24"), 1)]
    );
    assert_eq!(w.remove(net("10.244.1.200/24")), Some(1));
}

#[test]
fn largest_next_hop_id_fits_and_a_wider_one_is_rejected_without_change() {
    let (mut w, r) = new(LpmConfig::default());
    w.insert(net("10.0.0.0/8"), MAX_NEXT_HOP).unwrap();
    assert_eq!(lookup(&r, "10.1.1.1"), Some(MAX_NEXT_HOP));
    let err = w.insert(net("10.0.0.0/8"), MAX_NEXT_HOP + 1).unwrap_err();
    assert!(matches!(err, LpmError::NextHopTooLarge(n) if n == MAX_NEXT_HOP + 1));
    assert!(err.to_string().contains("16777216"), "{err}");
    assert_eq!(lookup(&r, "10.1.1.1"), Some(MAX_NEXT_HOP));
    assert_eq!(w.len(), 1);
}

#[test]
fn full_tbl8_pool_refuses_long_routes_and_changes_nothing() {
    let (mut w, r) = new(LpmConfig {
        max_tbl8_groups: 1,
        ..LpmConfig::default()
    });
    w.insert(net("10.0.0.0/8"), 1).unwrap();
    w.insert(net("10.0.1.0/25"), 2).unwrap();
    w.insert(net("10.0.1.128/32"), 3).unwrap(); // same /24: same group
    let err = w.insert(net("10.0.2.0/25"), 4).unwrap_err();
    match &err {
        LpmError::TableFull { prefix, groups } => {
            assert_eq!(*prefix, net("10.0.2.0/25"));
            assert_eq!(*groups, 1);
        }
        other => panic!("unexpected error {other}"),
    }
    assert!(err.to_string().contains("max_tbl8_groups"), "{err}");
    assert_eq!(lookup(&r, "10.0.2.1"), Some(1));
    assert_eq!(w.len(), 3);
    assert!(!w.routes().any(|(p, _)| p == net("10.0.2.0/25")));
}

#[test]
fn replace_all_swaps_in_exactly_the_new_routes() {
    let (mut w, r) = new(LpmConfig::default());
    w.insert(net("10.0.0.0/8"), 1).unwrap();
    w.insert(net("10.0.1.0/25"), 2).unwrap();
    w.replace_all([
        (net("192.168.0.0/16"), 3),
        (net("192.168.1.1/32"), 4),
        (net("192.168.0.0/16"), 5), // the last one wins
    ])
    .unwrap();
    assert_eq!(lookup(&r, "10.0.1.1"), None);
    assert_eq!(lookup(&r, "192.168.7.7"), Some(5));
    assert_eq!(lookup(&r, "192.168.1.1"), Some(4));
    assert_eq!(w.len(), 2);
    assert_eq!(w.tbl8_groups(), 1);
    // Single-route edits keep working on the new table.
    w.remove(net("192.168.1.1/32"));
    assert_eq!(lookup(&r, "192.168.1.1"), Some(5));
    assert_eq!(w.tbl8_groups(), 0);
    w.replace_all([]).unwrap();
    assert!(w.is_empty());
    assert_eq!(lookup(&r, "192.168.7.7"), None);
}

#[test]
fn replace_all_with_an_invalid_next_hop_keeps_the_old_table() {
    let (mut w, r) = new(LpmConfig::default());
    w.insert(net("10.0.0.0/8"), 1).unwrap();
    let err = w.replace_all([(net("11.0.0.0/8"), 2), (net("12.0.0.0/8"), u32::MAX)]);
    assert!(matches!(err, Err(LpmError::NextHopTooLarge(u32::MAX))));
    assert_eq!(lookup(&r, "10.0.0.1"), Some(1));
    assert_eq!(lookup(&r, "11.0.0.1"), None);
    assert_eq!(w.len(), 1);
}

#[test]
fn replace_all_that_runs_out_of_groups_keeps_the_old_table() {
    let (mut w, r) = new(LpmConfig {
        max_tbl8_groups: 2,
        ..LpmConfig::default()
    });
    w.insert(net("10.0.0.0/32"), 1).unwrap();
    let routes = (0..3u32).map(|i| {
        (
            Ipv4Net::new(Ipv4Addr::from(0x0b00_0000 + (i << 8)), 32).unwrap(),
            i,
        )
    });
    assert!(matches!(
        w.replace_all(routes),
        Err(LpmError::TableFull { .. })
    ));
    assert_eq!(lookup(&r, "10.0.0.0"), Some(1));
    assert_eq!(lookup(&r, "11.0.0.0"), None);
    assert_eq!(w.tbl8_groups(), 1);
    // The writer's pool still describes the old table.
    w.insert(net("10.0.1.0/32"), 2).unwrap();
    assert_eq!(lookup(&r, "10.0.1.0"), Some(2));
}

#[test]
fn a_view_pinned_before_replace_all_keeps_answering_from_the_old_table() {
    let (mut w, r) = new(LpmConfig::default());
    w.insert(net("10.0.0.0/8"), 1).unwrap();
    w.insert(net("10.0.0.1/32"), 2).unwrap();
    let r2 = r.clone();
    let old_view = r2.pin();
    w.replace_all([(net("10.0.0.0/8"), 3)]).unwrap();
    assert_eq!(old_view.lookup(ip("10.0.0.1")), Some(2));
    assert_eq!(old_view.lookup(ip("10.9.0.1")), Some(1));
    assert_eq!(lookup(&r, "10.0.0.1"), Some(3));
    drop(old_view);
    w.reclaim();
}

#[test]
fn routes_and_len_list_every_rule() {
    let (mut w, _r) = new(LpmConfig::default());
    let mut want = vec![
        (net("0.0.0.0/0"), 0),
        (net("10.0.0.0/8"), 1),
        (net("10.244.1.0/24"), 2),
        (net("10.244.1.128/25"), 3),
        (net("10.244.1.1/32"), 4),
    ];
    for &(p, nh) in &want {
        w.insert(p, nh).unwrap();
    }
    let mut got: Vec<_> = w.routes().collect();
    got.sort();
    want.sort();
    assert_eq!(got, want);
    assert_eq!(w.len(), 5);
}

#[test]
fn lookup_batch_agrees_with_lookup_and_stops_at_the_shorter_slice() {
    let (mut w, r) = new(LpmConfig::default());
    w.insert(net("10.0.0.0/8"), 1).unwrap();
    w.insert(net("10.0.0.128/25"), 2).unwrap();
    w.insert(net("10.0.3.0/24"), 3).unwrap();
    let addrs: Vec<u32> = (0..1000u32)
        .map(|i| 0x0a00_0000 + i * 7)
        .chain([0, u32::MAX])
        .collect();
    let view = r.pin();
    let mut out = vec![Some(99); addrs.len()];
    view.lookup_batch(&addrs, &mut out);
    for (a, o) in addrs.iter().zip(&out) {
        assert_eq!(*o, view.lookup(*a), "address {}", Ipv4Addr::from(*a));
    }
    let mut short = vec![Some(99); 3];
    view.lookup_batch(&addrs, &mut short);
    assert_eq!(short, out[..3]);
    let mut long = vec![Some(99); 5];
    view.lookup_batch(&addrs[..2], &mut long);
    assert_eq!(&long[2..], &[Some(99); 3]);
}

#[test]
fn churn_of_long_routes_reuses_tbl8_groups_instead_of_growing() {
    let (mut w, r) = new(LpmConfig::default());
    for i in 0..20_000u32 {
        let p = Ipv4Net::new(Ipv4Addr::from(0x0a00_0000 + (i << 8) + 1), 32).unwrap();
        w.insert(p, i).unwrap();
        w.remove(p);
    }
    assert_eq!(w.tbl8_groups(), 0);
    // Without reuse, 20000 groups would take ten 2 MiB commit steps. Reuse waits for
    // grace periods, so allow a couple of extra steps for readers of other tests that
    // happened to stay pinned for a while.
    assert!(
        w.memory_bytes() < TBL24_BYTES + 3 * COMMIT_BYTES + (1 << 20),
        "{}",
        w.memory_bytes()
    );
    assert_eq!(lookup(&r, "10.0.0.1"), None);
}

#[test]
fn memory_bytes_counts_tbl24_and_committed_groups() {
    let (mut w, _r) = new(LpmConfig::default());
    let empty = w.memory_bytes();
    assert!(empty >= TBL24_BYTES);
    w.insert(net("10.0.0.1/32"), 1).unwrap();
    assert!(w.memory_bytes() >= empty + COMMIT_BYTES);
}

#[test]
fn handles_are_send_and_the_reader_is_sync() {
    fn send<T: Send>() {}
    fn sync<T: Sync>() {}
    send::<LpmWriter>();
    send::<LpmReader>();
    sync::<LpmReader>();
    send::<LpmError>();
    sync::<LpmError>();
}

#[test]
fn table_without_tbl8_groups_still_serves_short_routes() {
    let (mut w, r) = new(LpmConfig {
        max_tbl8_groups: 0,
        huge_pages: false,
    });
    w.insert(net("10.0.0.0/24"), 1).unwrap();
    assert!(matches!(
        w.insert(net("10.0.0.0/25"), 2),
        Err(LpmError::TableFull { groups: 0, .. })
    ));
    assert_eq!(lookup(&r, "10.0.0.1"), Some(1));
}

// ---------------------------------------------------------------------------------------
// Property tests against the naive reference

#[derive(Debug, Clone)]
enum Op {
    Insert(Ipv4Net, NextHopId),
    Remove(Ipv4Net),
    ReplaceAll(Vec<(Ipv4Net, NextHopId)>),
}

/// Prefixes crowded into a few /16s so they overlap a lot, with every interesting length:
/// /0 (rarely: an edit of /0 rewrites all 16M tbl24 entries, 0.35 s in a debug build),
/// /8-/23, /24, /25-/32.
fn prefix() -> impl Strategy<Value = Ipv4Net> {
    let len = prop_oneof![
        1 => Just(0u8),
        20 => 8u8..=23,
        20 => Just(24u8),
        40 => 25u8..=32,
    ];
    let addr = (
        prop::sample::select(vec![10u32, 11, 192]),
        0u32..2,
        prop::sample::select(vec![0u32, 1, 2, 255]),
        any::<u8>(),
    )
        .prop_map(|(a, b, c, d)| (a << 24) | (b << 16) | (c << 8) | u32::from(d));
    (addr, len).prop_map(|(a, l)| Ipv4Net::new(Ipv4Addr::from(a), l).unwrap().trunc())
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (prefix(), 0..=MAX_NEXT_HOP).prop_map(|(p, nh)| Op::Insert(p, nh)),
        3 => prefix().prop_map(Op::Remove),
        1 => prop::collection::vec((prefix(), 0u32..1000), 0..8).prop_map(Op::ReplaceAll),
    ]
}

/// Addresses at and around the edges of every prefix involved, plus the extremes.
fn probe_addresses(prefixes: &[Ipv4Net], extra: &[u32]) -> Vec<u32> {
    let mut v = vec![0, 1, u32::MAX, 0x0a00_0000, 0x0aff_ffff];
    for p in prefixes {
        let (lo, hi) = (u32::from(p.network()), u32::from(p.broadcast()));
        v.extend([
            lo,
            hi,
            lo.wrapping_sub(1),
            hi.wrapping_add(1),
            lo + (hi - lo) / 2,
        ]);
    }
    v.extend_from_slice(extra);
    v
}

fn check(w: &LpmWriter, r: &LpmReader, naive: &Naive, addrs: &[u32]) -> Result<(), TestCaseError> {
    let view = r.pin();
    for &a in addrs {
        prop_assert_eq!(
            view.lookup(a),
            naive.lookup(a),
            "address {}",
            Ipv4Addr::from(a)
        );
    }
    let mut batch = vec![None; addrs.len()];
    view.lookup_batch(addrs, &mut batch);
    for (&a, &b) in addrs.iter().zip(&batch) {
        prop_assert_eq!(b, naive.lookup(a), "batched address {}", Ipv4Addr::from(a));
    }
    prop_assert_eq!(w.len(), naive.0.len());
    prop_assert_eq!(w.tbl8_groups() as usize, naive.long_slash24s());
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn table_agrees_with_a_naive_reference_after_every_change(
        ops in prop::collection::vec(op(), 1..32),
        extra in prop::collection::vec(any::<u32>(), 16),
    ) {
        let (mut w, r) = new(LpmConfig::default());
        let mut naive = Naive::default();
        let mut seen = Vec::new();
        for op in ops {
            match op {
                Op::Insert(p, nh) => {
                    seen.push(p);
                    prop_assert_eq!(w.insert(p, nh).unwrap(), naive.insert(p, nh));
                }
                Op::Remove(p) => {
                    seen.push(p);
                    prop_assert_eq!(w.remove(p), naive.remove(p));
                }
                Op::ReplaceAll(routes) => {
                    seen.extend(routes.iter().map(|(p, _)| *p));
                    w.replace_all(routes.iter().copied()).unwrap();
                    naive = Naive::default();
                    for (p, nh) in routes {
                        naive.insert(p, nh);
                    }
                }
            }
            check(&w, &r, &naive, &probe_addresses(&seen, &extra))?;
        }
        let mut got: Vec<_> = w.routes().map(|(p, nh)| (Naive::key(p), nh)).collect();
        got.sort();
        let want: Vec<_> = naive.0.iter().map(|(k, v)| (*k, *v)).collect();
        prop_assert_eq!(got, want);
    }
}

// ---------------------------------------------------------------------------------------
// Concurrency: readers look up while the writer edits (DPDK test_lpm test21 style)

/// A deterministic xorshift, so the writer's script is the same on every run.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[test]
fn concurrent_lookups_see_the_old_or_the_new_route_never_another() {
    const STEPS: usize = 3000;
    // 10.0.0.0/8 is always present; the writer plays with prefixes inside 10.1.0.0/16,
    // several of them needing tbl8 groups, some sharing a /24.
    let base = (net("10.0.0.0/8"), 1);
    let pool: Vec<Ipv4Net> = [
        "10.1.0.0/16",
        "10.1.0.0/20",
        "10.1.2.0/23",
        "10.1.2.0/24",
        "10.1.2.0/25",
        "10.1.2.128/26",
        "10.1.2.200/32",
        "10.1.2.201/32",
        "10.1.3.0/24",
        "10.1.3.7/32",
        "10.1.4.64/27",
        "10.1.5.0/31",
    ]
    .iter()
    .map(|s| net(s))
    .collect();

    // The script: states[s] is the rule set after step s.
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    let mut states = vec![Naive::default()];
    states[0].insert(base.0, base.1);
    let mut script = Vec::new();
    for step in 1..=STEPS {
        let mut next = states[step - 1].clone();
        let nh = 100 + step as u32;
        let op = match rng.below(10) {
            0 => {
                let mut routes = vec![base];
                routes.extend(pool.iter().filter(|_| rng.below(2) == 0).map(|&p| (p, nh)));
                next = Naive::default();
                for &(p, n) in &routes {
                    next.insert(p, n);
                }
                Op::ReplaceAll(routes)
            }
            1..=3 => {
                let p = pool[rng.below(pool.len())];
                next.remove(p);
                Op::Remove(p)
            }
            _ => {
                let p = pool[rng.below(pool.len())];
                next.insert(p, nh);
                Op::Insert(p, nh)
            }
        };
        script.push(op);
        states.push(next);
    }

    let probes = probe_addresses(&pool, &[0x0a01_0205, 0x0a01_02c8, 0x0a01_0307]);
    // expected[s][i]: the answer for probes[i] in state s.
    let expected: Vec<Vec<Option<NextHopId>>> = states
        .iter()
        .map(|st| probes.iter().map(|&a| st.lookup(a)).collect())
        .collect();

    let (mut w, r) = new(LpmConfig::default());
    w.insert(base.0, base.1).unwrap();
    // `done`: the last step completely applied; `started`: the step being applied.
    let done = AtomicUsize::new(0);
    let started = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);

    std::thread::scope(|s| {
        let readers: Vec<_> = (0..2)
            .map(|id| {
                let (r, probes, expected) = (r.clone(), &probes, &expected);
                let (done, started, stop) = (&done, &started, &stop);
                s.spawn(move || {
                    let mut lookups = 0u64;
                    let mut batch = vec![None; probes.len()];
                    // Relaxed: a plain stop flag.
                    while !stop.load(Ordering::Relaxed) {
                        // Acquire: pairs with the writer's Release store of `done`, so
                        // every edit up to step `lo` is visible to what follows.
                        let lo = done.load(Ordering::Acquire);
                        let view = r.pin();
                        if id == 0 {
                            for (i, &a) in probes.iter().enumerate() {
                                let got = view.lookup(a);
                                // Acquire fence: pairs with the writer's Release fence after
                                // it announces a step, so seeing any store of step s implies
                                // seeing `started >= s`.
                                fence(Ordering::Acquire);
                                let hi = started.load(Ordering::Relaxed);
                                assert!(
                                    (lo..=hi).any(|st| expected[st][i] == got),
                                    "{} -> {got:?}, not the answer of any state {lo}..={hi}",
                                    Ipv4Addr::from(a)
                                );
                            }
                        } else {
                            view.lookup_batch(probes, &mut batch);
                            fence(Ordering::Acquire);
                            let hi = started.load(Ordering::Relaxed);
                            for (i, got) in batch.iter().enumerate() {
                                assert!(
                                    (lo..=hi).any(|st| expected[st][i] == *got),
                                    "batched {} -> {got:?}, not the answer of any state {lo}..={hi}",
                                    Ipv4Addr::from(probes[i])
                                );
                            }
                        }
                        lookups += probes.len() as u64;
                    }
                    lookups
                })
            })
            .collect();

        for (step, op) in script.iter().enumerate().map(|(i, op)| (i + 1, op)) {
            // Relaxed store + Release fence: every table store of this step comes after
            // the fence, so a reader that sees one (and then fences) sees `started`.
            started.store(step, Ordering::Relaxed);
            fence(Ordering::Release);
            match op {
                Op::Insert(p, nh) => {
                    w.insert(*p, *nh).unwrap();
                }
                Op::Remove(p) => {
                    w.remove(*p);
                }
                Op::ReplaceAll(routes) => w.replace_all(routes.iter().copied()).unwrap(),
            }
            // Release: publishes the completed step to readers' Acquire load of `done`.
            done.store(step, Ordering::Release);
            if step % 64 == 0 {
                std::thread::yield_now();
            }
        }
        // Relaxed: a plain stop flag.
        stop.store(true, Ordering::Relaxed);
        for h in readers {
            let lookups = h.join().expect("reader thread");
            assert!(lookups > 0);
        }
    });

    // And the final table is exactly the final state.
    let last = states.last().unwrap();
    let view = r.pin();
    for &a in &probes {
        assert_eq!(view.lookup(a), last.lookup(a));
    }
    assert_eq!(w.tbl8_groups() as usize, last.long_slash24s());
}
