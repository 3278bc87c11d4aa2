//! The in-kernel fast path against the pipeline, byte for byte: the same frames through
//! `podfwd_xdp` with forwarding on (`BPF_PROG_TEST_RUN`) and through the afxdp backend's
//! reference (the same program with forwarding off, then the pipeline over the same FIB).
//!
//! What "equal" means, frame by frame (docs/xdp-fastpath.md):
//! - the classifier passes it (the afxdp backend never sees it): the fast path passes it
//!   unchanged (`XDP_PASS`);
//! - the pipeline transmits it: the fast path redirects (`XDP_REDIRECT`) exactly the
//!   pipeline's output bytes;
//! - the pipeline hands it to the kernel (`ToKernel`, or the drops the afxdp worker hands
//!   back: no route, neighbour unresolved, mtu, fragment): the fast path falls back, here
//!   (no AF_XDP socket) `XDP_PASS` with the frame unchanged;
//! - the pipeline drops it with reason R: the fast path returns `XDP_DROP` and counts R.
//!
//! Needs root (BPF); prints `SKIP:` otherwise. Runs in a fresh network namespace of its
//! own thread (the devmap needs interfaces: its loopback stands in for the ports; nothing
//! is sent by BPF_PROG_TEST_RUN).

use super::*;
use crate::config::Mode as NodeMode;
use crate::counters::{Counters, DropReason};
use crate::lpm::LpmConfig;
use crate::nexthop::{NextHop, PortId};
use crate::pipeline::{FibParams, FibWriter, NodeParams, Packet, Pipeline, PortInfo, Verdict};
use crate::wire::MacAddr;
use etherparse::PacketBuilder;
use std::io::Write as _;

const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;
const XDP_REDIRECT: u32 = 4;
const UPLINK: PortId = 0;
const POD: PortId = 1;
const HEADROOM: usize = 64;

const NODE_A_UL: &str = "02:00:00:00:00:a1";
const NODE_A_POD: &str = "02:00:00:00:00:a3";
const POD_A: &str = "02:00:00:00:00:a2";
const NODE_B_UL: &str = "02:00:00:00:00:b1";
const NODE_B_POD: &str = "02:00:00:00:00:a3";
const POD_B: &str = "02:00:00:00:00:b2";
const VTEP_A: &str = "0e:00:00:00:00:0a";
const VTEP_B: &str = "0e:00:00:00:00:0b";

static POD_UDP: &[u8] = include_bytes!("../../../wire/testdata/pod_udp.bin");
static KERNEL_VXLAN_UDP: &[u8] = include_bytes!("../../../wire/testdata/kernel_vxlan_udp.bin");
static POD_ICMP: &[u8] = include_bytes!("../../../wire/testdata/pod_icmp.bin");
static KERNEL_VXLAN_ICMP: &[u8] = include_bytes!("../../../wire/testdata/kernel_vxlan_icmp.bin");
static POD_HOSTGW_UDP: &[u8] = include_bytes!("../../../wire/testdata/pod_hostgw_udp.bin");
static KERNEL_HOSTGW_UDP: &[u8] = include_bytes!("../../../wire/testdata/kernel_hostgw_udp.bin");

fn mac(s: &str) -> MacAddr {
    s.parse().unwrap()
}

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

fn net(s: &str) -> Ipv4Net {
    s.parse().unwrap()
}

fn root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        let _ = writeln!(
            io::stderr(),
            "SKIP: the XDP fast path tests need root (CAP_BPF)"
        );
        return false;
    }
    true
}

/// Runs `f` on a thread of its own in a new, empty network namespace.
fn in_fresh_netns<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::spawn(move || {
        // SAFETY: unshare affects only this thread, which is ours and ends after `f`.
        let rc = unsafe { libc::unshare(libc::CLONE_NEWNET) };
        assert_eq!(
            rc,
            0,
            "unshare(CLONE_NEWNET): {}",
            io::Error::last_os_error()
        );
        f()
    })
    .join()
    .expect("test thread")
}

/// One node of the pipeline tests' demo cluster (node A: 10.168.0.2, pods
/// 10.244.0.0/24; node B the mirror image), with every neighbour resolved, plus a
/// blackhole route 10.244.7.0/24 and a local route 10.244.8.0/24.
struct Node {
    writer: FibWriter,
    pipeline: Pipeline,
    fast: FastPath,
    /// Fast path on: the programs under test, per ingress port.
    xdp: [Classifier; 2],
    /// Fast path off: what the afxdp backend's classifier decides, per ingress port.
    reference: [Classifier; 2],
}

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    HostGw,
    Vxlan,
}

fn node(mode: Mode, a: bool) -> Node {
    let (node_ip, vtep, ul, podmac, own, peer_ip, peer_vtep, peer, peer_ul, pod_ip, pod_mac) = if a
    {
        (
            "10.168.0.2",
            VTEP_A,
            NODE_A_UL,
            NODE_A_POD,
            "10.244.0.0/24",
            "10.168.0.3",
            VTEP_B,
            "10.244.1.0/24",
            NODE_B_UL,
            "10.244.0.2",
            POD_A,
        )
    } else {
        (
            "10.168.0.3",
            VTEP_B,
            NODE_B_UL,
            NODE_B_POD,
            "10.244.1.0/24",
            "10.168.0.2",
            VTEP_A,
            "10.244.0.0/24",
            NODE_A_UL,
            "10.244.1.2",
            POD_B,
        )
    };
    let params = NodeParams {
        node_ip: ip(node_ip),
        uplink: UPLINK,
        vni: 1,
        vxlan_port: 8472,
        vtep_mac: mac(vtep),
    };
    let fib_params = FibParams {
        node: params,
        ports: vec![
            PortInfo {
                mac: mac(ul),
                mtu: 1500,
            },
            PortInfo {
                mac: mac(podmac),
                mtu: 1500,
            },
        ],
        uplink_subnet: Some(net("10.168.0.0/24")),
        gateway: None,
        lpm: LpmConfig::default(),
    };
    let (mut w, fib) = FibWriter::new(fib_params);
    w.set_route(net(own), NextHop::Connected { port: POD })
        .unwrap();
    let nh = match mode {
        Mode::HostGw => NextHop::HostGw {
            gateway: ip(peer_ip),
            port: UPLINK,
        },
        Mode::Vxlan => NextHop::Vxlan {
            node_ip: ip(peer_ip),
            vtep_mac: mac(peer_vtep),
        },
    };
    w.set_route(net(peer), nh).unwrap();
    w.set_route(net("10.244.7.0/24"), NextHop::Drop).unwrap();
    w.set_route(net("10.244.8.0/24"), NextHop::Local).unwrap();
    w.set_neighbour(UPLINK, ip(peer_ip), Some(mac(peer_ul)))
        .unwrap();
    w.set_neighbour(POD, ip(pod_ip), Some(mac(pod_mac)))
        .unwrap();
    w.set_known_vteps(&[ip(peer_ip)]);

    let fast = FastPath::create().expect("fast path maps");
    fast.sync(&w).expect("sync");
    // The loopback stands in for both egress ports (nothing is sent).
    fast.set_ports(&[(UPLINK, 1), (POD, 1)]).expect("ports");
    let settings = Settings {
        node_ip: ip(node_ip),
        vxlan_port: 8472,
        pod_cidr: net(own),
        vni: 1,
        vtep_mac: mac(vtep).0,
        vtep_ifindex: 0,
    };
    let own_mode = match mode {
        Mode::HostGw => NodeMode::HostGw,
        Mode::Vxlan => NodeMode::Vxlan,
    };
    let vteps: Vec<Ipv4Addr> = w.snapshot().vteps().collect();
    let routes = [net(peer), net("10.244.7.0/24"), net("10.244.8.0/24")];
    let load = |port_mac: &str, role: Role, forward: bool| {
        let c = Classifier::open(
            "test0",
            1,
            mac(port_mac).0,
            role,
            &settings,
            forward.then_some(&fast),
        )
        .expect("load");
        c.set_ownership(&Ownership {
            forward,
            ..Ownership::for_mode(own_mode).without_kernel_checks()
        })
        .unwrap();
        c.set_routes(&routes).unwrap();
        c.set_vteps(&vteps).unwrap();
        c
    };
    let xdp = [load(ul, Role::Uplink, true), load(podmac, Role::Pod, true)];
    let reference = [
        load(ul, Role::Uplink, false),
        load(podmac, Role::Pod, false),
    ];
    Node {
        pipeline: Pipeline::new(params, fib),
        writer: w,
        fast,
        xdp,
        reference,
    }
}

/// What the fast path must do with a frame.
#[derive(Debug, PartialEq)]
enum Expect {
    Redirect(Vec<u8>),
    Pass,
    Drop(DropReason),
}

impl Node {
    fn pipeline_run(&self, frame: &[u8], ingress: PortId) -> (Verdict, Vec<u8>) {
        let mut buf = vec![0u8; HEADROOM + frame.len()];
        buf[HEADROOM..].copy_from_slice(frame);
        let mut c = Counters::default();
        let mut v = [Verdict::ToKernel];
        let (offset, len) = {
            let mut pkts = [Packet {
                buf: &mut buf,
                offset: HEADROOM,
                len: frame.len(),
                ingress,
            }];
            self.pipeline.process(&mut pkts, &mut v, &mut c);
            (pkts[0].offset, pkts[0].len)
        };
        (v[0], buf[offset..offset + len].to_vec())
    }

    /// The afxdp backend's answer: the classifier (forwarding off), then the pipeline.
    fn expected(&self, frame: &[u8], ingress: PortId) -> Expect {
        let c = &self.reference[usize::from(ingress)];
        let before = c.stats().unwrap().owned();
        let action = c.test_run_output(frame).unwrap().0;
        assert_eq!(action, XDP_PASS, "no socket: owned frames fall back");
        if c.stats().unwrap().owned() == before {
            return Expect::Pass;
        }
        match self.pipeline_run(frame, ingress) {
            (Verdict::Tx(_), out) => Expect::Redirect(out),
            (Verdict::ToKernel, _) => Expect::Pass,
            (
                Verdict::Drop(
                    DropReason::NoRoute
                    | DropReason::NeighbourUnresolved
                    | DropReason::Mtu
                    | DropReason::Fragment,
                ),
                _,
            ) => Expect::Pass,
            (Verdict::Drop(r), _) => Expect::Drop(r),
        }
    }

    /// The fast path's answer.
    fn actual(&self, frame: &[u8], ingress: PortId) -> Expect {
        let before = self.fast.stats().unwrap();
        let (action, out) = self.xdp[usize::from(ingress)]
            .test_run_output(frame)
            .unwrap();
        let after = self.fast.stats().unwrap();
        match action {
            XDP_REDIRECT => Expect::Redirect(out),
            XDP_PASS => {
                assert_eq!(out, frame, "a passed frame is unchanged");
                Expect::Pass
            }
            XDP_DROP => {
                let moved: Vec<DropReason> = DropReason::ALL
                    .into_iter()
                    .filter(|r| after.dropped(*r) != before.dropped(*r))
                    .collect();
                assert_eq!(moved.len(), 1, "one drop reason counted: {moved:?}");
                assert_eq!(
                    after.get(FwdStat::Dropped),
                    before.get(FwdStat::Dropped) + 1
                );
                Expect::Drop(moved[0])
            }
            other => panic!("unexpected XDP action {other}"),
        }
    }

    #[track_caller]
    fn check(&self, what: &str, frame: &[u8], ingress: PortId) -> Expect {
        let want = self.expected(frame, ingress);
        let got = self.actual(frame, ingress);
        if want != got {
            panic!("{what}: fast path {got:?}\n  pipeline {want:?}\n  frame {frame:02x?}");
        }
        got
    }

    /// The fast path forwards `partial` (a frame with a partial checksum) as `want` (the
    /// output for the same frame with its checksum complete), completing it itself:
    /// counted once as completed, not as fallen back.
    #[track_caller]
    fn completes(&self, what: &str, partial: &[u8], ingress: PortId, want: Vec<u8>) {
        let before = self.fast.stats().unwrap();
        assert_eq!(
            self.actual(partial, ingress),
            Expect::Redirect(want),
            "{what}: forwarded with the complete checksum"
        );
        let after = self.fast.stats().unwrap();
        for (stat, added) in [(FwdStat::ChecksumsCompleted, 1), (FwdStat::Fallback, 0)] {
            assert_eq!(
                after.get(stat),
                before.get(stat) + added,
                "{what}: {stat:?}"
            );
        }
    }
}

fn fix_ip_checksum(f: &mut [u8], off: usize) {
    let hl = usize::from(f[off] & 0x0f) * 4;
    f[off + 10..off + 12].fill(0);
    let mut sum: u32 = f[off..off + hl]
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    f[off + 10..off + 12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
}

fn udp_frame(src_mac: &str, dst_mac: &str, src: &str, dst: &str, sport: u16, ttl: u8) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(mac(src_mac).0, mac(dst_mac).0)
        .ipv4(ip(src).octets(), ip(dst).octets(), ttl)
        .udp(sport, 5000);
    let mut out = Vec::new();
    b.write(&mut out, b"podfwd fast path").unwrap();
    out
}

/// The malformed and exceptional variants of an IPv4 frame whose IPv4 header is at
/// `off` (14 for a plain frame, 64 for the inner header of a VXLAN frame).
fn variants(f: &[u8], off: usize) -> Vec<(String, Vec<u8>)> {
    let mut out = vec![("as is".to_string(), f.to_vec())];
    // BPF_PROG_TEST_RUN takes no frame shorter than an Ethernet header.
    for cut in [
        14,
        20,
        33,
        34,
        41,
        42,
        49,
        50,
        63,
        64,
        77,
        83,
        84,
        f.len() - 1,
    ] {
        if cut < f.len() {
            out.push((format!("truncated to {cut}"), f[..cut].to_vec()));
        }
    }
    let mut g = f.to_vec();
    g[off + 10] ^= 0x5a;
    out.push(("bad checksum".into(), g));
    let mut g = f.to_vec();
    g[off + 8] = 1;
    fix_ip_checksum(&mut g, off);
    out.push(("TTL 1".into(), g));
    let mut g = f.to_vec();
    g[off + 8] = 2;
    fix_ip_checksum(&mut g, off);
    out.push(("TTL 2".into(), g));
    let mut g = f.to_vec();
    g[off + 6] |= 0x20;
    fix_ip_checksum(&mut g, off);
    out.push(("more fragments".into(), g));
    let mut g = f.to_vec();
    g[off + 7] = 0x10;
    fix_ip_checksum(&mut g, off);
    out.push(("fragment offset".into(), g));
    let mut g = f.to_vec();
    g[off + 1] |= 0x03;
    fix_ip_checksum(&mut g, off);
    out.push(("ECN CE".into(), g));
    let mut g = f.to_vec();
    g.extend_from_slice(&[0; 17]);
    out.push(("Ethernet padding".into(), g));
    // Options: a 4-byte NOP option list inserted after the header, lengths fixed.
    let mut g = f[..off + 20].to_vec();
    g.extend_from_slice(&[1, 1, 1, 1]);
    g.extend_from_slice(&f[off + 20..]);
    g[off] = 0x46;
    let tl = u16::from_be_bytes([g[off + 2], g[off + 3]]) + 4;
    g[off + 2..off + 4].copy_from_slice(&tl.to_be_bytes());
    if off > 14 {
        for (l, d) in [(16usize, 4u16), (38, 4)] {
            let v = u16::from_be_bytes([g[l], g[l + 1]]) + d;
            g[l..l + 2].copy_from_slice(&v.to_be_bytes());
        }
        fix_ip_checksum(&mut g, 14);
    }
    fix_ip_checksum(&mut g, off);
    out.push(("IP options".into(), g));
    let mut g = f.to_vec();
    g[off] = 0x55;
    out.push(("IPv5".into(), g));
    let mut g = f.to_vec();
    g[off] = 0x44;
    out.push(("IHL 4".into(), g));
    let mut g = f.to_vec();
    g[off + 2..off + 4].copy_from_slice(&4000u16.to_be_bytes());
    fix_ip_checksum(&mut g, off);
    out.push(("total length beyond the frame".into(), g));
    let mut g = f.to_vec();
    g[off + 2..off + 4].copy_from_slice(&19u16.to_be_bytes());
    fix_ip_checksum(&mut g, off);
    out.push(("total length 19".into(), g));
    let mut g = f.to_vec();
    g[off - 2..off].copy_from_slice(&[0x86, 0xdd]);
    out.push(("not IPv4".into(), g));
    let mut g = f.to_vec();
    g[off - 14] = 0x02;
    g[off - 13] = 0x99;
    out.push(("other destination MAC".into(), g));
    out
}

/// VXLAN-specific variants of a VXLAN frame (outer IPv4 at 14, inner at 64).
fn vxlan_variants(f: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for (name, at, v) in [
        ("bad VNI", 48usize, 2u8),
        ("no I flag", 42, 0),
        ("wrong inner MAC", 55, 0x77),
        ("other UDP port", 37, 0x99),
    ] {
        let mut g = f.to_vec();
        g[at] = v;
        out.push((name.to_string(), g));
    }
    let mut g = f.to_vec();
    g[29] = 99; // outer source 10.168.0.99: no known VTEP
    fix_ip_checksum(&mut g, 14);
    out.push(("unknown VTEP".into(), g));
    for (name, len) in [
        ("UDP length 7", 7u16),
        ("UDP length 8", 8),
        ("UDP length 15", 15),
        ("UDP length 16", 16),
        ("UDP length 29", 29),
        ("UDP length 50", 50),
        ("UDP length beyond the packet", 3000),
    ] {
        let mut g = f.to_vec();
        g[38..40].copy_from_slice(&len.to_be_bytes());
        out.push((name.to_string(), g));
    }
    let mut g = f.to_vec();
    let l = u16::from_be_bytes([g[38], g[39]]) + 10;
    g[38..40].copy_from_slice(&l.to_be_bytes());
    g.extend_from_slice(&[0; 10]);
    let t = u16::from_be_bytes([g[16], g[17]]) + 10;
    g[16..18].copy_from_slice(&t.to_be_bytes());
    fix_ip_checksum(&mut g, 14);
    out.push(("inner padding inside the datagram".into(), g));
    let mut g = f.to_vec();
    g[24] ^= 0x33;
    out.push(("outer bad checksum".into(), g));
    let mut g = f.to_vec();
    g[62..64].copy_from_slice(&[0x08, 0x06]);
    out.push(("inner ARP".into(), g));
    out
}

#[test]
fn host_gw_frames_equal_the_pipelines() {
    if !root() {
        return;
    }
    in_fresh_netns(|| {
        let a = node(Mode::HostGw, true);
        assert_eq!(
            a.check("kernel fixture", POD_HOSTGW_UDP, POD),
            Expect::Redirect(KERNEL_HOSTGW_UDP.to_vec())
        );
        let inbound = udp_frame(NODE_B_UL, NODE_A_UL, "10.244.1.2", "10.244.0.2", 4000, 63);
        assert!(matches!(
            a.check("inbound", &inbound, UPLINK),
            Expect::Redirect(_)
        ));
        for (base, ingress) in [(POD_HOSTGW_UDP.to_vec(), POD), (inbound, UPLINK)] {
            for (what, f) in variants(&base, 14) {
                a.check(&what, &f, ingress);
            }
        }
        let blackhole = udp_frame(POD_A, NODE_A_POD, "10.244.0.2", "10.244.7.9", 4000, 64);
        assert_eq!(
            a.check("blackhole", &blackhole, POD),
            Expect::Drop(DropReason::Blackhole)
        );
        let local = udp_frame(POD_A, NODE_A_POD, "10.244.0.2", "10.244.8.9", 4000, 64);
        assert_eq!(a.check("local route", &local, POD), Expect::Pass);
        let elsewhere = udp_frame(POD_A, NODE_A_POD, "10.244.0.2", "192.0.2.1", 4000, 64);
        assert_eq!(a.check("no route", &elsewhere, POD), Expect::Pass);
        let unresolved = udp_frame(NODE_B_UL, NODE_A_UL, "10.244.1.2", "10.244.0.9", 1, 64);
        assert_eq!(a.check("unresolved pod", &unresolved, UPLINK), Expect::Pass);
        let s = a.fast.stats().unwrap();
        assert!(s.get(FwdStat::Forwarded) >= 2, "{s:?}");
        assert!(s.get(FwdStat::Fallback) >= 2, "{s:?}");
    });
}

/// The folded pseudo-header sum of the TCP/UDP packet in `f` (IPv4 without options at
/// offset 14), and the offset of its checksum field.
fn pseudo_sum(f: &[u8]) -> (u16, usize) {
    let proto = f[23];
    let l4_len = u32::from(u16::from_be_bytes([f[16], f[17]])) - 20;
    let mut sum: u32 = f[26..34]
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
        .sum();
    sum += u32::from(proto) + l4_len;
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    let field = 34 + if proto == 6 { 16 } else { 6 };
    (sum as u16, field)
}

/// `f` (Ethernet/IPv4 without options/TCP or UDP) as a veth sender with checksum offload
/// leaves it: the checksum field holds the folded pseudo-header sum (CHECKSUM_PARTIAL).
fn with_partial_checksum(f: &[u8]) -> Vec<u8> {
    let mut f = f.to_vec();
    let (sum, field) = pseudo_sum(&f);
    f[field..field + 2].copy_from_slice(&sum.to_be_bytes());
    f
}

/// A pod frame podA -> podB (TCP or UDP) with `len` bytes of payload, checksum complete.
fn pod_frame(tcp: bool, len: usize, seed: u8) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(mac(POD_A).0, mac(NODE_A_POD).0).ipv4(
        ip("10.244.0.2").octets(),
        ip("10.244.1.2").octets(),
        64,
    );
    let payload: Vec<u8> = (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect();
    let mut out = Vec::new();
    if tcp {
        b.tcp(40000 + u16::from(seed), 5201, 0x0102_0304, 64000)
            .write(&mut out, &payload)
            .unwrap();
    } else {
        b.udp(40000 + u16::from(seed), 5201)
            .write(&mut out, &payload)
            .unwrap();
    }
    out
}

/// Payload lengths around the program's summing steps: the 512-byte chunks, the scratch
/// tail (whole words below 512) and the last 0..3 bytes.
const PAYLOADS: &[usize] = &[
    0, 1, 2, 3, 4, 5, 17, 255, 490, 491, 492, 493, 511, 512, 513, 1003, 1004, 1005, 1024, 1400,
];

#[test]
fn partial_checksums_are_completed_in_the_program_and_forwarded() {
    if !root() {
        return;
    }
    in_fresh_netns(|| {
        let mut completed = 0;
        for (name, mode) in [("host-gw", Mode::HostGw), ("vxlan", Mode::Vxlan)] {
            let a = node(mode, true);
            for tcp in [true, false] {
                for (i, &len) in PAYLOADS.iter().enumerate() {
                    let complete = pod_frame(tcp, len, i as u8);
                    let what = format!("{name} tcp={tcp} payload {len}");
                    let Expect::Redirect(want) = a.check(&what, &complete, POD) else {
                        panic!("{what}: a complete checksum is forwarded");
                    };
                    let partial = with_partial_checksum(&complete);
                    assert_ne!(partial, complete, "{what}");
                    a.completes(&what, &partial, POD, want);
                    completed += 1;
                }
            }
            // The largest host-gw frames (a full 1500-byte packet) too.
            if mode == Mode::HostGw {
                for (tcp, len) in [(true, 1460), (false, 1472)] {
                    let complete = pod_frame(tcp, len, 7);
                    let Expect::Redirect(want) = a.check("full size", &complete, POD) else {
                        panic!("{name}: a full-size frame is forwarded");
                    };
                    a.completes("full size", &with_partial_checksum(&complete), POD, want);
                    completed += 1;
                }
            }
        }
        assert_eq!(completed, 2 * 2 * PAYLOADS.len() + 2);
    });
}

#[test]
fn a_partial_inner_checksum_is_completed_on_decapsulation() {
    if !root() {
        return;
    }
    in_fresh_netns(|| {
        let a = node(Mode::Vxlan, true);
        let b = node(Mode::Vxlan, false);
        for tcp in [true, false] {
            for (i, &len) in PAYLOADS.iter().enumerate() {
                let what = format!("tcp={tcp} payload {len}");
                let complete = pod_frame(tcp, len, i as u8);
                // Node A's pipeline encapsulates both; the partial inner checksum stays
                // partial in the VXLAN frame, as the kernel VTEP with offload sends it.
                let (Verdict::Tx(_), vx_complete) = a.pipeline_run(&complete, POD) else {
                    panic!("{what}: node A encapsulates");
                };
                let (Verdict::Tx(_), vx_partial) =
                    a.pipeline_run(&with_partial_checksum(&complete), POD)
                else {
                    panic!("{what}: node A encapsulates");
                };
                let Expect::Redirect(want) = b.check(&what, &vx_complete, UPLINK) else {
                    panic!("{what}: node B decapsulates");
                };
                b.completes(&what, &vx_partial, UPLINK, want);
            }
        }
    });
}

#[test]
fn a_complete_checksum_that_looks_partial_is_left_as_it_is() {
    if !root() {
        return;
    }
    in_fresh_netns(|| {
        let a = node(Mode::HostGw, true);
        // A UDP frame whose correct checksum equals the folded pseudo-header sum (one in
        // 65536): the program recomputes it, which must give the same value.
        let mut found = None;
        for w in 0..=u16::MAX {
            let b = PacketBuilder::ethernet2(mac(POD_A).0, mac(NODE_A_POD).0)
                .ipv4(ip("10.244.0.2").octets(), ip("10.244.1.2").octets(), 64)
                .udp(4000, 5000);
            let mut f = Vec::new();
            b.write(&mut f, &[w.to_be_bytes()[0], w.to_be_bytes()[1], 0x55])
                .unwrap();
            let (sum, field) = pseudo_sum(&f);
            if f[field..field + 2] == sum.to_be_bytes() {
                found = Some(f);
                break;
            }
        }
        let f = found.expect("some payload word makes the checksum equal the pseudo sum");
        let before = a.fast.stats().unwrap().get(FwdStat::ChecksumsCompleted);
        let Expect::Redirect(out) = a.check("looks partial", &f, POD) else {
            panic!("forwarded");
        };
        assert_eq!(out[40..42], f[40..42], "the checksum is unchanged");
        assert_eq!(
            a.fast.stats().unwrap().get(FwdStat::ChecksumsCompleted),
            before + 1,
            "it was taken for partial and recomputed"
        );
    });
}

#[test]
fn vxlan_encap_equals_the_pipelines_and_the_source_port_is_its_flow_hash() {
    if !root() {
        return;
    }
    in_fresh_netns(|| {
        let a = node(Mode::Vxlan, true);
        for (what, f) in [("udp fixture", POD_UDP), ("icmp fixture", POD_ICMP)] {
            assert!(matches!(a.check(what, f, POD), Expect::Redirect(_)));
            for (what, g) in variants(f, 14) {
                a.check(&what, &g, POD);
            }
        }
        // Many flows, TCP and UDP: the outer source port is the pipeline's flow hash.
        let mut x: u32 = 0x1234_5678;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x
        };
        for i in 0..300 {
            let (sport, dport) = (next() as u16, next() as u16);
            let dst = Ipv4Addr::new(10, 244, 1, next() as u8);
            let src = Ipv4Addr::new(10, 244, 0, next() as u8);
            let b = PacketBuilder::ethernet2(mac(POD_A).0, mac(NODE_A_POD).0).ipv4(
                src.octets(),
                dst.octets(),
                64,
            );
            let mut f = Vec::new();
            let len = (next() % 1400) as usize;
            let payload = vec![i as u8; len];
            if i % 2 == 0 {
                b.tcp(sport, dport, next(), 1000)
                    .write(&mut f, &payload)
                    .unwrap();
            } else {
                b.udp(sport, dport).write(&mut f, &payload).unwrap();
            }
            assert!(matches!(a.check("flow", &f, POD), Expect::Redirect(_)));
        }
        // Too big once encapsulated: the kernel answers frag needed.
        let big = udp_frame(POD_A, NODE_A_POD, "10.244.0.2", "10.244.1.2", 1, 64);
        let mut big = big[..42].to_vec();
        big.extend(vec![0u8; 1451 - 28]);
        big[16..18].copy_from_slice(&1451u16.to_be_bytes());
        big[38..40].copy_from_slice(&1431u16.to_be_bytes());
        fix_ip_checksum(&mut big, 14);
        assert_eq!(a.check("1451 bytes", &big, POD), Expect::Pass);
        let s = a.fast.stats().unwrap();
        assert!(s.get(FwdStat::Encapsulated) >= 302, "{s:?}");
    });
}

#[test]
fn vxlan_decap_validates_as_the_pipeline_and_drops_with_its_reasons() {
    if !root() {
        return;
    }
    in_fresh_netns(|| {
        let b = node(Mode::Vxlan, false);
        for (what, f) in [
            ("udp fixture", KERNEL_VXLAN_UDP),
            ("icmp fixture", KERNEL_VXLAN_ICMP),
        ] {
            assert!(matches!(b.check(what, f, UPLINK), Expect::Redirect(_)));
            for (what, g) in variants(f, 64).into_iter().chain(vxlan_variants(f)) {
                b.check(&what, &g, UPLINK);
            }
            for (what, g) in variants(f, 14) {
                b.check(&format!("outer {what}"), &g, UPLINK);
            }
        }
        let mut reasons: Vec<DropReason> = Vec::new();
        for (what, g) in vxlan_variants(KERNEL_VXLAN_UDP) {
            if let Expect::Drop(r) = b.check(&what, &g, UPLINK) {
                reasons.push(r);
            }
        }
        for r in [
            DropReason::BadVni,
            DropReason::BadVxlan,
            DropReason::WrongInnerMac,
            DropReason::UnknownVtep,
            DropReason::BadChecksum,
            DropReason::Malformed,
        ] {
            assert!(reasons.contains(&r), "{r:?} among {reasons:?}");
        }
        let s = b.fast.stats().unwrap();
        assert!(s.get(FwdStat::Decapsulated) >= 2, "{s:?}");
        assert_eq!(
            s.get(FwdStat::Decapsulated),
            s.get(FwdStat::Forwarded),
            "{s:?}"
        );
    });
}

#[test]
fn routes_change_live_and_the_fast_path_follows_the_fib() {
    if !root() {
        return;
    }
    in_fresh_netns(|| {
        let mut a = node(Mode::HostGw, true);
        let f = POD_HOSTGW_UDP;
        assert!(matches!(a.check("before", f, POD), Expect::Redirect(_)));
        // The peer's next hop is forgotten: the kernel resolves it.
        a.writer
            .set_neighbour(UPLINK, ip("10.168.0.3"), None)
            .unwrap();
        a.fast.sync(&a.writer).unwrap();
        assert_eq!(a.check("unresolved", f, POD), Expect::Pass);
        // The route becomes a blackhole, then goes away.
        a.writer
            .set_route(net("10.244.1.0/24"), NextHop::Drop)
            .unwrap();
        a.fast.sync(&a.writer).unwrap();
        assert_eq!(
            a.check("blackhole", f, POD),
            Expect::Drop(DropReason::Blackhole)
        );
        assert!(a.writer.remove_route(net("10.244.1.0/24")));
        a.fast.sync(&a.writer).unwrap();
        assert_eq!(a.fast.lookup(ip("10.244.1.2")).unwrap(), None);
        assert_eq!(a.check("removed", f, POD), Expect::Pass);
        // And back, resolved.
        a.writer
            .set_route(
                net("10.244.1.0/24"),
                NextHop::HostGw {
                    gateway: ip("10.168.0.3"),
                    port: UPLINK,
                },
            )
            .unwrap();
        a.writer
            .set_neighbour(UPLINK, ip("10.168.0.3"), Some(mac(NODE_B_UL)))
            .unwrap();
        a.fast.sync(&a.writer).unwrap();
        assert_eq!(
            a.check("restored", f, POD),
            Expect::Redirect(KERNEL_HOSTGW_UDP.to_vec())
        );
    });
}

#[test]
fn adjacency_layout_matches_the_c_struct() {
    let e = crate::pipeline::EncapTemplate::new(
        UPLINK,
        1500,
        mac(NODE_A_UL),
        mac(NODE_B_UL),
        ip("10.168.0.2"),
        ip("10.168.0.3"),
        8472,
        1,
        mac(VTEP_A),
        mac(VTEP_B),
    );
    let b = adjacency_bytes(&crate::pipeline::Adjacency::Encap(e));
    assert_eq!(u32::from_ne_bytes(b[0..4].try_into().unwrap()), 2);
    assert_eq!(u32::from_ne_bytes(b[8..12].try_into().unwrap()), e.ip_sum);
    assert_eq!(u16::from_ne_bytes(b[12..14].try_into().unwrap()), 1500);
    assert_eq!(&b[14..26], &e.inner_macs);
    assert_eq!(&b[26..76], &e.outer);
    let r = adjacency_bytes(&crate::pipeline::Adjacency::Rewrite {
        port: POD,
        macs: [7; 12],
        mtu: 1400,
    });
    assert_eq!(u32::from_ne_bytes(r[0..4].try_into().unwrap()), 1);
    assert_eq!(u32::from_ne_bytes(r[4..8].try_into().unwrap()), 1);
    assert_eq!(&r[14..26], &[7; 12]);
    assert_eq!(
        u32::from_ne_bytes(
            adjacency_bytes(&crate::pipeline::Adjacency::Blackhole)[..4]
                .try_into()
                .unwrap()
        ),
        5
    );
}
