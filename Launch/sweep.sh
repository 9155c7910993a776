#!/usr/bin/env bash
# The accuracy/accumulator trade-off on Fashion-MNIST (2 MPI ranks): from one shared float
# checkpoint per model, fine-tune W8A8 and W4A4 models with a2q and a2q+ for each P, plus plain
# qat (P=32) and an EP-init ablation; evaluate each with the fake-quantized graph and the
# integer engine, verify it, and collect results.csv, results.json and the plot with `a2q report`.
# Finished runs are skipped when the sweep is restarted.
#
#   Launch/sweep.sh [--models "cnn mlp"] [--epochs E] [--float-epochs F] [--lr LR] [--out DIR]
#
# The sweep keeps its own settings (the committed docs/results.* came from them), not
# `a2q train`'s defaults: 2 float epochs, then 1 quantized epoch per run at Adam 1e-3.
# With these the W8A8 cnn part took
# 14 minutes on this 2-core machine and the whole sweep (cnn and mlp, W8A8 and W4A4, the EP-init
# ablation, 90 runs) 34 minutes; a run costs about 20 s + 20 s per epoch, so --epochs 16 gives
# the two-hour W8A8 cnn sweep.
set -euo pipefail
cd "$(dirname "$0")/.."

models="cnn mlp"; epochs=1; float_epochs=2; lr=1e-3; out=Checkpoints/sweep
while [ $# -gt 0 ]; do
  case "$1" in
    --models) models="$2"; shift 2 ;;
    --epochs) epochs="$2"; shift 2 ;;
    --float-epochs) float_epochs="$2"; shift 2 ;;
    --lr) lr="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    *) echo "sweep.sh: unknown option $1" >&2; exit 1 ;;
  esac
done
# A2Q_BINARY=/path/to/a2q uses that binary as it is (Launch/train.sh honours it too).
if [ -z "${A2Q_BINARY:-}" ]; then swift build -c release --product a2q 2>&1 | tail -n 1; fi
a2q=${A2Q_BINARY:-.build/release/a2q}
mkdir -p "$out"

run() { # name, a2q train options... (float-* runs are references: no integer model)
  local name=$1; shift
  local dir="$out/$name"
  if [ -f "$dir/summary.json" ] && { [[ "$name" == float-* ]] || { [ -f "$dir/integer.json" ] && [ -f "$dir/verify.json" ]; }; }; then
    echo "sweep: $name already done"; return
  fi
  echo "sweep: $name"
  rm -rf "$dir"
  Launch/train.sh -np 2 --out "$dir" --log-every 100000 --lr "$lr" "$@" > "$out/$name.log" 2>&1
  [[ "$name" == float-* ]] && return
  "$a2q" eval --integer "$dir/final.h5" --json > "$dir/integer.json"
  "$a2q" verify "$dir/final.h5" --json > "$dir/verify.json" || true   # exit 2 = can overflow; recorded
}

for model in $models; do
  float="float-$model"
  run "$float" --model "$model" --quantizer float --epochs "$float_epochs"
  for wa in 8 4; do
    bits=(--weight-bits "$wa" --act-bits "$wa")
    run "$model-w${wa}a${wa}-qat-p32" --model "$model" --quantizer qat "${bits[@]}" \
        --init-from "$out/$float/final.h5" --epochs "$epochs"
    for p in 20 18 16 15 14 13 12 11 10; do
      for q in a2q a2q+; do
        run "$model-w${wa}a${wa}-$q-p$p" --model "$model" --quantizer "$q" --accumulator-bits "$p" "${bits[@]}" \
            --init-from "$out/$float/final.h5" --epochs "$epochs"
      done
    done
  done
  for p in 16 14 12; do
    for init in ep naive; do
      run "$model-w8a8-a2q+-p$p-init-$init" --model "$model" --quantizer a2q+ --accumulator-bits "$p" --init "$init" \
          --init-from "$out/$float/final.h5" --epochs "$epochs"
    done
  done
done
"$a2q" report "$out" --csv docs/results.csv --json docs/results.json --svg docs/tradeoff.svg
