//! Pipeline cost per packet, in batches of 64 (the goals: host-gw rewrite
//! <= 30 ns, VXLAN encap <= 40 ns, VXLAN decap <= 40 ns).
//!
//! `cargo bench --bench pipeline`. Frames are 60-byte UDP (minimum Ethernet frame without
//! FCS) in 64 flows. Each batch is copied into fresh buffers in the untimed setup; the
//! timed routine builds the 64 packet views on the stack and calls `Pipeline::process`,
//! which is what a backend does per batch.
//!
//! `PIPELINE_BATCH_QUANTILES=1 cargo bench --bench pipeline` skips criterion and times
//! every batch on its own instead (the same timed region), printing quantiles per packet.
//! Criterion's estimates are means over many batches, so on a shared machine every time
//! slice lost to another process lands in them; a batch takes about a microsecond, so
//! few batches are preempted, and the median batch shows the cost without that noise.

use criterion::{criterion_group, Criterion, Throughput};
use podfwd::counters::Counters;
use podfwd::lpm::{Ipv4Net, LpmConfig};
use podfwd::nexthop::{NextHop, PortId};
use podfwd::pipeline::{FibParams, FibWriter, NodeParams, Packet, Pipeline, PortInfo, Verdict};
use podfwd::wire::MacAddr;
use std::hint::black_box;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

const BATCH: usize = 64;
const HEADROOM: usize = 256;
const BUF: usize = 2048;
const UPLINK: PortId = 0;
const POD: PortId = 1;

/// Node `id` (underlay 10.168.0.id, pods 10.244.id.0/24, VTEP 0e:00:00:00:00:id) with
/// routes to every node in `peers`, all neighbours resolved.
fn node(id: u8, peers: &[u8], vxlan: bool) -> (FibWriter, Pipeline) {
    let params = NodeParams {
        node_ip: Ipv4Addr::new(10, 168, 0, id),
        uplink: UPLINK,
        vni: 1,
        vxlan_port: 8472,
        vtep_mac: MacAddr([0x0e, 0, 0, 0, 0, id]),
    };
    let (mut w, fib) = FibWriter::new(FibParams {
        node: params,
        ports: vec![
            PortInfo {
                mac: MacAddr([2, 0, 0, 0, 0, id]),
                mtu: 1500,
            },
            PortInfo {
                mac: MacAddr([2, 0, 0, 0, 1, id]),
                mtu: 1500,
            },
        ],
        uplink_subnet: None,
        gateway: None,
        lpm: LpmConfig::default(),
    });
    let own = Ipv4Net::new(Ipv4Addr::new(10, 244, id, 0), 24).unwrap();
    w.set_route(own, NextHop::Connected { port: POD }).unwrap();
    for h in 1..=254u8 {
        let pod = Ipv4Addr::new(10, 244, id, h);
        w.set_neighbour(POD, pod, Some(MacAddr([2, 0, 0, 2, id, h])))
            .unwrap();
    }
    for &p in peers {
        let node_ip = Ipv4Addr::new(10, 168, 0, p);
        let prefix = Ipv4Net::new(Ipv4Addr::new(10, 244, p, 0), 24).unwrap();
        let nh = if vxlan {
            NextHop::Vxlan {
                node_ip,
                vtep_mac: MacAddr([0x0e, 0, 0, 0, 0, p]),
            }
        } else {
            NextHop::HostGw {
                gateway: node_ip,
                port: UPLINK,
            }
        };
        w.set_route(prefix, nh).unwrap();
        w.set_neighbour(UPLINK, node_ip, Some(MacAddr([2, 0, 0, 0, 0, p])))
            .unwrap();
    }
    (w, Pipeline::new(params, fib))
}

/// 60-byte UDP frames from a pod of node 100 to `dst(i)`, one flow each.
fn pod_frames(dst: impl Fn(usize) -> [u8; 4]) -> Vec<Vec<u8>> {
    (0..BATCH)
        .map(|i| {
            let b =
                etherparse::PacketBuilder::ethernet2([2, 0, 0, 2, 100, 2], [2, 0, 0, 0, 1, 100])
                    .ipv4([10, 244, 100, 2], dst(i), 64)
                    .udp(10000 + i as u16, 5000);
            let mut f = Vec::new();
            b.write(&mut f, &[0u8; 18]).unwrap();
            f
        })
        .collect()
}

/// Frames laid into buffers with headroom, ready to be lent to the pipeline.
struct Batch {
    bufs: Vec<Vec<u8>>,
    lens: Vec<usize>,
}

impl Batch {
    fn new(frames: &[Vec<u8>]) -> Batch {
        Batch {
            bufs: frames
                .iter()
                .map(|f| {
                    let mut b = vec![0u8; BUF];
                    b[HEADROOM..HEADROOM + f.len()].copy_from_slice(f);
                    b
                })
                .collect(),
            lens: frames.iter().map(Vec::len).collect(),
        }
    }

    /// Runs the pipeline over the batch; returns the output frames' (offset, len).
    fn run(&mut self, p: &Pipeline, ingress: PortId, c: &mut Counters) -> [Verdict; BATCH] {
        let mut it = self.bufs.iter_mut().zip(&self.lens);
        let mut pkts: [Packet; BATCH] = std::array::from_fn(|_| {
            let (buf, len) = it.next().expect("BATCH frames");
            Packet {
                buf,
                offset: HEADROOM,
                len: *len,
                ingress,
            }
        });
        let mut v = [Verdict::ToKernel; BATCH];
        p.process(&mut pkts, &mut v, c);
        v
    }

    /// Lays the frames into the buffers again (undoing the last batch's rewrites).
    fn reset(&mut self, frames: &[Vec<u8>]) {
        for (b, f) in self.bufs.iter_mut().zip(frames) {
            b[HEADROOM - 64..HEADROOM].fill(0);
            b[HEADROOM..HEADROOM + f.len()].copy_from_slice(f);
        }
    }

    fn frames(&self, v: &[Verdict; BATCH], offset: usize) -> Vec<Vec<u8>> {
        assert!(v.iter().all(|v| matches!(v, Verdict::Tx(_))), "{v:?}");
        self.bufs.iter().map(|b| b[offset..].to_vec()).collect()
    }
}

/// The pipelines and frames of the three cases.
struct Setup {
    hostgw: Pipeline,
    vx: Pipeline,
    rx: Pipeline,
    to_many_nodes: Vec<Vec<u8>>,
    encapped: Vec<Vec<u8>>,
    _writers: [FibWriter; 3],
}

type Case<'a> = (&'static str, &'a Pipeline, &'a Vec<Vec<u8>>, PortId);

impl Setup {
    fn new() -> Setup {
        let peers: Vec<u8> = (1..=64).collect();
        let (hw, hostgw) = node(100, &peers, false);
        let (vw, vx) = node(100, &peers, true);
        // Node 1 receives VXLAN from node 100, for its pods 10.244.1.2..65.
        let (rw, rx) = node(1, &[100], true);

        let to_many_nodes = pod_frames(|i| [10, 244, (i % 64 + 1) as u8, 2]);
        let to_node_1 = pod_frames(|i| [10, 244, 1, (i + 2) as u8]);
        let mut ctrs = Counters::default();
        let encapped = {
            let mut b = Batch::new(&to_node_1);
            let v = b.run(&vx, POD, &mut ctrs);
            let mut out = b.frames(&v, HEADROOM - 50);
            for (f, len) in out.iter_mut().zip(&b.lens) {
                f.truncate(len + 50);
            }
            out
        };
        let s = Setup {
            hostgw,
            vx,
            rx,
            to_many_nodes,
            encapped,
            _writers: [hw, vw, rw],
        };
        // Every benchmark must forward every frame, or it measures the wrong thing.
        for (_, p, frames, ingress) in s.cases() {
            let v = Batch::new(frames).run(p, ingress, &mut ctrs);
            assert!(v.iter().all(|v| matches!(v, Verdict::Tx(_))), "{v:?}");
        }
        s
    }

    fn cases(&self) -> [Case<'_>; 3] {
        [
            (
                "host_gw_rewrite_60B_batch64",
                &self.hostgw,
                &self.to_many_nodes,
                POD,
            ),
            (
                "vxlan_encap_60B_batch64",
                &self.vx,
                &self.to_many_nodes,
                POD,
            ),
            ("vxlan_decap_110B_batch64", &self.rx, &self.encapped, UPLINK),
        ]
    }
}

fn bench(c: &mut Criterion) {
    let setup = Setup::new();
    let mut ctrs = Counters::default();
    let mut g = c.benchmark_group("pipeline");
    g.throughput(Throughput::Elements(BATCH as u64));
    for (name, p, frames, ingress) in setup.cases() {
        // One set of buffers (like a UMEM region) reused every iteration: the frames are
        // re-laid before each batch outside the timed region, so only `process` is timed.
        let mut batch = Batch::new(frames);
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    batch.reset(frames);
                    let t = Instant::now();
                    black_box(batch.run(p, ingress, &mut ctrs));
                    total += t.elapsed();
                }
                total
            })
        });
    }
    g.finish();
}

/// Times `BATCHES` batches of each case one by one (the timed region of `bench`) and
/// prints quantiles of the time per packet.
fn batch_quantiles() {
    const WARM_UP: usize = 20_000;
    const BATCHES: usize = 200_000;
    let setup = Setup::new();
    let mut ctrs = Counters::default();
    println!("per packet (batch time / {BATCH}), {BATCHES} batches each, ns:");
    println!(
        "{:<28} {:>6} {:>6} {:>6} {:>6} {:>6}",
        "case", "p1", "p10", "p50", "p90", "p99"
    );
    for (name, p, frames, ingress) in setup.cases() {
        let mut batch = Batch::new(frames);
        let mut ns = Vec::with_capacity(BATCHES);
        for i in 0..WARM_UP + BATCHES {
            batch.reset(frames);
            let t = Instant::now();
            black_box(batch.run(p, ingress, &mut ctrs));
            let e = t.elapsed();
            if i >= WARM_UP {
                ns.push(e.as_nanos() as f64 / BATCH as f64);
            }
        }
        ns.sort_by(f64::total_cmp);
        let q = |f: f64| ns[((ns.len() - 1) as f64 * f) as usize];
        println!(
            "{:<28} {:>6.2} {:>6.2} {:>6.2} {:>6.2} {:>6.2}",
            name,
            q(0.01),
            q(0.10),
            q(0.50),
            q(0.90),
            q(0.99)
        );
    }
}

criterion_group!(benches, bench);

fn main() {
    if std::env::var_os("PIPELINE_BATCH_QUANTILES").is_some() {
        batch_quantiles();
        return;
    }
    // What criterion_main! expands to.
    benches();
    Criterion::default().configure_from_args().final_summary();
}
