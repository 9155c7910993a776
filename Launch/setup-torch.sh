#!/usr/bin/env bash
# Optional: installs PyPI's torch as a CPU build for the tests that export PyTorch models to ONNX
# (Tests/Python/torch_models.py, the ONNX importer's references). Launch/test.sh calls it and
# goes on without torch when it fails (those tests are then skipped with the reason). Runs
# Launch/setup-python.sh first (onnx, onnxruntime and onnxscript, which the dynamo
# exporter needs, are pinned there).
#
# What it installs (measured 2026-12-07, Python 3.11, on this project's machine):
#   torch 2.13.0+cpu, a CPU-only wheel of 192 MB that the machine's pip finds in its local wheel
#   folder (/opt/wheels, pip's find-links; A2Q_TORCH_WHEELS names another), installed with
#   --no-deps: 754 MB on disk, about 15 s. It needs no nvidia-* package.
#   Its pure-Python dependencies, pinned below (most are already there from setup-python.sh).
#   Not setuptools: torch's metadata asks for setuptools >= 77.0.3, which only its C++-extension
#   builder uses; import, export and training run with the machine's setuptools 65.5, and the
#   shared environment's setuptools is left alone (setuptools 81+ no longer ships pkg_resources).
#   pip then prints "torch 2.13.0+cpu requires setuptools>=77.0.3, but you have setuptools
#   65.5.0": expected, and harmless for these tests.
# PyPI itself has no CPU build of torch for Linux x86_64: its wheels (2.13.0: 527 MB; 2.15.0:
# 539 MB) pull the CUDA 13 stack (nvidia-cudnn, -cublas, -nccl, ..., triton): 2.8 GB to
# download, about 4.6 GB installed (torch 1.2 GB, nvidia 2.7 GB, triton 0.7 GB; 72 s here,
# where PyPI answers fast). With --no-deps such a wheel does not import ("libcudart.so.13:
# cannot open shared object file", then "ValueError: libcublasLt.so.*[0-9] not found").
# When the CPU wheel is not to be had, this script says so and exits 1; A2Q_TORCH_CUDA=1 installs
# PyPI's torch 2.13.0 with that stack instead (and then setuptools 84.2.1, which it asks for).
#
# Idempotent: when every pin is installed and torch imports, nothing is downloaded.
set -euo pipefail
cd "$(dirname "$0")/.."

Launch/setup-python.sh

torch_cpu=torch==2.13.0+cpu
# torch's pure-Python dependencies (pip's resolution on the tested machine).
constraints=(filelock==4.3.2 fsspec==2026.9.0 jinja2==3.1.6 MarkupSafe==3.0.3 mpmath==1.3.0
             networkx==3.6.1 sympy==1.14.0 typing-extensions==4.15.0)
wheels="${A2Q_TORCH_WHEELS:-/opt/wheels}"

# Prints the pins whose exact version is not installed (one per line); nothing when all are.
mismatched() {
  python3 - "$@" <<'PY'
import importlib.metadata as metadata, sys
for pin in sys.argv[1:]:
    name, version = pin.split("==")
    try:
        installed = metadata.version(name)
    except metadata.PackageNotFoundError:
        installed = None
    if installed != version:
        print(f"{pin} (installed: {installed or 'none'})")
PY
}

torch_works() {
  python3 -c "import torch, torch.onnx; torch.nn.Conv2d(1, 1, 3)(torch.zeros(1, 1, 4, 4))" 2>/dev/null
}

# A CUDA build from PyPI installed earlier with A2Q_TORCH_CUDA=1 counts as present while it works.
if [ "${A2Q_TORCH_CUDA:-0}" = 1 ]; then wanted=(torch==2.13.0); else wanted=("$torch_cpu"); fi
wrong="$(mismatched "${wanted[@]}" "${constraints[@]}")"
if [ -z "$wrong" ] && torch_works; then
  echo "setup-torch: torch present at the pinned version (${wanted[*]})"
  exit 0
fi
echo "setup-torch: installing torch and its pure-Python dependencies at the pinned versions; not as pinned:"
echo "$wrong" | sed 's/^/  /'
constraint_file="$(mktemp)"
trap 'rm -f "$constraint_file"' EXIT
printf '%s\n' "${constraints[@]}" >"$constraint_file"
pip_install=(python3 -m pip install --quiet --disable-pip-version-check)
[ -d "$wheels" ] && pip_install+=(--find-links "$wheels")

if [ "${A2Q_TORCH_CUDA:-0}" = 1 ]; then
  echo "setup-torch: A2Q_TORCH_CUDA=1: PyPI's torch 2.13.0 with the CUDA 13 stack (2.8 GB download, 4.6 GB installed)"
  printf '%s\n' setuptools==84.2.1 >>"$constraint_file"
  # (not the local CPU wheel, which also matches ==2.13.0)
  "${pip_install[@]}" -c "$constraint_file" "torch==2.13.0,!=2.13.0+cpu"
else
  if ! "${pip_install[@]}" --no-deps "$torch_cpu"; then
    echo "setup-torch: $torch_cpu is not to be had here (it comes from a local wheel folder, $wheels," >&2
    echo "  not from PyPI, whose Linux torch needs 2.8 GB of CUDA packages: A2Q_TORCH_CUDA=1 installs that)" >&2
    exit 1
  fi
  "${pip_install[@]}" -c "$constraint_file" "${constraints[@]%%==*}"
fi

wrong="$(mismatched "${wanted[@]}" "${constraints[@]}")"
if [ -n "$wrong" ] || ! torch_works; then
  echo "setup-torch: after installing, torch does not import or these are not at the pinned version:" >&2
  echo "$wrong" | sed 's/^/  /' >&2
  exit 1
fi
echo "setup-torch: done ($(python3 -c 'import torch; print("torch", torch.__version__)'))"
