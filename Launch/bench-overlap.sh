#!/usr/bin/env bash
# The overlapped all-reduce against the fused one, over an emulated link between two test
# hosts (Launch/netns-hosts.sh; needs root): A2Q+, one rank per host, 32 images per rank and
# step, one float and one quantized epoch on 6,000 synthetic images, each setting run twice.
# Prints the run's images/s, the training loop's steps/s and ms/step, and the run's exposed
# all-reduce and backward seconds. A2Q_MODEL picks the network
# (default cnn; e.g. resnet20), A2Q_HOSTS the number of test hosts (default 2; 3 works too),
# A2Q_NETNS_DELAY a delay on every host's outgoing frames (e.g. 0.5ms; see netns-hosts.sh).
#
# A setting is BUCKET_MB[:PROGRESS[:ORDER]]: PROGRESS thread (the default) or layers (see
# --allreduce-progress), ORDER fixed (the default) or library (see --allreduce-order), e.g.
# `0 1 1:layers 1:thread:library`. The settings run in turn, twice over (interleaved).
#
#   Launch/bench-overlap.sh [RATE] [SETTING...]     (default: 1gbit, settings 0 (fused) 0.25 1)
set -euo pipefail
cd "$(dirname "$0")/.."
rate=${1:-1gbit}; shift || true
buckets=("$@"); [ ${#buckets[@]} -gt 0 ] || buckets=(0 0.25 1)
model=${A2Q_MODEL:-cnn}
hosts=${A2Q_HOSTS:-2}
batch=$((32 * hosts))
swift build -c release --product a2q 2>&1 | tail -n 1
echo "model: $model; hosts: $hosts, global batch $batch; link: $rate (tbf, both directions), delay ${A2Q_NETNS_DELAY:-none} (A2Q_NETNS_DELAY); $(.build/release/a2q env | grep -E '^cpu|kernel set' | tr '\n' ' ')"
# images/s is the whole run's (with evaluation, calibration, checkpoints); steps/s and ms/step
# are the training loop's own (data, forward, backward, exposed all-reduce, optimizer).
printf '%-22s %10s %10s %9s %13s %12s\n' setting images/s steps/s ms/step allreduce_s backward_s
for round in 1 2; do
  for setting in "${buckets[@]}"; do
    IFS=: read -r bucket progress order <<< "$setting"
    progress=${progress:-thread}; order=${order:-fixed}
    out=$(mktemp -d /tmp/a2q-overlap.XXXXXX)
    A2Q_NETNS_RATE=$rate Launch/netns-hosts.sh run "$hosts" -- -np "$hosts" -x OPENBLAS_NUM_THREADS=1 .build/release/a2q train \
      --model "$model" --quantizer a2q+ --data synthetic --train-subset 6000 --batch-size "$batch" --float-epochs 1 --epochs 1 \
      --calibration-batches 2 --log-every 100000 --check-every 100000 --allreduce-bucket-mb "$bucket" --allreduce-progress "$progress" \
      --allreduce-order "$order" --out "$out" --json 2>/dev/null \
      | tail -n 1 | python3 -c '
import json, sys
r = json.loads(sys.stdin.read())
seconds = r["phase_seconds"]
step_ms = 1000 * sum(seconds.values()) / r["steps"]
rate, allreduce, backward = r["images_per_second"], seconds["allreduce"], seconds["backward"]
print(f"{sys.argv[1]:<22} {rate:10.0f} {1000 / step_ms:10.2f} {step_ms:9.2f} {allreduce:13.2f} {backward:12.2f}")' "$setting"
    rm -rf "$out"
  done
done
