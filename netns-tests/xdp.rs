//! The XDP classifier on real interfaces: attach and detach in native and generic mode,
//! what happens to real traffic, stale and foreign programs, and fail-open when the owning
//! process is SIGKILLed.
//!
//! Two namespaces joined by a veth pair: `dut0` (the classifier's interface, node IP
//! 10.168.0.2) in one, `gen0` (a peer, 10.168.0.3) in the other. Frames are injected on
//! `gen0` with an AF_PACKET socket. The loader runs on a thread that entered the DUT
//! namespace with setns(2), so interface lookups, netlink and bpf_link creation all
//! happen there; nothing is attached in the root namespace.

use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::mem;
use std::net::Ipv4Addr;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use ipnet::Ipv4Net;
use podfwd::backend::afxdp::xdp::{
    attached_programs, AttachMode, Classifier, ClassifierStats, Ownership, Role, Settings, Stat,
    XdpError, PROGRAM_NAME,
};
use podfwd::config::XdpMode;

use crate::harness::{skip_unless_root, veth_pair, wait_until, Netns};

const DUT_IF: &str = "dut0";
const GEN_IF: &str = "gen0";
const DUT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x0d, 0x02];
const GEN_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x0d, 0x03];
const NODE_IP: Ipv4Addr = Ipv4Addr::new(10, 168, 0, 2);
const GEN_IP: Ipv4Addr = Ipv4Addr::new(10, 168, 0, 3);
const LOCAL_POD: Ipv4Addr = Ipv4Addr::new(10, 244, 0, 5);
const PEER_POD: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 5);
const VXLAN_PORT: u16 = 8472;

/// Set in the environment of the child process of the SIGKILL test: the DUT namespace.
const CHILD_NS_ENV: &str = "PODFWD_XDP_TEST_CHILD_NS";
const CHILD_READY: &str = "podfwd-xdp-child: attached";

fn settings() -> Settings {
    Settings {
        node_ip: NODE_IP,
        vxlan_port: VXLAN_PORT,
        pod_cidr: "10.244.0.0/24".parse().unwrap(),
        vni: 1,
        vtep_mac: [0x0e, 0, 0, 0, 0, 0x0a],
        vtep_ifindex: 0,
    }
}

/// `own` without the kernel FIB and conntrack rules: these tests exercise attaching,
/// sockets and fall-back on a bare veth pair, with no kernel routes for the peer pod
/// subnet; those rules are tested against real kernel state in slowpath.rs.
fn offline(own: Ownership) -> Ownership {
    own.without_kernel_checks()
}

/// Loads the classifier for `iface` with [`offline`] default ownership.
fn load_offline(
    iface: &str,
    role: Role,
) -> Result<Classifier, podfwd::backend::afxdp::xdp::XdpError> {
    let c = Classifier::load(iface, role, &settings())?;
    c.set_ownership(&offline(Ownership::default()))?;
    Ok(c)
}

fn peer_subnet() -> Ipv4Net {
    "10.244.1.0/24".parse().unwrap()
}

fn mac_text(mac: [u8; 6]) -> String {
    mac.map(|b| format!("{b:02x}")).join(":")
}

/// The DUT and the peer that sends to it.
struct Pair {
    dut: Netns,
    gen: Netns,
}

fn pair(tag: &str) -> Pair {
    let dut = Netns::new(tag).expect("create the DUT namespace");
    let gen = Netns::new(tag).expect("create the generator namespace");
    for ns in [&dut, &gen] {
        ns.disable_ipv6().expect("disable IPv6");
    }
    veth_pair(&dut, DUT_IF, &gen, GEN_IF).expect("veth pair");
    dut.set_mac(DUT_IF, &mac_text(DUT_MAC)).unwrap();
    gen.set_mac(GEN_IF, &mac_text(GEN_MAC)).unwrap();
    dut.add_addr(DUT_IF, &format!("{NODE_IP}/24")).unwrap();
    gen.add_addr(GEN_IF, &format!("{GEN_IP}/24")).unwrap();
    dut.link_up(DUT_IF).unwrap();
    gen.link_up(GEN_IF).unwrap();
    Pair { dut, gen }
}

/// Runs `f` on a thread inside `ns`'s network namespace.
pub(crate) fn in_ns<T: Send>(ns: &Netns, f: impl FnOnce() -> T + Send) -> T {
    let path = format!("/run/netns/{}", ns.name());
    thread::scope(|s| {
        s.spawn(|| {
            enter_netns(&path);
            f()
        })
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

/// Moves the calling thread into the network namespace bound at `path`.
fn enter_netns(path: &str) {
    let ns = File::open(path).unwrap_or_else(|e| panic!("open {path}: {e}"));
    // SAFETY: setns on a namespace fd we own; it changes only this thread's network
    // namespace, which is what the callers want.
    let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(rc, 0, "setns({path}): {}", io::Error::last_os_error());
}

/// Sends raw Ethernet frames out of `iface` in `ns`.
fn send_frames(ns: &Netns, iface: &str, frames: &[Vec<u8>]) {
    in_ns(ns, || {
        // SAFETY: plain socket(2); the fd is owned right below. Protocol 0: send only.
        let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        assert!(fd >= 0, "AF_PACKET socket: {}", io::Error::last_os_error());
        // SAFETY: `fd` is a new socket nothing else owns.
        let sock = unsafe { OwnedFd::from_raw_fd(fd) };
        let name = std::ffi::CString::new(iface).unwrap();
        // SAFETY: `name` is NUL-terminated and outlives the call.
        let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
        assert_ne!(ifindex, 0, "{iface}: {}", io::Error::last_os_error());
        // SAFETY: sockaddr_ll is a plain C struct; all-zero is a valid value.
        let mut addr: libc::sockaddr_ll = unsafe { mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_ifindex = ifindex as i32;
        addr.sll_halen = 6;
        for f in frames {
            // SAFETY: the buffer and the address are valid for the lengths given and
            // outlive the call; sendto only reads them.
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
            assert_eq!(
                n,
                f.len() as isize,
                "sendto: {}",
                io::Error::last_os_error()
            );
        }
    })
}

/// `ip -o link show dev IFACE` in `ns`.
fn link_line(ns: &Netns, iface: &str) -> String {
    let out = ns.ip(&["-o", "-d", "link", "show", "dev", iface]).unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// What `ip link` says is attached: "xdp" (native), "xdpgeneric", or "" (nothing).
fn ip_link_xdp(ns: &Netns, iface: &str) -> &'static str {
    let line = link_line(ns, iface);
    let words: Vec<&str> = line.split_whitespace().collect();
    if words.contains(&"xdpgeneric") || words.iter().any(|w| w.starts_with("xdpgeneric/")) {
        "xdpgeneric"
    } else if words.contains(&"xdp") || words.iter().any(|w| w.starts_with("xdp/")) {
        "xdp"
    } else {
        ""
    }
}

/// Waits for `iface` (in the calling thread's namespace) to have no XDP program. The link
/// goes when its last fd closes; a child that another test thread forked a moment ago
/// holds a copy until it execs (bpf fds are close-on-exec), so detaching can lag a drop.
fn assert_detached_soon(iface: &str) {
    let mut last = Vec::new();
    let gone = wait_until(Duration::from_secs(3), || {
        last = attached_programs(iface).unwrap();
        last.is_empty()
    });
    assert!(gone, "still attached to {iface}: {last:?}");
}

fn wait_for_stats(
    c: &Classifier,
    what: &str,
    mut done: impl FnMut(&ClassifierStats) -> bool,
) -> ClassifierStats {
    let mut last = ClassifierStats::default();
    let ok = wait_until(Duration::from_secs(3), || {
        last = c.stats().unwrap();
        done(&last)
    });
    assert!(ok, "{what}: stats {last:?}");
    last
}

// --- frames -----------------------------------------------------------------------------

pub(crate) fn ipv4_udp(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    ttl: u8,
    dport: u16,
    payload: &[u8],
) -> Vec<u8> {
    let udp_len = 8 + payload.len();
    let total = 20 + udp_len;
    let mut p = vec![0x45, 0];
    p.extend_from_slice(&(total as u16).to_be_bytes());
    p.extend_from_slice(&[0, 1, 0x40, 0, ttl, 17, 0, 0]);
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    let sum = checksum(&p);
    p[10..12].copy_from_slice(&sum.to_be_bytes());
    p.extend_from_slice(&40000u16.to_be_bytes());
    p.extend_from_slice(&dport.to_be_bytes());
    p.extend_from_slice(&(udp_len as u16).to_be_bytes());
    p.extend_from_slice(&[0, 0]); // no UDP checksum
    p.extend_from_slice(payload);
    p
}

fn checksum(b: &[u8]) -> u16 {
    let mut sum: u32 = b
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

pub(crate) fn ethernet(dst: [u8; 6], src: [u8; 6], payload: &[u8]) -> Vec<u8> {
    let mut f = dst.to_vec();
    f.extend_from_slice(&src);
    f.extend_from_slice(&[0x08, 0x00]);
    f.extend_from_slice(payload);
    f
}

/// A pod's UDP datagram to `dst`, as it arrives on the DUT.
fn pod_frame(dst: Ipv4Addr, ttl: u8) -> Vec<u8> {
    ethernet(
        DUT_MAC,
        GEN_MAC,
        &ipv4_udp(LOCAL_POD, dst, ttl, 53, b"podfwd xdp test"),
    )
}

/// A VXLAN packet from the peer node to the DUT's node IP.
fn vxlan_frame() -> Vec<u8> {
    let inner = ethernet(
        [0x0e, 0, 0, 0, 0, 0x0a],
        [0x0e, 0, 0, 0, 0, 0x0b],
        &ipv4_udp(PEER_POD, LOCAL_POD, 64, 53, b"inner"),
    );
    let mut vx = vec![0x08, 0, 0, 0, 0, 0, 1, 0];
    vx.extend_from_slice(&inner);
    ethernet(
        DUT_MAC,
        GEN_MAC,
        &ipv4_udp(GEN_IP, NODE_IP, 64, VXLAN_PORT, &vx),
    )
}

// --- attach and detach --------------------------------------------------------------------

fn attach_shows_in_ip_link_and_drop_detaches(tag: &str, mode: XdpMode, shown: &str) {
    let p = pair(tag);
    assert_eq!(
        ip_link_xdp(&p.dut, DUT_IF),
        "",
        "nothing attached at the start"
    );
    in_ns(&p.dut, || {
        let mut c = load_offline(DUT_IF, Role::Uplink).expect("load");
        assert_eq!(c.mac(), DUT_MAC);
        c.attach(mode).expect("attach");
        assert_eq!(c.attached_mode(), Some(AttachMode::from(mode)));
        assert_eq!(
            ip_link_xdp(&p.dut, DUT_IF),
            shown,
            "{}",
            link_line(&p.dut, DUT_IF)
        );
        let progs = attached_programs(DUT_IF).unwrap();
        assert_eq!(progs.len(), 1, "{progs:?}");
        assert_eq!(progs[0].name, PROGRAM_NAME);
        assert_eq!(progs[0].mode, AttachMode::from(mode));
        assert_eq!(progs[0].id, c.program_id().unwrap());

        let again = c.attach(mode).unwrap_err();
        assert!(matches!(again, XdpError::AlreadyAttached { .. }), "{again}");

        drop(c);
        assert_detached_soon(DUT_IF);
    });
    assert_eq!(
        ip_link_xdp(&p.dut, DUT_IF),
        "",
        "{}",
        link_line(&p.dut, DUT_IF)
    );
}

#[test]
fn native_attach_shows_xdp_in_ip_link_and_drop_detaches() {
    skip_unless_root!();
    attach_shows_in_ip_link_and_drop_detaches("xdpnative", XdpMode::Native, "xdp");
}

#[test]
fn generic_attach_shows_xdpgeneric_in_ip_link_and_drop_detaches() {
    skip_unless_root!();
    attach_shows_in_ip_link_and_drop_detaches("xdpgeneric", XdpMode::Generic, "xdpgeneric");
}

#[test]
fn detach_then_attach_again_in_the_other_mode() {
    skip_unless_root!();
    let p = pair("xdpswitch");
    in_ns(&p.dut, || {
        let mut c = load_offline(DUT_IF, Role::Uplink).unwrap();
        c.attach(XdpMode::Native).unwrap();
        c.detach();
        assert_detached_soon(DUT_IF);
        c.attach(XdpMode::Generic).unwrap();
        assert_eq!(ip_link_xdp(&p.dut, DUT_IF), "xdpgeneric");
    });
}

fn assert_native_unsupported(err: XdpError, iface: &str) {
    assert!(
        matches!(&err, XdpError::NativeUnsupported { iface: i, .. } if i == iface),
        "{err}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains(&format!("\"{iface}\"")) && msg.contains("generic"),
        "{msg}"
    );
}

#[test]
fn native_attach_to_a_driver_without_xdp_fails_naming_the_interface() {
    skip_unless_root!();
    // A bridge has no driver-level XDP; the kernel refuses DRV mode outright.
    let ns = Netns::new("xdpbridge").unwrap();
    ns.ip(&["link", "add", "xbr0", "type", "bridge"]).unwrap();
    ns.link_up("xbr0").unwrap();
    in_ns(&ns, || {
        let mut c = load_offline("xbr0", Role::Uplink).unwrap();
        assert_native_unsupported(c.attach(XdpMode::Native).unwrap_err(), "xbr0");
        assert_eq!(attached_programs("xbr0").unwrap(), []);
        // The caller's fallback works on the same classifier.
        c.attach(XdpMode::Generic).unwrap();
        assert_eq!(
            attached_programs("xbr0").unwrap()[0].mode,
            AttachMode::Generic
        );
    });
}

#[test]
fn native_attach_to_a_veth_whose_peer_mtu_is_too_large_fails_naming_it() {
    skip_unless_root!();
    let p = pair("xdpmtu");
    p.gen
        .ip(&["link", "set", "dev", GEN_IF, "mtu", "9000"])
        .unwrap();
    in_ns(&p.dut, || {
        let mut c = load_offline(DUT_IF, Role::Uplink).unwrap();
        assert_native_unsupported(c.attach(XdpMode::Native).unwrap_err(), DUT_IF);
        c.attach(XdpMode::Generic).unwrap();
        assert_eq!(ip_link_xdp(&p.dut, DUT_IF), "xdpgeneric");
    });
}

#[test]
fn loading_on_a_missing_interface_names_it_inside_the_namespace() {
    skip_unless_root!();
    let ns = Netns::new("xdpmissing").unwrap();
    in_ns(&ns, || {
        let err = load_offline(DUT_IF, Role::Pod).unwrap_err();
        assert!(matches!(err, XdpError::NoSuchInterface { ref iface } if iface == DUT_IF));
    });
}

// --- traffic ------------------------------------------------------------------------------

#[test]
fn ping_to_the_node_goes_to_the_kernel_and_is_answered() {
    skip_unless_root!();
    let p = pair("xdpping");
    in_ns(&p.dut, || {
        let mut c = load_offline(DUT_IF, Role::Uplink).unwrap();
        c.attach(XdpMode::Native).unwrap();
        let out = p
            .gen
            .exec_unchecked(&[
                "ping",
                "-c",
                "2",
                "-i",
                "0.2",
                "-W",
                "2",
                &NODE_IP.to_string(),
            ])
            .unwrap();
        assert!(
            out.status.success(),
            "ping through the classifier failed: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let s = c.stats().unwrap();
        assert!(s[Stat::PassLocal] >= 2, "echo requests: {s:?}");
        assert!(
            s[Stat::PassL2Group] + s[Stat::PassNonIpv4] >= 1,
            "ARP: {s:?}"
        );
        assert_eq!(s.owned(), 0, "{s:?}");
    });
}

#[test]
fn pod_traffic_to_a_peer_subnet_is_owned_and_falls_back_without_a_socket() {
    skip_unless_root!();
    let p = pair("xdppod");
    in_ns(&p.dut, || {
        let mut c = load_offline(DUT_IF, Role::Pod).unwrap();
        c.set_routes(&[peer_subnet()]).unwrap();
        c.attach(XdpMode::Native).unwrap();
        send_frames(
            &p.gen,
            GEN_IF,
            &[
                pod_frame(PEER_POD, 64),
                pod_frame(PEER_POD, 1),
                pod_frame(Ipv4Addr::new(192, 0, 2, 1), 64),
            ],
        );
        let s = wait_for_stats(&c, "three frames", |s| {
            s[Stat::OwnedRoute] == 1 && s[Stat::PassTtl] == 1 && s[Stat::PassNotOwned] == 1
        });
        assert_eq!((s[Stat::NoSocket], s[Stat::Redirected]), (1, 0), "{s:?}");
    });
}

#[test]
fn vxlan_to_the_node_on_the_uplink_is_owned_in_generic_mode_too() {
    skip_unless_root!();
    let p = pair("xdpvxlan");
    in_ns(&p.dut, || {
        let mut c = load_offline(DUT_IF, Role::Uplink).unwrap();
        c.set_ownership(&offline(Ownership::for_mode(podfwd::config::Mode::Vxlan)))
            .unwrap();
        c.attach(XdpMode::Generic).unwrap();
        send_frames(
            &p.gen,
            GEN_IF,
            &[
                vxlan_frame(),
                ethernet(
                    DUT_MAC,
                    GEN_MAC,
                    &ipv4_udp(GEN_IP, NODE_IP, 64, 4789, b"other port"),
                ),
            ],
        );
        let s = wait_for_stats(&c, "vxlan and another port", |s| {
            s[Stat::OwnedVxlan] == 1 && s[Stat::PassLocal] == 1
        });
        assert_eq!(s[Stat::NoSocket], 1, "{s:?}");
    });
}

#[test]
fn frames_to_a_new_mac_are_owned_after_refresh_mac() {
    skip_unless_root!();
    let p = pair("xdpmac");
    const NEW_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x0d, 0x22];
    in_ns(&p.dut, || {
        let mut c = load_offline(DUT_IF, Role::Pod).unwrap();
        c.set_routes(&[peer_subnet()]).unwrap();
        c.attach(XdpMode::Native).unwrap();
        p.dut.set_mac(DUT_IF, &mac_text(NEW_MAC)).unwrap();
        let mut frame = pod_frame(PEER_POD, 64);
        frame[..6].copy_from_slice(&NEW_MAC);
        send_frames(&p.gen, GEN_IF, &[frame.clone()]);
        wait_for_stats(&c, "before the refresh", |s| s[Stat::PassOtherHost] == 1);
        c.refresh_mac().unwrap();
        assert_eq!(c.mac(), NEW_MAC);
        send_frames(&p.gen, GEN_IF, &[frame]);
        wait_for_stats(&c, "after the refresh", |s| s[Stat::OwnedRoute] == 1);
    });
}

/// A frame the classifier owns arrives in the AF_XDP socket registered for its queue.
fn owned_frames_reach_the_registered_socket(tag: &str, mode: XdpMode) {
    use xsk_rs::config::{BindFlags, LibxdpFlags, SocketConfig, UmemConfig};
    use xsk_rs::{Socket, Umem};

    let p = pair(tag);
    in_ns(&p.dut, || {
        let mut c = load_offline(DUT_IF, Role::Pod).unwrap();
        c.set_routes(&[peer_subnet()]).unwrap();
        c.attach(mode).unwrap();

        let (umem, mut descs) =
            Umem::new(UmemConfig::default(), 64.try_into().unwrap(), false).expect("umem");
        let config = SocketConfig::builder()
            .libxdp_flags(LibxdpFlags::XSK_LIBXDP_FLAGS_INHIBIT_PROG_LOAD)
            .bind_flags(BindFlags::XDP_COPY)
            .build();
        // SAFETY: the UMEM is not shared with another socket on this queue.
        let (_tx, mut rx, fq_cq) =
            unsafe { Socket::new(config, &umem, &DUT_IF.parse().unwrap(), 0) }.expect("socket");
        let (mut fq, _cq) = fq_cq.expect("fill and completion rings");
        // SAFETY: the descriptors came from this UMEM and none is in use.
        assert_eq!(unsafe { fq.produce(&descs) }, descs.len());
        c.register_socket(0, rx.fd().as_raw_fd()).unwrap();

        let frame = pod_frame(PEER_POD, 64);
        send_frames(&p.gen, GEN_IF, &[frame.clone(), pod_frame(NODE_IP, 64)]);
        let mut got = Vec::new();
        let ok = wait_until(Duration::from_secs(3), || {
            // SAFETY: `descs` belong to this UMEM; the kernel fills those it hands back.
            let n = unsafe { rx.poll_and_consume(&mut descs, 100) }.expect("poll");
            for d in descs.iter().take(n) {
                // SAFETY: `d` was just received and is not in the fill ring.
                got.push(unsafe { umem.data(d) }.contents().to_vec());
            }
            !got.is_empty()
        });
        assert!(
            ok,
            "nothing arrived in the socket: {:?}",
            c.stats().unwrap()
        );
        assert_eq!(got, [frame], "only the owned frame, unchanged");
        let s = c.stats().unwrap();
        assert_eq!((s[Stat::Redirected], s[Stat::NoSocket]), (1, 0), "{s:?}");
        assert_eq!(s[Stat::PassLocal], 1, "{s:?}");

        // Without the socket, owned frames go back to the kernel.
        c.unregister_socket(0).unwrap();
        send_frames(&p.gen, GEN_IF, &[pod_frame(PEER_POD, 64)]);
        wait_for_stats(&c, "after unregistering", |s| s[Stat::NoSocket] == 1);
    });
}

#[test]
fn owned_frames_reach_the_registered_af_xdp_socket_native() {
    skip_unless_root!();
    owned_frames_reach_the_registered_socket("xdpxsknative", XdpMode::Native);
}

#[test]
fn owned_frames_reach_the_registered_af_xdp_socket_generic() {
    skip_unless_root!();
    owned_frames_reach_the_registered_socket("xdpxskgeneric", XdpMode::Generic);
}

// --- leftovers and other programs ---------------------------------------------------------

/// Loads a test object from OUT_DIR and attaches it the legacy way (netlink, no link), as
/// an older podfwd or another tool would; it stays after the object is closed.
fn attach_legacy(object: &str, iface: &str, mode: libbpf_rs::XdpFlags) -> String {
    let path = format!("{}/{object}", env!("OUT_DIR"));
    let obj = libbpf_rs::ObjectBuilder::default()
        .open_file(&path)
        .and_then(|o| o.load())
        .unwrap_or_else(|e| panic!("load {path}: {e:#}"));
    let prog = obj.progs().next().expect("one program");
    let name = prog.name().to_string_lossy().into_owned();
    let name_c = std::ffi::CString::new(iface).unwrap();
    // SAFETY: `name_c` is NUL-terminated and outlives the call.
    let ifindex = unsafe { libc::if_nametoindex(name_c.as_ptr()) };
    libbpf_rs::Xdp::new(prog.as_fd())
        .attach(ifindex as i32, mode)
        .expect("legacy attach");
    name
}

#[test]
fn a_stale_legacy_podfwd_program_is_removed_before_attaching() {
    skip_unless_root!();
    let p = pair("xdpstale");
    in_ns(&p.dut, || {
        let name = attach_legacy("podfwd_xdp.bpf.o", DUT_IF, libbpf_rs::XdpFlags::SKB_MODE);
        assert_eq!(name, PROGRAM_NAME);
        let stale = attached_programs(DUT_IF).unwrap();
        assert_eq!(stale.len(), 1);

        let mut c = load_offline(DUT_IF, Role::Uplink).unwrap();
        c.attach(XdpMode::Native).expect("attach over the leftover");
        assert_eq!(c.removed_stale(), stale.as_slice());
        let now = attached_programs(DUT_IF).unwrap();
        assert_eq!(now.len(), 1, "{now:?}");
        assert_eq!(now[0].id, c.program_id().unwrap());
        assert_eq!(now[0].mode, AttachMode::Native);
        drop(c);
        assert_detached_soon(DUT_IF);
    });
}

#[test]
fn a_foreign_program_is_named_in_the_error_and_left_in_place() {
    skip_unless_root!();
    let p = pair("xdpforeign");
    in_ns(&p.dut, || {
        let name = attach_legacy("foreign_pass.bpf.o", DUT_IF, libbpf_rs::XdpFlags::DRV_MODE);
        let mut c = load_offline(DUT_IF, Role::Uplink).unwrap();
        let err = c.attach(XdpMode::Native).unwrap_err();
        assert!(
            matches!(&err, XdpError::ForeignProgram { name: n, iface, mode: AttachMode::Native, .. }
                if *n == name && iface == DUT_IF),
            "{err}"
        );
        assert!(err.to_string().contains("foreign_pass"), "{err}");
        let still = attached_programs(DUT_IF).unwrap();
        assert_eq!(still.len(), 1);
        assert_eq!(still[0].name, name);
    });
}

#[test]
fn an_interface_held_by_a_live_instance_is_refused() {
    skip_unless_root!();
    let p = pair("xdpheld");
    in_ns(&p.dut, || {
        let mut first = load_offline(DUT_IF, Role::Uplink).unwrap();
        first.attach(XdpMode::Native).unwrap();
        let mut second = load_offline(DUT_IF, Role::Uplink).unwrap();
        let err = second.attach(XdpMode::Native).unwrap_err();
        assert!(matches!(err, XdpError::HeldByLink { .. }), "{err}");
        assert!(err.to_string().contains("running process"), "{err}");
        // The first one is untouched.
        assert_eq!(
            attached_programs(DUT_IF).unwrap()[0].id,
            first.program_id().unwrap()
        );
    });
}

// --- fail-open ----------------------------------------------------------------------------

/// Kills the child on drop, so a failing test leaves no process holding the link.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The child half of the SIGKILL test: attaches in the namespace named by the environment,
/// says so, and waits to be killed. Without the variable (a normal test run) it does
/// nothing.
#[test]
fn sigkill_child_attaches_and_waits() {
    let Ok(ns) = std::env::var(CHILD_NS_ENV) else {
        return;
    };
    enter_netns(&format!("/run/netns/{ns}"));
    let mut c = load_offline(DUT_IF, Role::Uplink).unwrap();
    c.attach(XdpMode::Native).unwrap();
    println!("{CHILD_READY}");
    loop {
        thread::sleep(Duration::from_secs(60));
    }
}

#[test]
fn a_sigkilled_owner_leaves_no_program_behind() {
    skip_unless_root!();
    let p = pair("xdpkill");
    let mut child = KillOnDrop(
        Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "xdp::sigkill_child_attaches_and_waits",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_NS_ENV, p.dut.name())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn the child test process"),
    );
    let stdout = child.0.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) if line.contains(CHILD_READY) => break,
            Ok(_) => continue,
            Err(e) => panic!("the child did not attach: {e}"),
        }
    }
    assert_eq!(ip_link_xdp(&p.dut, DUT_IF), "xdp", "the child's program");

    child.0.kill().expect("SIGKILL the child"); // std sends SIGKILL
    child.0.wait().unwrap();
    let gone = wait_until(Duration::from_secs(5), || {
        ip_link_xdp(&p.dut, DUT_IF).is_empty()
    });
    assert!(gone, "program left behind: {}", link_line(&p.dut, DUT_IF));
    in_ns(&p.dut, || assert_detached_soon(DUT_IF));
}
