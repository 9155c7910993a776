#!/usr/bin/env bash
# Data-parallel training: wraps mpirun with what this machine needs and passes everything else
# to `a2q train`.
#
#   Launch/train.sh [-np R] [--hostfile FILE] [--threads T] [a2q train options...]
#
#   -np R           ranks (default 2)
#   --hostfile F    multi-host run (see README, "Several hosts"); uses the TCP transport, with
#                   TCP keep-alive so that a lost host ends the job in seconds
#   --threads T     OpenBLAS threads per rank (default 1)
set -euo pipefail
cd "$(dirname "$0")/.."

ranks=2
hostfile=""
threads=1
args=()
while [ $# -gt 0 ]; do
  case "$1" in
    -np|--np) ranks="$2"; shift 2 ;;
    --hostfile) hostfile="$2"; shift 2 ;;
    --threads) threads="$2"; shift 2 ;;
    *) args+=("$1"); shift ;;
  esac
done

if ! command -v mpirun >/dev/null 2>&1; then
  echo "train.sh: mpirun not found; install OpenMPI with Launch/setup.sh (Debian package openmpi-bin)" >&2
  exit 1
fi
if ! [[ "$ranks" =~ ^[1-9][0-9]*$ ]]; then
  echo "train.sh: -np must be a positive number of ranks (got '$ranks')" >&2
  exit 1
fi
if [ -n "$hostfile" ] && [ ! -r "$hostfile" ]; then
  echo "train.sh: hostfile '$hostfile' is not readable" >&2
  exit 1
fi

# A2Q_BINARY=/path/to/a2q runs that binary as it is (no build), e.g. a frozen copy for long sweeps.
binary=${A2Q_BINARY:-.build/release/a2q}
if [ -z "${A2Q_BINARY:-}" ] && { [ ! -x "$binary" ] || [ -n "$(find Sources Package.swift -newer "$binary" -print -quit 2>/dev/null)" ]; }; then
  echo "train.sh: building a2q (release)"
  swift build -c release --product a2q 2>&1 | tail -n 1
fi

mpi=(mpirun -np "$ranks" -x OPENBLAS_NUM_THREADS="$threads" -x SWIFT_BACKTRACE=color=no)
[ "$(id -u)" -eq 0 ] && mpi+=(--allow-run-as-root)
if [ -n "$hostfile" ]; then
  # Every host must hold the binary at the same absolute path.
  case "$binary" in /*) ;; *) binary=$PWD/$binary ;; esac
  # How mpirun reaches the hosts (ssh; the test hosts of Launch/netns-hosts.sh set their own).
  agent=${A2Q_RSH_AGENT:-ssh -o BatchMode=yes -o ConnectTimeout=10}
  # Check every host first, in parallel, so that an unreachable host or one without the binary
  # or the data is a message within seconds, not a launch that hangs.
  data=""
  for ((i = 0; i < ${#args[@]}; i++)); do [ "${args[$i]}" = "--data" ] && data=${args[$((i + 1))]:-}; done
  [ -z "$data" ] && data=/usr/share/datasets/fashion-mnist
  [ "$data" = synthetic ] && data=""
  case "$data" in ""|/*) ;; *) data=$PWD/$data ;; esac
  checks=$(mktemp -d /tmp/a2q-hosts.XXXXXX)
  hosts=$(grep -v '^[[:space:]]*#' "$hostfile" | awk 'NF { print $1 }' | sort -u)
  for host in $hosts; do
    (
      probe="test -x '$binary' || { echo 'no a2q binary at $binary'; exit 3; }"
      [ -n "$data" ] && probe="$probe; test -r '$data' || { echo 'no data at $data'; exit 3; }"
      if out=$(timeout 20 $agent "$host" "$probe" 2>&1); then exit 0; else rc=$?; fi
      case $rc in
        3) echo "train.sh: host $host: $out (copy the build and the data to the same paths on every host)" ;;
        124) echo "train.sh: host $host did not answer within 20 s (unreachable?)" ;;
        *) echo "train.sh: host $host is unreachable: $(echo "$out" | tail -n 1)" ;;
      esac > "$checks/$host"
    ) &
  done
  wait
  if [ -n "$(cat "$checks"/* 2>/dev/null)" ]; then
    cat "$checks"/* >&2
    rm -rf "$checks"
    echo "train.sh: fix the hosts above or remove them from $hostfile" >&2
    exit 1
  fi
  rm -rf "$checks"
  # TCP keep-alive on mpirun's control connections: a host whose link or daemon is lost is
  # noticed in about 5 s instead of Open MPI's default 300 s + probes.
  mpi+=(--hostfile "$hostfile" --mca plm_rsh_agent "$agent" --mca btl tcp,self
        --mca oob_tcp_keepalive_time 2 --mca oob_tcp_keepalive_intvl 1 --mca oob_tcp_keepalive_probes 3)
  # Extra mpirun options, word-split (the test hosts' interface selection, say).
  [ -n "${A2Q_MPI_OPTIONS:-}" ] && read -r -a extra <<< "$A2Q_MPI_OPTIONS" && mpi+=("${extra[@]}")
else
  cores=$(nproc)
  mpi+=(--mca btl self,vader)
  if [ "$ranks" -gt "$cores" ]; then
    mpi+=(--oversubscribe --bind-to none)
  elif [ $((ranks * threads)) -gt "$cores" ]; then
    mpi+=(--bind-to none)
  else
    mpi+=(--bind-to core)
  fi
fi
# The guard ends a job that aborted but whose mpirun waits for a frozen host
# (A2Q_ABORT_GRACE seconds after the abort, default 10).
exec Launch/mpirun-guard.sh "${A2Q_ABORT_GRACE:-10}" -- "${mpi[@]}" "$binary" train "${args[@]}"
