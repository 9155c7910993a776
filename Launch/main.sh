#!/usr/bin/env bash
# The main job on a fresh machine: install what is missing, build, train the `cnn` with A2Q+
# (16-bit accumulators for the hidden layers) on Fashion-MNIST with 2 MPI ranks, export the
# integer model, prove it cannot overflow, and run it with real 16-bit wrap-around accumulators.
#
#   Launch/main.sh [extra a2q train options, e.g. --accumulator-bits 14 --epochs 3]
set -euo pipefail
cd "$(dirname "$0")/.."

Launch/setup.sh
echo "main: building a2q (release)"
swift build -c release --product a2q 2>&1 | tail -n 1
a2q=.build/release/a2q

out="Checkpoints/main-cnn-a2q+-$(date +%Y%m%d-%H%M%S)"
Launch/train.sh -np 2 --model cnn --quantizer a2q+ --accumulator-bits 16 --out "$out" "$@"

echo
echo "main: export the integer model"
"$a2q" export "$out/final.h5" --out "$out/model.h5"
echo
echo "main: verify that no input can overflow any layer's accumulator"
"$a2q" verify "$out/model.h5"
echo
echo "main: run the test set with the integer engine (wrap-around P-bit accumulators)"
"$a2q" eval --integer "$out/model.h5"
echo
echo "main: done; the run is in $out (config.json, metrics.jsonl, summary.json, final.h5, model.h5)"
