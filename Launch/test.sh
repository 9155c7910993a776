#!/usr/bin/env bash
# Sets up the machine (Debian packages), builds a2q, and runs the whole test suite.
# Usage: Launch/test.sh [extra `swift test` arguments, e.g. --filter Quantizer]
set -euo pipefail
cd "$(dirname "$0")/.."

Launch/setup.sh
Launch/setup-python.sh

echo "test: building (release, so the numerical tests run in seconds) and running the test suite"
export SWIFT_BACKTRACE=color=no
# The MPI tests start mpirun from the test process; one BLAS thread per rank keeps 2 cores sane.
export OPENBLAS_NUM_THREADS=1
swift build -c release --build-tests
swift test -c release --skip-build "$@"
