#!/usr/bin/env bash
# All-reduce time against message size on 2 and 3 test hosts (Launch/netns-hosts.sh; root),
# over links limited to each RATE (tbf both ways; "none" = the bare veth), then an alpha-beta
# fit per rate from the 2-host medians, T2(n) = a + b·n (a: latency floor; b: slope above
# 256 KiB), and
# two models for R ranks: recursive doubling, T = ceil(log2 R)·(a + b·n), what Open MPI's
# libnbc iallreduce does, and a bandwidth-optimal ring, T = (R − 1)·a + 2(R − 1)/R·b·n; both
# are checked against the 3-host medians and projected for the cnn's gradient (422,071
# floats) at 2…256 ranks with the per-step compute time COMPUTE_S (seconds; `a2q bench train`,
# R = 1).
#
# A link is RATE or RATE+DELAY: 1gbit+0.5ms adds a 0.5 ms delay to every host's outgoing
# frames (A2Q_NETNS_DELAY; a round trip between two hosts gains 1 ms), as `tc netem` would.
#
#   Launch/bench-scaling.sh [COMPUTE_S] [LINK...]    (default: 0.035, links 1gbit 10gbit)
set -euo pipefail
cd "$(dirname "$0")/.."
compute=${1:-0.035}; shift || true
rates=("$@"); [ ${#rates[@]} -gt 0 ] || rates=(1gbit 10gbit)
gradient=$((422071 * 4))
swift build -c release --product a2q 2>&1 | tail -n 1
echo "$(.build/release/a2q env | grep -E '^cpu|^openblas kernel' | tr '\n' ' ')"
for rate in "${rates[@]}"; do
  for hosts in 2 3; do
    link_rate=${rate%%+*}
    env_rate=(); [ "$link_rate" != none ] && env_rate=(A2Q_NETNS_RATE="$link_rate")
    [[ $rate == *+* ]] && env_rate+=(A2Q_NETNS_DELAY="${rate#*+}")
    env "${env_rate[@]}" Launch/netns-hosts.sh run "$hosts" -- -np "$hosts" -x OPENBLAS_NUM_THREADS=1 \
      .build/release/a2q bench allreduce --repeats 15 --json 2>/dev/null | tail -n 1 > "/tmp/a2q-scaling-$rate-$hosts.json"
  done
  python3 - "$rate" "$compute" "$gradient" <<'PY'
import json, math, sys
rate, compute, gradient = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
two = json.load(open(f"/tmp/a2q-scaling-{rate}-2.json")); three = json.load(open(f"/tmp/a2q-scaling-{rate}-3.json"))
# a = the latency floor (the smallest message's median); b = the slope of a least-squares line
# through the sizes of 256 KiB and up (the regime of a gradient; small messages ride the
# token bucket's burst and would bend the line).
small = min(two, key=lambda r: r["bytes"]); a = small["median_seconds"]
large = [r for r in two if r["bytes"] >= 262_144]
xs = [r["bytes"] for r in large]; ts = [r["median_seconds"] for r in large]
mx = sum(xs) / len(xs); mt = sum(ts) / len(ts)
b = sum((x - mx) * (t - mt) for x, t in zip(xs, ts)) / sum((x - mx) ** 2 for x in xs)
doubling = lambda R, n: math.ceil(math.log2(R)) * (a + n * b)      # what libnbc's iallreduce does
ring = lambda R, n: (R - 1) * a + 2 * (R - 1) / R * n * b          # a bandwidth-optimal ring
print(f"\n## link {rate}: fit on 2 hosts a = {a*1e3:.3f} ms, 1/b = {1/b/1e9:.3f} GB/s")
print("| bytes | 2 hosts ms | model | 3 hosts ms | doubling model | ring model |")
print("|---:|---:|---:|---:|---:|---:|")
for r2_, r3 in zip(two, three):
    n = r2_["bytes"]
    print(f"| {n:,} | {r2_['median_seconds']*1e3:.3f} | {doubling(2, n)*1e3:.3f} | {r3['median_seconds']*1e3:.3f} | {doubling(3, n)*1e3:.3f} | {ring(3, n)*1e3:.3f} |")
print(f"\nprojection, cnn gradient {gradient:,} bytes, compute {compute*1e3:.1f} ms per step (batch 64 per rank):")
print("| ranks | all-reduce ms (doubling) | images/s | efficiency | all-reduce ms (ring) | images/s | efficiency |")
print("|---:|---:|---:|---:|---:|---:|---:|")
for R in [1, 2, 4, 8, 16, 32, 64, 128, 256]:
    row = [f"{R}"]
    for model in (doubling, ring):
        t = model(R, gradient) if R > 1 else 0.0
        row += [f"{t*1e3:.2f}", f"{64 * R / (compute + t):,.0f}", f"{compute / (compute + t):.0%}"]
    print("| " + " | ".join(row) + " |")
PY
done
