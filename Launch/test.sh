#!/usr/bin/env bash
# Sets up the machine (Debian packages), builds a2q, and runs the whole test suite.
# Usage: Launch/test.sh [extra `swift test` arguments, e.g. --filter Quantizer]
#
# On a CPU with AVX-512, the CPU-dependent checks (kernel choice, integer kernels, the integer
# engine's P-bit registers against NumPy, layers on oneDNN, bitwise training properties, the
# exports in onnxruntime) run a second time at the AVX2 tier of the project's AMD EPYC (Zen 3) machines:
# A2Q_CPU_FEATURES_LIMIT=avx2 caps a2q's own kernels, OpenBLAS's kernel set (a2q picks Zen or
# Haswell) and oneDNN's ISA (a2q sets ONEDNN_MAX_CPU_ISA=AVX2). A2Q_AVX2_TIER=0 skips that pass.
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
# torch (a CPU build, for the tests that export PyTorch models) where this machine's pip offers
# one; elsewhere those tests are skipped with the reason and the torch-free round trip still runs.
if ! Launch/setup-torch.sh >/dev/null 2>&1; then
  echo "test: no CPU build of torch to be had here (Launch/setup-torch.sh); the PyTorch-export tests will be skipped"
fi

echo "test: building (release, so the numerical tests run in seconds) and running the test suite"
export SWIFT_BACKTRACE=color=no
# The MPI tests start mpirun from the test process; one BLAS thread per rank keeps 2 cores sane.
export OPENBLAS_NUM_THREADS=1
swift build -c release --build-tests
swift test -c release --skip-build "$@"

# The AVX2-tier pass (only for the whole suite, and only where the CPU is above that tier).
# (Kept to about 4 minutes: the engine-against-fake-quant run over four trained models and the
# bitwise-resume matrix stay in the first pass only.)
avx2_tier=(IntegerKernelTests IntegerPathTests BLASSelectionTests LayerGradientTests
           "IntegerEngineTests/overflowSimulationMatchesRegisterModel" "IntegerEngineTests/accumulatorAwareModelsNeverOverflow"
           "MPITests/overlappedAllReduce" "OrderedSumTests/sharedMemory" "ExportFormatTests/consumersAgree")
if [ $# -eq 0 ] && [ "${A2Q_AVX2_TIER:-1}" != 0 ] && grep -qw avx512f /proc/cpuinfo; then
  echo "test: the CPU-dependent checks again at the AVX2 tier (A2Q_CPU_FEATURES_LIMIT=avx2): ${avx2_tier[*]}"
  filters=()
  for name in "${avx2_tier[@]}"; do filters+=(--filter "$name"); done
  A2Q_CPU_FEATURES_LIMIT=avx2 swift test -c release --skip-build "${filters[@]}"
elif [ $# -eq 0 ]; then
  echo "test: no AVX2-tier pass (the CPU has no AVX-512, so the run above was at its own tier, or A2Q_AVX2_TIER=0)"
fi
