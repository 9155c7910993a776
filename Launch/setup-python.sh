#!/usr/bin/env bash
# Installs the Python packages the tests use as independent references and real consumers:
# h5py and numpy (checkpoints, the NumPy integer engine), onnx, onnxruntime and qonnx (the
# exported ONNX/QONNX files). Tests only: the product never runs Python.
set -euo pipefail
packages="h5py numpy onnx onnxruntime qonnx"
if python3 -c "import h5py, numpy, onnx, onnxruntime, qonnx" 2>/dev/null; then
  echo "setup: python test references present ($packages)"
  exit 0
fi
echo "setup: installing python test references from PyPI: $packages"
python3 -m pip install --quiet --disable-pip-version-check $packages
