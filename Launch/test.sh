#!/usr/bin/env bash
# Sets up the machine (Debian packages), builds a2q, and runs the whole test suite.
# Usage: Launch/test.sh [extra `swift test` arguments, e.g. --filter Quantizer]
set -euo pipefail
cd "$(dirname "$0")/.."

# The tests' scratch files (runs, checkpoints, exports: ~900 MB) go to a folder of this run,
# removed when the run ends however it ends. Without test.sh, the tests use
# $TMPDIR/a2q-tests/run-<pid> and remove it when the test process exits.
A2Q_TEST_SCRATCH="$(mktemp -d "${TMPDIR:-/tmp}/a2q-tests.XXXXXX")"
export A2Q_TEST_SCRATCH
trap 'rm -rf "$A2Q_TEST_SCRATCH"' EXIT
trap 'exit 129' HUP; trap 'exit 130' INT; trap 'exit 143' TERM  # so that EXIT runs on these too

Launch/setup.sh
Launch/setup-python.sh

echo "test: building (release, so the numerical tests run in seconds) and running the test suite"
export SWIFT_BACKTRACE=color=no
# The MPI tests start mpirun from the test process; one BLAS thread per rank keeps 2 cores sane.
export OPENBLAS_NUM_THREADS=1
swift build -c release --build-tests
swift test -c release --skip-build "$@"
