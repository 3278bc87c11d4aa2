//! Traffic checks shared by the end-to-end tests: the podfwd binary under test, ping
//! between the demo cluster's pods, and a TCP transfer whose bytes are verified.

use crate::harness::{self, Netns};
use podfwd::config::Backend;
use podfwd::lab::{Cluster, ClusterSpec, NodeKind, SIDES};
use std::path::Path;
use std::time::Duration;

/// The podfwd binary built for these tests.
pub fn exe() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_podfwd"))
}

/// Builds the cluster `spec` with podfwd nodes on `backend` and starts podfwd on them.
pub fn started_cluster(tag: &str, spec: ClusterSpec, backend: Backend) -> Cluster {
    let mut c = Cluster::build_with_backend(tag, spec, backend).expect("build the cluster");
    for i in 0..2 {
        if spec.nodes[i] == NodeKind::Podfwd {
            c.start_podfwd(i, exe()).expect("start podfwd");
        }
    }
    c
}

/// Pings the other pod until a reply arrives (the first packets may be dropped while
/// neighbours resolve), then `count` more that must all be answered; returns the TTLs.
pub fn ping_ok(c: &Cluster, from: usize, count: u32) -> Vec<u8> {
    let to = SIDES[1 - from].pod_ip;
    let warm = harness::wait_until(Duration::from_secs(5), || {
        c.pods[from]
            .exec(&["ping", "-c", "1", "-W", "1", to])
            .is_ok()
    });
    assert!(warm, "no reply from {to} within 5 s\n{}", c.logs());
    let out = c.pods[from]
        .exec(&["ping", "-c", &count.to_string(), "-i", "0.1", "-W", "1", to])
        .unwrap_or_else(|e| panic!("ping {to}: {e}\n{}", c.logs()));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!("{count} packets transmitted, {count} received")),
        "{text}"
    );
    text.split("ttl=")
        .skip(1)
        .map(|s| s.split_whitespace().next().unwrap().parse().unwrap())
        .collect()
}

/// Transfers `bytes` of a deterministic stream over TCP from pod `from` to the other
/// pod and checks the receiver got exactly those bytes (length and SHA-256).
pub fn tcp_ok(c: &Cluster, from: usize, bytes: u64) {
    let ip = SIDES[1 - from].pod_ip;
    let t = TcpTransfer {
        client: &c.pods[from],
        server: &c.pods[1 - from],
        listen: (ip, 5201),
        connect: (ip, 5201),
        bytes,
    };
    if let Err(e) = t.run() {
        panic!("TCP transfer {from}->{}: {e}\n{}", 1 - from, c.logs());
    }
}

/// A TCP transfer of a deterministic stream from `client` to a sink in `server` that
/// verifies what it received (length and SHA-256).
pub struct TcpTransfer<'a> {
    pub client: &'a Netns,
    pub server: &'a Netns,
    /// Where the sink listens.
    pub listen: (&'a str, u16),
    /// Where the client connects: `listen`, or an address the path translates to it
    /// (a Service's virtual IP and port).
    pub connect: (&'a str, u16),
    pub bytes: u64,
}

impl TcpTransfer<'_> {
    /// Runs the transfer (sockets time out after 20 s of silence); `Err` says what failed.
    pub fn run(&self) -> Result<(), String> {
        let (ip, port) = self.listen;
        let (cip, cport) = self.connect;
        let bytes = self.bytes;
        let out = std::env::temp_dir().join(format!("{}-tcp-{port}.txt", self.server.name()));
        let out_s = out.display().to_string();
        let _ = std::fs::remove_file(&out);
        // The stream: bytes i*251 mod 256, so a reordered or corrupted segment changes the
        // hash.
        let gen = format!("bytes((i * 251) % 256 for i in range({bytes}))");
        let server_py = format!(
            "import socket, hashlib\n\
             s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
             s.bind(('{ip}', {port})); s.listen(1); s.settimeout(20)\n\
             c, _ = s.accept(); c.settimeout(20); h = hashlib.sha256(); n = 0\n\
             while True:\n    d = c.recv(65536)\n    if not d: break\n    h.update(d); n += len(d)\n\
             open('{out_s}', 'w').write('%d %s' % (n, h.hexdigest()))\n"
        );
        let pid = self
            .server
            .spawn(&["python3", "-c", &server_py])
            .map_err(|e| format!("start the TCP sink: {e}"))?;
        let client_py = format!(
            "import socket, sys\ndata = {gen}\n\
             s = socket.create_connection(('{cip}', {cport}), timeout=20)\n\
             s.sendall(data); s.shutdown(socket.SHUT_WR); s.recv(1); s.close()\n"
        );
        let mut last = String::new();
        // Retried while the sink is not listening yet (connection refused).
        let sent = harness::wait_until(Duration::from_secs(10), || {
            self.client
                .exec_unchecked(&["python3", "-c", &client_py])
                .is_ok_and(|o| {
                    last = String::from_utf8_lossy(&o.stderr).into_owned();
                    o.status.success()
                })
        });
        let done = harness::wait_until(Duration::from_secs(20), || {
            std::fs::read_to_string(&out).is_ok_and(|s| s.contains(' '))
        });
        self.server.kill(pid);
        let got = std::fs::read_to_string(&out).unwrap_or_default();
        let _ = std::fs::remove_file(&out);
        if !(sent && done) {
            return Err(format!(
                "{bytes} bytes to {cip}:{cport} (sink {ip}:{port}): sent {sent}, \
                 sink done {done}; client: {}",
                last.trim()
            ));
        }
        let data: Vec<u8> = (0..bytes).map(|i| ((i * 251) % 256) as u8).collect();
        let want = format!("{} {}", bytes, sha256_hex(&data));
        if got != want {
            return Err(format!(
                "the receiver got other bytes than were sent: {got} (want {want})"
            ));
        }
        Ok(())
    }
}

/// SHA-256 via the system's sha256sum (coreutils), to compare with Python's hashlib.
fn sha256_hex(data: &[u8]) -> String {
    use std::io::Write;
    let mut child = std::process::Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("sha256sum");
    child.stdin.take().unwrap().write_all(data).unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}
