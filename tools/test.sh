#!/usr/bin/env bash
# The whole test suite: installs what it needs, then formatting, lints, unit, property,
# integration and network-namespace tests. Run as root (the netns tests need it).
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
echo "== cargo test"
# Tests run in release: the property and LPM stress tests are much faster optimised.
cargo test --release --lib --bins --test cli --test deploy --test trace
cargo test --release -p podfwd-bench
echo "== netns tests (one at a time: the churn, SIGKILL and PMTU tests bound losses and"
echo "   recovery times, which a second cluster on the same 2 cores would distort)"
# The bench test runs podfwd-bench, a workspace member of its own (tools/bench).
cargo build --release -p podfwd-bench
cargo test --release --test netns -- --test-threads=1
echo "== benches compile and run once (criterion --test mode)"
cargo bench --bench pipeline --bench lpm -- --test
echo "== fuzz targets, 30 s each from the committed corpus (docs/fuzzing.md)"
bash tools/fuzz.sh --secs 30
