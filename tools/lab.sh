#!/usr/bin/env bash
# The main job on its embedded default: builds podfwd and runs the demo cluster.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
cargo build --release
exec ./target/release/podfwd lab "$@"
