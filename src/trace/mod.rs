//! `podfwd trace`: copies of frames at the pipeline's verdict point, with the verdict and
//! the drop reason, streamed to clients of the control socket (see `docs/trace.md`).
//!
//! This module owns the trace path from worker to client:
//! - [`TraceHub`] (one per process, `Clone`): makes one [`Tracer`] per worker, takes
//!   client connections ([`TraceHub::attach`]), and runs the pump thread that drains the
//!   workers' rings into each client's queue while at least one client is attached;
//! - [`Tracer`] (one per worker, not `Clone`): the producer end of that worker's lossy
//!   ring ([`ring`]); [`Tracer::active`] is one relaxed atomic load;
//! - [`protocol`]: the request line and the record stream; [`client`]: the `podfwd
//!   trace` command; [`print`]: one text line per frame; [`pcapng`]: the capture file.
//!
//! # What is captured
//! The frame as the worker has it when the verdict is known, right after
//! `Pipeline::process`: `Packet::frame()`, at most [`SNAP_LEN`] bytes of it, and its full
//! length. So a `tx` frame shows the bytes sent (MACs rewritten, TTL decremented, VXLAN
//! outer headers in front after encapsulation, the inner frame after decapsulation); a
//! `to_kernel` frame is unchanged (or the inner frame of VXLAN whose inner TTL ran out);
//! a dropped frame is unchanged as it arrived, except that drops after decapsulation
//! (`no_route`, `mtu`, `neighbour_unresolved`, `blackhole` of VXLAN traffic) show the
//! inner frame, where `Packet::offset` points then.
//!
//! # Cost and bound
//! With no client attached the worker pays one relaxed load per batch. With one, each
//! recorded frame is one copy of at most 256 bytes into a preallocated slot and one
//! release store; a full ring (worker faster than the pump, which drains every 2 ms)
//! never waits: the frame is counted as missed and the client told. A client that reads
//! too slowly loses whole batches from its bounded queue, counted the same way; it never
//! holds up the pump, the other clients, or the control thread.
//!
//! # Call sites (for the control plane and the backends)
//! ```ignore
//! // Start-up: one hub, port names by PortId; one Tracer per worker (its CPU as id).
//! let hub = trace::TraceHub::new(port_names);
//! let mut tracer = hub.tracer(core as u16);            // moved into the worker thread
//!
//! // 1. Worker, after each batch:
//! pipeline.process(&mut pkts, &mut verdicts, &mut ctrs);
//! if let Some(t) = tracer.active() {
//!     t.record_batch(&pkts, &verdicts[..pkts.len()], std::time::SystemTime::now());
//! }
//!
//! // 2. Control thread, a connection whose first line starts with "trace":
//! if line.starts_with("trace") {
//!     let _ = hub.attach(stream, &line);                 // never blocks on the client
//! }
//!
//! // 3. CLI: `podfwd trace ...` calls trace::client::run(&socket, &options).
//! ```

pub mod client;
pub mod pcapng;
pub mod print;
pub mod protocol;
pub mod ring;
#[cfg(test)]
mod tests;

pub use protocol::{RequestError, TraceRequest};
pub use ring::SNAP_LEN;

use crate::pipeline::{Packet, Verdict};
use protocol::{encode_error, encode_frame, encode_hello, encode_missed};
use ring::{Consumer, Missed, Producer};
use std::io::Write;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

/// Frames per worker ring (x 280 bytes: 140 KiB per worker, allocated with its Tracer).
pub const RING_SLOTS: usize = 512;
/// How often the pump drains the rings while a client is attached.
const PUMP_INTERVAL: Duration = Duration::from_millis(2);
/// How often each client gets a missed record, also the heartbeat that finds a client
/// that went away while no frame flowed.
const HEARTBEAT: Duration = Duration::from_millis(250);
/// Batches of records queued per client before it starts missing them.
const CLIENT_QUEUE: usize = 32;
/// A client that takes no bytes for this long is dropped.
const CLIENT_WRITE_TIMEOUT: Duration = Duration::from_secs(5);

const MODE_OFF: u8 = 0;
const MODE_DROPS: u8 = 1;
const MODE_ALL: u8 = 2;

/// The process's trace hub. Cheap to clone (an `Arc`).
#[derive(Clone)]
pub struct TraceHub {
    inner: Arc<Inner>,
}

/// What the workers read on every batch, alone on its cache line.
#[repr(align(64))]
struct Mode(AtomicU8);

struct Inner {
    /// `MODE_OFF`, `MODE_DROPS` or `MODE_ALL`: what workers record. Written under
    /// `state`'s lock, read by workers without it.
    mode: Mode,
    ports: Vec<String>,
    ring_slots: usize,
    state: Mutex<State>,
}

struct State {
    rings: Vec<RingEntry>,
    clients: Vec<Client>,
    pump_running: bool,
}

struct RingEntry {
    worker: u16,
    consumer: Consumer,
    /// The ring's missed totals already shared out to clients.
    seen: Missed,
}

/// One attached client, as the pump sees it.
struct Client {
    req: TraceRequest,
    /// To its writer thread; dropping it ends the stream after the queued records.
    tx: SyncSender<Vec<u8>>,
    /// Set by the writer thread when the client went away.
    gone: Arc<AtomicBool>,
    /// Records encoded since the last send, and how many frames they hold.
    pending: Vec<u8>,
    pending_frames: u64,
    /// Frames queued for it so far, and frames it missed.
    sent: u64,
    missed: u64,
    missed_told: Option<u64>,
    last_beat: Instant,
    /// Its count is reached: flush, then close.
    done: bool,
}

impl Client {
    fn wants(&self, is_drop: bool) -> bool {
        !self.done && (is_drop || !self.req.drops_only)
    }

    /// Sends what is pending (and a missed record when due); false once it is finished.
    fn flush(&mut self, now: Instant) -> bool {
        if self.done || now.duration_since(self.last_beat) >= HEARTBEAT {
            self.last_beat = now;
            self.missed_told = Some(self.missed);
            encode_missed(&mut self.pending, self.missed);
        }
        if !self.pending.is_empty() {
            let chunk = std::mem::take(&mut self.pending);
            match self.tx.try_send(chunk) {
                Ok(()) => {}
                Err(TrySendError::Full(chunk)) => {
                    // The client reads too slowly: these frames are lost, and counted.
                    self.missed += self.pending_frames;
                    self.sent -= self.pending_frames;
                    self.done = false;
                    self.pending = chunk;
                    self.pending.clear();
                }
                Err(TrySendError::Disconnected(_)) => return false,
            }
            self.pending_frames = 0;
        }
        !self.done && !self.gone.load(Ordering::Relaxed)
    }
}

impl TraceHub {
    /// A hub for a process whose ports are named `ports` (by `PortId`; shown to clients).
    pub fn new(ports: Vec<String>) -> TraceHub {
        Self::with_ring_slots(ports, RING_SLOTS)
    }

    /// [`TraceHub::new`] with rings of `slots` frames (tests use tiny ones).
    pub fn with_ring_slots(ports: Vec<String>, slots: usize) -> TraceHub {
        TraceHub {
            inner: Arc::new(Inner {
                mode: Mode(AtomicU8::new(MODE_OFF)),
                ports,
                ring_slots: slots.max(1),
                state: Mutex::new(State {
                    rings: Vec::new(),
                    clients: Vec::new(),
                    pump_running: false,
                }),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere cannot leave the state half-updated in a way that matters
        // more than losing trace: keep going.
        self.inner.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The tracer of the worker on CPU `worker` (its ring is allocated here, once).
    pub fn tracer(&self, worker: u16) -> Tracer {
        let (producer, consumer) = ring::ring(self.inner.ring_slots);
        self.lock().rings.push(RingEntry {
            worker,
            consumer,
            seen: Missed::default(),
        });
        Tracer {
            hub: self.inner.clone(),
            producer,
        }
    }

    /// Serves a control-socket connection whose first line, `request`, starts with
    /// `trace`: from here on the stream is the hub's. Returns at once; a bad request is
    /// answered with an error record and returned.
    pub fn attach(&self, stream: UnixStream, request: &str) -> Result<(), RequestError> {
        let _ = stream.set_nonblocking(false);
        let _ = stream.set_write_timeout(Some(CLIENT_WRITE_TIMEOUT));
        let req = match TraceRequest::parse(request) {
            Ok(r) => r,
            Err(e) => {
                let mut out = Vec::new();
                encode_error(&mut out, &e.to_string());
                let _ = stream.set_write_timeout(Some(Duration::from_millis(200)));
                let _ = (&stream).write_all(&out);
                return Err(e);
            }
        };
        let mut hello = Vec::new();
        encode_hello(&mut hello, SNAP_LEN as u16, &self.inner.ports);
        let (tx, rx) = sync_channel(CLIENT_QUEUE);
        let gone = Arc::new(AtomicBool::new(false));
        let writer_gone = gone.clone();
        let spawned = std::thread::Builder::new()
            .name("podfwd-trace-out".into())
            .spawn(move || write_client(stream, hello, rx, &writer_gone));
        if spawned.is_err() {
            return Ok(()); // No thread for it: the stream is dropped, the client sees EOF.
        }
        let mut st = self.lock();
        if st.clients.is_empty() {
            // Frames left from an earlier session are not this client's.
            for r in &mut st.rings {
                r.consumer.discard();
                r.seen = r.consumer.missed();
            }
        }
        st.clients.push(Client {
            req,
            tx,
            gone,
            pending: Vec::new(),
            pending_frames: 0,
            sent: 0,
            missed: 0,
            missed_told: None,
            last_beat: Instant::now(),
            done: false,
        });
        self.inner
            .mode
            .0
            .store(mode_of(&st.clients), Ordering::Relaxed);
        if !st.pump_running {
            let inner = self.inner.clone();
            if std::thread::Builder::new()
                .name("podfwd-trace".into())
                .spawn(move || pump(&inner))
                .is_ok()
            {
                st.pump_running = true;
            }
        }
        Ok(())
    }

    /// How many clients are attached.
    pub fn clients(&self) -> usize {
        self.lock().clients.len()
    }

    /// Whether workers record frames now.
    pub fn is_on(&self) -> bool {
        // Relaxed: a status query.
        self.inner.mode.0.load(Ordering::Relaxed) != MODE_OFF
    }
}

/// What the workers must record for these clients.
fn mode_of(clients: &[Client]) -> u8 {
    if clients.is_empty() {
        MODE_OFF
    } else if clients.iter().all(|c| c.req.drops_only) {
        MODE_DROPS
    } else {
        MODE_ALL
    }
}

/// A client's writer thread: the hello, then every queued batch, then end of stream.
fn write_client(stream: UnixStream, hello: Vec<u8>, rx: Receiver<Vec<u8>>, gone: &AtomicBool) {
    let mut w = &stream;
    let _ = (|| -> std::io::Result<()> {
        w.write_all(&hello)?;
        for chunk in rx {
            w.write_all(&chunk)?;
        }
        stream.shutdown(std::net::Shutdown::Write)
    })();
    // Relaxed: the pump only needs to notice eventually (next drain).
    gone.store(true, Ordering::Relaxed);
}

/// The pump: drains every ring into the clients' queues until no client is left.
fn pump(inner: &Inner) {
    loop {
        {
            let mut st = inner.state.lock().unwrap_or_else(|e| e.into_inner());
            let State { rings, clients, .. } = &mut *st;
            for r in rings.iter_mut() {
                let worker = r.worker;
                r.consumer.drain(|s| {
                    let is_drop = matches!(s.verdict, Verdict::Drop(_));
                    for c in clients.iter_mut().filter(|c| c.wants(is_drop)) {
                        encode_frame(&mut c.pending, worker, s);
                        c.pending_frames += 1;
                        c.sent += 1;
                        if c.req.count.is_some_and(|n| c.sent >= n) {
                            c.done = true;
                        }
                    }
                });
                let m = r.consumer.missed();
                let (drops, other) = (m.drops - r.seen.drops, m.other - r.seen.other);
                r.seen = m;
                for c in clients.iter_mut().filter(|c| !c.done) {
                    c.missed += drops + if c.req.drops_only { 0 } else { other };
                }
            }
            let now = Instant::now();
            clients.retain_mut(|c| c.flush(now));
            // Relaxed: workers see the new mode within a batch or two; nothing else is
            // published through it.
            inner.mode.0.store(mode_of(clients), Ordering::Relaxed);
            if clients.is_empty() {
                st.pump_running = false;
                return;
            }
        }
        std::thread::sleep(PUMP_INTERVAL);
    }
}

/// One worker's handle: the producer end of its ring. Not `Clone` (one producer per
/// ring); `Send`, so it moves into the worker thread.
pub struct Tracer {
    hub: Arc<Inner>,
    producer: Producer,
}

impl Tracer {
    /// `Some` while a client is attached: one relaxed load, once per batch.
    #[inline]
    pub fn active(&mut self) -> Option<ActiveTracer<'_>> {
        // Relaxed: a late view only records a batch more or less.
        match self.hub.mode.0.load(Ordering::Relaxed) {
            MODE_OFF => None,
            m => Some(ActiveTracer {
                producer: &mut self.producer,
                drops_only: m == MODE_DROPS,
            }),
        }
    }
}

/// A tracer while tracing is on, for one batch.
pub struct ActiveTracer<'a> {
    producer: &'a mut Producer,
    drops_only: bool,
}

impl ActiveTracer<'_> {
    /// Records a processed batch: `verdicts[i]` is the verdict of `pkts[i]` (extra
    /// entries of the longer slice are ignored). `now` stamps every frame of the batch.
    /// No allocation, no lock, no waiting.
    #[inline]
    pub fn record_batch(mut self, pkts: &[Packet<'_>], verdicts: &[Verdict], now: SystemTime) {
        let ts = unix_ns(now);
        for (pkt, v) in pkts.iter().zip(verdicts) {
            self.record_with(ts, pkt, *v);
        }
    }

    /// Records one frame (for a backend that changes a verdict after the pipeline, e.g.
    /// hands a dropped frame to the kernel after all: record what it finally did).
    #[inline]
    pub fn record(&mut self, pkt: &Packet<'_>, verdict: Verdict, now: SystemTime) {
        self.record_with(unix_ns(now), pkt, verdict);
    }

    #[inline]
    fn record_with(&mut self, ts: u64, pkt: &Packet<'_>, v: Verdict) {
        if self.drops_only && !matches!(v, Verdict::Drop(_)) {
            return;
        }
        // A backend may lend a length past its buffer (dropped as malformed): show what
        // is there, never panic.
        let end = pkt.offset.saturating_add(pkt.len).min(pkt.buf.len());
        let frame = &pkt.buf[pkt.offset.min(end)..end];
        self.producer.push(ts, pkt.ingress, v, frame, pkt.len);
    }
}

fn unix_ns(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos().min(u128::from(u64::MAX)) as u64)
        .unwrap_or(0)
}

impl TraceHub {
    /// The port names clients are told (by `PortId`).
    pub fn port_names(&self) -> &[String] {
        &self.inner.ports
    }
}
