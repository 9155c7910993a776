#!/usr/bin/env bash
# Installs the Python packages the tests use as an independent reference (h5py, numpy).
# Tests only: the product never runs Python.
set -euo pipefail
if python3 -c "import h5py, numpy" 2>/dev/null; then
  echo "setup: python test references present (h5py, numpy)"
  exit 0
fi
echo "setup: installing python test references from PyPI: h5py numpy"
python3 -m pip install --quiet --disable-pip-version-check h5py numpy
