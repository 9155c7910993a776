#!/usr/bin/env bash
# Benchmarks (release build, one BLAS thread per rank): `a2q bench` (one rank: training
# images/s for mlp and cnn in float/qat/a2q/a2q+, checkpoint I/O, integer engine, layer
# kernels), then the cnn A2Q+ training step with R=1 and R=2 and the speed-up, then resnet20's
# step with its GEMM work rate.
#
#   Launch/bench.sh [--quick]
set -euo pipefail
cd "$(dirname "$0")/.."
swift build -c release --product a2q 2>&1 | tail -n 1
a2q=.build/release/a2q
steps=300
[ "${1:-}" = "--quick" ] && steps=60

OPENBLAS_NUM_THREADS=1 "$a2q" bench all --steps "$steps"
echo
echo "cnn A2Q+, batch 64 per rank, R=1 and R=2 (one BLAS thread per rank):"
root=(); [ "$(id -u)" -eq 0 ] && root=(--allow-run-as-root)
one=$(OPENBLAS_NUM_THREADS=1 "$a2q" bench train --model cnn --quantizer a2q+ --steps "$steps" --json)
two=$(mpirun "${root[@]}" -np 2 --bind-to core --mca btl self,vader -x OPENBLAS_NUM_THREADS=1 \
      "$a2q" bench train --model cnn --quantizer a2q+ --steps "$steps" --json)
python3 - "$one" "$two" <<'PY'
import json, sys
one, two = json.loads(sys.argv[1])[0], json.loads(sys.argv[2])[0]
for r in (one, two):
    step = sum(r["seconds_per_step"].values())
    print(f"  R={r['ranks']}: {r['images_per_second']:7.0f} images/s, {1e3*step:6.1f} ms/step, "
          f"all-reduce {100*r['allreduce_share']:4.1f}% of the step")
print(f"  speed-up R=2 / R=1: {two['images_per_second'] / one['images_per_second']:.2f}x")
PY
echo
echo "resnet20 A2Q+, batch 64, R=1, with GFLOP/s (compare with the sgemm row of the layer table above):"
OPENBLAS_NUM_THREADS=1 "$a2q" bench train --model resnet20 --quantizer a2q+ --steps "$(( steps / 5 ))" | tail -n 2
