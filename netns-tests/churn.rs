//! Route and neighbour churn under load (issue 9, "Reliability work").
//!
//! Node A runs podfwd (AF_XDP); node B is a kernel node configured as flanneld does
//! (`KernelVxlan` / `KernelHostGw`), so podfwd is checked against a real kernel peer. A
//! paced UDP sender in pod A ([`RATE`] datagrams per second, each carrying its sequence
//! number and its send time on `CLOCK_MONOTONIC`) runs to a receiver in pod B that records
//! every datagram, while the test churns the network:
//!
//! | test | churn | what must hold |
//! |---|---|---|
//! | `<mode>_peer_mac_changes` | node B's uplink MAC changes 3 times, 1.5 s apart (host-gw: the next hop's MAC; vxlan: the outer next hop's); in vxlan also pod B's MAC, twice (node B delivers). Both announce it (`arp_notify`, as a node's interface does when it comes up) | no frame to the old MAC reaches node B's uplink (or pod B) later than 1 s after the change (`tcpdump -e` there, promiscuous); traffic is back within 1 s of every change |
//! | `<mode>_uplink_flaps` | `ip link set nodeA-ul down; sleep 0.2; up` twice, then the same on node B's end (node A sees carrier loss) twice | traffic is back within 1 s of every link-up |
//!
//! Every test also asserts: no lost stretch of traffic longer than 1 s except while a link
//! was down; podfwd alive (its process, its control socket answers `stats`, its one
//! worker is listed), no "panicked" in its log; podfwd's counters (`forwarded` for
//! host-gw, `encapsulated` for vxlan) account for at least [`FAST_PATH_SHARE`] % of the
//! datagrams that arrived.
//!
//! Times: "back within 1 s" is measured from the churn's timestamp, taken *before* the
//! `ip` command that makes the change runs, to the send time of the first datagram sent
//! after it that arrived; a lost stretch is the difference between the send times of the
//! datagrams received on either side of it. [`TOLERANCE`] (100 ms) covers what is not
//! podfwd's: the `ip netns exec` spawn between the timestamp and the change, the sender's
//! 5 ms send bursts, and scheduling delays of the sender and of `ip` on a shared 2-core
//! machine.

use crate::harness::{self, skip_unless_root, Netns};
use crate::traffic::{ping_ok, started_cluster};
use podfwd::config::{Backend, Mode};
use podfwd::lab::{Cluster, ClusterSpec, NodeKind, SIDES};
use std::path::PathBuf;
use std::time::Duration;

const A: usize = 0;
const B: usize = 1;
/// Datagrams per second from pod A to pod B.
pub(crate) const RATE: u32 = 2000;
/// The bound on how long traffic may stay broken after a change.
const RECOVERY: f64 = 1.0;
/// Added to [`RECOVERY`] for measurement noise (see the module documentation).
const TOLERANCE: f64 = 0.1;
/// The share (percent) of the arrived datagrams podfwd must have carried itself.
const FAST_PATH_SHARE: u64 = 90;
/// UDP port of the receiver in pod B.
const PORT: u16 = 5300;

pub(crate) fn spec(mode: Mode) -> ClusterSpec {
    let b = match mode {
        Mode::HostGw => NodeKind::KernelHostGw,
        _ => NodeKind::KernelVxlan,
    };
    ClusterSpec {
        mode,
        nodes: [NodeKind::Podfwd, b],
        ..ClusterSpec::default()
    }
}

/// The podfwd counter on node A that counts a pod A -> pod B datagram it carried.
pub(crate) fn carried(mode: Mode) -> &'static str {
    match mode {
        Mode::Vxlan => "encapsulated",
        _ => "forwarded",
    }
}

/// Seconds on `CLOCK_MONOTONIC`, the clock of Python's `time.monotonic()` (namespaces
/// share it).
pub(crate) fn mono() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into the valid struct passed.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    assert_eq!(rc, 0);
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

/// Seconds since the epoch (the clock of pcap timestamps).
fn real() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

fn parse_mac(s: &str) -> [u8; 6] {
    let v: Vec<u8> = s
        .split(':')
        .map(|b| u8::from_str_radix(b, 16).unwrap())
        .collect();
    v.try_into().unwrap()
}

fn tmp(ns: &Netns, what: &str) -> PathBuf {
    std::env::temp_dir().join(format!("{}-churn-{what}", ns.name()))
}

/// One received datagram.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Rec {
    pub(crate) seq: u64,
    /// Send time in pod A (monotonic seconds).
    pub(crate) sent: f64,
    /// Receive time in pod B (monotonic seconds).
    pub(crate) recv: f64,
}

/// The paced UDP flow from pod A to pod B.
pub(crate) struct Flow {
    sender: u32,
    receiver: u32,
    stop: PathBuf,
    sent: PathBuf,
    recs: PathBuf,
    done: PathBuf,
}

impl Flow {
    pub(crate) fn start(c: &Cluster) -> Flow {
        let ip = SIDES[B].pod_ip;
        let flow = Flow {
            sender: 0,
            receiver: 0,
            stop: tmp(&c.pods[A], "stop"),
            sent: tmp(&c.pods[A], "sent"),
            recs: tmp(&c.pods[B], "recs"),
            done: tmp(&c.pods[B], "done"),
        };
        let ready = tmp(&c.pods[B], "ready");
        for p in [&flow.stop, &flow.sent, &flow.recs, &flow.done, &ready] {
            let _ = std::fs::remove_file(p);
        }
        let (stop, sent, recs, done) = (
            flow.stop.display(),
            flow.sent.display(),
            flow.recs.display(),
            flow.done.display(),
        );
        let ready_s = ready.display();
        // Records of 24 bytes: the datagram's sequence number and send time, then the
        // receive time. After the stop file appears, the socket is drained.
        let receiver_py = format!(
            "import socket, struct, time, os\n\
             s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
             s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)\n\
             s.bind(('{ip}', {PORT})); s.settimeout(0.2)\n\
             out = open('{recs}', 'wb'); open('{ready_s}', 'w').close(); n = 0\n\
             while True:\n    \
                 n += 1\n    \
                 if n % 64 == 0 and os.path.exists('{stop}'): break\n    \
                 try:\n        d = s.recv(2048)\n    \
                 except socket.timeout:\n        \
                     if os.path.exists('{stop}'): break\n        \
                     continue\n    \
                 out.write(d[:16] + struct.pack('!d', time.monotonic()))\n\
             s.settimeout(0.5)\n\
             try:\n    \
                 while True:\n        \
                     d = s.recv(2048); out.write(d[:16] + struct.pack('!d', time.monotonic()))\n\
             except socket.timeout:\n    pass\n\
             out.close(); open('{done}', 'w').close()\n"
        );
        // Every 5 ms, sends what is due at RATE per second; stops at the stop file (or
        // after 120 s), then writes "sent errors".
        let sender_py = format!(
            "import socket, struct, time, os\n\
             s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
             pad = bytes(84); dst = ('{ip}', {PORT}); t0 = time.monotonic(); i = 0; errs = 0\n\
             while time.monotonic() - t0 < 120 and not os.path.exists('{stop}'):\n    \
                 due = int((time.monotonic() - t0) * {RATE}) + 1\n    \
                 while i < due:\n        \
                     try:\n            s.sendto(struct.pack('!Qd', i, time.monotonic()) + pad, dst)\n        \
                     except OSError:\n            errs += 1\n        \
                     i += 1\n    \
                 time.sleep(0.005)\n\
             open('{sent}', 'w').write('%d %d' % (i, errs))\n"
        );
        let receiver = c.pods[B]
            .spawn(&["python3", "-c", &receiver_py])
            .expect("start the receiver");
        assert!(
            harness::wait_until(Duration::from_secs(5), || ready.exists()),
            "the receiver did not start"
        );
        let _ = std::fs::remove_file(&ready);
        let sender = c.pods[A]
            .spawn(&["python3", "-c", &sender_py])
            .expect("start the sender");
        Flow {
            sender,
            receiver,
            ..flow
        }
    }

    /// Stops both ends; returns (datagrams sent, send errors, what arrived sorted by
    /// sequence number).
    pub(crate) fn stop(self, c: &Cluster) -> (u64, u64, Vec<Rec>) {
        std::fs::write(&self.stop, b"").unwrap();
        let sent_ok = harness::wait_until(Duration::from_secs(5), || {
            std::fs::read_to_string(&self.sent).is_ok_and(|s| s.contains(' '))
        });
        let done = harness::wait_until(Duration::from_secs(5), || self.done.exists());
        c.pods[A].kill(self.sender);
        c.pods[B].kill(self.receiver);
        assert!(
            sent_ok && done,
            "the flow did not stop (sender {sent_ok}, receiver {done})"
        );
        let text = std::fs::read_to_string(&self.sent).unwrap();
        let mut it = text.split_whitespace().map(|v| v.parse::<u64>().unwrap());
        let (sent, errs) = (it.next().unwrap(), it.next().unwrap());
        let bytes = std::fs::read(&self.recs).unwrap();
        let mut recs: Vec<Rec> = bytes
            .chunks_exact(24)
            .map(|r| Rec {
                seq: u64::from_be_bytes(r[0..8].try_into().unwrap()),
                sent: f64::from_be_bytes(r[8..16].try_into().unwrap()),
                recv: f64::from_be_bytes(r[16..24].try_into().unwrap()),
            })
            .collect();
        recs.sort_by_key(|r| r.seq);
        recs.dedup_by_key(|r| r.seq);
        for p in [&self.stop, &self.sent, &self.recs, &self.done] {
            let _ = std::fs::remove_file(p);
        }
        (sent, errs, recs)
    }
}

/// tcpdump writing what passes `filter` on `ifname` (promiscuous, the default).
struct Capture<'a> {
    ns: &'a Netns,
    ifname: &'static str,
    pid: u32,
    path: PathBuf,
}

impl<'a> Capture<'a> {
    fn start(ns: &'a Netns, ifname: &'static str, filter: &str) -> Capture<'a> {
        let path = tmp(ns, &format!("{ifname}.pcap"));
        let _ = std::fs::remove_file(&path);
        let path_s = path.display().to_string();
        let pid = ns
            .spawn(&[
                "tcpdump", "-i", ifname, "-n", "-U", "-s", "64", "-B", "8192", "-w", &path_s,
                filter,
            ])
            .expect("start tcpdump");
        let attached = harness::wait_until(Duration::from_secs(5), || {
            std::fs::metadata(&path).is_ok_and(|m| m.len() >= 24)
        });
        assert!(attached, "tcpdump on {ifname} did not start");
        // Give tcpdump time to attach its filter.
        std::thread::sleep(Duration::from_millis(200));
        Capture {
            ns,
            ifname,
            pid,
            path,
        }
    }

    /// Stops tcpdump; returns (timestamp, destination MAC) of every captured frame.
    fn stop(self) -> Vec<(f64, [u8; 6])> {
        self.ns.terminate(self.pid, Duration::from_secs(3));
        let bytes = std::fs::read(&self.path).unwrap_or_default();
        let _ = std::fs::remove_file(&self.path);
        assert!(
            bytes.len() >= 24 && bytes[0..4] == [0xd4, 0xc3, 0xb2, 0xa1],
            "{}: not a little-endian microsecond pcap",
            self.ifname
        );
        let mut out = Vec::new();
        let mut at = 24;
        while at + 16 <= bytes.len() {
            let u = |o: usize| u32::from_le_bytes(bytes[at + o..at + o + 4].try_into().unwrap());
            let ts = f64::from(u(0)) + f64::from(u(4)) * 1e-6;
            let incl = u(8) as usize;
            at += 16;
            if at + incl > bytes.len() || incl < 6 {
                break;
            }
            out.push((ts, bytes[at..at + 6].try_into().unwrap()));
            at += incl;
        }
        out
    }
}

/// A MAC change: where, when (both clocks), the MAC that was replaced.
struct MacChange {
    what: String,
    /// Index into the captures.
    capture: usize,
    at: f64,
    at_real: f64,
    old: [u8; 6],
}

/// A link flap: what, and when the link was set up again (before the command ran).
struct Flap {
    what: String,
    up: f64,
}

/// Changes `ifname`'s MAC in `ns` from `old` to `new`; the interface announces it
/// (`arp_notify` is on).
fn change_mac(
    ns: &Netns,
    ifname: &str,
    old: &str,
    new: &str,
    capture: usize,
    log: &mut Vec<MacChange>,
) {
    let (at, at_real) = (mono(), real());
    ns.ip(&["link", "set", ifname, "address", new]).unwrap();
    log.push(MacChange {
        what: format!("{} {ifname} {old} -> {new}", ns.name()),
        capture,
        at,
        at_real,
        old: parse_mac(old),
    });
}

/// `ip link set ifname down; sleep 0.2; ip link set ifname up` in `ns`.
fn flap(ns: &Netns, ifname: &str, log: &mut Vec<Flap>) {
    ns.ip(&["link", "set", ifname, "down"]).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let up = mono();
    ns.ip(&["link", "set", ifname, "up"]).unwrap();
    log.push(Flap {
        what: format!("{} {ifname} down/up", ns.name()),
        up,
    });
}

/// The first datagram sent at or after `t` that arrived: how long after `t` it was sent.
fn back_after(recs: &[Rec], t: f64) -> Option<f64> {
    recs.iter()
        .filter(|r| r.sent >= t)
        .map(|r| r.sent - t)
        .min_by(|a, b| a.total_cmp(b))
}

/// Lost stretches: (start, length in seconds) for every sequence gap, as the difference
/// between the send times of the datagrams on either side; a loss at the end (of `sent`
/// datagrams, the last sent just before `end`) runs to `end`. A stretch that contains a
/// link-up counts only from that link-up (the link was down before it).
fn lost_stretches(recs: &[Rec], ups: &[f64], sent: u64, end: f64) -> Vec<(f64, f64)> {
    let tail = match recs.last() {
        Some(r) if r.seq + 1 < sent => Some((*r, end)),
        _ => None,
    };
    recs.windows(2)
        .filter(|w| w[1].seq > w[0].seq + 1)
        .map(|w| (w[0], w[1].sent))
        .chain(tail)
        .map(|(a, b)| {
            let from = ups
                .iter()
                .copied()
                .filter(|u| *u > a.sent && *u < b)
                .fold(a.sent, f64::max);
            (from, b - from)
        })
        .collect()
}

/// podfwd on node A is alive: process not exited, control socket answers with its one
/// worker, no panic in its log.
pub(crate) fn assert_podfwd_alive(c: &Cluster) -> podfwd::control::StatsReply {
    let pid = c.podfwd_pid(A).expect("podfwd was started");
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let state = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .next();
    assert!(
        matches!(state, Some(s) if s != "Z" && s != "X"),
        "podfwd (pid {pid}) exited: {stat:?}\n{}",
        c.logs()
    );
    let s = c
        .stats(A)
        .unwrap_or_else(|e| panic!("podfwd stats: {e}\n{}", c.logs()));
    assert_eq!(s.workers.len(), 1, "{:?}", s.workers);
    let log = std::fs::read_to_string(c.log_path(A)).unwrap_or_default();
    assert!(
        !log.contains("panicked") && !log.contains("worker on cpu"),
        "podfwd's log:\n{log}"
    );
    s
}

/// What the churn did, for the checks.
#[derive(Default)]
struct Churn {
    macs: Vec<MacChange>,
    flaps: Vec<Flap>,
}

/// Runs `churn` while the flow runs (1 s before and 1.5 s after), then checks everything
/// the module documentation lists. `captures` are (namespace, interface) to watch for
/// frames from node A (uplink) or to the pod (pod side).
fn run(c: &Cluster, mode: Mode, churn: impl FnOnce(&Cluster, &mut Churn)) {
    let ctr = carried(mode);
    ping_ok(c, A, 1);
    for (ns, ifname) in [(&c.nodes[B], SIDES[B].ul_if), (&c.pods[B], "eth0")] {
        ns.sysctl("net.ipv4.conf.all.arp_notify", "1").unwrap();
        ns.sysctl(&format!("net.ipv4.conf.{ifname}.arp_notify"), "1")
            .unwrap();
    }
    // Frames podfwd sent towards node B, on node B's uplink (no XDP there: tcpdump sees
    // what arrived); node B's deliveries to pod B, in pod B.
    let captures = [
        Capture::start(
            &c.nodes[B],
            SIDES[B].ul_if,
            &format!("ether src {} and udp", SIDES[A].node_ul_mac),
        ),
        Capture::start(&c.pods[B], "eth0", &format!("udp dst port {PORT}")),
    ];
    let before = c.stats(A).unwrap().total[ctr];
    let flow = Flow::start(c);
    std::thread::sleep(Duration::from_secs(1));
    let start = mono();
    let mut done = Churn::default();
    churn(c, &mut done);
    std::thread::sleep(Duration::from_millis(1500));
    let end = mono();
    let (sent, errs, recs) = flow.stop(c);
    let frames: Vec<_> = captures.into_iter().map(Capture::stop).collect();
    let s = assert_podfwd_alive(c);
    let carried = s.total[ctr] - before;
    let got = recs.len() as u64;
    let first = recs.first().map(|r| r.sent);

    let mut report = format!(
        "{mode}: sent {sent} ({errs} send errors), received {got}, podfwd {ctr} {carried}\n"
    );
    let mut failures = Vec::new();
    let limit = RECOVERY + TOLERANCE;
    for m in &done.macs {
        let back = back_after(&recs, m.at);
        let stale: Vec<f64> = frames[m.capture]
            .iter()
            .filter(|(ts, dst)| *dst == m.old && *ts >= m.at_real)
            .map(|(ts, _)| ts - m.at_real)
            .collect();
        let last_stale = stale.iter().copied().fold(0.0, f64::max);
        let late = stale.iter().filter(|d| **d > RECOVERY).count();
        report += &format!(
            "  {:+.3} s {}: back after {:?} s; {} frames to the old MAC since the command started, the last {:.3} s after it, {late} later than {RECOVERY} s\n",
            m.at - start,
            m.what,
            back.map(|b| (b * 1000.0).round() / 1000.0),
            stale.len(),
            last_stale
        );
        if late > 0 {
            failures.push(format!(
                "{}: {late} frames to the old MAC later than {RECOVERY} s (the last {last_stale:.3} s after)",
                m.what
            ));
        }
        if back.is_none_or(|b| b > limit) {
            failures.push(format!(
                "{}: traffic not back within {limit} s: {back:?}",
                m.what
            ));
        }
    }
    for f in &done.flaps {
        let back = back_after(&recs, f.up);
        report += &format!(
            "  {:+.3} s {} (up): back after {:?} s\n",
            f.up - start,
            f.what,
            back.map(|b| (b * 1000.0).round() / 1000.0)
        );
        if back.is_none_or(|b| b > limit) {
            failures.push(format!(
                "{}: traffic not back within {limit} s of link-up: {back:?}",
                f.what
            ));
        }
    }
    let ups: Vec<f64> = done.flaps.iter().map(|f| f.up).collect();
    let stretches = lost_stretches(&recs, &ups, sent, end);
    let worst = stretches.iter().copied().max_by(|a, b| a.1.total_cmp(&b.1));
    report += &format!("  {} lost stretches", stretches.len());
    if let Some((at, len)) = worst {
        report += &format!(", the longest {len:.3} s from {:+.3} s", at - start);
    }
    report += "\n";
    eprintln!("{report}");
    if let Some((at, len)) = worst.filter(|w| w.1 > limit) {
        failures.push(format!(
            "traffic was lost for {len:.3} s from {:+.3} s (limit {limit} s outside link-down time)",
            at - start
        ));
    }
    // Traffic flowed before the churn (the baseline), so a silent flow is not a pass.
    if !first.is_some_and(|t| t < start - 0.5) {
        failures.push(format!(
            "no traffic before the churn (first datagram sent at {:?} s)",
            first.map(|t| t - start)
        ));
    }
    if carried * 100 < got * FAST_PATH_SHARE {
        failures.push(format!(
            "podfwd {ctr} only {carried} of {got} arrived datagrams: {:?}",
            s.total
        ));
    }
    assert!(
        failures.is_empty(),
        "{}\n{report}\n{}",
        failures.join("\n"),
        c.logs()
    );
}

/// Node B's uplink MAC changes three times (and, in vxlan mode, pod B's twice), 1.5 s
/// apart.
fn peer_mac_changes(mode: Mode, tag: &str) {
    let c = started_cluster(tag, spec(mode), Backend::AfXdp);
    run(&c, mode, |c, done| {
        let ul = [
            "02:00:00:00:0b:01",
            "02:00:00:00:0b:02",
            "02:00:00:00:0b:03",
        ];
        let pod = ["02:00:00:00:0c:01", "02:00:00:00:0c:02"];
        let mut old_ul = SIDES[B].node_ul_mac;
        let mut old_pod = SIDES[B].pod_mac;
        for (i, new) in ul.iter().enumerate() {
            change_mac(&c.nodes[B], SIDES[B].ul_if, old_ul, new, 0, &mut done.macs);
            old_ul = new;
            std::thread::sleep(Duration::from_millis(1500));
            if mode == Mode::Vxlan && i < pod.len() {
                change_mac(&c.pods[B], "eth0", old_pod, pod[i], 1, &mut done.macs);
                old_pod = pod[i];
                std::thread::sleep(Duration::from_millis(1500));
            }
        }
    });
}

/// node A's uplink flaps twice, then node B's end twice (node A sees carrier loss).
fn uplink_flaps(mode: Mode, tag: &str) {
    let c = started_cluster(tag, spec(mode), Backend::AfXdp);
    run(&c, mode, |c, done| {
        for i in [A, A, B, B] {
            flap(&c.nodes[i], SIDES[i].ul_if, &mut done.flaps);
            std::thread::sleep(Duration::from_millis(1500));
        }
    });
}

#[test]
fn vxlan_peer_mac_changes() {
    skip_unless_root!();
    peer_mac_changes(Mode::Vxlan, "chmvx");
}

#[test]
fn host_gw_peer_mac_changes() {
    skip_unless_root!();
    peer_mac_changes(Mode::HostGw, "chmhg");
}

#[test]
fn vxlan_uplink_flaps() {
    skip_unless_root!();
    uplink_flaps(Mode::Vxlan, "chfvx");
}

#[test]
fn host_gw_uplink_flaps() {
    skip_unless_root!();
    uplink_flaps(Mode::HostGw, "chfhg");
}
