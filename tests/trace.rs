//! `podfwd trace` (the built binary) against a real `TraceHub` serving a real Unix
//! socket, as the control thread will: frames recorded by a worker's `Tracer` come out
//! as lines on stdout and as a pcapng capture, and the client exits 0.

use pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketOption;
use pcap_file::pcapng::{Block, PcapNgReader};
use podfwd::counters::DropReason;
use podfwd::pipeline::{Packet, Verdict};
use podfwd::trace::TraceHub;
use std::io::{BufRead, BufReader};
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

fn serve(name: &str) -> (TraceHub, PathBuf) {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("trace-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("ctl.sock");
    let listener = UnixListener::bind(&path).unwrap();
    let hub = TraceHub::new(vec!["eth0".into(), "veth-pod".into()]);
    let h = hub.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let stream = stream.unwrap();
            let mut line = String::new();
            BufReader::new(&stream).read_line(&mut line).unwrap();
            let _ = h.attach(stream, &line);
        }
    });
    (hub, path)
}

/// A frame too short for IPv4 (what the pipeline drops as `malformed`).
const RUNT: [u8; 20] = [
    2, 0, 0, 0, 0, 0xa1, 2, 0, 0, 0, 0, 0xb1, 0x08, 0x00, 0x45, 0, 0, 20, 0, 0,
];

fn record_until_done(hub: &TraceHub, child: &mut std::process::Child) {
    let mut t = hub.tracer(7);
    let t0 = Instant::now();
    while hub.clients() == 0 {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "the client never attached"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let mut buf = RUNT.to_vec();
    let pkts = [Packet {
        len: buf.len(),
        buf: &mut buf,
        offset: 0,
        ingress: 0,
    }];
    // Until the client has its frames and leaves.
    while child.try_wait().unwrap().is_none() {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "the client never finished"
        );
        if let Some(a) = t.active() {
            a.record_batch(
                &pkts,
                &[Verdict::Drop(DropReason::Malformed)],
                SystemTime::now(),
            );
            a_tx(&mut t);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One forwarded frame that a `--drops` client must not see.
fn a_tx(t: &mut podfwd::trace::Tracer) {
    let mut buf = RUNT.to_vec();
    let pkts = [Packet {
        len: buf.len(),
        buf: &mut buf,
        offset: 0,
        ingress: 1,
    }];
    if let Some(a) = t.active() {
        a.record_batch(&pkts, &[Verdict::Tx(0)], SystemTime::now());
    }
}

#[test]
fn podfwd_trace_prints_drops_with_their_reason_and_exits_0_after_count() {
    let (hub, socket) = serve("text");
    let mut child = Command::new(env!("CARGO_BIN_EXE_podfwd"))
        .args(["trace", "--drops", "--count", "2", "--socket"])
        .arg(&socket)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    record_until_done(&hub, &mut child);
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    for l in lines {
        assert!(
            l.contains(" cpu7 eth0 drop malformed: 02:00:00:00:00:b1 > 02:00:00:00:00:a1, malformed IPv4: "),
            "{l}"
        );
    }
    assert!(
        stderr.contains("podfwd trace: 2 frames, 0 missed"),
        "{stderr}"
    );
}

#[test]
fn podfwd_trace_writes_a_pcapng_with_the_verdict_as_each_packets_comment() {
    let (hub, socket) = serve("pcapng");
    let file = socket.with_file_name("out.pcapng");
    let mut child = Command::new(env!("CARGO_BIN_EXE_podfwd"))
        .args(["trace", "--count", "4", "--write"])
        .arg(&file)
        .arg("--socket")
        .arg(&socket)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    record_until_done(&hub, &mut child);
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stdout.is_empty(), "with --write, nothing on stdout");
    let bytes = std::fs::read(&file).unwrap();
    let mut r = PcapNgReader::new(&bytes[..]).unwrap();
    let mut comments = Vec::new();
    let mut times = Vec::new();
    while let Some(b) = r.next_block() {
        if let Block::EnhancedPacket(p) = b.unwrap() {
            times.push(p.timestamp);
            assert_eq!(&p.data[..], &RUNT[..]);
            assert_eq!(p.original_len, 20);
            match &p.options[0] {
                EnhancedPacketOption::Comment(c) => comments.push(c.to_string()),
                o => panic!("first option {o:?}"),
            }
        }
    }
    assert_eq!(
        comments,
        [
            "drop malformed; cpu 7",
            "tx port 0 (eth0); cpu 7",
            "drop malformed; cpu 7",
            "tx port 0 (eth0); cpu 7"
        ]
    );

    // Wireshark itself reads the file: interface names, nanosecond times, lengths,
    // comments, and its own verdict on the runt agrees with ours.
    let fields = [
        "frame.interface_name",
        "frame.time_epoch",
        "frame.len",
        "frame.comment",
        "_ws.malformed",
    ];
    let mut cmd = Command::new("tshark");
    cmd.arg("-r").arg(&file).args(["-T", "fields"]);
    for f in fields {
        cmd.args(["-e", f]);
    }
    let out = cmd
        .output()
        .expect("tshark runs (tools/setup.sh installs the Debian package tshark)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let rows: Vec<Vec<&str>> = stdout.lines().map(|l| l.split('\t').collect()).collect();
    assert_eq!(rows.len(), 4, "{stdout}");
    for (i, row) in rows.iter().enumerate() {
        let t = times[i];
        assert_eq!(
            row[0],
            if i % 2 == 0 { "eth0" } else { "veth-pod" },
            "{stdout}"
        );
        assert_eq!(
            row[1],
            format!("{}.{:09}", t.as_secs(), t.subsec_nanos()),
            "{stdout}"
        );
        assert_eq!(row[2], "20");
        assert_eq!(row[3], comments[i]);
        assert!(
            !row[4].is_empty(),
            "Wireshark finds the runt malformed too: {stdout}"
        );
    }
}

#[test]
fn podfwd_trace_into_a_reader_that_leaves_early_exits_0() {
    let (hub, socket) = serve("head");
    let mut child = Command::new(env!("CARGO_BIN_EXE_podfwd"))
        .args(["trace", "--socket"])
        .arg(&socket)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // `podfwd trace | head -1`.
    let stdout = child.stdout.take().unwrap();
    let head = std::thread::spawn(move || {
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        line
    });
    record_until_done(&hub, &mut child);
    let line = head.join().unwrap();
    assert!(line.contains("drop malformed"), "{line}");
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn ctrl_c_ends_podfwd_trace_with_status_0_and_a_complete_capture() {
    let (hub, socket) = serve("sigint");
    let file = socket.with_file_name("out.pcapng");
    let mut child = Command::new(env!("CARGO_BIN_EXE_podfwd"))
        .args(["trace", "--drops", "--write"])
        .arg(&file)
        .arg("--socket")
        .arg(&socket)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id() as libc::pid_t;
    // Ctrl-C once the first frames are written (the client flushes at each heartbeat).
    let f = file.clone();
    std::thread::spawn(move || {
        let t0 = Instant::now();
        while std::fs::metadata(&f).map(|m| m.len()).unwrap_or(0) < 200 {
            assert!(t0.elapsed() < Duration::from_secs(10), "nothing written");
            std::thread::sleep(Duration::from_millis(10));
        }
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(pid, libc::SIGINT) };
    });
    record_until_done(&hub, &mut child);
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("podfwd trace: "), "{stderr}");
    let bytes = std::fs::read(&file).unwrap();
    let mut r = PcapNgReader::new(&bytes[..]).unwrap();
    let mut packets = 0;
    while let Some(b) = r.next_block() {
        if let Block::EnhancedPacket(p) = b.expect("every block complete") {
            assert_eq!(
                p.options[0],
                EnhancedPacketOption::Comment("drop malformed; cpu 7".into())
            );
            packets += 1;
        }
    }
    assert!(packets >= 1);
    assert!(
        stderr.contains(&format!("podfwd trace: {packets} frames")),
        "{stderr}"
    );
}
