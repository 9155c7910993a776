#!/usr/bin/env bash
# Issue 26's table: post-training quantization against the accumulator (AXE) and its baselines,
# and QAT from AXE, for cnn-bn and resnet20 on Fashion-MNIST. Every row starts from the same
# float model (trained here once, 3 epochs, unless FOLDER/float-MODEL/final.h5 exists):
#   naive  the widest M = N whose data-type bound fits P for the largest K (round to nearest, qat)
#   ep     A2Q+ EP-init, then round toward zero (--init ep --epochs 0)
#   axe    A2Q+ AXE on 256 calibration images (--init axe --epochs 0 --calibration-batches 4)
#   axe-qat  A2Q+ QAT from AXE, 1 quantized epoch (the recipe has 3)
#   qat / tile  QAT without an accumulator limit, and A2Q+ with 16-bit tile registers (3 epochs)
# Each quantized row is exported, verified, run on the integer engine and inspected
# (compressibility). Rows already done are skipped when restarted; results: FOLDER/rows.jsonl,
# FOLDER/table.md.
#
#   Launch/ptq-table.sh [--out FOLDER] [--models "cnn-bn resnet20"] [--np 2] [--skip-qat]
#                       [--engine-limit N]   (integer engine on the first N test images: residual
#                                             networks run on its slow Float64 path)
set -euo pipefail
cd "$(dirname "$0")/.."

out=Checkpoints/ptq-table
models="cnn-bn resnet20"
ranks=2
qat=1
limit=""
while [ $# -gt 0 ]; do
  case "$1" in
    --out) out="$2"; shift 2 ;;
    --models) models="$2"; shift 2 ;;
    --np) ranks="$2"; shift 2 ;;
    --skip-qat) qat=0; shift ;;
    --engine-limit) limit="$2"; shift 2 ;;
    *) echo "ptq-table.sh: unknown option $1" >&2; exit 1 ;;
  esac
done
if [ -z "${A2Q_BINARY:-}" ]; then swift build -c release --product a2q 2>&1 | tail -n 1; fi
a2q=${A2Q_BINARY:-.build/release/a2q}
mkdir -p "$out"
export OPENBLAS_NUM_THREADS=1

train() { # dir, a2q train options... (skipped when the run has a summary)
  local dir=$1; shift
  if [ -f "$dir/summary.json" ]; then return 0; fi
  rm -rf "$dir"
  local start; start=$(date +%s.%N)
  if ! Launch/train.sh -np "$ranks" --out "$dir" --log-every 100000 "$@" > "$dir.log" 2>&1; then
    echo "ptq-table: $dir failed, see $dir.log"; return 1
  fi
  awk -v a="$(date +%s.%N)" -v b="$start" 'BEGIN { print a - b }' > "$dir/seconds"
}

measure() { # model, row, W/A, P, tile, dir: export, verify, integer engine, inspect → one JSON line
  local model=$1 row=$2 wa=$3 p=$4 tile=$5 dir=$6
  [ -f "$dir/row.json" ] && return 0
  "$a2q" export "$dir/final.h5" --out "$dir/model.h5" > /dev/null
  "$a2q" verify "$dir/model.h5" --json > "$dir/verify.tmp" || true   # exit 2 = can overflow: recorded
  "$a2q" eval --integer "$dir/model.h5" ${limit:+--limit "$limit"} --json > "$dir/eval.tmp"
  "$a2q" inspect "$dir/final.h5" --json > "$dir/inspect.tmp"
  python3 - "$model" "$row" "$wa" "$p" "$tile" "$dir" > "$dir/row.tmp" <<'PY'
import json, sys
model, row, wa, p, tile, d = sys.argv[1:]
summary = json.load(open(f"{d}/summary.json"))
verify = json.load(open(f"{d}/verify.tmp"))
engine = json.load(open(f"{d}/eval.tmp"))
total = json.load(open(f"{d}/inspect.tmp"))["compressibility"]["total"]
log = open(f"{d}.log").read().splitlines()
axe = [l for l in log if l.startswith("axe: every constrained layer")]
print(json.dumps({
    "model": model, "row": row, "wa": wa, "p": p, "tile": tile,
    "accuracy": summary["test_accuracy"], "float": summary.get("float_test_accuracy"),
    "sparsity": summary["sparsity"], "overflow_free": all(l["overflow_free"] for l in verify["layers"]),
    "integer_accuracy": engine["accuracy"], "engine_images": engine["images"], "engine_images_per_second": engine["images_per_second"],
    "kernels": engine.get("kernels"), "seconds": float(open(f"{d}/seconds").read()),
    "axe_seconds": float(axe[0].split(" in ")[1].split(" s")[0]) if axe else None,
    "zlib_percent": 100 * total["zlib_bytes"] / total["float32_bytes"], "entropy_bits": total["entropy_bits"]}))
PY
  mv "$dir/row.tmp" "$dir/row.json"; rm -f "$dir"/*.tmp
  cat "$dir/row.json" >> "$out/rows.jsonl"
}

naive_bits() { # largest K, P → widest b = M = N (2...8) with the data-type bound ≤ P, or 0
  python3 -c "
import math, sys
k, p = int(sys.argv[1]), int(sys.argv[2])
best = 0
for b in range(2, 9):
    a = math.log2(k) + 2 * b - 1
    if math.ceil(a + math.log2(1 + 2 ** -a) + 1 - 1e-12) <= p: best = b
print(best)" "$1" "$2"
}

for model in $models; do
  case $model in
    cnn-bn) kmax=3136 ;;
    resnet20) kmax=576 ;;
    *) echo "ptq-table: no largest K known for $model" >&2; exit 1 ;;
  esac
  float=$out/float-$model
  train "$float" --model "$model" --quantizer float --epochs 3
  from=(--model "$model" --init-from "$float/final.h5")
  for wa in 8 4; do
    for p in 16 14 12; do
      b=$(naive_bits $kmax $p)
      if [ "$wa" = 8 ] && [ "$b" -gt 0 ]; then
        dir=$out/$model-naive-w${b}a${b}-p$p
        train "$dir" "${from[@]}" --quantizer qat --weight-bits "$b" --act-bits "$b" --epochs 0 \
          && measure "$model" naive "W${b}A${b}" "$p" - "$dir"
      fi
      for init in ep axe; do
        dir=$out/$model-$init-w${wa}a${wa}-p$p
        train "$dir" "${from[@]}" --quantizer a2q+ --weight-bits "$wa" --act-bits "$wa" --accumulator-bits "$p" \
          --init "$init" --epochs 0 --calibration-batches 4 && measure "$model" "$init" "W${wa}A${wa}" "$p" - "$dir"
      done
    done
  done
  for tile in 64 128; do
    dir=$out/$model-axe-w8a8-p16-t$tile
    train "$dir" "${from[@]}" --quantizer a2q+ --accumulator-bits 16 --accumulator-tile "$tile" --init axe --epochs 0 \
      --calibration-batches 4 && measure "$model" axe W8A8 16 "$tile" "$dir"
  done
  [ "$qat" = 1 ] || continue
  for p in 16 14; do
    dir=$out/$model-axe-qat-w8a8-p$p
    train "$dir" "${from[@]}" --quantizer a2q+ --accumulator-bits "$p" --init axe --epochs 1 --calibration-batches 4 \
      && measure "$model" axe-qat W8A8 "$p" - "$dir"
  done
  dir=$out/$model-qat-w8a8
  train "$dir" "${from[@]}" --quantizer qat --epochs 3 && measure "$model" qat W8A8 - - "$dir"
  dir=$out/$model-tile-w8a8-p16-t64
  train "$dir" "${from[@]}" --quantizer a2q+ --accumulator-bits 16 --accumulator-tile 64 --epochs 3 \
    && measure "$model" tile-qat W8A8 16 64 "$dir"
done

python3 - "$out/rows.jsonl" > "$out/table.md" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
print("| model | method | W/A | P | tile | accuracy | % of float | integer engine | sparsity | zlib / float32 | time | engine images/s | verify |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
for r in rows:
    share = f"{100 * r['accuracy'] / r['float']:.1f}%" if r.get("float") else "-"
    time = f"{r['axe_seconds']:.1f} s AXE, {r['seconds']:.0f} s run" if r.get("axe_seconds") is not None else f"{r['seconds']:.0f} s"
    print(f"| {r['model']} | {r['row']} | {r['wa']} | {r['p']} | {r['tile']} | {100 * r['accuracy']:.2f}% | {share} | "
          f"{100 * r['integer_accuracy']:.2f}%{'' if r.get('engine_images', 10000) == 10000 else ' (first ' + str(r['engine_images']) + ')'} | {100 * r['sparsity']:.1f}% | {r['zlib_percent']:.1f}% | {time} | "
          f"{r['engine_images_per_second']:.0f} | {'overflow-free' if r['overflow_free'] else 'CAN OVERFLOW'} |")
PY
echo "ptq-table: $out/table.md"
cat "$out/table.md"
