#!/usr/bin/env bash
# Runs mpirun and makes sure that a job which has aborted also ends. When a rank reports a
# fatal error (a2q's "a2q: rank R of N: …" messages, the collective watchdog among them) or
# Open MPI reports an abort or a lost daemon, mpirun gets GRACE seconds to finish; if a host it
# must reach is frozen (its processes stopped while its kernel still answers TCP), mpirun waits
# for that host forever, so the guard then ends it (TERM, then KILL) with a message.
#
#   Launch/mpirun-guard.sh GRACE -- mpirun ARGS...
#
# Output passes through unchanged; the exit status is mpirun's (1 when the guard ended it).
set -uo pipefail
grace=$1; shift
[ "${1:-}" = "--" ] && shift

flag=$(mktemp -u /tmp/a2q-guard.XXXXXX)
watch() { # copies one stream, and raises the flag on a fatal message
  while IFS= read -r line; do
    printf '%s\n' "$line"
    case "$line" in
      "a2q: rank "*|*"MPI_ABORT was invoked"*|*"lost communication with a remote daemon"*) : > "$flag" ;;
    esac
  done
}

"$@" > >(watch) 2> >(watch >&2) &
pid=$!
trap 'kill -TERM "$pid" 2>/dev/null' INT TERM
raised=""
while kill -0 "$pid" 2>/dev/null; do
  if [ -z "$raised" ] && [ -e "$flag" ]; then raised=$(date +%s); fi
  if [ -n "$raised" ] && [ $(( $(date +%s) - raised )) -ge "$grace" ]; then
    echo "mpirun-guard: the job aborted but mpirun had not exited ${grace} s later (a host it must reach is unreachable or frozen); ending it" >&2
    kill -TERM "$pid" 2>/dev/null
    sleep 2
    kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    rm -f "$flag"
    exit 1
  fi
  sleep 0.5
done
wait "$pid"
status=$?
rm -f "$flag"
exit $status
