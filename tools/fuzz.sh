#!/usr/bin/env bash
# Runs each fuzz target (fuzz/, AFL++ through the afl crate, stable Rust) for a short time
# from its committed corpus; exits non-zero if AFL++ saved a crash or a hang, or could not
# run. Installs cargo-afl (and the packages AFL++ needs to build) when missing. See
# docs/fuzzing.md.
#
#   bash tools/fuzz.sh [--secs N] [--keep] [TARGET...]
#
# --secs N  seconds per target (default 30); --keep keeps AFL++'s output directories.
# Targets: pipeline config netlink (default: all). One afl-fuzz at a time.
set -euo pipefail
cd "$(dirname "$0")/.."

secs=30
keep=0
targets=()
while [ $# -gt 0 ]; do
  case "$1" in
    --secs) secs=${2:?--secs needs a number}; shift 2 ;;
    --secs=*) secs=${1#--secs=}; shift ;;
    --keep) keep=1; shift ;;
    -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
    -*) echo "fuzz: unknown option $1" >&2; exit 2 ;;
    *) targets+=("$1"); shift ;;
  esac
done
[ ${#targets[@]} -gt 0 ] || targets=(pipeline config netlink)

[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
command -v cargo >/dev/null 2>&1 || { echo "fuzz: cargo not found; install Rust (rustup) first" >&2; exit 1; }

# AFL++ is built from source by cargo-afl: it needs make and a C compiler. Root on a
# fresh Debian machine installs them as tools/setup.sh does; anyone else must have them.
need_packages() {
  local missing=()
  for p in make gcc; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
      echo "fuzz: installing ${missing[*]}"
      apt-get update -qq
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    else
      echo "fuzz: warning: ${missing[*]} not installed (needed to build AFL++)" >&2
    fi
  fi
}

t0=$(date +%s)
if ! cargo afl --version >/dev/null 2>&1; then
  command -v dpkg-query >/dev/null 2>&1 && need_packages
  echo "== cargo install cargo-afl"
  cargo install --locked cargo-afl
fi
# AFL++ itself is built per toolchain; `cargo install` builds it, a new rustc needs it again.
afl_dir=$(ls -d "${XDG_DATA_HOME:-$HOME/.local/share}"/afl.rs/rustc-"$(rustc -V | cut -d' ' -f2)"-*/afl.rs-*/afl/bin 2>/dev/null | tail -1 || true)
if [ -z "$afl_dir" ] || [ ! -x "$afl_dir/afl-fuzz" ]; then
  command -v dpkg-query >/dev/null 2>&1 && need_packages
  echo "== cargo afl config --build"
  cargo afl config --build
fi
echo "fuzz: $(cargo afl --version) ready after $(( $(date +%s) - t0 )) s"

t1=$(date +%s)
echo "== cargo afl build --release (fuzz/)"
(cd fuzz && cargo afl build --release)
echo "fuzz: targets built in $(( $(date +%s) - t1 )) s"

# Non-interactive AFL++: no UI, no CPU governor or core_pattern checks (CI cannot change
# them; crashes are still detected through the exit status), no core pinning (other jobs
# share the machine), and a generous timeout so a loaded machine does not report hangs.
export AFL_NO_UI=1 AFL_SKIP_CPUFREQ=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1
export AFL_NO_AFFINITY=1 AFL_FAST_CAL=1 AFL_NO_WARN_INSTABILITY=1

work=$(mktemp -d /tmp/podfwd-fuzz.XXXXXX)
failed=0
summary=()
for t in "${targets[@]}"; do
  corpus=fuzz/corpus/$t
  [ -d "$corpus" ] || { echo "fuzz: no corpus $corpus" >&2; exit 2; }
  out=$work/$t
  echo "== $t: $secs s from $corpus ($(ls "$corpus" | wc -l) inputs)"
  if ! cargo afl fuzz -i "$corpus" -o "$out" -V "$secs" -t 2000 "fuzz/target/release/$t" \
      > "$work/$t.log" 2>&1; then
    echo "fuzz: afl-fuzz failed for $t:" >&2
    tail -20 "$work/$t.log" >&2
    failed=1
    keep=1
    continue
  fi
  afl_stat() { sed -n "s/^$1 *: *//p" "$out/default/fuzzer_stats"; }
  execs=$(afl_stat execs_done)
  crashes=$(afl_stat saved_crashes)
  hangs=$(afl_stat saved_hangs)
  summary+=("$t: $execs execs ($(afl_stat execs_per_sec)/s), $crashes crashes, $hangs hangs")
  echo "fuzz: ${summary[-1]}"
  if [ "$crashes" != 0 ] || [ "$hangs" != 0 ]; then
    failed=1
    keep=1
    for f in "$out"/default/crashes/id:* "$out"/default/hangs/id:*; do
      [ -e "$f" ] && echo "fuzz: $t: $f (reproduce: fuzz/target/release/$t < FILE)" >&2
    done
  fi
done

echo "== fuzz summary (total $(( $(date +%s) - t0 )) s)"
printf '  %s\n' "${summary[@]}"
if [ "$keep" = 1 ]; then
  echo "fuzz: AFL++ output kept in $work"
else
  rm -rf "$work"
fi
exit "$failed"
