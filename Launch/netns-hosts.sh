#!/usr/bin/env bash
# Test hosts on one machine: Linux network namespaces joined by veth pairs to a bridge, in a
# private /24 of 10.213.0.0/16 that exists only inside this machine. Each namespace is a
# "host" with its own address; mpirun starts ranks in them through an rsh agent that enters the
# namespace, and the ranks talk over TCP (--mca btl tcp,self), as on a real network. The file
# system is shared, as with NFS. Needs root (or CAP_NET_ADMIN) and iproute2.
#
#   Launch/netns-hosts.sh run HOSTS [--fault WHAT HOST SECONDS] -- MPIRUN-ARGS...
#       creates HOSTS namespaces, runs `mpirun --hostfile … MPIRUN-ARGS` over them, and always
#       tears everything down (on success, failure, Ctrl-C or TERM). Exits with mpirun's status.
#       --fault injects, SECONDS after the start, one of: link-down (the host's link goes
#       down), kill (SIGKILL to the host's ranks), freeze (SIGSTOP to every process on it; after
#       mpirun ends the host is thawed with SIGCONT and gets 10 s to let its processes end).
#       With A2Q_FAULT_AFTER=PATH the SECONDS count from the moment PATH exists.
#       With A2Q_NETNS_RATE=1gbit (tc's units) every host's link is limited to that rate.
#       With A2Q_NETNS_DELAY=0.5ms (or 50us) every host's outgoing frames are delayed by that
#       much (a round trip between two hosts takes twice the delay more), as `tc netem delay`
#       on each host's interface would do: a delay line (Launch/delay-line.c, compiled on first
#       use with cc) between two TAP devices replaces the host's veth pair, since netem is not
#       in every kernel.
#       It prints the fault's and mpirun's end times, then "netns: leftover processes: N"
#       (processes still running on any test host, killed before teardown).
#   Launch/netns-hosts.sh run HOSTS [--unreachable H] --shell -- COMMAND...
#       the same hosts (host H's link down), but runs COMMAND with A2Q_TEST_HOSTFILE,
#       A2Q_RSH_AGENT and A2Q_MPI_OPTIONS set, for Launch/train.sh --hostfile "$A2Q_TEST_HOSTFILE".
#   Launch/netns-hosts.sh agent HOST COMMAND...   the rsh agent (mpirun calls it; like ssh, it
#       fails with status 255 for a host whose link is down)
#   Launch/netns-hosts.sh clean                   removes test hosts left by runs that died
#
# Example (2 hosts, 1 rank each):
#   Launch/netns-hosts.sh run 2 -- -np 2 .build/release/a2q train --model cnn --out /tmp/x
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
state_root=${A2Q_NETNS_STATE:-/tmp/a2q-netns}

ns_name() { echo "a2q$1h$2"; }         # run id, host index

clean_run() { # run id
  local id=$1 dir=$state_root/$1
  [ -f "$dir/delay.pids" ] && kill -KILL $(cat "$dir/delay.pids") 2>/dev/null || true
  for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep "^a2q${id}h" || true); do
    local pids
    pids=$(ip netns pids "$ns" 2>/dev/null || true)
    [ -n "$pids" ] && kill -CONT $pids 2>/dev/null || true
    [ -n "$pids" ] && kill -KILL $pids 2>/dev/null || true
    ip netns del "$ns" 2>/dev/null || true
  done
  for link in $(ip -o link show 2>/dev/null | awk -F': ' '{print $2}' | cut -d@ -f1 | grep "^a2q${id}[vb]" || true); do
    ip link del "$link" 2>/dev/null || true
  done
  rm -rf "$dir"
}

# The delay line's binary, compiled once from Launch/delay-line.c (again when the source changes).
delay_line() {
  local binary=$state_root/delay-line source=$here/delay-line.c
  if [ ! -x "$binary" ] || [ "$source" -nt "$binary" ]; then
    local compiler=${CC:-$(command -v cc || command -v gcc || command -v clang || true)}
    [ -n "$compiler" ] || { echo "netns: A2Q_NETNS_DELAY needs a C compiler (cc) for $source" >&2; return 1; }
    mkdir -p "$state_root"
    "$compiler" -O2 -o "$binary.tmp" "$source" || { echo "netns: $compiler could not compile $source" >&2; return 1; }
    mv "$binary.tmp" "$binary"
  fi
  echo "$binary"
}

# A delay in tc's units (500us, 0.5ms, 1ms) in microseconds.
delay_microseconds() {
  case "$1" in
    *us) echo "${1%us}" ;;
    *ms) awk -v v="${1%ms}" 'BEGIN { printf "%g", v * 1000 }' ;;
    *) echo "netns: A2Q_NETNS_DELAY=$1: give it with a unit, e.g. 0.5ms or 50us" >&2; return 1 ;;
  esac
}

case "${1:-}" in
agent)
  shift
  host=$1; shift
  dir=$(dirname "$(grep -l -w "$host" "$state_root"/*/hosts 2>/dev/null | head -n 1)")
  ns=$(awk -v h="$host" '$1 == h { print $2 }' "$dir/hosts")
  [ -n "$ns" ] || { echo "ssh: Could not resolve hostname $host: Name or service not known" >&2; exit 255; }
  # As ssh would: a host whose link is down cannot be reached.
  index=$(awk -v h="$host" '$1 == h { print NR }' "$dir/hosts")
  if ip -o link show "a2q$(basename "$dir")v$index" 2>/dev/null | grep -q "state DOWN"; then
    sleep 2
    echo "ssh: connect to host $host port 22: No route to host" >&2
    exit 255
  fi
  # Each test host also gets its own host name (a UTS namespace): testhost1, testhost2, ...
  name=testhost$(awk -v h="$host" '$1 == h { print NR }' "$dir/hosts")
  exec ip netns exec "$ns" unshare --uts /bin/sh -c "hostname $name; $*"
  ;;
clean)
  for dir in "$state_root"/*; do
    [ -d "$dir" ] || continue
    id=$(basename "$dir")
    owner=$(cat "$dir/owner" 2>/dev/null || echo 0)
    kill -0 "$owner" 2>/dev/null || clean_run "$id"
  done
  ;;
run)
  shift
  hosts=$1; shift
  fault=()
  unreachable=""
  shell=""
  while [ $# -gt 0 ] && [ "$1" != "--" ]; do
    case "$1" in
      --fault) fault=("$2" "$3" "$4"); shift 4 ;;
      --unreachable) unreachable=$2; shift 2 ;;
      --shell) shell=1; shift ;;
      *) echo "netns: unknown option $1" >&2; exit 2 ;;
    esac
  done
  [ "${1:-}" = "--" ] && shift
  [ "$hosts" -ge 1 ] && [ "$hosts" -le 8 ] || { echo "netns: 1 to 8 hosts" >&2; exit 2; }
  "$0" clean
  id=$$
  subnet="10.213.$((id % 250 + 1))"
  dir=$state_root/$id
  mkdir -p "$dir"
  echo $$ > "$dir/owner"
  fault_pid=
  trap 'status=$?; [ -n "$fault_pid" ] && { kill "$fault_pid" 2>/dev/null || true; }; clean_run '"$id"' || true; exit $status' EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  if [ -n "${A2Q_NETNS_DELAY:-}" ]; then
    delay_us=$(delay_microseconds "$A2Q_NETNS_DELAY")
    delay_binary=$(delay_line)
  fi
  bridge="a2q${id}b"
  ip link add "$bridge" type bridge
  ip addr add "$subnet.1/24" dev "$bridge"
  ip link set "$bridge" up
  : > "$dir/hosts"; : > "$dir/hostfile"
  for h in $(seq 1 "$hosts"); do
    ns=$(ns_name "$id" "$h")
    ip netns add "$ns"
    if [ -n "${A2Q_NETNS_DELAY:-}" ]; then
      # Host side a2q<id>e<h> (moved into the namespace as eth0), bridge side a2q<id>v<h>.
      "$delay_binary" "a2q${id}e$h" "a2q${id}v$h" "$delay_us" > "$dir/delay$h.log" 2>&1 &
      echo $! >> "$dir/delay.pids"
      for _ in $(seq 1 50); do grep -q ready "$dir/delay$h.log" 2>/dev/null && break; sleep 0.1; done
      grep -q ready "$dir/delay$h.log" || { echo "netns: the delay line did not start: $(cat "$dir/delay$h.log")" >&2; exit 1; }
      ip link set "a2q${id}e$h" netns "$ns"
      ip -n "$ns" link set "a2q${id}e$h" name eth0
    else
      ip link add "a2q${id}v$h" type veth peer name eth0 netns "$ns"
    fi
    ip link set "a2q${id}v$h" master "$bridge" up
    ip -n "$ns" addr add "$subnet.$((10 + h))/24" dev eth0
    ip -n "$ns" link set eth0 up
    ip -n "$ns" link set lo up
    if [ -n "${A2Q_NETNS_RATE:-}" ]; then
      # An emulated link: a token bucket at this rate in both directions (netem is not in
      # every kernel; tbf is).
      tc qdisc add dev "a2q${id}v$h" root tbf rate "$A2Q_NETNS_RATE" burst 256kb latency 100ms
      ip netns exec "$ns" tc qdisc add dev eth0 root tbf rate "$A2Q_NETNS_RATE" burst 256kb latency 100ms
    fi
    echo "$subnet.$((10 + h)) $ns" >> "$dir/hosts"
    echo "$subnet.$((10 + h)) slots=1" >> "$dir/hostfile"
  done
  [ -n "$unreachable" ] && ip link set "a2q${id}v$unreachable" down
  if [ -n "$shell" ]; then
    # Run a command (Launch/train.sh --hostfile, say) that starts mpirun itself over the hosts.
    set +e
    A2Q_RSH_AGENT="$here/netns-hosts.sh agent" \
    A2Q_MPI_OPTIONS="--mca btl_tcp_if_include $subnet.0/24 --mca oob_tcp_if_include $subnet.0/24" \
    A2Q_TEST_HOSTFILE="$dir/hostfile" "$@"
    status=$?
    set -e
    echo "netns: command ended at $(date +%s.%N) with status $status" >&2
    exit $status
  fi
  if [ ${#fault[@]} -gt 0 ]; then
    (
      # With A2Q_FAULT_AFTER=PATH the delay counts from the moment PATH exists (a checkpoint).
      if [ -n "${A2Q_FAULT_AFTER:-}" ]; then
        while [ ! -e "$A2Q_FAULT_AFTER" ]; do sleep 0.2; done
      fi
      sleep "${fault[2]}"
      ns=$(ns_name "$id" "${fault[1]}")
      echo "netns: fault: ${fault[0]} on host ${fault[1]} ($ns) at $(date +%s.%N)" >&2
      case "${fault[0]}" in
        link-down) ip link set "a2q${id}v${fault[1]}" down ;;
        kill) # the host's ranks (everything but Open MPI's daemon and its shell), as an OOM killer would
          for pid in $(ip netns pids "$ns"); do
            case "$(cat /proc/"$pid"/comm 2>/dev/null)" in orted|sh|"") ;; *) kill -KILL "$pid" 2>/dev/null ;; esac
          done; true ;;
        freeze) kill -STOP $(ip netns pids "$ns") 2>/dev/null || true ;;
        *) echo "netns: unknown fault ${fault[0]}" >&2 ;;
      esac
    ) &
    fault_pid=$!
  fi
  set +e
  # TCP keep-alive on mpirun's control connections: a host whose link goes down or whose
  # daemon dies is noticed in about 5 s (Open MPI's default is 300 s before the first probe);
  # the guard ends a job that aborted but cannot reach a frozen host.
  "$here/mpirun-guard.sh" "${A2Q_ABORT_GRACE:-10}" -- \
    mpirun --allow-run-as-root --hostfile "$dir/hostfile" \
    --mca plm_rsh_agent "$here/netns-hosts.sh agent" \
    --mca btl tcp,self --mca btl_tcp_if_include "$subnet.0/24" --mca oob_tcp_if_include "$subnet.0/24" \
    --mca oob_tcp_keepalive_time 2 --mca oob_tcp_keepalive_intvl 1 --mca oob_tcp_keepalive_probes 3 \
    "$@"
  status=$?
  set -e
  echo "netns: mpirun ended at $(date +%s.%N) with status $status" >&2
  if [ ${#fault[@]} -gt 0 ] && [ "${fault[0]}" = freeze ]; then
    # The frozen host comes back: its processes must end on their own (their job is gone).
    ns=$(ns_name "$id" "${fault[1]}")
    kill -CONT $(ip netns pids "$ns" 2>/dev/null) 2>/dev/null || true
    for _ in $(seq 1 50); do [ -z "$(ip netns pids "$ns" 2>/dev/null)" ] && break; sleep 0.2; done
  fi
  leftover=0
  for h in $(seq 1 "$hosts"); do
    n=$(ip netns pids "$(ns_name "$id" "$h")" 2>/dev/null | wc -l)
    leftover=$((leftover + n))
  done
  echo "netns: leftover processes: $leftover" >&2
  exit $status
  ;;
*)
  sed -n '2,31p' "$0" >&2
  exit 2
  ;;
esac
