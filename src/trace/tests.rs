//! End to end without the daemon: a real pipeline's verdicts recorded by real tracers,
//! served by a real hub over a Unix socket, read by the real client into text and pcapng.

use super::client::{run_with, Summary, TraceClientError, TraceOptions};
use super::*;
use crate::counters::{Counters, DropReason};
use crate::lpm::{Ipv4Net, LpmConfig};
use crate::nexthop::NextHop;
use crate::pipeline::{FibParams, FibWriter, NodeParams, Pipeline, PortInfo};
use crate::wire::MacAddr;
use etherparse::PacketBuilder;
use pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketOption;
use pcap_file::pcapng::{Block, PcapNgReader};
use std::io::{BufRead, BufReader};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

const UPLINK: u16 = 0;
const POD: u16 = 1;
const HEADROOM: usize = 64;

fn mac(s: &str) -> MacAddr {
    s.parse().unwrap()
}

/// Node A of the demo cluster (10.168.0.2, pods 10.244.0.0/24 on port 1) with one VXLAN
/// peer, node B (10.168.0.3, pods 10.244.1.0/24).
fn node_a() -> (FibWriter, Pipeline) {
    let node = NodeParams {
        node_ip: "10.168.0.2".parse().unwrap(),
        uplink: UPLINK,
        vni: 1,
        vxlan_port: 8472,
        vtep_mac: mac("0e:00:00:00:00:0a"),
    };
    let port = |m| PortInfo {
        mac: mac(m),
        mtu: 1500,
    };
    let (mut w, fib) = FibWriter::new(FibParams {
        node,
        ports: vec![port("02:00:00:00:00:a1"), port("02:00:00:00:00:a3")],
        uplink_subnet: Some("10.168.0.0/24".parse::<Ipv4Net>().unwrap()),
        gateway: None,
        lpm: LpmConfig::default(),
    });
    let net = |s: &str| s.parse::<Ipv4Net>().unwrap();
    w.set_route(net("10.244.0.0/24"), NextHop::Connected { port: POD })
        .unwrap();
    w.set_route(
        net("10.244.1.0/24"),
        NextHop::Vxlan {
            node_ip: "10.168.0.3".parse().unwrap(),
            vtep_mac: mac("0e:00:00:00:00:0b"),
        },
    )
    .unwrap();
    w.set_neighbour(
        UPLINK,
        "10.168.0.3".parse().unwrap(),
        Some(mac("02:00:00:00:00:b1")),
    )
    .unwrap();
    w.set_neighbour(
        POD,
        "10.244.0.2".parse().unwrap(),
        Some(mac("02:00:00:00:00:a2")),
    )
    .unwrap();
    (w, Pipeline::new(node, fib))
}

/// VXLAN from `outer_src` to node A carrying a pod B -> pod A UDP frame; `patch_inner`
/// may damage the inner frame first.
fn vxlan_to_a(outer_src: [u8; 4], patch_inner: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut inner = Vec::new();
    PacketBuilder::ethernet2([0x0e, 0, 0, 0, 0, 0x0b], [0x0e, 0, 0, 0, 0, 0x0a])
        .ipv4([10, 244, 1, 2], [10, 244, 0, 2], 64)
        .udp(99, 5000)
        .write(&mut inner, b"hello")
        .unwrap();
    patch_inner(&mut inner);
    let mut vx = vec![0x08, 0, 0, 0, 0, 0, 1, 0];
    vx.extend_from_slice(&inner);
    let mut out = Vec::new();
    PacketBuilder::ethernet2([2, 0, 0, 0, 0, 0xb1], [2, 0, 0, 0, 0, 0xa1])
        .ipv4(outer_src, [10, 168, 0, 2], 64)
        .udp(40000, 8472)
        .write(&mut out, &vx)
        .unwrap();
    out
}

/// From node B (a known VTEP), but the inner IPv4 header claims more bytes than follow
/// (its checksum fixed, so the only fault is the length).
fn malformed_vxlan() -> Vec<u8> {
    vxlan_to_a([10, 168, 0, 3], |inner| {
        inner[16..18].copy_from_slice(&200u16.to_be_bytes());
        inner[24..26].copy_from_slice(&[0, 0]);
        let c = crate::wire::checksum::checksum(&inner[14..34]);
        inner[24..26].copy_from_slice(&c.to_be_bytes());
    })
}

fn from_unknown_vtep() -> Vec<u8> {
    vxlan_to_a([10, 168, 0, 99], |_| {})
}

fn pod_a_to_pod_b() -> Vec<u8> {
    let mut out = Vec::new();
    PacketBuilder::ethernet2([2, 0, 0, 0, 0, 0xa2], [2, 0, 0, 0, 0, 0xa3])
        .ipv4([10, 244, 0, 2], [10, 244, 1, 2], 64)
        .udp(1234, 5000)
        .write(&mut out, b"podfwd")
        .unwrap();
    out
}

/// A listener in a fresh temp dir whose connections are handed to `hub` as the control
/// thread will: first line read, then `attach`.
fn serve(hub: &TraceHub, name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("podfwd-trace-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("ctl.sock");
    let listener = UnixListener::bind(&path).unwrap();
    let hub = hub.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let stream = stream.unwrap();
            let mut line = String::new();
            BufReader::new(&stream).read_line(&mut line).unwrap();
            assert!(line.starts_with("trace"));
            let _ = hub.attach(stream, &line);
        }
    });
    path
}

fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !cond() {
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Runs `frames` (all arriving on `ingress`) through the pipeline as one batch and
/// records it: the verdicts and each frame's bytes at the verdict point.
fn process_and_record(
    p: &Pipeline,
    tracer: &mut Tracer,
    frames: &[(Vec<u8>, u16)],
) -> Vec<(Verdict, Vec<u8>)> {
    let mut bufs: Vec<Vec<u8>> = frames
        .iter()
        .map(|(f, _)| {
            let mut b = vec![0u8; HEADROOM];
            b.extend_from_slice(f);
            b
        })
        .collect();
    let mut pkts: Vec<Packet<'_>> = bufs
        .iter_mut()
        .zip(frames)
        .map(|(buf, (f, ingress))| Packet {
            buf,
            offset: HEADROOM,
            len: f.len(),
            ingress: *ingress,
        })
        .collect();
    let mut verdicts = vec![Verdict::ToKernel; pkts.len()];
    let mut ctrs = Counters::default();
    p.process(&mut pkts, &mut verdicts, &mut ctrs);
    // The call site of a worker.
    if let Some(t) = tracer.active() {
        t.record_batch(&pkts, &verdicts, SystemTime::now());
    }
    verdicts
        .iter()
        .zip(&pkts)
        .map(|(v, p)| (*v, p.frame().to_vec()))
        .collect()
}

#[test]
fn drops_of_a_real_pipeline_reach_a_text_client_and_a_pcapng_client_with_their_reasons() {
    let (_w, pipeline) = node_a();
    let hub = TraceHub::with_ring_slots(vec!["eth0".into(), "veth-pod".into()], 64);
    let mut t1 = hub.tracer(1);
    let mut t2 = hub.tracer(2);
    assert!(t1.active().is_none(), "off while no client is attached");
    let socket = serve(&hub, "e2e");

    let dir = socket.parent().unwrap().to_path_buf();
    let pcap = dir.join("out.pcapng");
    let text_client = {
        let socket = socket.clone();
        std::thread::spawn(move || {
            let mut out = Vec::new();
            let opts = TraceOptions {
                drops_only: true,
                count: Some(2),
                write: None,
            };
            let s = run_with(&socket, &opts, &mut out, &AtomicBool::new(false)).unwrap();
            (s, String::from_utf8(out).unwrap())
        })
    };
    let pcap_client = {
        let (socket, pcap) = (socket.clone(), pcap.clone());
        std::thread::spawn(move || {
            let opts = TraceOptions {
                drops_only: false,
                count: Some(3),
                write: Some(pcap),
            };
            run_with(&socket, &opts, &mut Vec::new(), &AtomicBool::new(false)).unwrap()
        })
    };
    wait_for("both clients", || hub.clients() == 2);

    let sent = process_and_record(
        &pipeline,
        &mut t1,
        &[(malformed_vxlan(), UPLINK), (from_unknown_vtep(), UPLINK)],
    );
    assert_eq!(sent[0].0, Verdict::Drop(DropReason::Malformed));
    assert_eq!(sent[1].0, Verdict::Drop(DropReason::UnknownVtep));
    // Dropped frames are shown as they arrived.
    assert_eq!(sent[0].1, malformed_vxlan());
    assert_eq!(sent[1].1, from_unknown_vtep());
    // Another worker forwards one frame (VXLAN encap to node B): shown as sent.
    let fwd = process_and_record(&pipeline, &mut t2, &[(pod_a_to_pod_b(), POD)]);
    assert_eq!(fwd[0].0, Verdict::Tx(UPLINK));
    assert_eq!(fwd[0].1.len(), pod_a_to_pod_b().len() + 50);

    let (summary, text) = text_client.join().unwrap();
    assert_eq!(
        summary,
        Summary {
            frames: 2,
            missed: 0
        }
    );
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(
        lines[0].contains(
            " cpu1 eth0 drop malformed: IP 10.168.0.3.40000 > 10.168.0.2.8472: VXLAN, vni 1"
        ),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].contains(" cpu1 eth0 drop unknown_vtep: IP 10.168.0.99.40000 > 10.168.0.2.8472: VXLAN, vni 1, ttl 64: IP 10.244.1.2.99 > 10.244.0.2.5000: UDP, length 5"),
        "{}",
        lines[1]
    );

    let summary = pcap_client.join().unwrap();
    assert_eq!(
        summary,
        Summary {
            frames: 3,
            missed: 0
        }
    );
    let bytes = std::fs::read(&pcap).unwrap();
    let mut r = PcapNgReader::new(&bytes[..]).unwrap();
    let mut packets = Vec::new();
    while let Some(b) = r.next_block() {
        if let Block::EnhancedPacket(p) = b.unwrap() {
            packets.push(p.into_owned());
        }
    }
    let want = [
        (&sent[0].1, "drop malformed; cpu 1"),
        (&sent[1].1, "drop unknown_vtep; cpu 1"),
        (&fwd[0].1, "tx port 0 (eth0); cpu 2"),
    ];
    assert_eq!(packets.len(), want.len());
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap();
    for (p, (frame, comment)) in packets.iter().zip(want) {
        assert_eq!(&p.data[..], &frame[..]);
        assert_eq!(p.original_len as usize, frame.len());
        assert_eq!(p.options[0], EnhancedPacketOption::Comment(comment.into()));
        assert!(
            now - p.timestamp < Duration::from_secs(10),
            "stamped at record time"
        );
    }
    assert_eq!(packets[2].interface_id, u32::from(POD));

    // Both clients are gone: tracing turns itself off.
    wait_for("tracing off", || hub.clients() == 0 && !hub.is_on());
    assert!(t1.active().is_none());
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_full_ring_never_stalls_the_worker_and_the_client_is_told_what_it_missed() {
    let hub = TraceHub::with_ring_slots(vec!["eth0".into()], 4);
    let mut t = hub.tracer(0);
    let socket = serve(&hub, "missed");
    let stop = Arc::new(AtomicBool::new(false));
    let client = {
        let (socket, stop) = (socket.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut out = Vec::new();
            let opts = TraceOptions {
                drops_only: true,
                ..Default::default()
            };
            let s = run_with(&socket, &opts, &mut out, &stop).unwrap();
            (s, String::from_utf8(out).unwrap())
        })
    };
    wait_for("the client", || hub.clients() == 1);
    // 1000 drops in one batch into a 4-slot ring: the pump cannot keep up.
    let frame = from_unknown_vtep();
    let mut bufs = vec![frame.clone(); 1000];
    let pkts: Vec<Packet<'_>> = bufs
        .iter_mut()
        .map(|buf| Packet {
            len: buf.len(),
            buf,
            offset: 0,
            ingress: 0,
        })
        .collect();
    let verdicts = vec![Verdict::Drop(DropReason::UnknownVtep); pkts.len()];
    let t0 = Instant::now();
    t.active()
        .expect("a client is attached")
        .record_batch(&pkts, &verdicts, SystemTime::now());
    assert!(
        t0.elapsed() < Duration::from_millis(100),
        "the worker never waits"
    );
    // Frames the client does not want are not taken, so they are not missed either.
    t.active()
        .unwrap()
        .record_batch(&pkts[..1], &[Verdict::Tx(0)], SystemTime::now());
    // Two heartbeats carry the missed total.
    std::thread::sleep(Duration::from_millis(600));
    stop.store(true, Ordering::Relaxed);
    let (s, text) = client.join().unwrap();
    assert_eq!(s.frames + s.missed, 1000, "{s:?}");
    assert!(s.missed >= 900, "{s:?}");
    assert_eq!(text.lines().count() as u64, s.frames);
    assert!(text.lines().all(|l| l.contains("drop unknown_vtep")));
    wait_for("tracing off", || !hub.is_on());
}

#[test]
fn a_tracer_moves_into_a_worker_thread_and_the_hub_is_shared() {
    fn send<T: Send>() {}
    fn shared<T: Send + Sync + Clone>() {}
    send::<Tracer>();
    shared::<TraceHub>();
}

#[test]
fn a_bad_request_is_answered_with_an_error_naming_the_value() {
    let hub = TraceHub::new(vec![]);
    let (server, client) = UnixStream::pair().unwrap();
    let e = hub.attach(server, "trace drops=maybe\n").unwrap_err();
    assert!(e.to_string().contains("drops=\"maybe\""), "{e}");
    let rec = protocol::RecordReader::new(&client).next_record().unwrap();
    assert!(
        matches!(&rec, Some(protocol::Record::Error(m)) if m.contains("drops=\"maybe\"")),
        "{rec:?}"
    );
    assert_eq!(hub.clients(), 0);
    assert!(!hub.is_on());
}

#[test]
fn no_instance_and_an_instance_without_trace_are_clear_errors() {
    let e = run_with(
        Path::new("/nonexistent/podfwd.sock"),
        &TraceOptions::default(),
        &mut Vec::new(),
        &AtomicBool::new(false),
    )
    .unwrap_err();
    assert!(matches!(e, TraceClientError::NotRunning { .. }));
    assert!(e.to_string().contains("no podfwd is running there"), "{e}");

    // A control socket that answers as today's does to an unknown request.
    let dir = std::env::temp_dir().join(format!("podfwd-trace-{}-old", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("ctl.sock");
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path).unwrap();
    std::thread::spawn(move || {
        let (s, _) = listener.accept().unwrap();
        let mut line = String::new();
        BufReader::new(&s).read_line(&mut line).unwrap();
        let _ = (&s).write_all(b"{\"error\":\"unknown request \\\"trace\\\"; try stats\"}\n");
    });
    let e = run_with(
        &path,
        &TraceOptions::default(),
        &mut Vec::new(),
        &AtomicBool::new(false),
    )
    .unwrap_err();
    assert!(e.to_string().contains("does not serve trace"), "{e}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_client_that_reads_slowly_loses_counted_frames_and_never_holds_up_the_worker() {
    const BATCHES: usize = 400;
    const PER_BATCH: usize = 50;
    let hub = TraceHub::new(vec!["eth0".into()]);
    let mut t = hub.tracer(0);
    let (server, client) = UnixStream::pair().unwrap();
    hub.attach(server, "trace\n").unwrap();
    let frame = from_unknown_vtep();
    let mut bufs = vec![frame; PER_BATCH];
    let pkts: Vec<Packet<'_>> = bufs
        .iter_mut()
        .map(|buf| Packet {
            len: buf.len(),
            buf,
            offset: 0,
            ingress: 0,
        })
        .collect();
    let verdicts = vec![Verdict::Drop(DropReason::UnknownVtep); PER_BATCH];
    // Nobody reads while the worker records 20,000 frames over ~0.5 s: the socket buffer
    // and the client's queue fill up.
    let mut slowest = Duration::ZERO;
    for _ in 0..BATCHES {
        let t0 = Instant::now();
        t.active()
            .expect("on")
            .record_batch(&pkts, &verdicts, SystemTime::now());
        slowest = slowest.max(t0.elapsed());
        std::thread::sleep(Duration::from_micros(1200));
    }
    assert!(
        slowest < Duration::from_millis(50),
        "a batch took {slowest:?}"
    );
    // Now read: every frame was either delivered or counted as missed.
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut r = protocol::RecordReader::new(&client);
    let (mut frames, mut missed) = (0u64, 0u64);
    let total = (BATCHES * PER_BATCH) as u64;
    while frames + missed < total {
        match r.next_record().unwrap().expect("stream open") {
            protocol::Record::Frame(f) => {
                assert_eq!(
                    f.verdict,
                    protocol::WireVerdict::Drop("unknown_vtep".into())
                );
                frames += 1;
            }
            protocol::Record::Missed(m) => missed = m,
            protocol::Record::Hello { .. } => {}
            protocol::Record::Error(e) => panic!("{e}"),
        }
    }
    assert_eq!(frames + missed, total);
    assert!(
        missed > 0,
        "the slow client missed nothing? {frames} frames"
    );
    assert!(frames > 0);
    drop(r);
    drop(client);
    wait_for("tracing off after the client left", || !hub.is_on());
}
