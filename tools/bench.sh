#!/usr/bin/env bash
# Forwarding benchmark over veth: podfwd (AF_XDP, XDP, TUN) against the kernel and the
# reference limits, in namespaces.
#   sudo tools/bench.sh                 # the full run (estimated 1.5-1.75 h on 2 CPUs): every
#                                       # scenario and workload under the default set-up,
#                                       # and udp-64B of every scenario under the six other
#                                       # set-ups, 5 interleaved rounds x 5 s; that is
#                                       # podfwd-bench run --setups all --sweep-workloads udp-64B
#   sudo tools/bench.sh --quick         # 1 run x 1 s, default set-up only (about 2.5
#                                       # minutes): smoke test, as in CI
#   sudo tools/bench.sh --scenarios kernel-vxlan,afxdp-vxlan --workloads udp-64B --runs 3
#   sudo tools/bench.sh --setups all --workloads udp-64B --runs 3 --secs 3 \
#        --scenarios kernel-host-gw,afxdp-host-gw,xdp-host-gw,afxdp-limit,xdp-limit
#                                       # a set-up sweep only (the kernel, podfwd and the
#                                       # limits under each set-up side by side)
# With any argument, exactly that is run (no sweep unless --setups). Each run prints its
# estimated duration first. Set-ups: default, uplink, noqueue, uplink-1flow,
# uplink-1flow-grofwd, uplink-grofwd, uplink-deferred (docs/BENCHMARKS.md, "Limits and
# set-ups"). Writes results/bench-<time>.{json,md}, results/bench-<time>-{udp,tcp,latency}.png
# (+ -setups.png with several set-ups) and the same as results/latest.*. Needs root, 2
# CPUs, iperf3, ethtool, tc, and a TTF font (fonts-dejavu-core; tools/setup.sh installs
# all of them). docs/BENCHMARKS.md explains.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
cargo build --release -p podfwd -p podfwd-bench --bins
if [ "$#" -eq 0 ]; then
    set -- --setups all --sweep-workloads udp-64B
fi
exec ./target/release/podfwd-bench run "$@"
