//! LPM lookup: podfwd's DIR-24-8 table against the published `prefix-trie` and
//! `ip_network_table-deps-treebitmap` crates, on the same prefixes and addresses.
//!
//! `cargo bench --bench lpm` (about 2.5 minutes on an idle machine). For each of 1k, 100k and 1M random prefixes
//! (seeded; lengths: 2% /8-/15, 18% /16-/21, 20% /22-/23, 50% /24, 10% /25-/32) and two
//! address sets of 2^20 addresses each:
//! - `uniform`: uniformly random addresses (most miss at 1k prefixes, as in the issue);
//! - `matching`: a random stored prefix with random host bits (every lookup hits,
//!   the deepest walk for the tries).
//!
//! One iteration looks up 16384 consecutive addresses of the set, continuing where the
//! previous iteration stopped, so successive iterations do not find their tbl24 lines in
//! cache; throughput is per lookup. podfwd pins once per 64 lookups, as a worker pins once
//! per batch. `LPM_BENCH_HUGE_PAGES=0` turns `LpmConfig::huge_pages` off.

use criterion::{
    black_box, criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode, Throughput,
};
use ip_network_table_deps_treebitmap::IpLookupTable;
use podfwd::lpm::{self, Ipv4Net, LpmConfig, LpmReader};
use prefix_trie::PrefixMap;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

const ADDRESSES: usize = 1 << 20;
const PER_ITER: usize = 1 << 14;
const BATCH: usize = 64;

fn random_len(rng: &mut StdRng) -> u8 {
    match rng.gen_range(0..100) {
        0..=1 => rng.gen_range(8..=15),
        2..=19 => rng.gen_range(16..=21),
        20..=39 => rng.gen_range(22..=23),
        40..=89 => 24,
        _ => rng.gen_range(25..=32),
    }
}

/// `n` distinct random prefixes as (network address, length).
fn random_prefixes(n: usize, rng: &mut StdRng) -> Vec<(u32, u8)> {
    let mut seen = HashSet::with_capacity(n);
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let len = random_len(rng);
        let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
        let p = (rng.gen::<u32>() & mask, len);
        if seen.insert(p) {
            out.push(p);
        }
    }
    out
}

fn uniform_addresses(rng: &mut StdRng) -> Vec<u32> {
    (0..ADDRESSES).map(|_| rng.gen()).collect()
}

fn matching_addresses(prefixes: &[(u32, u8)], rng: &mut StdRng) -> Vec<u32> {
    (0..ADDRESSES)
        .map(|_| {
            let (net, len) = prefixes[rng.gen_range(0..prefixes.len())];
            let host = u32::MAX.checked_shr(u32::from(len)).unwrap_or(0);
            net | (rng.gen::<u32>() & host)
        })
        .collect()
}

/// The next `PER_ITER` addresses of the set, wrapping around.
fn next_chunk<'a>(addrs: &'a [u32], offset: &mut usize) -> &'a [u32] {
    let start = *offset;
    *offset = (start + PER_ITER) % addrs.len();
    &addrs[start..start + PER_ITER]
}

fn lookups(c: &mut Criterion) {
    let huge_pages = std::env::var("LPM_BENCH_HUGE_PAGES").map_or(true, |v| v != "0");
    let mut rng = StdRng::seed_from_u64(0x05ee_d1b3);
    for n in [1_000usize, 100_000, 1_000_000] {
        let prefixes = random_prefixes(n, &mut rng);
        let routes = || {
            prefixes.iter().zip(0u32..).map(|(&(a, l), nh)| {
                (
                    Ipv4Net::new(Ipv4Addr::from(a), l).expect("length <= 32"),
                    nh & 0xff_ffff,
                )
            })
        };

        let t = Instant::now();
        let (mut writer, reader) = lpm::new(LpmConfig {
            huge_pages,
            ..LpmConfig::default()
        });
        writer.replace_all(routes()).expect("table build");
        let build = t.elapsed();
        eprintln!(
            "podfwd {n} prefixes: built in {build:.2?}, {} tbl8 groups, memory_bytes {} ({:.1} MiB), huge_pages {huge_pages}",
            writer.tbl8_groups(),
            writer.memory_bytes(),
            writer.memory_bytes() as f64 / (1 << 20) as f64,
        );

        let t = Instant::now();
        let mut trie: PrefixMap<(u32, u8), u32> = PrefixMap::new();
        for (p, nh) in routes() {
            trie.insert((u32::from(p.network()), p.prefix_len()), nh);
        }
        eprintln!("prefix-trie {n} prefixes: built in {:.2?}", t.elapsed());

        let t = Instant::now();
        let mut tbm: IpLookupTable<Ipv4Addr, u32> = IpLookupTable::with_capacity(n);
        for (p, nh) in routes() {
            tbm.insert(p.network(), u32::from(p.prefix_len()), nh);
        }
        eprintln!("treebitmap {n} prefixes: built in {:.2?}", t.elapsed());

        let sets = [
            ("uniform", uniform_addresses(&mut rng)),
            ("matching", matching_addresses(&prefixes, &mut rng)),
        ];
        for (set, addrs) in &sets {
            // Sanity: all three agree on the first addresses.
            let view = reader.pin();
            for &a in &addrs[..4096] {
                let want = view.lookup(a);
                assert_eq!(trie.get_lpm(&(a, 32)).map(|(_, v)| *v), want);
                assert_eq!(
                    tbm.longest_match(Ipv4Addr::from(a)).map(|(_, _, v)| *v),
                    want
                );
            }
            drop(view);

            let mut group = c.benchmark_group(format!("lpm_{set}"));
            group
                .throughput(Throughput::Elements(PER_ITER as u64))
                .warm_up_time(Duration::from_secs(1))
                .measurement_time(Duration::from_secs(4))
                .sample_size(30)
                .sampling_mode(SamplingMode::Flat);
            bench_podfwd(&mut group, n, addrs, &reader);
            let mut offset = 0;
            group.bench_function(BenchmarkId::new("prefix_trie", n), |b| {
                b.iter(|| {
                    let mut acc = 0u32;
                    for &a in next_chunk(addrs, &mut offset) {
                        acc = acc.wrapping_add(trie.get_lpm(&(a, 32)).map_or(0, |(_, v)| *v));
                    }
                    black_box(acc)
                })
            });
            let mut offset = 0;
            group.bench_function(BenchmarkId::new("treebitmap", n), |b| {
                b.iter(|| {
                    let mut acc = 0u32;
                    for &a in next_chunk(addrs, &mut offset) {
                        acc = acc.wrapping_add(
                            tbm.longest_match(Ipv4Addr::from(a))
                                .map_or(0, |(_, _, v)| *v),
                        );
                    }
                    black_box(acc)
                })
            });
            group.finish();
        }
    }
}

fn bench_podfwd(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    n: usize,
    addrs: &[u32],
    reader: &LpmReader,
) {
    let mut offset = 0;
    group.bench_function(BenchmarkId::new("podfwd_single", n), |b| {
        b.iter(|| {
            let mut acc = 0u32;
            for batch in next_chunk(addrs, &mut offset).chunks(BATCH) {
                let view = reader.pin();
                for &a in batch {
                    acc = acc.wrapping_add(view.lookup(a).unwrap_or(0));
                }
            }
            black_box(acc)
        })
    });
    let mut offset = 0;
    let mut out = [None; BATCH];
    group.bench_function(BenchmarkId::new("podfwd_batch64", n), |b| {
        b.iter(|| {
            let mut acc = 0u32;
            for batch in next_chunk(addrs, &mut offset).chunks(BATCH) {
                let view = reader.pin();
                view.lookup_batch(batch, &mut out);
                for o in &out[..batch.len()] {
                    acc = acc.wrapping_add(o.unwrap_or(0));
                }
            }
            black_box(acc)
        })
    });
}

criterion_group!(benches, lookups);
criterion_main!(benches);
