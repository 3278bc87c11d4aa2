//! The control socket: a Unix stream socket (mode 0600) where `podfwd stats` and
//! `podfwd routes` ask a running instance for its counters and its live FIB.
//!
//! Protocol: the client sends one line, `stats\n` or `routes\n`; the server answers with
//! one JSON object ([`StatsReply`], [`RoutesReply`]) and closes. An unknown request gets
//! `{"error": "..."}`. The server side is polled by the control thread (non-blocking
//! accept), so it needs no thread of its own.

use crate::counters::Counters;
use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Counters of a running instance, as sent over the socket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatsReply {
    /// Seconds since the data path started.
    pub uptime_secs: u64,
    /// Totals over all workers, by counter name (`rx`, `tx`, `drop_<reason>`, ...).
    pub total: BTreeMap<String, u64>,
    /// The same per worker, in core order.
    pub workers: Vec<WorkerStats>,
    /// AF_XDP backend: the XDP classifier's counters per interface (`redirected`,
    /// `owned_*`, `pass_*`): how many frames went to podfwd and how many to the kernel,
    /// and why.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub classifier: BTreeMap<String, BTreeMap<String, u64>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerStats {
    pub core: usize,
    pub counters: BTreeMap<String, u64>,
}

/// The live FIB of a running instance, as sent over the socket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoutesReply {
    /// By prefix.
    pub routes: Vec<RouteRow>,
}

/// One route of the FIB.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteRow {
    pub prefix: Ipv4Net,
    /// `host-gw`, `vxlan`, `connected`, `local` or `drop`.
    pub mode: String,
    /// The gateway (host-gw) or the peer node (vxlan); none for connected and local.
    pub next_hop: Option<String>,
    /// The interface the route leaves by (host-gw, connected).
    pub dev: Option<String>,
    /// The peer's VTEP MAC (vxlan).
    pub vtep_mac: Option<String>,
    /// Where the route came from: `static` (the config file), later `etcd`.
    pub source: String,
    /// When the route last changed: seconds since the Unix epoch, and as RFC 3339 (UTC).
    pub since_unix: u64,
    pub since: String,
}

impl RoutesReply {
    /// A table: prefix, next hop, device, mode, source, since.
    pub fn to_text(&self) -> String {
        let rows: Vec<[String; 6]> = self
            .routes
            .iter()
            .map(|r| {
                [
                    r.prefix.to_string(),
                    r.next_hop.clone().unwrap_or_else(|| "-".into()),
                    r.dev.clone().unwrap_or_else(|| "-".into()),
                    r.mode.clone(),
                    r.source.clone(),
                    r.since.clone(),
                ]
            })
            .collect();
        let head = ["PREFIX", "NEXT HOP", "DEV", "MODE", "SOURCE", "SINCE"];
        let mut width = head.map(str::len);
        for row in &rows {
            for (w, c) in width.iter_mut().zip(row) {
                *w = (*w).max(c.len());
            }
        }
        let line = |cells: [&str; 6]| {
            let mut l = String::new();
            for (i, (c, w)) in cells.iter().zip(width).enumerate() {
                if i + 1 == cells.len() {
                    l.push_str(c);
                } else {
                    l.push_str(&format!("{c:<w$}  "));
                }
            }
            l.push('\n');
            l
        };
        let mut s = line(head);
        for row in &rows {
            s.push_str(&line(row.each_ref().map(String::as_str)));
        }
        s
    }
}

impl StatsReply {
    pub fn new(uptime: Duration, workers: &[(usize, Counters)]) -> StatsReply {
        let mut total = Counters::default();
        for (_, c) in workers {
            total.merge(c);
        }
        StatsReply {
            uptime_secs: uptime.as_secs(),
            total: total.named().into_iter().collect(),
            workers: workers
                .iter()
                .map(|(core, c)| WorkerStats {
                    core: *core,
                    counters: c.named().into_iter().collect(),
                })
                .collect(),
            classifier: BTreeMap::new(),
        }
    }

    /// Adds one interface's classifier counters.
    pub fn with_classifier(
        mut self,
        iface: &str,
        counters: impl IntoIterator<Item = (String, u64)>,
    ) -> StatsReply {
        self.classifier
            .insert(iface.to_string(), counters.into_iter().collect());
        self
    }

    /// A human-readable table: totals, non-zero drops, per-worker rx/tx.
    pub fn to_text(&self) -> String {
        let mut s = format!("uptime {} s\n", self.uptime_secs);
        for (k, v) in &self.total {
            if !k.starts_with("drop_") {
                s.push_str(&format!("  {k:<24} {v}\n"));
            }
        }
        let drops: Vec<_> = self
            .total
            .iter()
            .filter(|(k, v)| k.starts_with("drop_") && **v > 0)
            .collect();
        if drops.is_empty() {
            s.push_str("  drops                    0\n");
        } else {
            for (k, v) in drops {
                s.push_str(&format!("  {k:<24} {v}\n"));
            }
        }
        for w in &self.workers {
            let g = |k: &str| w.counters.get(k).copied().unwrap_or(0);
            s.push_str(&format!(
                "  worker on cpu {:<3} rx {} tx {}\n",
                w.core,
                g("rx"),
                g("tx")
            ));
        }
        for (iface, c) in &self.classifier {
            let (to_podfwd, to_kernel) = classifier_split(c);
            s.push_str(&format!(
                "  classifier on {iface}: to podfwd {to_podfwd} to kernel {to_kernel}"
            ));
            for (k, v) in c.iter().filter(|(k, v)| k.starts_with("pass_") && **v > 0) {
                s.push_str(&format!(" {k}={v}"));
            }
            s.push('\n');
        }
        s
    }
}

/// One interface's classifier counters (by name, as in [`StatsReply::classifier`]) split
/// into frames podfwd kept (every `owned_*` frame but those owned without a socket,
/// `no_socket`) and frames the kernel got (every `pass_*`, and `no_socket`). Under the
/// afxdp backend the kept frames are the ones redirected to the workers (`redirected`);
/// under the xdp backend, where no socket is registered, the ones the program finished
/// itself (forwarded, encapsulated, decapsulated or dropped with a reason), its
/// fallbacks counted in `no_socket`.
pub fn classifier_split(counters: &BTreeMap<String, u64>) -> (u64, u64) {
    let (mut owned, mut no_socket, mut passed) = (0u64, 0u64, 0u64);
    for (k, v) in counters {
        if k.starts_with("owned_") {
            owned += v;
        } else if k == "no_socket" {
            no_socket += v;
        } else if k.starts_with("pass_") {
            passed += v;
        }
    }
    (owned.saturating_sub(no_socket), passed + no_socket)
}

/// Errors of the control socket.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("control socket {path}: another podfwd instance is listening there (stop it, or set [control].socket to another path)")]
    InUse { path: PathBuf },
    #[error("control socket {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("control socket {path}: no podfwd is running there ({source})")]
    NotRunning { path: PathBuf, source: io::Error },
    #[error("control socket {path}: bad reply: {why}")]
    BadReply { path: PathBuf, why: String },
}

/// The server end, owned by the control thread. Removes its socket file on drop.
pub struct ControlServer {
    listener: UnixListener,
    path: PathBuf,
    /// Serves `trace` requests (the stream is handed to the hub's own threads).
    trace: Option<crate::trace::TraceHub>,
}

impl ControlServer {
    /// Binds `path` (creating its directory), mode 0600. A stale socket file left by a
    /// killed instance is replaced; a live one is an error.
    pub fn bind(path: &Path) -> Result<ControlServer, ControlError> {
        let io_err = |source| ControlError::Io {
            path: path.to_path_buf(),
            source,
        };
        if let Some(dir) = path.parent() {
            if !dir.as_os_str().is_empty() {
                std::fs::create_dir_all(dir).map_err(io_err)?;
            }
        }
        if path.exists() {
            if UnixStream::connect(path).is_ok() {
                return Err(ControlError::InUse {
                    path: path.to_path_buf(),
                });
            }
            std::fs::remove_file(path).map_err(io_err)?;
        }
        let listener = UnixListener::bind(path).map_err(io_err)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io_err)?;
        listener.set_nonblocking(true).map_err(io_err)?;
        Ok(ControlServer {
            listener,
            path: path.to_path_buf(),
            trace: None,
        })
    }

    /// From now on `trace` requests attach to `hub` (`podfwd trace`).
    pub fn serve_trace(&mut self, hub: crate::trace::TraceHub) {
        self.trace = Some(hub);
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Answers every pending client (non-blocking); `stats` and `routes` build the
    /// replies.
    pub fn serve_pending(&self, stats: impl Fn() -> StatsReply, routes: impl Fn() -> RoutesReply) {
        loop {
            match self.listener.accept() {
                Ok((stream, _)) => {
                    // A misbehaving client must not stall the control thread.
                    let _ = stream.set_nonblocking(false);
                    let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
                    let _ = stream.set_write_timeout(Some(Duration::from_millis(200)));
                    let _ = Self::answer(stream, &stats, &routes, self.trace.as_ref());
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(_) => return,
            }
        }
    }

    fn answer(
        stream: UnixStream,
        stats: &impl Fn() -> StatsReply,
        routes: &impl Fn() -> RoutesReply,
        trace: Option<&crate::trace::TraceHub>,
    ) -> io::Result<()> {
        let mut line = String::new();
        BufReader::new(&stream).read_line(&mut line)?;
        if let (Some(hub), true) = (trace, line.trim_start().starts_with("trace")) {
            // The hub serves the stream from its own thread; a bad request is answered
            // there with an error record.
            let _ = hub.attach(stream, line.trim());
            return Ok(());
        }
        let mut w = &stream;
        match line.trim() {
            "stats" => {
                let body = serde_json::to_string(&stats()).map_err(io::Error::other)?;
                writeln!(w, "{body}")
            }
            "routes" => {
                let body = serde_json::to_string(&routes()).map_err(io::Error::other)?;
                writeln!(w, "{body}")
            }
            other => {
                let body = serde_json::json!({
                    "error": format!("unknown request {other:?}; try stats, routes or trace")
                });
                writeln!(w, "{body}")
            }
        }
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The client side: asks the instance at `path` for its counters.
pub fn query_stats(path: &Path) -> Result<StatsReply, ControlError> {
    query(path, "stats")
}

/// The client side: asks the instance at `path` for its live FIB.
pub fn query_routes(path: &Path) -> Result<RoutesReply, ControlError> {
    query(path, "routes")
}

/// Sends one request line, reads one JSON line.
fn query<T: serde::de::DeserializeOwned>(path: &Path, request: &str) -> Result<T, ControlError> {
    let stream = UnixStream::connect(path).map_err(|source| ControlError::NotRunning {
        path: path.to_path_buf(),
        source,
    })?;
    let io_err = |source| ControlError::Io {
        path: path.to_path_buf(),
        source,
    };
    stream
        .set_read_timeout(Some(Duration::from_secs(2)))
        .map_err(io_err)?;
    let mut w = &stream;
    w.write_all(format!("{request}\n").as_bytes())
        .map_err(io_err)?;
    let mut line = String::new();
    BufReader::new(&stream)
        .read_line(&mut line)
        .map_err(io_err)?;
    serde_json::from_str(&line).map_err(|e| ControlError::BadReply {
        path: path.to_path_buf(),
        why: format!("{e}: {}", line.trim()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifier_split_counts_what_podfwd_kept_against_passes_and_socketless_owns() {
        let c: BTreeMap<String, u64> = [
            ("redirected", 90),
            ("no_socket", 2),
            ("owned_route", 92),
            ("pass_ttl", 5),
            ("pass_nat", 3),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), *v))
        .collect();
        assert_eq!(classifier_split(&c), (90, 10));
        // The xdp backend: no socket, the program finished 96 owned frames itself and
        // handed 4 to the kernel.
        let c: BTreeMap<String, u64> = [
            ("redirected", 0),
            ("no_socket", 4),
            ("owned_route", 60),
            ("owned_vxlan", 40),
            ("pass_local", 6),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), *v))
        .collect();
        assert_eq!(classifier_split(&c), (96, 10));
    }
    use crate::counters::DropReason;

    fn temp_socket(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("podfwd-test-{}-{name}", std::process::id()));
        dir.join("ctl.sock")
    }

    #[test]
    fn a_client_reads_the_counters_of_a_server() {
        let path = temp_socket("roundtrip");
        let server = ControlServer::bind(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let mut c = Counters {
            rx: 10,
            tx: 9,
            ..Default::default()
        };
        c.drop(DropReason::BadVni);
        let reply = StatsReply::new(Duration::from_secs(3), &[(1, c.clone()), (2, c)]);
        let expected = reply.clone();
        let client = std::thread::spawn(move || query_stats(&path));
        // Serve until the client got its answer.
        let got = loop {
            server.serve_pending(|| reply.clone(), || RoutesReply { routes: vec![] });
            if client.is_finished() {
                break client.join().unwrap().unwrap();
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        assert_eq!(got, expected);
        assert_eq!(got.total["rx"], 20);
        assert_eq!(got.total["drop_bad_vni"], 2);
        assert!(got.to_text().contains("drop_bad_vni"));
    }

    #[test]
    fn a_live_socket_is_not_stolen_and_a_stale_one_is_replaced() {
        let path = temp_socket("inuse");
        let live = ControlServer::bind(&path).unwrap();
        assert!(matches!(
            ControlServer::bind(&path),
            Err(ControlError::InUse { .. })
        ));
        drop(live);
        assert!(!path.exists(), "the socket file is removed on drop");
        // A killed instance leaves its file behind with nobody listening.
        drop(UnixListener::bind(&path).unwrap());
        assert!(path.exists());
        let s = ControlServer::bind(&path).unwrap();
        drop(s);
    }

    #[test]
    fn asking_a_missing_instance_says_none_is_running() {
        let e = query_stats(Path::new("/nonexistent/podfwd.sock")).unwrap_err();
        assert!(e.to_string().contains("no podfwd is running"), "{e}");
    }

    #[test]
    fn a_client_reads_the_routes_of_a_server_and_unknown_requests_get_an_error() {
        let path = temp_socket("routes");
        let server = ControlServer::bind(&path).unwrap();
        let row = RouteRow {
            prefix: "10.244.1.0/24".parse().unwrap(),
            mode: "vxlan".into(),
            next_hop: Some("10.168.0.3".into()),
            dev: None,
            vtep_mac: Some("0e:00:00:00:00:0b".into()),
            source: "static".into(),
            since_unix: 0,
            since: "1970-01-01T00:00:00Z".into(),
        };
        let reply = RoutesReply { routes: vec![row] };
        let expected = reply.clone();
        let p = path.clone();
        let client = std::thread::spawn(move || {
            let routes = query_routes(&p);
            let bad: Result<RoutesReply, _> = query(&p, "nonsense");
            (routes, bad)
        });
        let (routes, bad) = loop {
            server.serve_pending(|| StatsReply::new(Duration::ZERO, &[]), || reply.clone());
            if client.is_finished() {
                break client.join().unwrap();
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        let routes = routes.unwrap();
        assert_eq!(routes, expected);
        let text = routes.to_text();
        assert!(text.starts_with("PREFIX "), "{text}");
        assert!(
            text.contains("10.244.1.0/24  10.168.0.3  -    vxlan  static  1970-01-01T00:00:00Z"),
            "{text}"
        );
        let e = bad.unwrap_err().to_string();
        assert!(
            e.contains("unknown request \\\"nonsense\\\"; try stats, routes or trace"),
            "{e}"
        );
    }
}
