//! Tests of the harness itself: two namespaces joined by a veth pair can talk, and nothing
//! outlives a test, whether it ends normally, panics, or its process is killed.

use std::panic;
use std::process::Command;
use std::time::Duration;

use crate::harness::{self, skip_unless_root, veth_pair, Netns};

fn two_hosts(tag: &str) -> (Netns, Netns) {
    let a = Netns::new(tag).expect("create namespace a");
    let b = Netns::new(tag).expect("create namespace b");
    for ns in [&a, &b] {
        ns.disable_ipv6().expect("disable IPv6");
    }
    veth_pair(&a, "veth-a", &b, "veth-b").expect("create veth pair");
    a.set_mac("veth-a", "02:00:00:00:01:0a").expect("mac a");
    b.set_mac("veth-b", "02:00:00:00:01:0b").expect("mac b");
    a.add_addr("veth-a", "10.99.0.1/24").expect("address a");
    b.add_addr("veth-b", "10.99.0.2/24").expect("address b");
    a.link_up("veth-a").expect("up a");
    b.link_up("veth-b").expect("up b");
    (a, b)
}

#[test]
fn veth_pair_carries_a_ping_and_both_namespaces_vanish_on_drop() {
    skip_unless_root!();
    let (a, b) = two_hosts("selftest");
    let names = [a.name().to_string(), b.name().to_string()];
    assert!(names.iter().all(|n| Netns::exists(n)));

    // The pair exists only inside the two namespaces.
    let root_links = Command::new("ip")
        .args(["-o", "link", "show"])
        .output()
        .unwrap();
    let root_links = String::from_utf8_lossy(&root_links.stdout);
    assert!(!root_links.contains("veth-a") && !root_links.contains("veth-b"));
    let a_link = a.ip(&["-o", "link", "show", "veth-a"]).unwrap();
    assert!(String::from_utf8_lossy(&a_link.stdout).contains("02:00:00:00:01:0a"));

    let ping = a
        .exec(&["ping", "-n", "-c", "1", "-W", "2", "10.99.0.2"])
        .expect("ping b from a");
    let ping = String::from_utf8_lossy(&ping.stdout);
    assert!(ping.contains("1 received"), "{ping}");
    let neigh = a.ip(&["neigh", "show", "10.99.0.2"]).unwrap();
    assert!(String::from_utf8_lossy(&neigh.stdout).contains("02:00:00:00:01:0b"));

    // A background process in b must not keep b alive.
    let sleeper = b.spawn(&["sleep", "300"]).expect("spawn sleep");
    assert!(harness::wait_until(Duration::from_secs(2), || b
        .pids()
        .unwrap()
        .contains(&sleeper)));

    drop(a);
    drop(b);
    for name in &names {
        assert!(!Netns::exists(name), "{name} still exists after drop");
    }
    assert!(
        !harness::pid_alive(sleeper as i32),
        "spawned process {sleeper} survived drop"
    );
}

#[test]
fn namespace_is_deleted_when_the_test_panics() {
    skip_unless_root!();
    let (tx, rx) = std::sync::mpsc::channel();
    let result = panic::catch_unwind(move || {
        let ns = Netns::new("panic").expect("create namespace");
        ns.spawn(&["sleep", "300"]).expect("spawn sleep");
        tx.send(ns.name().to_string()).unwrap();
        panic!("test body fails while holding the namespace");
    });
    assert!(result.is_err());
    let name = rx.recv().unwrap();
    assert!(!Netns::exists(&name), "{name} leaked by a panicking test");
}

#[test]
fn namespaces_of_dead_test_processes_are_removed() {
    skip_unless_root!();
    // A pid that is certainly dead: a child we started and reaped.
    let mut child = Command::new("true").spawn().unwrap();
    let dead_pid = child.id();
    child.wait().unwrap();
    assert!(!harness::pid_alive(dead_pid as i32));
    let stale = format!("{}stale-{dead_pid}-0", harness::PREFIX);
    let live = format!("{}stale-{}-0", harness::PREFIX, std::process::id());
    for name in [&stale, &live] {
        let out = Command::new("ip")
            .args(["netns", "add", name])
            .output()
            .unwrap();
        assert!(out.status.success(), "ip netns add {name}: {out:?}");
    }

    // Another test process (or this one's first Netns::new) may sweep it first: what
    // matters is that it is gone afterwards and the live one is not.
    let removed = harness::remove_stale();
    let stale_gone = !Netns::exists(&stale);
    let live_survived = Netns::exists(&live);
    let _ = Command::new("ip").args(["netns", "del", &live]).output();
    let _ = Command::new("ip").args(["netns", "del", &stale]).output();

    assert!(
        stale_gone,
        "{stale} survived remove_stale (removed {removed:?})"
    );
    assert!(
        !removed.contains(&live) && live_survived,
        "a live process's namespace was removed"
    );
}

#[test]
fn failing_command_error_names_command_and_stderr() {
    skip_unless_root!();
    let ns = Netns::new("errors").expect("create namespace");
    let err = ns
        .ip(&["link", "set", "dev", "no-such-if", "up"])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&format!("ip -n {} link set dev no-such-if up", ns.name())),
        "{err}"
    );
    assert!(err.contains("no-such-if"), "{err}");
    let err = ns.exec(&["false"]).unwrap_err().to_string();
    assert!(err.contains("netns exec") && err.contains("false"), "{err}");
    assert!(Netns::new("Bad-Tag").is_err());
    let out = ns.exec_unchecked(&["false"]).unwrap();
    assert!(!out.status.success());
}

#[test]
fn sysctl_applies_inside_the_namespace_only() {
    skip_unless_root!();
    let ns = Netns::new("sysctl").expect("create namespace");
    let root_before = std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap();
    let inside = if root_before.trim() == "1" { "0" } else { "1" };
    ns.sysctl("net.ipv4.ip_forward", inside).unwrap();
    let got = ns.exec(&["cat", "/proc/sys/net/ipv4/ip_forward"]).unwrap();
    assert_eq!(String::from_utf8_lossy(&got.stdout).trim(), inside);
    let root_after = std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap();
    assert_eq!(
        root_before, root_after,
        "sysctl leaked into the root namespace"
    );
}
