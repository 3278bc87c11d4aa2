//! `podfwd::netlink` against a real kernel: two namespaces joined by a veth pair.
//!
//! Netlink code runs inside a namespace through [`in_netns`]: a thread that enters the
//! namespace with setns(2) and runs a closure there. Sockets keep the namespace they were
//! opened in, so a [`NeighbourMonitor`] created that way can be used from the test thread.

use std::fs::File;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use podfwd::netlink::{
    self, interface, interface_by_index, neighbour, neighbour_entry, nud, remove_neighbour,
    resolve, resolve_managed, NeighbourEvent, NeighbourMonitor, NetlinkError,
};
use podfwd::wire::MacAddr;

use crate::harness::{skip_unless_root, Netns};

const MAC_A: &str = "02:00:00:00:02:0a";
const MAC_B: &str = "02:00:00:00:02:0b";
const IP_A: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 1);
const IP_B: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 2);

fn mac(s: &str) -> MacAddr {
    s.parse().expect("valid MAC")
}

/// Runs `f` on a thread inside `ns`'s network namespace and returns its result.
pub(crate) fn in_netns<T: Send + 'static>(ns: &Netns, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/run/netns/{}", ns.name());
    let handle = std::thread::spawn(move || {
        let file = File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
        // SAFETY: the fd is a valid namespace file kept open across the call; setns only
        // changes this thread's network namespace (the thread ends after `f`).
        let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
        f()
    });
    handle
        .join()
        .unwrap_or_else(|p| std::panic::resume_unwind(p))
}

/// Node `a` (va, 10.99.0.1/24) and node `b` (vb, 10.99.0.2/24) on one veth. va has 3 TX
/// and 2 RX queues, MTU 1400 and a second address.
fn two_nodes(tag: &str) -> (Netns, Netns) {
    let a = Netns::new(tag).expect("namespace a");
    let b = Netns::new(tag).expect("namespace b");
    for ns in [&a, &b] {
        ns.disable_ipv6().expect("disable IPv6");
    }
    a.ip(&[
        "link",
        "add",
        "va",
        "numtxqueues",
        "3",
        "numrxqueues",
        "2",
        "type",
        "veth",
        "peer",
        "name",
        "vb",
        "netns",
        b.name(),
    ])
    .expect("veth pair");
    a.set_mac("va", MAC_A).expect("mac a");
    b.set_mac("vb", MAC_B).expect("mac b");
    a.ip(&["link", "set", "dev", "va", "mtu", "1400"])
        .expect("mtu");
    a.add_addr("va", "10.99.0.1/24").expect("address a");
    a.add_addr("va", "10.98.0.1/16").expect("second address a");
    b.add_addr("vb", "10.99.0.2/24").expect("address b");
    a.link_up("va").expect("up a");
    b.link_up("vb").expect("up b");
    (a, b)
}

fn ifindex(ns: &Netns, name: &'static str) -> u32 {
    in_netns(ns, move || interface(name))
        .expect("interface")
        .index
}

/// Polls until `pred` matches an event (returned with the time it took) or `timeout`.
fn wait_event(
    mon: &mut NeighbourMonitor,
    seen: &mut Vec<NeighbourEvent>,
    timeout: Duration,
    pred: impl Fn(&NeighbourEvent) -> bool,
) -> Option<(NeighbourEvent, Duration)> {
    let start = Instant::now();
    loop {
        let left = timeout.saturating_sub(start.elapsed());
        let evs = mon.poll_events(left).expect("poll_events");
        for ev in evs {
            seen.push(ev);
            if pred(&ev) {
                return Some((ev, start.elapsed()));
            }
        }
        if start.elapsed() >= timeout {
            return None;
        }
    }
}

#[test]
fn interface_reports_index_mac_mtu_addresses_and_queues() {
    skip_unless_root!();
    let (a, _b) = two_nodes("nlif");
    let (va, kernel_index, lo) = in_netns(&a, || {
        // SAFETY: the argument is a valid NUL-terminated string.
        let idx = unsafe { libc::if_nametoindex(c"va".as_ptr()) };
        (interface("va"), idx, interface("lo"))
    });
    let va = va.expect("interface va");
    assert_eq!(va.index, kernel_index);
    assert_eq!(va.name, "va");
    assert_eq!(va.mac, mac(MAC_A));
    assert_eq!(va.mtu, 1400);
    assert_eq!(
        va.ipv4,
        vec![
            "10.99.0.1/24".parse().unwrap(),
            "10.98.0.1/16".parse().unwrap()
        ]
    );
    assert!(va.up && va.carrier, "{va:?}");
    assert_eq!((va.num_rx_queues, va.num_tx_queues), (2, 3));

    let lo = lo.expect("interface lo");
    assert_eq!(lo.index, 1);
    assert_eq!(lo.ipv4, vec!["127.0.0.1/8".parse().unwrap()]);
    assert_eq!(lo.mac, MacAddr::ZERO);

    let idx = va.index;
    let by_index = in_netns(&a, move || interface_by_index(idx)).expect("by index");
    assert_eq!(by_index, va);
}

#[test]
fn interface_errors_name_what_is_missing() {
    skip_unless_root!();
    let (a, _b) = two_nodes("nlifmiss");
    let (missing, bad, by_index) = in_netns(&a, || {
        (
            interface("nodeA-ul"),
            interface("a/very/long/name"),
            interface_by_index(4242),
        )
    });
    let missing = missing.expect_err("nodeA-ul does not exist");
    assert!(matches!(missing, NetlinkError::NoSuchInterface(_)));
    assert_eq!(
        missing.to_string(),
        "interface nodeA-ul not found in this network namespace"
    );
    assert!(matches!(
        bad.expect_err("invalid name"),
        NetlinkError::InvalidInterfaceName(_)
    ));
    assert_eq!(
        by_index.expect_err("no such index").to_string(),
        "interface index 4242 not found in this network namespace"
    );
}

#[test]
fn monitor_reports_permanent_add_lladdr_change_and_delete() {
    skip_unless_root!();
    let (a, _b) = two_nodes("nlmon");
    let idx = ifindex(&a, "va");
    let mut mon = in_netns(&a, NeighbourMonitor::new).expect("monitor");
    let initial = mon.dump().expect("dump");
    let ip = Ipv4Addr::new(10, 99, 0, 50);
    assert!(!initial.iter().any(|e| e.ip == ip), "{initial:?}");
    let mut seen = Vec::new();

    a.ip(&[
        "neigh",
        "add",
        "10.99.0.50",
        "lladdr",
        "02:00:00:00:00:50",
        "dev",
        "va",
        "nud",
        "permanent",
    ])
    .expect("neigh add");
    let (ev, _) = wait_event(&mut mon, &mut seen, Duration::from_secs(1), |e| e.ip == ip)
        .unwrap_or_else(|| panic!("no event for the add; saw {seen:?}"));
    assert_eq!(
        ev,
        NeighbourEvent {
            ifindex: idx,
            ip,
            mac: Some(mac("02:00:00:00:00:50")),
            state: nud::PERMANENT
        }
    );

    let changed = Instant::now();
    a.ip(&[
        "neigh",
        "change",
        "10.99.0.50",
        "lladdr",
        "02:00:00:00:00:51",
        "dev",
        "va",
    ])
    .expect("neigh change");
    let new_mac = Some(mac("02:00:00:00:00:51"));
    let (ev, _) = wait_event(&mut mon, &mut seen, Duration::from_secs(1), |e| {
        e.ip == ip && e.mac == new_mac
    })
    .unwrap_or_else(|| panic!("lladdr change not seen within 1 s; saw {seen:?}"));
    let latency = changed.elapsed();
    assert!(latency < Duration::from_secs(1), "{latency:?}");
    assert_eq!(ev.state, nud::PERMANENT);
    assert_eq!(mon.current(idx, ip), new_mac);

    a.ip(&["neigh", "del", "10.99.0.50", "dev", "va"])
        .expect("neigh del");
    let before = seen.len();
    let (ev, _) = wait_event(&mut mon, &mut seen, Duration::from_secs(1), |e| {
        e.ip == ip && e.state == nud::NONE
    })
    .unwrap_or_else(|| panic!("no event for the delete; saw {seen:?}"));
    assert_eq!(
        ev,
        NeighbourEvent {
            ifindex: idx,
            ip,
            mac: None,
            state: nud::NONE
        }
    );
    // 6.18 announces a deletion as FAILED (RTM_NEWNEIGH) then RTM_DELNEIGH: both
    // without a MAC.
    assert!(seen[before..].iter().all(|e| e.mac.is_none()), "{seen:?}");
    assert_eq!(mon.current(idx, ip), None);
    assert!(!mon.dump().expect("dump").iter().any(|e| e.ip == ip));
    eprintln!("monitor events: {seen:?}; lladdr change seen after {latency:?}");
}

#[test]
fn resolve_makes_the_kernel_arp_and_reach_the_peer() {
    skip_unless_root!();
    let (a, b) = two_nodes("nlres");
    let idx = ifindex(&a, "va");
    let mut mon = in_netns(&a, NeighbourMonitor::new).expect("monitor");
    mon.dump().expect("dump");
    assert_eq!(
        in_netns(&a, move || neighbour(idx, IP_B)).expect("lookup"),
        None
    );

    let start = Instant::now();
    in_netns(&a, move || resolve(idx, IP_B)).expect("resolve");
    let mut seen = Vec::new();
    let (ev, _) = wait_event(&mut mon, &mut seen, Duration::from_secs(2), |e| {
        e.ip == IP_B && e.mac.is_some()
    })
    .unwrap_or_else(|| panic!("peer not resolved within 2 s; saw {seen:?}"));
    let took = start.elapsed();
    assert_eq!(ev.mac, Some(mac(MAC_B)));
    assert_eq!(ev.state, nud::REACHABLE);
    assert_eq!(ev.ifindex, idx);
    // Nothing but the peer's MAC was ever reported (INCOMPLETE is not notified).
    assert!(
        seen.iter()
            .all(|e| e.ip != IP_B || e.mac == Some(mac(MAC_B))),
        "{seen:?}"
    );
    let entry = in_netns(&a, move || neighbour_entry(idx, IP_B))
        .expect("lookup")
        .expect("entry exists");
    assert_eq!(entry.mac, Some(mac(MAC_B)));
    assert_eq!(entry.state, nud::REACHABLE);
    // The peer saw our ARP request: it learned our MAC from it.
    let b_idx = ifindex(&b, "vb");
    let learned = in_netns(&b, move || neighbour(b_idx, IP_A)).expect("lookup in b");
    assert_eq!(
        learned,
        Some(mac(MAC_A)),
        "b did not learn a's MAC from an ARP request"
    );
    eprintln!("resolve events: {seen:?}; REACHABLE after {took:?}");
}

#[test]
fn resolve_of_a_silent_address_ends_failed() {
    skip_unless_root!();
    let (a, _b) = two_nodes("nlfail");
    a.sysctl("net.ipv4.neigh.va.retrans_time_ms", "100")
        .expect("sysctl");
    let idx = ifindex(&a, "va");
    let mut mon = in_netns(&a, NeighbourMonitor::new).expect("monitor");
    mon.dump().expect("dump");
    let ip = Ipv4Addr::new(10, 99, 0, 77);
    in_netns(&a, move || resolve(idx, ip)).expect("resolve");
    let mut seen = Vec::new();
    let (ev, took) = wait_event(&mut mon, &mut seen, Duration::from_secs(3), |e| {
        e.ip == ip && e.state == nud::FAILED
    })
    .unwrap_or_else(|| panic!("no FAILED within 3 s; saw {seen:?}"));
    assert_eq!(ev.mac, None);
    assert_eq!(
        in_netns(&a, move || neighbour(idx, ip)).expect("lookup"),
        None
    );
    eprintln!("silent address: {seen:?}; FAILED after {took:?}");
}

#[test]
fn resolve_retries_a_failed_entry_when_the_peer_appears() {
    skip_unless_root!();
    let (a, b) = two_nodes("nlretry");
    a.sysctl("net.ipv4.neigh.va.retrans_time_ms", "100")
        .expect("sysctl");
    let idx = ifindex(&a, "va");
    let mut mon = in_netns(&a, NeighbourMonitor::new).expect("monitor");
    mon.dump().expect("dump");
    let ip = Ipv4Addr::new(10, 99, 0, 3);
    let mut seen = Vec::new();
    in_netns(&a, move || resolve(idx, ip)).expect("resolve");
    wait_event(&mut mon, &mut seen, Duration::from_secs(2), |e| {
        e.ip == ip && e.state == nud::FAILED
    })
    .unwrap_or_else(|| panic!("no FAILED; saw {seen:?}"));
    // The node comes back: a new resolve starts over from FAILED.
    b.add_addr("vb", "10.99.0.3/24").expect("address");
    in_netns(&a, move || resolve(idx, ip)).expect("resolve again");
    let (ev, took) = wait_event(&mut mon, &mut seen, Duration::from_secs(1), |e| {
        e.ip == ip && e.mac.is_some()
    })
    .unwrap_or_else(|| panic!("not resolved after the retry; saw {seen:?}"));
    assert_eq!((ev.mac, ev.state), (Some(mac(MAC_B)), nud::REACHABLE));
    eprintln!("retry: REACHABLE {took:?} after the second resolve");
}

#[test]
fn resolve_leaves_a_permanent_entry_alone() {
    skip_unless_root!();
    let (a, _b) = two_nodes("nlperm");
    let idx = ifindex(&a, "va");
    a.neigh_permanent("10.99.0.60", "02:00:00:00:00:60", "va")
        .expect("permanent entry");
    let ip = Ipv4Addr::new(10, 99, 0, 60);
    in_netns(&a, move || resolve(idx, ip)).expect("resolve");
    std::thread::sleep(Duration::from_millis(200));
    let entry = in_netns(&a, move || neighbour_entry(idx, ip))
        .expect("lookup")
        .expect("entry still exists");
    assert_eq!(entry.mac, Some(mac("02:00:00:00:00:60")));
    assert_eq!(entry.state, nud::PERMANENT, "{}", nud::name(entry.state));
}

#[test]
fn lookups_and_requests_on_unknown_things() {
    skip_unless_root!();
    let (a, _b) = two_nodes("nlunknown");
    let idx = ifindex(&a, "va");
    let (lookup, bad_resolve, removed) = in_netns(&a, move || {
        (
            neighbour(idx, Ipv4Addr::new(10, 99, 0, 99)),
            resolve(4242, IP_B),
            remove_neighbour(idx, Ipv4Addr::new(10, 99, 0, 99)),
        )
    });
    assert_eq!(lookup.expect("lookup"), None);
    assert!(
        matches!(bad_resolve, Err(NetlinkError::NoSuchIfindex(4242))),
        "{bad_resolve:?}"
    );
    assert!(!removed.expect("remove of a missing entry"));
}

#[test]
fn mac_change_announced_by_arp_is_seen_within_a_second() {
    skip_unless_root!();
    let (a, b) = two_nodes("nlmacchg");
    let idx = ifindex(&a, "va");
    let mut mon = in_netns(&a, NeighbourMonitor::new).expect("monitor");
    mon.dump().expect("dump");
    in_netns(&a, move || resolve(idx, IP_B)).expect("resolve");
    let mut seen = Vec::new();
    wait_event(&mut mon, &mut seen, Duration::from_secs(2), |e| {
        e.ip == IP_B && e.mac == Some(mac(MAC_B))
    })
    .unwrap_or_else(|| panic!("peer not resolved; saw {seen:?}"));

    // Node b "reboots" with a new MAC and talks to a: its ARP request carries the new
    // MAC, which overrides a's entry.
    let new_mac = "02:00:00:00:02:bb";
    b.set_mac("vb", new_mac).expect("new mac");
    b.ip(&["neigh", "flush", "dev", "vb"]).expect("flush");
    let start = Instant::now();
    b.exec(&["ping", "-n", "-c", "1", "-W", "1", "10.99.0.1"])
        .expect("ping a from b");
    let (ev, _) = wait_event(&mut mon, &mut seen, Duration::from_secs(1), |e| {
        e.ip == IP_B && e.mac == Some(mac(new_mac))
    })
    .unwrap_or_else(|| panic!("new MAC not seen within 1 s; saw {seen:?}"));
    let took = start.elapsed();
    assert!(took < Duration::from_secs(1), "{took:?}");
    assert_eq!(mon.current(idx, IP_B), Some(mac(new_mac)));
    eprintln!(
        "new MAC seen {took:?} after b started talking, state {}",
        nud::name(ev.state)
    );
}

#[test]
fn gratuitous_arp_updates_the_mac_within_a_second() {
    skip_unless_root!();
    let (a, b) = two_nodes("nlgarp");
    let idx = ifindex(&a, "va");
    let mut mon = in_netns(&a, NeighbourMonitor::new).expect("monitor");
    mon.dump().expect("dump");
    in_netns(&a, move || resolve(idx, IP_B)).expect("resolve");
    let mut seen = Vec::new();
    wait_event(&mut mon, &mut seen, Duration::from_secs(2), |e| {
        e.ip == IP_B && e.mac == Some(mac(MAC_B))
    })
    .unwrap_or_else(|| panic!("peer not resolved; saw {seen:?}"));
    // With arp_notify, b announces a new MAC itself (gratuitous ARP on address change).
    b.sysctl("net.ipv4.conf.vb.arp_notify", "1")
        .expect("arp_notify");
    let new_mac = "02:00:00:00:02:cc";
    let start = Instant::now();
    b.set_mac("vb", new_mac).expect("new mac");
    let (ev, _) = wait_event(&mut mon, &mut seen, Duration::from_secs(1), |e| {
        e.ip == IP_B && e.mac == Some(mac(new_mac))
    })
    .unwrap_or_else(|| panic!("gratuitous ARP not seen within 1 s; saw {seen:?}"));
    let took = start.elapsed();
    assert!(took < Duration::from_secs(1), "{took:?}");
    eprintln!(
        "GARP: new MAC seen after {took:?}, state {}",
        nud::name(ev.state)
    );
}

#[test]
fn silent_mac_change_is_found_by_reverification_and_a_new_resolve() {
    skip_unless_root!();
    let (a, b) = two_nodes("nlsilent");
    // Short timers so the kernel re-verifies within the test's time.
    for (k, v) in [
        ("base_reachable_time_ms", "300"),
        ("delay_first_probe_time", "1"),
        ("retrans_time_ms", "100"),
    ] {
        a.sysctl(&format!("net.ipv4.neigh.va.{k}"), v)
            .expect("sysctl");
    }
    let idx = ifindex(&a, "va");
    let mut mon = in_netns(&a, NeighbourMonitor::new).expect("monitor");
    mon.dump().expect("dump");
    in_netns(&a, move || resolve(idx, IP_B)).expect("resolve");
    let mut seen = Vec::new();
    wait_event(&mut mon, &mut seen, Duration::from_secs(2), |e| {
        e.ip == IP_B && e.mac == Some(mac(MAC_B))
    })
    .unwrap_or_else(|| panic!("peer not resolved; saw {seen:?}"));

    // b changes its MAC and says nothing. a's unicast probes to the old MAC go
    // unanswered, the entry FAILs, and the control-thread policy (resolve again on
    // FAILED) finds the new MAC by broadcast.
    let new_mac = "02:00:00:00:02:dd";
    b.set_mac("vb", new_mac).expect("new mac");
    let found = wait_event(&mut mon, &mut seen, Duration::from_secs(4), |e| {
        if e.ip == IP_B && e.state == nud::FAILED {
            resolve_in(&a, idx, IP_B);
        }
        e.ip == IP_B && e.mac == Some(mac(new_mac))
    });
    let (ev, took) = found.unwrap_or_else(|| panic!("new MAC not found; saw {seen:?}"));
    assert!(
        seen.iter().any(|e| e.ip == IP_B && e.state == nud::FAILED),
        "expected FAILED before the new MAC: {seen:?}"
    );
    assert_eq!(ev.state, nud::REACHABLE);
    eprintln!("silent MAC change found after {took:?} (reachable 0.3 s, delay 1 s, retrans 0.1 s)");
}

fn resolve_in(ns: &Netns, ifindex: u32, ip: Ipv4Addr) {
    in_netns(ns, move || resolve(ifindex, ip)).expect("resolve");
}

#[test]
fn monitor_recovers_lost_notifications_by_redumping() {
    skip_unless_root!();
    let (a, _b) = two_nodes("nlenobufs");
    let idx = ifindex(&a, "va");
    a.neigh_permanent("10.99.0.40", "02:00:00:00:00:40", "va")
        .expect("entry");
    // A tiny receive buffer: a burst of changes overflows it.
    let mut mon = in_netns(&a, || NeighbourMonitor::with_receive_buffer(1)).expect("monitor");
    let initial = mon.dump().expect("dump");
    let gone = Ipv4Addr::new(10, 99, 0, 40);
    assert!(initial.iter().any(|e| e.ip == gone && e.mac.is_some()));

    let mut batch = String::from("neigh del 10.99.0.40 dev va\n");
    for i in 0..300u32 {
        batch.push_str(&format!(
            "neigh add 10.99.{}.{} lladdr 02:00:00:01:{:02x}:{:02x} dev va nud permanent\n",
            1 + i / 200,
            1 + i % 200,
            i / 256,
            i % 256
        ));
    }
    let file = std::env::temp_dir().join(format!("{}.batch", a.name()));
    std::fs::write(&file, batch).expect("batch file");
    let r = a.ip(&["-batch", file.to_str().unwrap()]);
    let _ = std::fs::remove_file(&file);
    r.expect("ip -batch");

    let events = mon.poll_events(Duration::from_secs(1)).expect("poll");
    assert!(mon.resyncs() >= 1, "expected ENOBUFS and a re-dump");
    assert!(
        events.iter().any(|e| e.ip == gone && e.mac.is_none()),
        "deletion of .40 not reported"
    );
    for i in 0..300u32 {
        let ip = Ipv4Addr::new(10, 99, (1 + i / 200) as u8, (1 + i % 200) as u8);
        let want = MacAddr([2, 0, 0, 1, (i / 256) as u8, (i % 256) as u8]);
        assert!(
            events.iter().any(|e| e.ip == ip && e.mac == Some(want)),
            "{ip} missing"
        );
        assert_eq!(mon.current(idx, ip), Some(want));
    }
    assert_eq!(mon.current(idx, gone), None);
    eprintln!(
        "{} events, {} resyncs after 301 changes",
        events.len(),
        mon.resyncs()
    );
}

#[test]
fn managed_neighbour_is_resolved_by_the_kernel_and_removable() {
    skip_unless_root!();
    let (a, _b) = two_nodes("nlmanaged");
    let idx = ifindex(&a, "va");
    let mut mon = in_netns(&a, NeighbourMonitor::new).expect("monitor");
    mon.dump().expect("dump");
    in_netns(&a, move || resolve_managed(idx, IP_B)).expect("managed");
    let mut seen = Vec::new();
    wait_event(&mut mon, &mut seen, Duration::from_secs(2), |e| {
        e.ip == IP_B && e.mac == Some(mac(MAC_B)) && e.state == nud::REACHABLE
    })
    .unwrap_or_else(|| panic!("managed entry not resolved; saw {seen:?}"));
    let shown = a.ip(&["neigh", "show", "10.99.0.2"]).expect("neigh show");
    assert!(String::from_utf8_lossy(&shown.stdout).contains("managed"));
    assert!(in_netns(&a, move || remove_neighbour(idx, IP_B)).expect("remove"));
    assert_eq!(
        in_netns(&a, move || netlink::neighbour(idx, IP_B)).expect("lookup"),
        None
    );
}
