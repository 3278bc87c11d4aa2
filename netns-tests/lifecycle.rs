//! Lifecycle and robustness of real `podfwd run` processes in the two-node lab cluster
//! (`podfwd::lab::Cluster`, VXLAN mode):
//!
//! - the node's own traffic (ICMP, ARP, TCP to the node, pod to its gateway) still works
//!   while podfwd owns the interfaces: the classifier passes it to the kernel;
//! - hand-built malformed frames from a pod and from the underlay are dropped and counted
//!   under the right reason (or passed to the kernel by the classifier, which drops them),
//!   and never reach a pod, while a ping between the pods keeps working;
//! - SIGTERM detaches everything (no XDP left, control socket removed) and the kernel path
//!   podfwd installed keeps forwarding; SIGKILL leaves nothing that blocks the next start;
//! - `podfwd stats` prints the counters as JSON and as text, and says when nothing runs;
//! - TTL expiry and IP options, which podfwd leaves to the kernel, are answered or
//!   forwarded as on a flannel node.
//!
//! Frames are injected with AF_PACKET sockets and observed with AF_PACKET sockets, both
//! opened by threads that entered a cluster namespace with setns(2). The classifier's
//! counters are read from its `stats` map (found through the program id `ip link` shows).
//! Nothing here touches the root namespace's interfaces.

use std::fs::File;
use std::io;
use std::mem;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use libbpf_rs::query::{ProgInfoIter, ProgInfoQueryOptions};
use libbpf_rs::{MapCore, MapFlags, MapHandle};
use podfwd::backend::afxdp::xdp::Stat;
use podfwd::config::Mode;
use podfwd::counters::DropReason;
use podfwd::lab::{Cluster, ClusterSpec, NodeKind, SIDES};
use podfwd::wire::checksum::checksum;
use podfwd::wire::MacAddr;

use crate::harness::{pid_alive, skip_unless_root, wait_until, Netns};

const A: usize = 0;
const B: usize = 1;
/// Frames of each malformed kind sent in the malformed-frames test.
const ROUNDS: u64 = 5;
/// Marks the UDP payload of every injected frame: `pfxlc:<name>;`.
const MAGIC: &[u8] = b"pfxlc:";
const VXLAN_PORT: u16 = 8472;

fn podfwd_exe() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_podfwd"))
}

// --- the cluster ---------------------------------------------------------------------------

fn cluster(tag: &str, nodes: [NodeKind; 2]) -> Cluster {
    let spec = ClusterSpec {
        mode: Mode::Vxlan,
        nodes,
        ..ClusterSpec::default()
    };
    Cluster::build(tag, spec).unwrap_or_else(|e| panic!("building the cluster: {e}"))
}

fn start(c: &mut Cluster, i: usize) -> u32 {
    match c.start_podfwd(i, podfwd_exe()) {
        Ok(pid) => pid,
        Err(e) => panic!("starting podfwd on node {i}: {e}\n{}", c.logs()),
    }
}

/// Counters of node `i`'s podfwd by name.
fn counters(c: &Cluster, i: usize) -> std::collections::BTreeMap<String, u64> {
    match c.stats(i) {
        Ok(s) => s.total,
        Err(e) => panic!("stats of node {i}: {e}\n{}", c.logs()),
    }
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `ping -c count` from `ns` to `dst`; (replies received, output).
fn ping(ns: &Netns, dst: &str, count: u32, interval: &str) -> (u32, String) {
    let out = ns
        .exec_unchecked(&[
            "ping",
            "-n",
            "-c",
            &count.to_string(),
            "-i",
            interval,
            "-W",
            "2",
            dst,
        ])
        .expect("run ping");
    let text = text(&out);
    let received = text
        .lines()
        .find(|l| l.contains("packets transmitted"))
        .and_then(|l| {
            l.split(',')
                .find(|p| p.contains("received"))?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or(0);
    (received, text)
}

/// Pings `dst` from `ns` until one reply comes back (neighbours resolve, podfwd's FIB
/// learns them), then asserts that `count` pings in a row are all answered.
fn assert_ping(c: &Cluster, ns: &Netns, dst: &str, count: u32) {
    let mut last = String::new();
    let up = wait_until(Duration::from_secs(10), || {
        let (got, out) = ping(ns, dst, 1, "0.2");
        last = out;
        got == 1
    });
    assert!(
        up,
        "{} cannot reach {dst}:\n{last}\n{}",
        ns.name(),
        c.logs()
    );
    let (got, out) = ping(ns, dst, count, "0.2");
    assert_eq!(
        got,
        count,
        "{} -> {dst}: every ping answered:\n{out}\n{}",
        ns.name(),
        c.logs()
    );
}

/// Asserts that pod A reaches pod B.
fn assert_pod_ping(c: &Cluster) {
    assert_ping(c, &c.pods[A], SIDES[B].pod_ip, 5);
}

// --- XDP on the nodes' interfaces ------------------------------------------------------------

/// `ip -o -d link show dev IFACE` in `ns`.
fn link_line(ns: &Netns, iface: &str) -> String {
    let out = ns
        .ip(&["-o", "-d", "link", "show", "dev", iface])
        .expect("ip link show");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Whether `ip link` shows an XDP program on `iface` (native, generic or offloaded).
fn xdp_shown(ns: &Netns, iface: &str) -> bool {
    link_line(ns, iface)
        .split_whitespace()
        .any(|w| w.starts_with("xdp") || w.starts_with("prog/xdp"))
}

/// The id of the XDP program on `iface`, from `ip -j link`.
fn xdp_prog_id(ns: &Netns, iface: &str) -> Option<u32> {
    fn find(v: &serde_json::Value) -> Option<u32> {
        match v {
            serde_json::Value::Object(m) => {
                let id = m
                    .get("prog")
                    .and_then(|p| p.get("id"))
                    .and_then(|id| id.as_u64());
                match id {
                    Some(id) => u32::try_from(id).ok(),
                    None => m.values().find_map(find),
                }
            }
            serde_json::Value::Array(a) => a.iter().find_map(find),
            _ => None,
        }
    }
    let out = ns
        .ip(&["-j", "-d", "link", "show", "dev", iface])
        .expect("ip -j link show");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("ip -j prints JSON");
    find(&v)
}

/// The classifier's counters on `iface` (its `stats` map, summed over CPUs), by
/// `Stat as usize`.
fn xdp_stats(ns: &Netns, iface: &str) -> [u64; Stat::COUNT] {
    let id = xdp_prog_id(ns, iface)
        .unwrap_or_else(|| panic!("no XDP program on {iface}: {}", link_line(ns, iface)));
    let info = ProgInfoIter::with_query_opts(ProgInfoQueryOptions::default().include_map_ids(true))
        .find(|p| p.id == id)
        .unwrap_or_else(|| panic!("no BPF program with id {id}"));
    for map_id in info.map_ids {
        let Ok(map) = MapHandle::from_map_id(map_id) else {
            continue;
        };
        if map.name() != "stats" {
            continue;
        }
        let mut out = [0u64; Stat::COUNT];
        for s in Stat::ALL {
            let per_cpu = map
                .lookup_percpu(&(s as u32).to_ne_bytes(), MapFlags::ANY)
                .expect("read the classifier's stats map")
                .unwrap_or_default();
            out[s as usize] = per_cpu
                .iter()
                .filter_map(|v| Some(u64::from_ne_bytes(v.get(..8)?.try_into().ok()?)))
                .sum();
        }
        return out;
    }
    panic!("program {id} on {iface} has no stats map")
}

fn stat_delta(before: &[u64; Stat::COUNT], after: &[u64; Stat::COUNT], s: Stat) -> u64 {
    after[s as usize] - before[s as usize]
}

// --- raw frames --------------------------------------------------------------------------------

fn mac(s: &str) -> [u8; 6] {
    s.parse::<MacAddr>().expect("valid MAC").octets()
}

fn ip4(s: &str) -> [u8; 4] {
    s.parse::<std::net::Ipv4Addr>()
        .expect("valid IPv4")
        .octets()
}

fn marked(name: &str) -> Vec<u8> {
    let mut p = MAGIC.to_vec();
    p.extend_from_slice(name.as_bytes());
    p.push(b';');
    p
}

fn ethernet(dst: &str, src: &str, payload: &[u8]) -> Vec<u8> {
    let mut f = mac(dst).to_vec();
    f.extend_from_slice(&mac(src));
    f.extend_from_slice(&0x0800u16.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// Sets the IPv4 header checksum of the (20-byte) header at the start of `p`.
fn fix_ip_checksum(p: &mut [u8]) {
    p[10..12].copy_from_slice(&[0, 0]);
    let sum = checksum(&p[..20]);
    p[10..12].copy_from_slice(&sum.to_be_bytes());
}

/// An IPv4/UDP packet (DF, no options, valid header checksum, UDP checksum 0).
fn ipv4_udp(src: &str, dst: &str, ttl: u8, dport: u16, payload: &[u8]) -> Vec<u8> {
    let udp_len = 8 + payload.len();
    let total = 20 + udp_len;
    let mut p = vec![0x45, 0];
    p.extend_from_slice(&(total as u16).to_be_bytes());
    p.extend_from_slice(&[0x12, 0x34, 0x40, 0, ttl, 17, 0, 0]);
    p.extend_from_slice(&ip4(src));
    p.extend_from_slice(&ip4(dst));
    fix_ip_checksum(&mut p);
    p.extend_from_slice(&40000u16.to_be_bytes());
    p.extend_from_slice(&dport.to_be_bytes());
    p.extend_from_slice(&(udp_len as u16).to_be_bytes());
    p.extend_from_slice(&[0, 0]);
    p.extend_from_slice(payload);
    p
}

/// A pod A -> pod B datagram as pod A puts it on its eth0 (to its gateway's MAC).
fn pod_frame(ip: &[u8]) -> Vec<u8> {
    ethernet(SIDES[A].node_pod_mac, SIDES[A].pod_mac, ip)
}

fn pod_packet(name: &str, ttl: u8) -> Vec<u8> {
    ipv4_udp(SIDES[A].pod_ip, SIDES[B].pod_ip, ttl, 9, &marked(name))
}

/// The malformed frames pod A sends, with what must happen to each: the classifier
/// passes it (and the kernel drops it, or answers it with an ICMP error), or podfwd drops
/// it for a reason.
fn pod_side_frames() -> Vec<(&'static str, Vec<u8>, Outcome)> {
    let mut v = Vec::new();
    // Ethernet + the first 10 bytes of an IPv4 header.
    let p = pod_packet("pod-truncated", 64);
    v.push((
        "pod-truncated",
        pod_frame(&p[..10]),
        Outcome::Passed(Stat::PassMalformed),
    ));
    // IHL 4 (16-byte header): invalid.
    let mut p = pod_packet("pod-bad-ihl", 64);
    p[0] = 0x44;
    fix_ip_checksum(&mut p);
    v.push((
        "pod-bad-ihl",
        pod_frame(&p),
        Outcome::Passed(Stat::PassMalformed),
    ));
    // IHL 15 (60-byte header) in a 38-byte packet: the classifier sees "options" and
    // lets the kernel (which rejects the header) have it.
    let mut p = pod_packet("pod-ihl-past-end", 64);
    p[0] = 0x4f;
    fix_ip_checksum(&mut p);
    v.push((
        "pod-ihl-past-end",
        pod_frame(&p),
        Outcome::Passed(Stat::PassIpOptions),
    ));
    // A wrong header checksum: owned (peer subnet), podfwd verifies and drops.
    let mut p = pod_packet("pod-bad-checksum", 64);
    p[10] ^= 0x5a;
    v.push((
        "pod-bad-checksum",
        pod_frame(&p),
        Outcome::Dropped(DropReason::BadChecksum),
    ));
    // TTL 1: the kernel's (it answers time exceeded when it can forward; here it has no
    // route to pod B's subnet).
    v.push((
        "pod-ttl1",
        pod_frame(&pod_packet("pod-ttl1", 1)),
        Outcome::Passed(Stat::PassTtl),
    ));
    // Total length 100 bytes past the end of the frame.
    let mut p = pod_packet("pod-total-len-past-frame", 64);
    let claimed = (p.len() + 100) as u16;
    p[2..4].copy_from_slice(&claimed.to_be_bytes());
    fix_ip_checksum(&mut p);
    v.push((
        "pod-total-len-past-frame",
        pod_frame(&p),
        Outcome::Passed(Stat::PassMalformed),
    ));
    // 1454 bytes of IPv4: the most a veth with MTU 1450 accepts (MTU + 14 + 4 for a VLAN
    // tag, is_skb_forwardable), 1504 once encapsulated: more than the uplink's 1500. The
    // kernel's FIB says it does not fit podfwd.1 (MTU 1450): the kernel answers frag
    // needed (DF is set).
    let mut payload = marked("pod-too-big");
    payload.resize(TOO_BIG_IP_LEN - 28, 0xee);
    v.push((
        "pod-too-big",
        pod_frame(&ipv4_udp(SIDES[A].pod_ip, SIDES[B].pod_ip, 64, 9, &payload)),
        Outcome::Passed(Stat::PassFragNeeded),
    ));
    v
}

const TOO_BIG_IP_LEN: usize = 1454;

/// A VXLAN packet node B -> node A as it arrives on nodeA-ul.
fn vxlan_frame(outer_src: &str, flags: u8, vni: u32, inner: &[u8]) -> Vec<u8> {
    let mut vx = vec![flags, 0, 0, 0];
    vx.extend_from_slice(&vni.to_be_bytes()[1..]);
    vx.push(0);
    vx.extend_from_slice(inner);
    ethernet(
        SIDES[A].node_ul_mac,
        SIDES[B].node_ul_mac,
        &ipv4_udp(outer_src, SIDES[A].node_ip, 64, VXLAN_PORT, &vx),
    )
}

/// The inner frame of a pod B -> pod A datagram, to VTEP MAC `dst`.
fn inner_frame(name: &str, dst_vtep: &str) -> Vec<u8> {
    ethernet(
        dst_vtep,
        SIDES[B].vtep_mac,
        &ipv4_udp(SIDES[B].pod_ip, SIDES[A].pod_ip, 64, 9, &marked(name)),
    )
}

fn underlay_frames() -> Vec<(&'static str, Vec<u8>, Outcome)> {
    let b_ip = SIDES[B].node_ip;
    let a_vtep = SIDES[A].vtep_mac;
    // Inner Ethernet + the first 10 bytes of its IPv4 header.
    let inner_truncated = inner_frame("ul-inner-truncated", a_vtep)[..24].to_vec();
    let mut inner_bad_checksum = inner_frame("ul-inner-bad-checksum", a_vtep);
    inner_bad_checksum[14 + 10] ^= 0x5a;
    vec![
        (
            "ul-wrong-vni",
            vxlan_frame(b_ip, 0x08, 2, &inner_frame("ul-wrong-vni", a_vtep)),
            Outcome::Dropped(DropReason::BadVni),
        ),
        (
            "ul-no-i-flag",
            vxlan_frame(b_ip, 0x00, 1, &inner_frame("ul-no-i-flag", a_vtep)),
            Outcome::Dropped(DropReason::BadVxlan),
        ),
        // UDP to 8472 carrying only 4 bytes of VXLAN header.
        (
            "ul-truncated-vxlan",
            ethernet(
                SIDES[A].node_ul_mac,
                SIDES[B].node_ul_mac,
                &ipv4_udp(b_ip, SIDES[A].node_ip, 64, VXLAN_PORT, &[0x08, 0, 0, 0]),
            ),
            Outcome::Dropped(DropReason::BadVxlan),
        ),
        (
            "ul-unknown-vtep",
            vxlan_frame(
                "10.168.0.99",
                0x08,
                1,
                &inner_frame("ul-unknown-vtep", a_vtep),
            ),
            Outcome::Dropped(DropReason::UnknownVtep),
        ),
        (
            "ul-wrong-inner-mac",
            vxlan_frame(
                b_ip,
                0x08,
                1,
                &inner_frame("ul-wrong-inner-mac", "0e:00:00:00:00:0c"),
            ),
            Outcome::Dropped(DropReason::WrongInnerMac),
        ),
        (
            "ul-inner-truncated",
            vxlan_frame(b_ip, 0x08, 1, &inner_truncated),
            Outcome::Dropped(DropReason::Malformed),
        ),
        (
            "ul-inner-bad-checksum",
            vxlan_frame(b_ip, 0x08, 1, &inner_bad_checksum),
            Outcome::Dropped(DropReason::BadChecksum),
        ),
    ]
}

/// What must become of an injected frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// The classifier passes it to the kernel, counted under this stat.
    Passed(Stat),
    /// podfwd drops it, counted under this reason.
    Dropped(DropReason),
}

/// Moves the calling thread into `ns`'s network namespace.
fn enter_netns(ns_name: &str) -> io::Result<()> {
    let file = File::open(format!("/run/netns/{ns_name}"))?;
    // SAFETY: setns on a namespace fd we own; it changes only this thread's network
    // namespace (the thread is ours and ends with the closure it runs).
    let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn if_index(iface: &str) -> io::Result<i32> {
    let name = std::ffi::CString::new(iface).map_err(io::Error::other)?;
    // SAFETY: `name` is NUL-terminated and outlives the call.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if index == 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(index as i32)
}

/// An AF_PACKET socket bound to `iface` for `protocol` (network order; 0: send only).
fn packet_socket(iface: &str, protocol: u16) -> io::Result<(OwnedFd, libc::sockaddr_ll)> {
    // SAFETY: plain socket(2); the fd is owned right below.
    let fd = unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            i32::from(protocol),
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a new socket nothing else owns.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: sockaddr_ll is a plain C struct; all-zero is a valid value.
    let mut addr: libc::sockaddr_ll = unsafe { mem::zeroed() };
    addr.sll_family = libc::AF_PACKET as u16;
    addr.sll_ifindex = if_index(iface)?;
    addr.sll_protocol = protocol;
    addr.sll_halen = 6;
    // SAFETY: `addr` is a valid sockaddr_ll for the length given.
    let rc = unsafe {
        libc::bind(
            sock.as_raw_fd(),
            (&addr as *const libc::sockaddr_ll).cast(),
            mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((sock, addr))
}

/// Sends raw Ethernet frames out of `iface` in `ns` (from a thread inside it).
fn send_frames(ns: &Netns, iface: &str, frames: &[&[u8]]) -> io::Result<()> {
    let name = ns.name().to_string();
    thread::scope(|s| {
        s.spawn(|| {
            enter_netns(&name)?;
            let (sock, addr) = packet_socket(iface, 0)?;
            for f in frames {
                // SAFETY: the buffer and the address are valid for the lengths given
                // and outlive the call; sendto only reads them.
                let n = unsafe {
                    libc::sendto(
                        sock.as_raw_fd(),
                        f.as_ptr().cast(),
                        f.len(),
                        0,
                        (&addr as *const libc::sockaddr_ll).cast(),
                        mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
                    )
                };
                if n != f.len() as isize {
                    return Err(io::Error::last_os_error());
                }
            }
            Ok(())
        })
        .join()
        .unwrap_or_else(|p| std::panic::resume_unwind(p))
    })
}

/// Records the names of the marked UDP datagrams `iface` in `ns` receives (not the ones
/// it sends; ICMP errors quoting a marked datagram do not count).
struct Sniffer {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Vec<String>>>,
    thread: Option<JoinHandle<()>>,
}

impl Sniffer {
    fn start(ns: &Netns, iface: &str) -> Sniffer {
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (ready_tx, ready_rx) = mpsc::channel();
        let (name, ifname) = (ns.name().to_string(), iface.to_string());
        let (stop2, seen2) = (stop.clone(), seen.clone());
        let thread = thread::spawn(move || {
            let open = || -> io::Result<OwnedFd> {
                enter_netns(&name)?;
                let (sock, _) = packet_socket(&ifname, (libc::ETH_P_ALL as u16).to_be())?;
                let tv = libc::timeval {
                    tv_sec: 0,
                    tv_usec: 50_000,
                };
                // SAFETY: `tv` is a valid timeval for the length given.
                let rc = unsafe {
                    libc::setsockopt(
                        sock.as_raw_fd(),
                        libc::SOL_SOCKET,
                        libc::SO_RCVTIMEO,
                        (&tv as *const libc::timeval).cast(),
                        mem::size_of::<libc::timeval>() as libc::socklen_t,
                    )
                };
                if rc != 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(sock)
            };
            let sock = match open() {
                Ok(s) => {
                    let _ = ready_tx.send(Ok(()));
                    s
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                    return;
                }
            };
            let mut buf = vec![0u8; 65536];
            // Relaxed: a stop flag polled every 50 ms.
            while !stop2.load(Ordering::Relaxed) {
                // SAFETY: sockaddr_ll is a plain C struct; all-zero is a valid value.
                let mut from: libc::sockaddr_ll = unsafe { mem::zeroed() };
                let mut from_len = mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
                // SAFETY: `buf` and `from` are valid for the lengths given.
                let n = unsafe {
                    libc::recvfrom(
                        sock.as_raw_fd(),
                        buf.as_mut_ptr().cast(),
                        buf.len(),
                        0,
                        (&mut from as *mut libc::sockaddr_ll).cast(),
                        &mut from_len,
                    )
                };
                if n <= 0 || from.sll_pkttype == libc::PACKET_OUTGOING {
                    continue;
                }
                if let Some(name) = marked_udp_name(&buf[..n as usize]) {
                    seen2.lock().unwrap().push(name);
                }
            }
        });
        match ready_rx.recv_timeout(Duration::from_secs(5)) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => panic!("sniffer on {iface} in {}: {e}", ns.name()),
            Err(e) => panic!("sniffer on {iface} in {}: {e}", ns.name()),
        }
        Sniffer {
            stop,
            seen,
            thread: Some(thread),
        }
    }

    fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for Sniffer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The name in a received frame that is IPv4/UDP with a `pfxlc:<name>;` payload.
fn marked_udp_name(f: &[u8]) -> Option<String> {
    if f.len() < 14 + 20 || f[12..14] != [0x08, 0x00] || f[14 + 9] != 17 {
        return None;
    }
    let ihl = usize::from(f[14] & 0x0f) * 4;
    let payload = f.get(14 + ihl + 8..)?;
    let rest = payload.strip_prefix(MAGIC)?;
    let end = rest.iter().position(|&b| b == b';')?;
    Some(String::from_utf8_lossy(&rest[..end]).into_owned())
}

// --- 1. the node's own traffic -------------------------------------------------------------------

/// A TCP echo server for one connection (argv: address, port).
const ECHO_SERVER: &str = r#"
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2])))
s.listen(1)
s.settimeout(20)
c, _ = s.accept()
c.settimeout(10)
while True:
    d = c.recv(65536)
    if not d:
        break
    c.sendall(d)
c.close()
"#;

/// Connects (retrying until the server listens), sends 1 MiB, checks it comes back.
const ECHO_CLIENT: &str = r#"
import socket, sys, threading, time
data = bytes(range(256)) * 4096
deadline = time.time() + 10
while True:
    try:
        c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=2)
        break
    except OSError as e:
        if time.time() > deadline:
            sys.exit("connect: %s" % e)
        time.sleep(0.05)
c.settimeout(10)
got = []
def reader():
    while True:
        d = c.recv(65536)
        if not d:
            break
        got.append(d)
t = threading.Thread(target=reader)
t.start()
c.sendall(data)
c.shutdown(socket.SHUT_WR)
t.join()
back = b"".join(got)
if back != data:
    sys.exit("echo mismatch: sent %d bytes, got %d back" % (len(data), len(back)))
print("echoed %d bytes" % len(back))
"#;

#[test]
fn node_own_traffic_still_works_while_podfwd_runs() {
    skip_unless_root!();
    let mut c = cluster("lcnode", [NodeKind::Podfwd, NodeKind::Podfwd]);
    start(&mut c, A);
    start(&mut c, B);
    assert_pod_ping(&c);
    let (a, b) = (&c.nodes[A], &c.nodes[B]);
    let (a_ul, b_ul) = (SIDES[A].ul_if, SIDES[B].ul_if);
    for (ns, iface) in [(a, a_ul), (a, SIDES[A].pod_if), (b, b_ul)] {
        assert!(
            xdp_shown(ns, iface),
            "podfwd attached XDP: {}",
            link_line(ns, iface)
        );
    }
    let a_before = xdp_stats(a, a_ul);
    let b_before = xdp_stats(b, b_ul);

    // ICMP between the nodes' underlay addresses.
    assert_ping(&c, a, SIDES[B].node_ip, 5);

    // ARP: forget node B, ping again, the kernel learns it again.
    a.ip(&["neigh", "del", SIDES[B].node_ip, "dev", a_ul])
        .expect("delete node B's neighbour entry");
    assert_ping(&c, a, SIDES[B].node_ip, 3);
    let mut entry = String::new();
    let reachable = wait_until(Duration::from_secs(5), || {
        let out = a
            .ip(&["neigh", "show", SIDES[B].node_ip, "dev", a_ul])
            .expect("ip neigh show");
        entry = String::from_utf8_lossy(&out.stdout).trim().to_string();
        entry.contains("REACHABLE")
    });
    assert!(reachable, "node B's entry comes back REACHABLE: {entry:?}");
    assert!(
        entry.contains(&format!("lladdr {}", SIDES[B].node_ul_mac)),
        "{entry:?}"
    );

    // TCP to node B's own address.
    let port = "7001";
    b.spawn(&["python3", "-c", ECHO_SERVER, SIDES[B].node_ip, port])
        .expect("start the echo server");
    let out = a
        .exec_unchecked(&["python3", "-c", ECHO_CLIENT, SIDES[B].node_ip, port])
        .expect("run the echo client");
    assert!(
        out.status.success(),
        "TCP echo node A -> node B: {}\n{}",
        text(&out),
        c.logs()
    );

    // All of that went through the classifiers, to the kernel.
    let a_after = xdp_stats(a, a_ul);
    let b_after = xdp_stats(b, b_ul);
    let d = |before, after, s| stat_delta(before, after, s);
    assert!(
        d(&b_before, &b_after, Stat::PassLocal) >= 8,
        "node B's classifier passed the pings and the TCP segments to its kernel"
    );
    assert!(
        d(&a_before, &a_after, Stat::PassLocal) >= 8,
        "node A's classifier passed the replies to its kernel"
    );
    assert!(
        d(&b_before, &b_after, Stat::PassL2Group) >= 1,
        "node B's classifier passed node A's broadcast ARP request"
    );
    assert!(
        d(&a_before, &a_after, Stat::PassNonIpv4) >= 1,
        "node A's classifier passed node B's ARP reply"
    );

    // A pod reaches its own gateway (the node's pod-side address).
    let pod_before = xdp_stats(a, SIDES[A].pod_if);
    assert_ping(&c, &c.pods[A], SIDES[A].pod_gw, 3);
    let pod_after = xdp_stats(a, SIDES[A].pod_if);
    assert!(
        stat_delta(&pod_before, &pod_after, Stat::PassNotOwned) >= 3,
        "the pod's echo requests to its gateway went to the kernel"
    );

    // And podfwd still forwards between the pods after the neighbour churn.
    assert_pod_ping(&c);
}

// --- 2. malformed frames ---------------------------------------------------------------------------

#[test]
fn malformed_frames_are_dropped_and_counted_while_valid_traffic_flows() {
    skip_unless_root!();
    let mut c = cluster("lcmalformed", [NodeKind::Podfwd, NodeKind::Podfwd]);
    start(&mut c, A);
    start(&mut c, B);
    assert_pod_ping(&c);
    // Also resolves pod A on node A, for the valid VXLAN frame sent at the end.
    assert_ping(&c, &c.pods[B], SIDES[A].pod_ip, 1);

    // The pod's MTU (1450) would not let the oversized frame out of its socket.
    c.pods[A]
        .ip(&["link", "set", "eth0", "mtu", "1500"])
        .expect("raise pod A's MTU");

    let pod_frames = pod_side_frames();
    let ul_frames = underlay_frames();
    let valid_pod = pod_frame(&pod_packet("pod-valid", 64));
    let valid_ul = vxlan_frame(
        SIDES[B].node_ip,
        0x08,
        1,
        &inner_frame("ul-valid", SIDES[A].vtep_mac),
    );

    let sniff_a = Sniffer::start(&c.pods[A], "eth0");
    let sniff_b = Sniffer::start(&c.pods[B], "eth0");
    let ctr_before = counters(&c, A);
    let pod_xdp_before = xdp_stats(&c.nodes[A], SIDES[A].pod_if);
    let ul_xdp_before = xdp_stats(&c.nodes[A], SIDES[A].ul_if);

    // Inject while pod A pings pod B.
    let (pinged, ping_out) = thread::scope(|s| {
        let pinger = s.spawn(|| ping(&c.pods[A], SIDES[B].pod_ip, 15, "0.1"));
        for _ in 0..ROUNDS {
            let frames: Vec<&[u8]> = pod_frames.iter().map(|(_, f, _)| f.as_slice()).collect();
            send_frames(&c.pods[A], "eth0", &frames).expect("inject pod A's frames");
            let frames: Vec<&[u8]> = ul_frames.iter().map(|(_, f, _)| f.as_slice()).collect();
            send_frames(&c.nodes[B], SIDES[B].ul_if, &frames).expect("inject on node B's uplink");
            thread::sleep(Duration::from_millis(50));
        }
        pinger.join().unwrap()
    });
    // Valid controls last: once they arrive, everything sent before them on the same
    // link has been decided.
    send_frames(&c.pods[A], "eth0", &[&valid_pod]).expect("inject the valid pod frame");
    send_frames(&c.nodes[B], SIDES[B].ul_if, &[&valid_ul]).expect("inject the valid VXLAN");
    c.pods[A]
        .ip(&["link", "set", "eth0", "mtu", "1450"])
        .expect("restore pod A's MTU");

    assert_eq!(
        pinged,
        15,
        "the pods' ping kept working during the injection:\n{ping_out}\n{}",
        c.logs()
    );

    // What podfwd and the classifier must have counted.
    let mut want_drops = std::collections::HashMap::new();
    let mut want_passes = std::collections::HashMap::new();
    for (_, _, outcome) in pod_frames.iter().chain(&ul_frames) {
        match outcome {
            Outcome::Dropped(r) => *want_drops.entry(*r).or_insert(0) += ROUNDS,
            Outcome::Passed(s) => *want_passes.entry(*s).or_insert(0) += ROUNDS,
        }
    }
    let drop_delta = |now: &std::collections::BTreeMap<String, u64>, r: DropReason| {
        let k = format!("drop_{}", r.name());
        now[&k] - ctr_before[&k]
    };
    let mut now = counters(&c, A);
    let counted = wait_until(Duration::from_secs(5), || {
        now = counters(&c, A);
        want_drops.iter().all(|(r, n)| drop_delta(&now, *r) >= *n)
    });
    let mut pod_xdp = xdp_stats(&c.nodes[A], SIDES[A].pod_if);
    let passed = wait_until(Duration::from_secs(5), || {
        pod_xdp = xdp_stats(&c.nodes[A], SIDES[A].pod_if);
        want_passes
            .iter()
            .all(|(s, n)| stat_delta(&pod_xdp_before, &pod_xdp, *s) >= *n)
    });
    let got_controls = wait_until(Duration::from_secs(5), || {
        sniff_a.seen().iter().any(|n| n == "ul-valid")
            && sniff_b.seen().iter().any(|n| n == "pod-valid")
    });
    let ul_xdp = xdp_stats(&c.nodes[A], SIDES[A].ul_if);

    let report = || {
        let drops: Vec<String> = DropReason::ALL
            .iter()
            .map(|r| format!("{}+{}", r.name(), drop_delta(&now, *r)))
            .collect();
        let passes: Vec<String> = Stat::ALL
            .iter()
            .map(|s| format!("{}+{}", s.name(), stat_delta(&pod_xdp_before, &pod_xdp, *s)))
            .collect();
        format!(
            "podfwd drops on node A: {}\nclassifier on {}: {}\npod A saw {:?}\npod B saw {:?}\n{}",
            drops.join(" "),
            SIDES[A].pod_if,
            passes.join(" "),
            sniff_a.seen(),
            sniff_b.seen(),
            c.logs()
        )
    };
    assert!(counted, "podfwd counted every drop\n{}", report());
    assert!(passed, "the classifier passed\n{}", report());
    assert!(got_controls, "the valid frames arrived\n{}", report());
    for r in DropReason::ALL {
        let want = want_drops.get(&r).copied().unwrap_or(0);
        if r == DropReason::NeighbourUnresolved {
            continue; // depends on neighbour timing, not on the frames sent
        }
        assert_eq!(drop_delta(&now, r), want, "drop_{}\n{}", r.name(), report());
    }
    for s in [
        Stat::PassMalformed,
        Stat::PassIpOptions,
        Stat::PassTtl,
        Stat::PassFragNeeded,
    ] {
        let want = want_passes.get(&s).copied().unwrap_or(0);
        assert_eq!(
            stat_delta(&pod_xdp_before, &pod_xdp, s),
            want,
            "classifier {}\n{}",
            s.name(),
            report()
        );
    }
    let vxlan_sent = ROUNDS * ul_frames.len() as u64 + 1;
    assert!(
        stat_delta(&ul_xdp_before, &ul_xdp, Stat::OwnedVxlan) >= vxlan_sent,
        "the uplink classifier handed every VXLAN packet to podfwd\n{}",
        report()
    );
    assert_eq!(
        stat_delta(&ul_xdp_before, &ul_xdp, Stat::NoSocket),
        0,
        "{}",
        report()
    );
    // Nothing but the valid controls reached a pod.
    let mut seen_a = sniff_a.seen();
    let mut seen_b = sniff_b.seen();
    seen_a.dedup();
    seen_b.dedup();
    assert_eq!(seen_a, ["ul-valid"], "{}", report());
    assert_eq!(seen_b, ["pod-valid"], "{}", report());

    // And the pods still talk afterwards.
    assert_pod_ping(&c);
}

// --- 3. SIGTERM ---------------------------------------------------------------------------------------

#[test]
fn sigterm_detaches_everything_and_the_kernel_path_works_again() {
    skip_unless_root!();
    let mut c = cluster("lcsigterm", [NodeKind::Podfwd, NodeKind::KernelVxlan]);
    start(&mut c, A);
    assert_pod_ping(&c);
    let s = counters(&c, A);
    assert!(
        s["encapsulated"] > 0 && s["decapsulated"] > 0,
        "podfwd forwarded the pings: {s:?}"
    );
    let a = &c.nodes[A];
    let ifaces = [SIDES[A].ul_if, SIDES[A].pod_if];
    for iface in ifaces {
        assert!(xdp_shown(a, iface), "{}", link_line(a, iface));
    }
    let sock = c.socket_path(A);
    assert!(sock.exists());

    // Stop it while a TCP flow between the pods keeps its worker busy.
    let server = c.pods[B]
        .spawn(&["iperf3", "-s", "-1", "-B", SIDES[B].pod_ip])
        .expect("start iperf3 -s");
    let listening = wait_until(Duration::from_secs(5), || {
        c.pods[B]
            .exec_unchecked(&["ss", "-Hltn", "sport", "=", ":5201"])
            .is_ok_and(|o| !o.stdout.is_empty())
    });
    assert!(listening, "iperf3 -s listens in pod B");
    let client = c.pods[A]
        .spawn(&[
            "iperf3",
            "--connect-timeout",
            "5000",
            "-c",
            SIDES[B].pod_ip,
            "-t",
            "10",
        ])
        .expect("start iperf3 -c");
    let tx0 = counters(&c, A)["tx"];
    let busy = wait_until(Duration::from_secs(5), || {
        counters(&c, A)["tx"] > tx0 + 1000
    });
    assert!(busy, "the TCP flow goes through podfwd\n{}", c.logs());

    let t = Instant::now();
    let clean = c.stop_podfwd(A);
    let took = t.elapsed();
    c.pods[A].kill(client);
    c.pods[B].kill(server);
    assert!(
        clean,
        "podfwd exits 0 on SIGTERM (took {took:?})\n{}",
        c.logs()
    );
    assert!(
        took < Duration::from_secs(2),
        "podfwd took {took:?} to stop\n{}",
        c.logs()
    );
    let a = &c.nodes[A];
    for iface in ifaces {
        assert!(
            !xdp_shown(a, iface),
            "no XDP program left on {iface}: {}",
            link_line(a, iface)
        );
    }
    assert!(
        !sock.exists(),
        "the control socket {} is removed",
        sock.display()
    );
    let log = std::fs::read_to_string(c.log_path(A)).unwrap_or_default();
    assert!(log.contains("podfwd::control: stopped uptime_s="), "{log}");

    // Node A's kernel forwards at once: podfwd leaves the slow path it installed (the
    // VXLAN device with its neighbours, FDB entries and routes, as flanneld leaves
    // flannel.1), so stopping it never stops forwarding.
    let dev = a
        .exec_unchecked(&["ip", "-d", "link", "show", "podfwd.1"])
        .map(|o| text(&o))
        .unwrap_or_default();
    assert!(
        dev.contains("vxlan id 1") && dev.contains("podfwd-managed"),
        "podfwd.1 stays after SIGTERM: {dev}"
    );
    assert_pod_ping(&c);
}

// --- 4. SIGKILL -----------------------------------------------------------------------------------------

#[test]
fn a_sigkilled_instance_leaves_nothing_that_blocks_the_next_start() {
    skip_unless_root!();
    let mut c = cluster("lcsigkill", [NodeKind::Podfwd, NodeKind::KernelVxlan]);
    let pid = start(&mut c, A);
    assert_eq!(c.podfwd_pid(A), Some(pid));
    // `ip netns exec` execs the command in place: the pid is podfwd's own.
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).expect("read /proc/<pid>/exe");
    assert_eq!(
        exe.canonicalize().unwrap(),
        podfwd_exe().canonicalize().unwrap(),
        "pid {pid} is podfwd"
    );
    assert_pod_ping(&c);
    let ifaces = [SIDES[A].ul_if, SIDES[A].pod_if];
    for iface in ifaces {
        assert!(
            xdp_shown(&c.nodes[A], iface),
            "{}",
            link_line(&c.nodes[A], iface)
        );
    }

    // SAFETY: kill(2) on the podfwd process this test started and has not reaped.
    let rc = unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
    assert_eq!(rc, 0, "kill: {}", io::Error::last_os_error());
    // Reap it (the harness owns the child handle).
    c.nodes[A].kill(pid);
    assert!(!pid_alive(pid as i32), "podfwd (pid {pid}) is gone");

    // The kernel drops the bpf_links with the process's last fds.
    let a = &c.nodes[A];
    let mut left = String::new();
    let detached = wait_until(Duration::from_secs(3), || {
        left = ifaces
            .iter()
            .filter(|i| xdp_shown(a, i))
            .map(|i| link_line(a, i))
            .collect();
        left.is_empty()
    });
    assert!(detached, "XDP left attached after SIGKILL: {left}");
    let sock = c.socket_path(A);
    assert!(
        sock.exists(),
        "a SIGKILLed podfwd leaves its socket file {}",
        sock.display()
    );
    assert!(c.stats(A).is_err(), "nobody answers on the stale socket");

    let pid2 = start(&mut c, A);
    assert_ne!(pid2, pid);
    let log = std::fs::read_to_string(c.log_path(A)).unwrap_or_default();
    assert!(
        !log.contains("removed stale XDP program"),
        "nothing was left attached for the new instance to clean up: {log}"
    );
    assert_pod_ping(&c);
    let s = counters(&c, A);
    assert!(
        s["encapsulated"] > 0 && s["decapsulated"] > 0,
        "the new instance forwards: {s:?}"
    );
    for iface in ifaces {
        assert!(
            xdp_shown(&c.nodes[A], iface),
            "{}",
            link_line(&c.nodes[A], iface)
        );
    }
}

// --- 5. podfwd stats ------------------------------------------------------------------------------------

fn podfwd_stats(args: &[&str]) -> Output {
    Command::new(podfwd_exe())
        .arg("stats")
        .args(args)
        .output()
        .expect("run podfwd stats")
}

#[test]
fn stats_socket_reports_counters_as_json_and_text() {
    skip_unless_root!();
    let mut c = cluster("lcstats", [NodeKind::Podfwd, NodeKind::KernelVxlan]);
    start(&mut c, A);
    assert_pod_ping(&c);
    let sock = c.socket_path(A).display().to_string();

    let out = podfwd_stats(&["--json", "--socket", &sock]);
    assert!(out.status.success(), "{}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("stats --json prints JSON ({e}): {}", text(&out)));
    assert!(v["uptime_secs"].is_u64(), "{v}");
    let total = v["total"].as_object().expect("total is an object");
    let get = |k: &str| {
        total
            .get(k)
            .and_then(|n| n.as_u64())
            .unwrap_or_else(|| panic!("total.{k} is a number: {v}"))
    };
    for k in [
        "rx",
        "tx",
        "forwarded",
        "encapsulated",
        "decapsulated",
        "to_kernel",
        "batches",
        "ring_full",
    ] {
        get(k);
    }
    for r in DropReason::ALL {
        get(&format!("drop_{}", r.name()));
    }
    assert!(get("rx") > 0 && get("tx") > 0, "{v}");
    assert!(get("encapsulated") >= 5 && get("decapsulated") >= 5, "{v}");
    let workers = v["workers"].as_array().expect("workers is an array");
    let cores = c.spec.cores[A];
    assert_eq!(workers.len(), cores.len(), "{v}");
    for (w, core) in workers.iter().zip(cores) {
        assert_eq!(w["core"].as_u64(), Some(*core as u64), "{v}");
    }
    let rx_sum: u64 = workers
        .iter()
        .map(|w| w["counters"]["rx"].as_u64().expect("worker rx"))
        .sum();
    assert_eq!(rx_sum, get("rx"), "totals are the workers' sum: {v}");

    let out = podfwd_stats(&["--socket", &sock]);
    assert!(out.status.success(), "{}", text(&out));
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.starts_with("uptime "), "{table}");
    let value = |name: &str| -> u64 {
        table
            .lines()
            .find_map(|l| {
                let mut w = l.split_whitespace();
                (w.next() == Some(name)).then(|| w.next()?.parse().ok())?
            })
            .unwrap_or_else(|| panic!("the table lists {name}: {table}"))
    };
    for k in [
        "rx",
        "tx",
        "forwarded",
        "encapsulated",
        "decapsulated",
        "to_kernel",
    ] {
        value(k);
    }
    assert!(value("rx") > 0 && value("tx") > 0, "{table}");
    assert!(
        table.contains(&format!("worker on cpu {}", cores[0])),
        "{table}"
    );

    for args in [
        &["--socket", "/nonexistent"][..],
        &["--json", "--socket", "/nonexistent"][..],
    ] {
        let out = podfwd_stats(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", text(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("no podfwd is running"),
            "{args:?}: stderr says no podfwd is running: {err}"
        );
        assert!(out.stdout.is_empty(), "{args:?}: {}", text(&out));
    }
}

// --- what a podfwd node hands to its kernel ---------------------------------------------------------
//
// Packets that podfwd leaves to the kernel, which forwards or answers them as on a flannel
// node (fixed by the kernel slow path, docs/slow-path.md). On flannel nodes a pod's TTL 1 packet gets
// `From 10.244.0.1 icmp_seq=1 Time to live exceeded`, TTL 2 (node A forwards it with
// TTL 1, node B decapsulates and must not forward) gets `From 10.244.1.0 ... Time to live
// exceeded`, so traceroute between pods shows both nodes; and `ping -R` works.

/// `ping -t ttl` from pod A to pod B: the output (ping reports ICMP errors as
/// `From <addr> icmp_seq=N Time to live exceeded`).
fn ping_with_ttl(c: &Cluster, ttl: u8) -> String {
    let out = c.pods[A]
        .exec_unchecked(&[
            "ping",
            "-n",
            "-c",
            "3",
            "-i",
            "0.2",
            "-W",
            "2",
            "-t",
            &ttl.to_string(),
            SIDES[B].pod_ip,
        ])
        .expect("run ping");
    text(&out)
}

/// The lab cluster as `podfwd lab` runs it: podfwd on both nodes, pods reachable.
fn podfwd_cluster(tag: &str) -> Cluster {
    let mut c = cluster(tag, [NodeKind::Podfwd, NodeKind::Podfwd]);
    start(&mut c, A);
    start(&mut c, B);
    assert_pod_ping(&c);
    c
}

/// The classifier passes a pod's TTL 1 packet to the kernel, which has the peer pod
/// subnet's route (podfwd installed it) and answers time exceeded. The same row for
/// every backend and mode: netns-tests/slowpath.rs.
#[test]
fn ttl_expiring_at_the_pods_own_node_is_answered_with_time_exceeded() {
    skip_unless_root!();
    let c = podfwd_cluster("lcttllocal");
    let before = xdp_stats(&c.nodes[A], SIDES[A].pod_if);
    let out = ping_with_ttl(&c, 1);
    let after = xdp_stats(&c.nodes[A], SIDES[A].pod_if);
    assert!(
        stat_delta(&before, &after, Stat::PassTtl) >= 1,
        "the classifier passed the TTL 1 packets to the kernel"
    );
    assert!(
        out.contains(&format!("From {} ", SIDES[A].pod_gw))
            && out.contains("Time to live exceeded"),
        "node A answers time exceeded, as a flannel node does:\n{out}\n{}",
        c.logs()
    );
}

/// A packet whose inner TTL expires at node B after VXLAN decapsulation: node B's
/// classifier passes the VXLAN frame (inner TTL 1) to its kernel VXLAN device, whose
/// kernel answers time exceeded, as a flannel node does.
#[test]
fn ttl_expiring_after_decapsulation_is_answered_with_time_exceeded() {
    skip_unless_root!();
    let c = podfwd_cluster("lcttldecap");
    let before = xdp_stats(&c.nodes[B], SIDES[B].ul_if);
    let out = ping_with_ttl(&c, 2);
    let after = xdp_stats(&c.nodes[B], SIDES[B].ul_if);
    assert!(
        stat_delta(&before, &after, Stat::PassTtl) >= 1,
        "node B's classifier passed the expiring VXLAN frames to the kernel"
    );
    assert!(
        out.contains("Time to live exceeded"),
        "node B answers time exceeded, as a flannel node does:\n{out}\n{}",
        c.logs()
    );
}

/// `ping -R` (IPv4 record-route option) between the pods works through flannel (kernel)
/// nodes, and through podfwd nodes: the classifier passes every packet with IP options
/// to the kernel, which forwards it over the slow path podfwd installed.
#[test]
fn pod_packets_with_ip_options_are_forwarded() {
    skip_unless_root!();
    let c = podfwd_cluster("lcipopts");
    let before = xdp_stats(&c.nodes[A], SIDES[A].pod_if);
    let out = c.pods[A]
        .exec_unchecked(&[
            "ping",
            "-n",
            "-R",
            "-c",
            "3",
            "-i",
            "0.2",
            "-W",
            "2",
            SIDES[B].pod_ip,
        ])
        .expect("run ping -R");
    let after = xdp_stats(&c.nodes[A], SIDES[A].pod_if);
    assert!(
        stat_delta(&before, &after, Stat::PassIpOptions) >= 1,
        "the classifier passed the record-route packets to the kernel"
    );
    assert!(
        out.status.success(),
        "ping -R pod A -> pod B is answered, as through flannel nodes:\n{}\n{}",
        text(&out),
        c.logs()
    );
}

/// What the operator sees: `podfwd trace --drops` shows a malformed VXLAN frame and one
/// from an unknown VTEP with their reasons, as text and as a pcapng Wireshark reads;
/// `/metrics` (the lab serves it on each node's 127.0.0.1:9472) parses with Prometheus'
/// own parser and its counters grow with the traffic.
#[test]
fn trace_shows_drops_with_their_reasons_and_metrics_grow_during_traffic() {
    skip_unless_root!();
    let mut c = cluster("lctrace", [NodeKind::Podfwd, NodeKind::Podfwd]);
    start(&mut c, A);
    start(&mut c, B);
    assert_pod_ping(&c);
    let sock = c.socket_path(A);
    let pcap = c.config_path(A).with_file_name("drops.pcapng");
    let spawn_trace = |extra: &[&str]| {
        std::process::Command::new(podfwd_exe())
            .args(["trace", "--drops", "--count", "2", "--socket"])
            .arg(&sock)
            .args(extra)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("podfwd trace")
    };
    let text = spawn_trace(&[]);
    let file = spawn_trace(&["--write", pcap.to_str().unwrap()]);
    // Both clients attached (the hub says hello first); then the two bad frames.
    thread::sleep(Duration::from_millis(500));
    let a_vtep = SIDES[A].vtep_mac;
    let truncated = ethernet(
        SIDES[A].node_ul_mac,
        SIDES[B].node_ul_mac,
        &ipv4_udp(
            SIDES[B].node_ip,
            SIDES[A].node_ip,
            64,
            VXLAN_PORT,
            &[0x08, 0, 0, 0],
        ),
    );
    let unknown = vxlan_frame(
        "10.168.0.99",
        0x08,
        1,
        &inner_frame("trace-unknown", a_vtep),
    );
    let sent = std::time::Instant::now();
    send_frames(&c.nodes[B], SIDES[B].ul_if, &[&truncated, &unknown]).expect("inject");
    let wait = |child: std::process::Child, what: &str| {
        let out = child.wait_with_output().expect("podfwd trace ends");
        assert!(
            out.status.success(),
            "{what}: {}{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            c.logs()
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let lines = wait(text, "podfwd trace --drops --count 2");
    assert!(
        sent.elapsed() < Duration::from_secs(2),
        "the drops reached the client within a second or so ({:?})",
        sent.elapsed()
    );
    assert!(
        lines.contains("bad_vxlan") && lines.contains("unknown_vtep"),
        "both drops with their reasons:\n{lines}"
    );
    assert!(lines.contains("10.168.0.99"), "{lines}");
    wait(file, "podfwd trace --write");
    let out = std::process::Command::new("tshark")
        .arg("-r")
        .arg(&pcap)
        .args(["-T", "fields", "-e", "frame.comment", "-e", "ip.src"])
        .output()
        .expect("tshark (tools/setup.sh installs it)");
    let fields = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && fields.contains("bad_vxlan") && fields.contains("unknown_vtep"),
        "tshark reads the capture with the reasons as comments:\n{fields}{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Metrics: two scrapes around 20 pings; rx and the drop counter as Prometheus parses them.
    let scrape = || -> std::collections::BTreeMap<String, f64> {
        const SCRIPT: &str = "import urllib.request
from prometheus_client.parser import text_string_to_metric_families
t = urllib.request.urlopen('http://127.0.0.1:9472/metrics', timeout=5).read().decode()
for f in text_string_to_metric_families(t):
    for s in f.samples:
        if s.name == 'podfwd_rx_packets_total' or (s.name == 'podfwd_drops_total' and s.labels.get('reason') == 'unknown_vtep'):
            print(s.name, s.value)
        if s.name in ('podfwd_xsk_wakeups_total', 'podfwd_neighbours'):
            print(s.name, s.value)
        if s.name == 'podfwd_dataplane_info' and s.labels.get('backend') == 'afxdp':
            print(s.name, s.value)
";
        let out = c.nodes[A]
            .exec(&["/usr/bin/python3", "-c", SCRIPT])
            .unwrap_or_else(|e| panic!("scraping /metrics: {e}\n{}", c.logs()));
        let mut m = std::collections::BTreeMap::new();
        for l in String::from_utf8_lossy(&out.stdout).lines() {
            let (k, v) = l.split_once(' ').unwrap();
            *m.entry(k.to_string()).or_insert(0.0) += v.parse::<f64>().unwrap();
        }
        m
    };
    let before = scrape();
    assert_ping(&c, &c.pods[A], SIDES[B].pod_ip, 20);
    thread::sleep(Duration::from_millis(1100)); // the control loop publishes once a second
    let after = scrape();
    assert!(
        after["podfwd_rx_packets_total"] >= before["podfwd_rx_packets_total"] + 20.0,
        "rx grew by the pings: {before:?} -> {after:?}"
    );
    assert!(after["podfwd_drops_total"] >= 1.0, "{after:?}");
    // The AF_XDP workers kicked the kernel to send the replies; the next hop to node B
    // is a neighbour the kernel knows; the mode and backend are labelled.
    assert!(after["podfwd_xsk_wakeups_total"] > 0.0, "{after:?}");
    assert!(after["podfwd_neighbours"] >= 1.0, "{after:?}");
    assert_eq!(after["podfwd_dataplane_info"], 1.0, "{after:?}");
}
