#!/usr/bin/env bash
# The ESPCN ×2 table of the README (issue 25): on the default photo set's test split, bicubic,
# float, QAT and A2Q/A2Q+ at W8A8 P = 20/16/14 and W4A4 P = 13, each evaluated as the
# fake-quantized graph and by the integer engine, with sparsity and `a2q verify`'s verdict.
#
# The first run is the default recipe as a user runs it (Launch/configs/espcn.json: the float
# phase, conversion, the quantized phase; 2 MPI ranks); every other run starts from that run's
# float phase (float.h5, `--init-from`) and trains the recipe's quantized epochs (W4A4 at
# --lr 1e-3, below). The float row is that float phase. Finished runs are skipped when the script is restarted. Writes
# OUT/table.md, docs/espcn-results.{csv,json}, docs/espcn-tradeoff.svg and the picture
# docs/espcn-x2.png (a test image: input, bicubic, A2Q+ P=16's integer output, original).
#
#   Launch/espcn-table.sh [--out DIR] [--config FILE] [--runs "espcn-w8a8-a2q-p16 ..."]
set -euo pipefail
cd "$(dirname "$0")/.."

out=Checkpoints/espcn-table
config=Launch/configs/espcn.json
only=""
while [ $# -gt 0 ]; do
  case "$1" in
    --out) out="$2"; shift 2 ;;
    --config) config="$2"; shift 2 ;;
    --runs) only="$2"; shift 2 ;;
    *) echo "espcn-table.sh: unknown option $1" >&2; exit 1 ;;
  esac
done
if [ -z "${A2Q_BINARY:-}" ]; then swift build -c release --product a2q 2>&1 | tail -n 1; fi
a2q=${A2Q_BINARY:-.build/release/a2q}
mkdir -p "$out"
first=espcn-w8a8-a2q+-p16

run() { # name, a2q train options...
  local name=$1; shift
  local dir="$out/$name"
  if [ -n "$only" ] && [[ " $only " != *" $name "* ]]; then return; fi
  if [ ! -f "$dir/summary.json" ]; then
    echo "espcn-table: $name ($(date -u +%H:%M:%S))"
    rm -rf "$dir"
    local start=$SECONDS
    Launch/train.sh -np 2 --config "$config" --out "$dir" --log-every 100000 "$@" > "$out/$name.log" 2>&1 \
      || { echo "espcn-table: $name failed, see $out/$name.log"; return; }
    echo "espcn-table: $name took $((SECONDS - start)) s"
  fi
  # Written under a temporary name first: a restart never mistakes a cut-short file for a result.
  if [ ! -f "$dir/integer.json" ]; then
    "$a2q" eval --integer "$dir/final.h5" --json > "$dir/integer.json.part" && mv "$dir/integer.json.part" "$dir/integer.json"
  fi
  if [ ! -f "$dir/verify.json" ]; then
    "$a2q" verify "$dir/final.h5" --json > "$dir/verify.json.part" || true   # exit 2 = can overflow; recorded
    [ -s "$dir/verify.json.part" ] && mv "$dir/verify.json.part" "$dir/verify.json"
  fi
}

# The default recipe (float phase + A2Q+ W8A8 P=16), then everything else from its float phase.
run "$first" --quantizer a2q+ --accumulator-bits 16
float=(--init-from "$out/$first/float.h5")
run espcn-w8a8-qat-p32 --quantizer qat "${float[@]}"
for p in 20 16 14; do
  for q in a2q a2q+; do
    [ "$q$p" = "a2q+16" ] && continue
    run "espcn-w8a8-$q-p$p" --quantizer "$q" --accumulator-bits "$p" "${float[@]}"
  done
done
# W4A4: the 4-bit activations also carry the image's path (the bilinear start), which needs the
# float rate to re-learn: these rows fine-tune at --lr 1e-3 (W8A8 at the recipe's 3e-4).
w4=(--weight-bits 4 --act-bits 4 --lr 1e-3)
run espcn-w4a4-qat-p32 --quantizer qat "${w4[@]}" "${float[@]}"
for q in a2q a2q+; do
  run "espcn-w4a4-$q-p13" --quantizer "$q" --accumulator-bits 13 "${w4[@]}" "${float[@]}"
done

"$a2q" report "$out" --csv docs/espcn-results.csv --json docs/espcn-results.json --svg docs/espcn-tradeoff.svg \
  --markdown "$out/table.md" > /dev/null
# The picture: a 160×120 region of a test photograph (skimage's coffee), ×2 by A2Q+ P=16's integer engine.
"$a2q" upscale "$out/$first/final.h5" "${A2Q_PHOTOS:-/usr/local/share/a2q/photos}/images/test/skimage-coffee.png" --from-original \
  --region 176,110,160,120 --out "$out/coffee-x2.png" --compare docs/espcn-x2.png
cat "$out/table.md"
