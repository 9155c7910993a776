#!/usr/bin/env bash
# Installs the Python packages the tests use as independent references and real consumers:
# h5py and numpy (checkpoints, the NumPy integer engine), onnx, onnxruntime and qonnx (the
# exported ONNX/QONNX files), pillow (image files, the bicubic filter). Tests only: the product
# never runs Python (Launch/setup-images.sh also uses pillow, at this pin, to prepare the photo set).
#
# Every package is pinned to the version the test suite was run with (Python 3.11), and so is
# everything they pull in, so that a fresh machine gets the same references. Idempotent: when
# every pinned version is installed, nothing is downloaded; a missing package or another
# version is (re)installed at the pinned version.
set -euo pipefail

# What the tests import.
packages=(h5py==3.16.0 numpy==2.4.6 onnx==1.23.2 onnxruntime==1.32.0 qonnx==1.0.0 pillow==13.0.0)
# What those depend on (pip's resolution on the tested machine), pinned as constraints.
constraints=(attrs==26.1.0 bitstring==5.0.0 clize==5.0.2 docutils==0.19 flatbuffers==25.12.19
             importlib-metadata==10.2.0 lazy-importer==0.1.0 ml-dtypes==0.7.0 mpmath==1.3.0 od==2.0.2
             onnx-ir==1.1.0 onnxscript==0.7.2 packaging==26.2 protobuf==7.36.2 sigtools==4.0.1
             sympy==1.14.0 tibs==2.0.2 toposort==1.10 typing-extensions==4.15.0 zipp==4.1.2)

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

wrong="$(mismatched "${packages[@]}" "${constraints[@]}")"
if [ -z "$wrong" ] && python3 -c "import h5py, numpy, onnx, onnxruntime, qonnx, PIL" 2>/dev/null; then
  echo "setup: python test references present at the pinned versions (${packages[*]})"
  exit 0
fi
echo "setup: installing python test references from PyPI at the pinned versions; not as pinned:"
echo "$wrong" | sed 's/^/  /'
constraint_file="$(mktemp)"
trap 'rm -f "$constraint_file"' EXIT
printf '%s\n' "${constraints[@]}" >"$constraint_file"
python3 -m pip install --quiet --disable-pip-version-check -c "$constraint_file" "${packages[@]}"
wrong="$(mismatched "${packages[@]}")"
if [ -n "$wrong" ]; then
  echo "setup: after installing, these are still not at the pinned version:" >&2
  echo "$wrong" | sed 's/^/  /' >&2
  exit 1
fi
echo "setup: done"
