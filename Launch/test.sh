#!/usr/bin/env bash
# Sets up the machine (Debian packages), builds a2q, and runs the whole test suite.
# Usage: Launch/test.sh [extra `swift test` arguments, e.g. --filter Quantizer]
set -euo pipefail
cd "$(dirname "$0")/.."

Launch/setup.sh
Launch/setup-python.sh

echo "test: building (debug) and running the test suite"
export SWIFT_BACKTRACE=color=no
# The MPI tests start mpirun from the test process; one BLAS thread per rank keeps 2 cores sane.
export OPENBLAS_NUM_THREADS=1
swift build --build-tests
swift test --skip-build "$@"
