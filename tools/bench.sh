#!/usr/bin/env bash
# Forwarding benchmark over veth: podfwd (AF_XDP) against the kernel, in namespaces.
#   tools/bench.sh [--quick] [podfwd-bench run options...]
# Writes results/bench-<time>.{json,md} and results/latest.{json,md}. Needs root and 2 CPUs.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
cargo build --release --bin podfwd --bin podfwd-bench
exec ./target/release/podfwd-bench run "$@"
