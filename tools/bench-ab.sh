#!/usr/bin/env bash
# A/B of podfwd binaries under one harness: runs `podfwd-bench run` once per binary per
# round, alternating binaries (A B C A B C ...), and prints the median "Mpps per task
# core" of each podfwd scenario per binary, with the kernel baselines of the same runs.
#
#   sudo tools/bench-ab.sh [--rounds N] [--secs S] [--scenarios LIST] [--workloads LIST] NAME=BIN ...
#
# e.g. tools/bench-ab.sh old=/tmp/old/podfwd new=target/release/podfwd
# Results (every run's JSON) under results/ab-<time>/. The harness binary is this tree's
# target/release/podfwd-bench (build it first).
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=3 secs=3
scenarios=kernel-host-gw,afxdp-host-gw,kernel-vxlan,afxdp-vxlan,kernel-vxlan-decap,afxdp-vxlan-decap
workloads=udp-64B
bins=()
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) rounds=$2; shift 2 ;;
    --secs) secs=$2; shift 2 ;;
    --scenarios) scenarios=$2; shift 2 ;;
    --workloads) workloads=$2; shift 2 ;;
    *=*) bins+=("$1"); shift ;;
    *) echo "bench-ab: unknown argument $1" >&2; exit 2 ;;
  esac
done
[ "${#bins[@]}" -ge 1 ] || { echo "bench-ab: name at least one NAME=BIN" >&2; exit 2; }
harness=target/release/podfwd-bench
[ -x "$harness" ] || { echo "bench-ab: build $harness first" >&2; exit 1; }
out="results/ab-$(date +%Y%m%d-%H%M%S)"
mkdir -p "$out"
for r in $(seq 1 "$rounds"); do
  for nb in "${bins[@]}"; do
    name=${nb%%=*} bin=${nb#*=}
    echo "bench-ab: round $r/$rounds: $name ($bin)"
    "$harness" run --scenarios "$scenarios" --workloads "$workloads" --runs 1 --secs "$secs" \
      --podfwd "$bin" --out "$out/$name-$r" >"$out/$name-$r.log" 2>&1 \
      || { echo "bench-ab: run failed, see $out/$name-$r.log" >&2; exit 1; }
  done
done
python3 - "$out" "${bins[@]}" <<'PY'
import json, sys, glob, statistics, collections
out, bins = sys.argv[1], [b.split('=', 1)[0] for b in sys.argv[2:]]
vals = collections.defaultdict(list)   # (name, scenario, workload) -> [pps per task core]
share = collections.defaultdict(list)
for name in bins:
    for f in sorted(glob.glob(f"{out}/{name}-*/latest.json")):
        for res in json.load(open(f)):
            wl = f"{res['kind']}-{res.get('frame_len', '')}"
            for run in res['runs']:
                m = run['metrics']
                key = (name, res['scenario'], res.get('workload', wl))
                vals[key].append(m.get('pps_per_task_core', 0) / 1e6)
                if 'fast_path_share' in m:
                    share[key].append(m['fast_path_share'])
scen = sorted({k[1] for k in vals}, key=lambda s: (s.split('-', 1)[1], s))
wls = sorted({k[2] for k in vals})
print(f"\nMpps per task core, median (min-max) of {len(glob.glob(out + '/' + bins[0] + '-*/latest.json'))} rounds; results in {out}\n")
print("| scenario | workload | " + " | ".join(bins) + " |")
print("|---|---|" + "---|" * len(bins))
for s in scen:
    for w in wls:
        cells = []
        for b in bins:
            v = vals.get((b, s, w))
            cells.append(f"{statistics.median(v):.3f} ({min(v):.3f}-{max(v):.3f})" if v else "-")
        print(f"| {s} | {w} | " + " | ".join(cells) + " |")
PY
