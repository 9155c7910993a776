#!/usr/bin/env bash
# The papers' motivation, measured: a plain QAT cnn and an A2Q+ cnn, both run by the integer
# engine with 16- and 14-bit wrap-around accumulators. Prints overflow counts and accuracy.
#
#   Launch/demo-overflow.sh [FOLDER]   (default Checkpoints/demo-overflow; reuses runs found there)
set -euo pipefail
cd "$(dirname "$0")/.."
folder=${1:-Checkpoints/demo-overflow}
swift build -c release --product a2q 2>&1 | tail -n 1
a2q=.build/release/a2q

train() { # name, a2q train options...
  local name=$1; shift
  if [ ! -f "$folder/$name/final.h5" ]; then
    Launch/train.sh -np 2 --model cnn --out "$folder/$name" --log-every 100000 "$@"
  fi
}
train qat --quantizer qat --epochs 3
train a2q+-p16 --quantizer a2q+ --accumulator-bits 16
train a2q+-p14 --quantizer a2q+ --accumulator-bits 14

printf '\n%-10s %-6s %-10s %10s %16s %14s\n' model P overflow accuracy "final overflows" "dot products"
for run in qat a2q+-p16 a2q+-p14; do
  for p in 16 14; do
    case "$run" in a2q+-p16) [ "$p" = 16 ] || continue ;; a2q+-p14) [ "$p" = 14 ] || continue ;; esac
    for mode in wide wrap; do
      "$a2q" eval --integer "$folder/$run/final.h5" --accumulator-bits "$p" --overflow "$mode" --json \
        | python3 -c '
import json, sys
r = json.load(sys.stdin)
over = sum(l["final_overflows"] for l in r["layers"]); total = sum(l["dot_products"] for l in r["layers"])
print(f"{sys.argv[1]:<10} {sys.argv[2]:<6} {sys.argv[3]:<10} {100*r[\"accuracy\"]:9.2f}% {over:16d} {total:14d}")' "$run" "$p" "$mode"
    done
  done
done
