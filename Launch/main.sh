#!/usr/bin/env bash
# The main job on a fresh machine: install what is missing, build, train the `cnn` with A2Q+
# (16-bit accumulators for the hidden layers) on Fashion-MNIST with 2 MPI ranks, then report
# every layer's accumulator verdict.
#
#   Launch/main.sh [extra a2q train options, e.g. --accumulator-bits 14]
set -euo pipefail
cd "$(dirname "$0")/.."

Launch/setup.sh
echo "main: building a2q (release)"
swift build -c release --product a2q 2>&1 | tail -n 1

out="Checkpoints/main-cnn-a2q+-$(date +%Y%m%d-%H%M%S)"
Launch/train.sh -np 2 --model cnn --quantizer a2q+ --accumulator-bits 16 --out "$out" "$@"
echo "main: run folder $out (config.json, metrics.jsonl, summary.json)"
