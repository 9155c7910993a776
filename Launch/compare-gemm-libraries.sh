#!/usr/bin/env bash
# Decision record: single-thread sgemm of the cnn's GEMM shapes with OpenBLAS (a2q's choice),
# BLIS and oneDNN (plus oneDNN's direct convolution of conv2), on this CPU.
# Installs libblis-dev and libdnnl-dev if missing (they do not change what a2q links).
set -euo pipefail
cd "$(dirname "$0")/gemm-libraries"
missing=()
for p in libblis-dev libdnnl-dev libopenblas-dev; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq && $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
out=$(mktemp -d); trap 'rm -rf "$out"' EXIT
cc -O2 -DUSE_OPENBLAS gemm_libraries.c -o "$out/openblas" $(pkg-config --cflags --libs openblas)
cc -O2 -DUSE_BLIS -I/usr/include/x86_64-linux-gnu gemm_libraries.c -o "$out/blis" -lblis -lm
cc -O2 -DUSE_DNNL gemm_libraries.c -o "$out/dnnl" -ldnnl
# The kernel set a2q would choose for OpenBLAS on this CPU (see a2q env), unless the user set one.
coretype=${OPENBLAS_CORETYPE:-}
if [ -z "$coretype" ] && [ -x ../../.build/release/a2q ]; then
  coretype=$(../../.build/release/a2q env | sed -n 's/^openblas: core \([A-Za-z0-9_]*\),.*/\1/p')
fi
OPENBLAS_CORETYPE=$coretype OPENBLAS_NUM_THREADS=1 "$out/openblas"
BLIS_NUM_THREADS=1 OMP_NUM_THREADS=1 "$out/blis"
OMP_NUM_THREADS=1 "$out/dnnl"
