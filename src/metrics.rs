//! Prometheus metrics: `GET /metrics` in the Prometheus text format (0.0.4), or in
//! the OpenMetrics text format when the scraper's `Accept` asks for it (Prometheus does),
//! served from `[metrics] listen` by one thread of its own (`podfwd-metrics`).
//!
//! Where the numbers come from, so the workers pay nothing:
//! - Worker counters are read at scrape time from the [`SharedCounters`] every worker
//!   already publishes once per batch (relaxed stores, see `crate::counters`). The scrape
//!   reads them with relaxed loads; nothing is added to the worker loop.
//! - What only the control thread can read (the XDP classifier's per-CPU map, the FIB
//!   size, the route source's state) it publishes as a [`ControlSnapshot`] with
//!   [`Metrics::publish`], at most about once a second; a scrape reads the latest one.
//!
//! Names follow Prometheus conventions: counters end in `_total`, units are in the name
//! (`_packets`, `_seconds`), drop reasons and classifier verdicts carry the same
//! snake_case names as `podfwd stats` (`DropReason::name`, the classifier's stat names).

use crate::counters::{Counters, DropReason, SharedCounters};
use arc_swap::ArcSwap;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::info::Info;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The exposition formats, chosen per request from its `Accept` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `text/plain; version=0.0.4`: what every Prometheus-compatible scraper reads.
    PrometheusText,
    /// `application/openmetrics-text; version=1.0.0`: Prometheus asks for it first.
    OpenMetrics,
}

impl Format {
    /// OpenMetrics if `accept` lists it, else the Prometheus text format (as the Go
    /// client library negotiates).
    pub fn from_accept(accept: Option<&str>) -> Format {
        match accept {
            Some(a) if a.contains("application/openmetrics-text") => Format::OpenMetrics,
            _ => Format::PrometheusText,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::PrometheusText => prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }
}

/// How often the control thread should call [`Metrics::publish`]: often enough for a
/// 15 s scrape interval, rare enough that reading the classifier maps costs nothing.
pub const PUBLISH_INTERVAL: Duration = Duration::from_secs(1);

/// One worker as the metrics see it: its CPU (the `worker` label) and its counters.
#[derive(Debug, Clone)]
pub struct WorkerSource {
    pub core: usize,
    pub counters: Arc<SharedCounters>,
}

/// Where routes come from and how that source is doing. `static` (the config file) is
/// always connected and has no revision or lease; the etcd source fills these in.
#[derive(Debug, Clone, PartialEq)]
pub struct RouteSourceState {
    /// `static` or `etcd` (the `source` label).
    pub kind: &'static str,
    /// Whether the source is reachable (etcd: the watch is established).
    pub connected: bool,
    /// The revision of the route data last applied (etcd: the store revision).
    pub revision: Option<i64>,
    /// When this node's subnet lease expires, if it has one.
    pub lease_expiry: Option<SystemTime>,
}

impl Default for RouteSourceState {
    fn default() -> Self {
        RouteSourceState {
            kind: "static",
            connected: true,
            revision: None,
            lease_expiry: None,
        }
    }
}

/// What the control thread publishes (see the module doc).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ControlSnapshot {
    /// The XDP classifier's counters per interface, by verdict name (`redirected`,
    /// `pass_ttl`, ...): what `podfwd stats` shows under "classifier".
    pub classifier: BTreeMap<String, BTreeMap<String, u64>>,
    /// Routes in the live FIB.
    pub fib_routes: u64,
    /// Remote nodes (peers) currently known.
    pub peers: u64,
    pub route_source: RouteSourceState,
    /// The kernel's neighbours on the served ports, by NUD state name (`reachable`,
    /// `stale`, `failed`, ...).
    pub neighbours: BTreeMap<String, u64>,
    /// The node's forwarding mode (`host-gw`, `vxlan`, `auto`) and backend, for
    /// `podfwd_dataplane_info` (empty until the control thread publishes).
    pub mode: String,
    pub backend: String,
}

impl ControlSnapshot {
    /// Adds one interface's classifier counters, as `(verdict name, count)` pairs (the
    /// same pairs `StatsReply::with_classifier` takes).
    pub fn with_classifier(
        mut self,
        iface: &str,
        counters: impl IntoIterator<Item = (String, u64)>,
    ) -> ControlSnapshot {
        self.classifier
            .insert(iface.to_string(), counters.into_iter().collect());
        self
    }
}

/// The metrics of one running instance: shared by the control thread (which publishes)
/// and the HTTP thread (which renders).
#[derive(Debug)]
pub struct Metrics {
    workers: ArcSwap<Vec<WorkerSource>>,
    control: ArcSwap<ControlSnapshot>,
    started: SystemTime,
    /// When [`Metrics::publish_every`] last published (control thread only).
    last_publish: Mutex<Option<Instant>>,
}

impl Metrics {
    /// Metrics with no workers yet and an empty control snapshot, started now.
    pub fn new() -> Arc<Metrics> {
        Arc::new(Metrics {
            workers: ArcSwap::from_pointee(Vec::new()),
            control: ArcSwap::from_pointee(ControlSnapshot::default()),
            started: SystemTime::now(),
            last_publish: Mutex::new(None),
        })
    }

    /// Sets the workers whose counters are exposed (once they run; again if they change).
    pub fn set_workers(&self, workers: Vec<WorkerSource>) {
        self.workers.store(Arc::new(workers));
    }

    /// Replaces the control thread's part; call it about every [`PUBLISH_INTERVAL`].
    pub fn publish(&self, snapshot: ControlSnapshot) {
        self.control.store(Arc::new(snapshot));
    }

    /// For the control loop's every iteration: builds and publishes a snapshot with
    /// `build` if `every` passed since the last one (or none was published), else does
    /// nothing, so reading the classifier maps costs at most once per `every`. Returns
    /// whether it published.
    pub fn publish_every(&self, every: Duration, build: impl FnOnce() -> ControlSnapshot) -> bool {
        let now = Instant::now();
        {
            let mut last = self.last_publish.lock().unwrap_or_else(|p| p.into_inner());
            if last.is_some_and(|t| now.duration_since(t) < every) {
                return false;
            }
            *last = Some(now);
        }
        self.publish(build());
        true
    }

    /// The exposition text, as `GET /metrics` returns it.
    pub fn render(self: &Arc<Self>, format: Format) -> String {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(Collected(self.clone())));
        let mut out = String::new();
        // Writing into a String cannot fail; a collector error would be a bug here.
        match format {
            Format::PrometheusText => {
                prometheus_client::encoding::prometheus_text::encode(&mut out, &registry)
            }
            Format::OpenMetrics => prometheus_client::encoding::text::encode(&mut out, &registry),
        }
        .expect("encoding into a String");
        out
    }
}

/// A [`Counters`] field exposed per worker: (name without unit and `_total`, unit, help,
/// accessor).
type CounterField = (
    &'static str,
    Option<&'static str>,
    &'static str,
    fn(&Counters) -> u64,
);

const WORKER_COUNTERS: &[CounterField] = &[
    (
        "podfwd_rx",
        Some("packets"),
        "Frames a worker received and handed to the pipeline.",
        |c| c.rx,
    ),
    (
        "podfwd_tx",
        Some("packets"),
        "Frames a worker's backend sent.",
        |c| c.tx,
    ),
    (
        "podfwd_forwarded",
        Some("packets"),
        "Frames forwarded with a MAC rewrite (host-gw or to a local pod), without encapsulation.",
        |c| c.forwarded,
    ),
    (
        "podfwd_encapsulated",
        Some("packets"),
        "Frames encapsulated in VXLAN.",
        |c| c.encapsulated,
    ),
    (
        "podfwd_decapsulated",
        Some("packets"),
        "Frames decapsulated from VXLAN and forwarded.",
        |c| c.decapsulated,
    ),
    (
        "podfwd_rx",
        Some("bytes"),
        "Bytes of the frames a worker received (Ethernet header on).",
        |c| c.rx_bytes,
    ),
    (
        "podfwd_forwarded",
        Some("bytes"),
        "Bytes of the frames forwarded without encapsulation, as they leave.",
        |c| c.forwarded_bytes,
    ),
    (
        "podfwd_encapsulated",
        Some("bytes"),
        "Bytes of the frames encapsulated in VXLAN, as they leave (outer headers included).",
        |c| c.encapsulated_bytes,
    ),
    (
        "podfwd_decapsulated",
        Some("bytes"),
        "Bytes of the inner frames decapsulated from VXLAN.",
        |c| c.decapsulated_bytes,
    ),
    (
        "podfwd_to_kernel",
        Some("packets"),
        "Frames the pipeline gave to the kernel (TTL expired, local destination).",
        |c| c.to_kernel,
    ),
    (
        "podfwd_handoff",
        Some("packets"),
        "Frames a worker handed back to the kernel's slow path (AF_XDP backend).",
        |c| c.handoff,
    ),
    ("podfwd_batches", None, "Batches a worker processed.", |c| {
        c.batches
    }),
    (
        "podfwd_ring_full",
        None,
        "Times a worker found an egress ring full.",
        |c| c.ring_full,
    ),
    (
        "podfwd_xsk_wakeups",
        None,
        "Times a worker kicked the kernel to send from an AF_XDP TX ring (sendto, need_wakeup).",
        |c| c.wakeups,
    ),
    (
        "podfwd_checksums_completed",
        Some("packets"),
        "Frames whose TCP/UDP checksum a veth sender left partial (offload) and podfwd completed.",
        |c| c.checksums_completed,
    ),
    (
        "podfwd_tun_tso_in",
        Some("packets"),
        "TCP super-packets read from the TUN device and cut into segments (TUN backend).",
        |c| c.tso_in,
    ),
    (
        "podfwd_tun_gro_out",
        Some("packets"),
        "Super-packets of merged TCP segments written to the TUN device (TUN backend).",
        |c| c.gro_out,
    ),
];

#[derive(Debug)]
struct Collected(Arc<Metrics>);

impl Collector for Collected {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let m = &self.0;
        let workers: Vec<(String, Counters)> = m
            .workers
            .load()
            .iter()
            .map(|w| (w.core.to_string(), w.counters.snapshot()))
            .collect();
        let control = m.control.load();

        let info = Info::new(vec![
            ("version", crate::build_info::VERSION),
            ("revision", crate::build_info::REVISION),
            ("features", crate::build_info::FEATURES),
        ]);
        info.encode(enc.encode_descriptor(
            "podfwd_build",
            "The podfwd build: crate version, git revision, cargo features.",
            None,
            info.metric_type(),
        )?)?;
        gauge(
            &mut enc,
            "podfwd_start_time",
            Some(Unit::Seconds),
            "When this podfwd instance started, in seconds since the Unix epoch.",
            unix_seconds(m.started),
        )?;
        gauge(
            &mut enc,
            "podfwd_workers",
            None,
            "Forwarding workers running (one per CPU).",
            workers.len() as i64,
        )?;

        for (name, unit, help, field) in WORKER_COUNTERS {
            let unit = unit.map(|u| Unit::Other(u.to_string()));
            let mut family =
                enc.encode_descriptor(name, help, unit.as_ref(), MetricType::Counter)?;
            for (core, c) in &workers {
                let labels = [("worker", core.as_str())];
                ConstCounter::new(field(c)).encode(family.encode_family(&labels)?)?;
            }
        }
        let mut drops = enc.encode_descriptor(
            "podfwd_drops",
            "Frames a worker dropped, by reason (the names of podfwd stats).",
            None,
            MetricType::Counter,
        )?;
        for (core, c) in &workers {
            for reason in DropReason::ALL {
                let labels = [("worker", core.as_str()), ("reason", reason.name())];
                ConstCounter::new(c.drops_of(reason)).encode(drops.encode_family(&labels)?)?;
            }
        }

        let mut classifier = enc.encode_descriptor(
            "podfwd_xdp_classifier",
            "Frames the XDP classifier saw, by interface and verdict (redirected to podfwd, \
             owned_* why it was owned, pass_* why the kernel got it).",
            None,
            MetricType::Counter,
        )?;
        for (iface, verdicts) in &control.classifier {
            for (verdict, count) in verdicts {
                let labels = [("interface", iface.as_str()), ("verdict", verdict.as_str())];
                ConstCounter::new(*count).encode(classifier.encode_family(&labels)?)?;
            }
        }

        gauge(
            &mut enc,
            "podfwd_fib_routes",
            None,
            "Routes in the live forwarding table.",
            control.fib_routes as i64,
        )?;
        gauge(
            &mut enc,
            "podfwd_peers",
            None,
            "Remote nodes currently known.",
            control.peers as i64,
        )?;
        let mut neighbours = enc.encode_descriptor(
            "podfwd_neighbours",
            "The kernel's neighbour entries on the interfaces podfwd serves, by NUD state.",
            None,
            MetricType::Gauge,
        )?;
        for (state, n) in &control.neighbours {
            let labels = [("state", state.as_str())];
            ConstGauge::new(*n as i64).encode(neighbours.encode_family(&labels)?)?;
        }
        if !control.mode.is_empty() {
            let mut dataplane = enc.encode_descriptor(
                "podfwd_dataplane_info",
                "The node's forwarding mode and backend (always 1): podfwd_forwarded counts \
                 the host-gw (direct) path, podfwd_encapsulated and podfwd_decapsulated the \
                 VXLAN path.",
                None,
                MetricType::Gauge,
            )?;
            let labels = [
                ("mode", control.mode.as_str()),
                ("backend", control.backend.as_str()),
            ];
            ConstGauge::new(1i64).encode(dataplane.encode_family(&labels)?)?;
        }
        let source = &control.route_source;
        let labels = [("source", source.kind)];
        let mut connected = enc.encode_descriptor(
            "podfwd_route_source_connected",
            "Whether the route source (static file or etcd) is reachable: 1 or 0.",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(i64::from(source.connected)).encode(connected.encode_family(&labels)?)?;
        if let Some(revision) = source.revision {
            let mut fam = enc.encode_descriptor(
                "podfwd_route_source_revision",
                "Revision of the route data last applied (etcd: the store revision).",
                None,
                MetricType::Gauge,
            )?;
            ConstGauge::new(revision).encode(fam.encode_family(&labels)?)?;
        }
        if let Some(expiry) = source.lease_expiry {
            gauge(
                &mut enc,
                "podfwd_lease_expiry_timestamp",
                Some(Unit::Seconds),
                "When this node's subnet lease expires, in seconds since the Unix epoch.",
                unix_seconds(expiry),
            )?;
        }
        Ok(())
    }
}

/// One gauge without labels.
fn gauge<N>(
    enc: &mut DescriptorEncoder,
    name: &str,
    unit: Option<Unit>,
    help: &str,
    value: N,
) -> Result<(), std::fmt::Error>
where
    ConstGauge<N>: EncodeMetric,
{
    let g = ConstGauge::new(value);
    let descriptor = enc.encode_descriptor(name, help, unit.as_ref(), g.metric_type())?;
    g.encode(descriptor)
}

fn unix_seconds(t: SystemTime) -> f64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs_f64(),
        Err(e) => -e.duration().as_secs_f64(),
    }
}

/// Why the metrics endpoint could not start.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("metrics.listen = \"{addr}\": cannot listen there: {why}")]
    Bind { addr: SocketAddr, why: String },
    #[error("metrics: cannot start the HTTP thread: {0}")]
    Thread(std::io::Error),
}

/// Starts the endpoint `[metrics] listen` names; `Ok(None)` when metrics are off.
pub fn serve(
    config: &crate::config::Metrics,
    metrics: &Arc<Metrics>,
) -> Result<Option<MetricsServer>, MetricsError> {
    match config.listen {
        Some(addr) => MetricsServer::start(addr, metrics.clone()).map(Some),
        None => Ok(None),
    }
}

/// The HTTP endpoint: one thread answering `GET /metrics`, 404 for other paths and 405
/// for other methods. Stops (and joins its thread) on drop.
pub struct MetricsServer {
    server: Arc<tiny_http::Server>,
    addr: SocketAddr,
    thread: Option<JoinHandle<()>>,
}

impl MetricsServer {
    /// Listens on `addr` (port 0: any free port, see [`MetricsServer::local_addr`]) and
    /// serves `metrics` until dropped.
    pub fn start(addr: SocketAddr, metrics: Arc<Metrics>) -> Result<MetricsServer, MetricsError> {
        let server = tiny_http::Server::http(addr).map_err(|e| MetricsError::Bind {
            addr,
            why: e.to_string(),
        })?;
        let local = server
            .server_addr()
            .to_ip()
            .ok_or_else(|| MetricsError::Bind {
                addr,
                why: "not an IP listener".into(),
            })?;
        let server = Arc::new(server);
        let serving = server.clone();
        let thread = std::thread::Builder::new()
            .name("podfwd-metrics".into())
            .spawn(move || answer_requests(&serving, &metrics))
            .map_err(MetricsError::Thread)?;
        Ok(MetricsServer {
            server,
            addr: local,
            thread: Some(thread),
        })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn answer_requests(server: &tiny_http::Server, metrics: &Arc<Metrics>) {
    // recv() returns an error once unblock() was called (shutdown).
    while let Ok(request) = server.recv() {
        let path = request.url().split('?').next().unwrap_or("");
        let response = match (request.method(), path) {
            (tiny_http::Method::Get, "/metrics") => {
                let accept = request
                    .headers()
                    .iter()
                    .find(|h| h.field.equiv("Accept"))
                    .map(|h| h.value.as_str());
                let format = Format::from_accept(accept);
                tiny_http::Response::from_string(metrics.render(format))
                    .with_header(header("Content-Type", format.content_type()))
            }
            (_, "/metrics") => tiny_http::Response::from_string("only GET is served here\n")
                .with_status_code(405)
                .with_header(header("Allow", "GET")),
            _ => tiny_http::Response::from_string("not found: metrics are at /metrics\n")
                .with_status_code(404),
        };
        // A scraper that went away is its problem, not ours.
        let _ = request.respond(response);
    }
}

fn header(name: &str, value: &str) -> tiny_http::Header {
    tiny_http::Header::from_bytes(name.as_bytes(), value.as_bytes())
        .expect("static header names and values are valid")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::afxdp::xdp::Stat;
    use std::io::{Read, Write};
    use std::net::TcpStream;
    use std::process::{Command, Stdio};

    /// Debian's interpreter: python3-prometheus-client installs for it (tools/setup.sh),
    /// not for a python3 found earlier on PATH (pyenv).
    const PYTHON: &str = "/usr/bin/python3";

    type Sample = (String, String, String, BTreeMap<String, String>, f64);

    /// Parses exposition text with the official Python client's parser for `format`
    /// and returns every sample as (family, type, sample name, labels, value).
    fn parse_with_prometheus_client(body: &str, format: Format) -> Vec<Sample> {
        const SCRIPT: &str = r#"
import json, sys
if sys.argv[1] == "openmetrics":
    from prometheus_client.openmetrics.parser import text_string_to_metric_families
else:
    from prometheus_client.parser import text_string_to_metric_families
out = []
for f in text_string_to_metric_families(sys.stdin.read()):
    for s in f.samples:
        out.append([f.name, f.type, s.name, s.labels, s.value])
print(json.dumps({"samples": out}))
"#;
        let which = match format {
            Format::OpenMetrics => "openmetrics",
            Format::PrometheusText => "text",
        };
        let mut child = Command::new(PYTHON)
            .args(["-c", SCRIPT, which])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("/usr/bin/python3 runs (tools/setup.sh installs python3-prometheus-client)");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(body.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "prometheus_client rejected the exposition:\n{}\n---\n{body}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v["samples"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                let labels = s[3]
                    .as_object()
                    .unwrap()
                    .iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
                    .collect();
                (
                    s[0].as_str().unwrap().to_string(),
                    s[1].as_str().unwrap().to_string(),
                    s[2].as_str().unwrap().to_string(),
                    labels,
                    s[4].as_f64().unwrap(),
                )
            })
            .collect()
    }

    /// One HTTP/1.0 request to the server; returns (status line, headers, body).
    fn http(addr: SocketAddr, method: &str, path: &str) -> (String, String, String) {
        request(addr, method, path, "")
    }

    /// The same with extra header lines (each ending in CRLF).
    fn request(
        addr: SocketAddr,
        method: &str,
        path: &str,
        extra: &str,
    ) -> (String, String, String) {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(s, "{method} {path} HTTP/1.0\r\nHost: {addr}\r\n{extra}\r\n").unwrap();
        let mut reply = String::new();
        s.read_to_string(&mut reply).unwrap();
        let (head, body) = reply.split_once("\r\n\r\n").unwrap_or((&reply, ""));
        let (status, headers) = head.split_once("\r\n").unwrap_or((head, ""));
        (status.to_string(), headers.to_string(), body.to_string())
    }

    /// The value of the one sample called `name` with exactly `labels`.
    #[track_caller]
    fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
        let want: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let found: Vec<f64> = samples
            .iter()
            .filter(|s| s.2 == name && s.3 == want)
            .map(|s| s.4)
            .collect();
        assert_eq!(found.len(), 1, "{name}{want:?} in {samples:#?}");
        found[0]
    }

    /// What the first scrape of `scrapes_parse_with_prometheus_client_and_counters_grow`
    /// must show, in either format.
    fn check_first_scrape(first: &[Sample]) {
        let w = |core| [("worker", core)];
        assert_eq!(value(first, "podfwd_rx_packets_total", &w("1")), 1000.0);
        assert_eq!(value(first, "podfwd_rx_packets_total", &w("3")), 2000.0);
        assert_eq!(value(first, "podfwd_tx_packets_total", &w("3")), 1980.0);
        assert_eq!(
            value(first, "podfwd_encapsulated_packets_total", &w("1")),
            300.0
        );
        assert_eq!(
            value(first, "podfwd_decapsulated_packets_total", &w("1")),
            290.0
        );
        assert_eq!(
            value(first, "podfwd_forwarded_packets_total", &w("1")),
            400.0
        );
        assert_eq!(value(first, "podfwd_ring_full_total", &w("3")), 4.0);
        assert_eq!(
            value(
                first,
                "podfwd_drops_total",
                &[("worker", "3"), ("reason", "no_route")]
            ),
            4.0
        );
        assert_eq!(
            value(
                first,
                "podfwd_drops_total",
                &[("worker", "1"), ("reason", "unknown_vtep")]
            ),
            1.0
        );
        // Every reason is there, zero or not, so rate() works from the first scrape.
        for r in DropReason::ALL {
            value(
                first,
                "podfwd_drops_total",
                &[("worker", "1"), ("reason", r.name())],
            );
        }
        for s in Stat::ALL {
            value(
                first,
                "podfwd_xdp_classifier_total",
                &[("interface", "eth0"), ("verdict", s.name())],
            );
        }
        assert_eq!(
            value(
                first,
                "podfwd_xdp_classifier_total",
                &[("interface", "eth0"), ("verdict", "redirected")]
            ),
            100.0
        );
        assert_eq!(value(first, "podfwd_fib_routes", &[]), 4.0);
        assert_eq!(value(first, "podfwd_peers", &[]), 2.0);
        assert_eq!(value(first, "podfwd_workers", &[]), 2.0);
        assert_eq!(
            value(first, "podfwd_xsk_wakeups_total", &[("worker", "3")]),
            22.0
        );
        for (name, per_scale) in [
            ("podfwd_rx_bytes_total", 1_000_000.0),
            ("podfwd_forwarded_bytes_total", 400_000.0),
            ("podfwd_encapsulated_bytes_total", 315_000.0),
            ("podfwd_decapsulated_bytes_total", 290_000.0),
        ] {
            assert_eq!(value(first, name, &[("worker", "1")]), per_scale);
            assert_eq!(value(first, name, &[("worker", "3")]), 2.0 * per_scale);
        }
        assert_eq!(
            value(first, "podfwd_neighbours", &[("state", "reachable")]),
            3.0
        );
        assert_eq!(
            value(first, "podfwd_neighbours", &[("state", "failed")]),
            1.0
        );
        assert_eq!(
            value(
                first,
                "podfwd_dataplane_info",
                &[("mode", "auto"), ("backend", "af-xdp")]
            ),
            1.0
        );
        assert_eq!(
            value(
                first,
                "podfwd_route_source_connected",
                &[("source", "etcd")]
            ),
            1.0
        );
        assert_eq!(
            value(first, "podfwd_route_source_revision", &[("source", "etcd")]),
            42.0
        );
        assert_eq!(
            value(first, "podfwd_lease_expiry_timestamp_seconds", &[]),
            1_800_000_000.0
        );
        let started = value(first, "podfwd_start_time_seconds", &[]);
        assert!(
            (started - unix_seconds(SystemTime::now())).abs() < 60.0,
            "{started}"
        );
        let build = first
            .iter()
            .find(|s| s.2 == "podfwd_build_info")
            .expect("podfwd_build_info");
        assert_eq!(build.4, 1.0);
        assert_eq!(build.3["version"], env!("CARGO_PKG_VERSION"));
        assert_eq!(build.3["revision"], crate::build_info::REVISION);
        // Types as Prometheus reads them.
        let kind = |sample: &str| {
            let s = first.iter().find(|s| s.2 == sample);
            s.unwrap_or_else(|| panic!("no {sample}")).1.clone()
        };
        assert_eq!(kind("podfwd_rx_packets_total"), "counter");
        assert_eq!(kind("podfwd_drops_total"), "counter");
        assert_eq!(kind("podfwd_xdp_classifier_total"), "counter");
        assert_eq!(kind("podfwd_fib_routes"), "gauge");
        assert_eq!(kind("podfwd_xsk_wakeups_total"), "counter");
        assert_eq!(kind("podfwd_rx_bytes_total"), "counter");
        assert_eq!(kind("podfwd_neighbours"), "gauge");
        assert_eq!(kind("podfwd_dataplane_info"), "gauge");
        assert_eq!(kind("podfwd_lease_expiry_timestamp_seconds"), "gauge");
    }

    fn scrape_openmetrics(addr: SocketAddr) -> (String, String, String) {
        request(
            addr,
            "GET",
            "/metrics",
            "Accept: application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5\r\n",
        )
    }

    fn worker_counters(scale: u64) -> Counters {
        let mut c = Counters {
            rx: 1000 * scale,
            tx: 990 * scale,
            forwarded: 400 * scale,
            encapsulated: 300 * scale,
            decapsulated: 290 * scale,
            to_kernel: 7 * scale,
            handoff: 3 * scale,
            batches: 20 * scale,
            ring_full: 2 * scale,
            wakeups: 11 * scale,
            rx_bytes: 1_000_000 * scale,
            forwarded_bytes: 400_000 * scale,
            encapsulated_bytes: 315_000 * scale,
            decapsulated_bytes: 290_000 * scale,
            ..Default::default()
        };
        for _ in 0..scale {
            c.drop(DropReason::UnknownVtep);
            c.drop(DropReason::NoRoute);
            c.drop(DropReason::NoRoute);
        }
        c
    }

    #[test]
    fn scrapes_parse_with_prometheus_client_and_counters_grow() {
        let metrics = Metrics::new();
        let (w1, w3) = (
            Arc::new(SharedCounters::default()),
            Arc::new(SharedCounters::default()),
        );
        w1.publish(&worker_counters(1));
        w3.publish(&worker_counters(2));
        metrics.set_workers(vec![
            WorkerSource {
                core: 1,
                counters: w1.clone(),
            },
            WorkerSource {
                core: 3,
                counters: w3.clone(),
            },
        ]);
        let classifier = |redirected: u64| {
            Stat::ALL.iter().map(move |s| {
                let v = match s {
                    Stat::Redirected => redirected,
                    Stat::PassTtl => 5,
                    _ => 0,
                };
                (s.name().to_string(), v)
            })
        };
        let expiry = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        metrics.publish(
            ControlSnapshot {
                fib_routes: 4,
                peers: 2,
                route_source: RouteSourceState {
                    kind: "etcd",
                    connected: true,
                    revision: Some(42),
                    lease_expiry: Some(expiry),
                },
                neighbours: [("reachable".to_string(), 3), ("failed".to_string(), 1)].into(),
                mode: "auto".into(),
                backend: "af-xdp".into(),
                ..Default::default()
            }
            .with_classifier("eth0", classifier(100)),
        );
        let server = MetricsServer::start("127.0.0.1:0".parse().unwrap(), metrics.clone()).unwrap();
        let addr = server.local_addr();
        assert_ne!(addr.port(), 0);

        let (status, headers, body) = http(addr, "GET", "/metrics");
        assert!(status.contains(" 200 "), "{status}");
        assert!(headers.contains("text/plain; version=0.0.4"), "{headers}");
        assert!(body.contains("# HELP podfwd_rx_packets_total "), "{body}");
        let text = parse_with_prometheus_client(&body, Format::PrometheusText);
        let (status, headers, body) = scrape_openmetrics(addr);
        assert!(status.contains(" 200 "), "{status}");
        assert!(
            headers.contains("application/openmetrics-text"),
            "{headers}"
        );
        assert!(body.contains("# UNIT podfwd_rx_packets packets"), "{body}");
        let openmetrics = parse_with_prometheus_client(&body, Format::OpenMetrics);
        for first in [text, openmetrics] {
            check_first_scrape(&first);
        }
        let first =
            parse_with_prometheus_client(&http(addr, "GET", "/metrics").2, Format::PrometheusText);
        let w = |core| [("worker", core)];

        // The workers and the control thread move on; the next scrape sees it.
        w1.publish(&worker_counters(5));
        metrics.publish(
            ControlSnapshot {
                fib_routes: 5,
                peers: 3,
                route_source: RouteSourceState {
                    kind: "etcd",
                    connected: false,
                    revision: Some(43),
                    lease_expiry: Some(expiry),
                },
                ..Default::default()
            }
            .with_classifier("eth0", classifier(250)),
        );
        let second = parse_with_prometheus_client(&scrape_openmetrics(addr).2, Format::OpenMetrics);
        assert_eq!(value(&second, "podfwd_rx_packets_total", &w("1")), 5000.0);
        assert_eq!(value(&second, "podfwd_rx_packets_total", &w("3")), 2000.0);
        assert!(
            value(
                &second,
                "podfwd_drops_total",
                &[("worker", "1"), ("reason", "no_route")]
            ) > value(
                &first,
                "podfwd_drops_total",
                &[("worker", "1"), ("reason", "no_route")]
            )
        );
        assert_eq!(
            value(
                &second,
                "podfwd_xdp_classifier_total",
                &[("interface", "eth0"), ("verdict", "redirected")]
            ),
            250.0
        );
        assert_eq!(value(&second, "podfwd_fib_routes", &[]), 5.0);
        assert_eq!(
            value(
                &second,
                "podfwd_route_source_connected",
                &[("source", "etcd")]
            ),
            0.0
        );
        assert_eq!(
            value(
                &second,
                "podfwd_route_source_revision",
                &[("source", "etcd")]
            ),
            43.0
        );
    }

    #[test]
    fn only_get_metrics_is_served() {
        let server = MetricsServer::start("127.0.0.1:0".parse().unwrap(), Metrics::new()).unwrap();
        let addr = server.local_addr();
        let (status, _, body) = http(addr, "GET", "/");
        assert!(status.contains(" 404 "), "{status}");
        assert!(body.contains("/metrics"), "{body}");
        let (status, _, _) = http(addr, "GET", "/metricsx");
        assert!(status.contains(" 404 "), "{status}");
        let (status, headers, _) = http(addr, "POST", "/metrics");
        assert!(status.contains(" 405 "), "{status}");
        assert!(headers.contains("Allow: GET"), "{headers}");
        let (status, _, body) = http(addr, "GET", "/metrics?name=x");
        assert!(status.contains(" 200 "), "{status}");
        assert!(body.contains("\npodfwd_workers 0\n"), "{body}");
        let accept = "Accept: application/openmetrics-text; version=1.0.0\r\n";
        let (status, _, body) = request(addr, "GET", "/metrics", accept);
        assert!(status.contains(" 200 "), "{status}");
        assert!(body.ends_with("# EOF\n"), "{body}");
    }

    #[test]
    fn without_workers_or_a_control_snapshot_the_static_source_is_reported() {
        let text = Metrics::new().render(Format::PrometheusText);
        let samples = parse_with_prometheus_client(&text, Format::PrometheusText);
        assert_eq!(value(&samples, "podfwd_workers", &[]), 0.0);
        assert_eq!(
            value(
                &samples,
                "podfwd_route_source_connected",
                &[("source", "static")]
            ),
            1.0
        );
        // No revision and no lease without a registry: absent, not a fake zero.
        assert!(!text.contains("podfwd_route_source_revision"), "{text}");
        assert!(!text.contains("podfwd_lease_expiry"), "{text}");
    }

    #[test]
    fn a_port_in_use_is_an_error_naming_the_address() {
        let first = MetricsServer::start("127.0.0.1:0".parse().unwrap(), Metrics::new()).unwrap();
        let addr = first.local_addr();
        let err = MetricsServer::start(addr, Metrics::new())
            .err()
            .expect("second bind fails");
        let msg = err.to_string();
        assert!(
            msg.starts_with(&format!("metrics.listen = \"{addr}\"")),
            "{msg}"
        );
    }

    #[test]
    fn publish_every_publishes_at_most_once_per_interval() {
        let metrics = Metrics::new();
        let snapshot = |routes| ControlSnapshot {
            fib_routes: routes,
            ..Default::default()
        };
        assert!(metrics.publish_every(Duration::from_secs(3600), || snapshot(1)));
        let mut built = false;
        assert!(!metrics.publish_every(Duration::from_secs(3600), || {
            built = true;
            snapshot(2)
        }));
        assert!(!built, "the snapshot is not even built before it is due");
        assert_eq!(metrics.control.load().fib_routes, 1);
        assert!(metrics.publish_every(Duration::ZERO, || snapshot(3)));
        assert_eq!(metrics.control.load().fib_routes, 3);
    }

    #[test]
    fn serve_is_off_without_a_listen_address() {
        let metrics = Metrics::new();
        let off = crate::config::Metrics { listen: None };
        assert!(serve(&off, &metrics).unwrap().is_none());
        let on = crate::config::Metrics {
            listen: Some("127.0.0.1:0".parse().unwrap()),
        };
        let server = serve(&on, &metrics).unwrap().expect("a server");
        let (status, _, _) = http(server.local_addr(), "GET", "/metrics");
        assert!(status.contains(" 200 "), "{status}");
    }

    #[test]
    fn dropping_the_server_stops_it() {
        let server = MetricsServer::start("127.0.0.1:0".parse().unwrap(), Metrics::new()).unwrap();
        let addr = server.local_addr();
        drop(server);
        // tiny_http's accept thread closes the listener just after the drop.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while TcpStream::connect(addr).is_ok() {
            assert!(
                std::time::Instant::now() < deadline,
                "still listening on {addr}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
