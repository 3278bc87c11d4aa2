#!/usr/bin/env bash
# Forwarding benchmark over veth: podfwd (AF_XDP, TUN) against the kernel, in namespaces.
#   sudo tools/bench.sh                 # every scenario and workload, 5 interleaved runs x 5 s
#   sudo tools/bench.sh --quick         # 1 run x 1 s (about 2 minutes): smoke test, as in CI
#   sudo tools/bench.sh --scenarios kernel-vxlan,afxdp-vxlan --workloads udp-64B --runs 3
# Writes results/bench-<time>.{json,md}, results/bench-<time>-{udp,tcp,latency}.png and the
# same as results/latest.*. Needs root, 2 CPUs, iperf3, ethtool, tc, and a TTF font
# (fonts-dejavu-core; tools/setup.sh installs all of them). docs/BENCHMARKS.md explains.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
cargo build --release -p podfwd -p podfwd-bench --bins
exec ./target/release/podfwd-bench run "$@"
