#!/usr/bin/env bash
# The papers' motivation, measured: a plain QAT cnn and A2Q+ cnns run by the integer engine
# with the hidden weight layers (conv2, fc1: the layers A2Q+ constrains) in P-bit registers,
# P = 16 and 14, wide (exact) and wrap-around. Like with like: the first and last layers keep
# their own 32-bit accumulators in every row. Prints the table the README shows.
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

echo
echo "hidden layers in P-bit registers (--accumulator-bits P); 10,000 test images"
printf '%-10s %-3s %-5s %9s  %-28s %-28s\n' model P mode accuracy "dot products: final overflow" "any partial sum out of range"
row() { # run, P, mode
  "$a2q" eval --integer "$folder/$1/final.h5" --accumulator-bits "$2" --overflow "$3" --json \
    | python3 -c '
import json, sys
r = json.load(sys.stdin)
hidden = r["layers"][1:-1]   # all weight layers but the first and the last
assert all(l["accumulator_bits"] == int(sys.argv[2]) for l in hidden)
total = sum(l["dot_products"] for l in hidden)
final = sum(l["final_overflows"] for l in hidden)
partial = sum(l["partial_overflows"] for l in hidden)
accuracy = 100 * r["accuracy"]
print(f"{sys.argv[1]:<10} {sys.argv[2]:<3} {sys.argv[3]:<5} {accuracy:8.2f}%  "
      f"{final:>11,d} of {total:>13,d} {partial:>11,d} of {total:>13,d}")' "$1" "$2" "$3"
}
for mode in wide wrap; do row qat 16 "$mode"; done
for mode in wide wrap; do row qat 14 "$mode"; done
for mode in wide wrap; do row a2q+-p16 16 "$mode"; done
for mode in wide wrap; do row a2q+-p14 14 "$mode"; done
