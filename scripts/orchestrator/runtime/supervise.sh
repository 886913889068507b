#!/bin/sh
# orch's per-run supervisor: the only process that waits on an agent CLI.
#
#   sh supervise.sh detach AGENT_DIR RUN_N [--tmp DIR] -- ARGV...
#
# It detaches (the first copy exits at once, so the launcher reaps it and the second
# copy belongs to no orch process), starts the CLI in a session and process group of its
# own with stdout and stderr appended straight to files in the agent's folder, records
# the pid and the process start time (pids are reused), waits, and records the exit code
# and the end time in run-N.json — whether or not any orch command is still alive. With
# --tmp, it removes that folder (the run's private temp folder) once the run has ended.
# A shell, not Python: a supervisor per agent must cost almost no memory.

if [ "$1" = detach ]; then
  shift
  sh "$0" run "$@" </dev/null >/dev/null 2>&1 &
  exit 0
fi
[ "$1" = run ] || { echo "usage: supervise.sh detach AGENT_DIR RUN_N [--tmp DIR] -- ARGV..." >&2; exit 2; }
dir=$2
n=$3
tmp=
if [ "$4" = --tmp ]; then
  tmp=$5
  shift 2
fi
shift 4

stamp() { date -u +%Y-%m-%dT%H:%M:%S.%6N+00:00; }

starttime() {  # field 22 of /proc/PID/stat, after the parenthesised command name
  read -r st <"/proc/$1/stat" 2>/dev/null || { echo null; return; }
  rest=${st##*) }
  # shellcheck disable=SC2086
  set -- $rest
  shift 19
  echo "${1:-null}"
}

record() {  # atomic: readers see the old record or the new one
  # Retried until it lands (1 s, doubling to 30 s): a full disk must not lose an exit code, or
  # the run would be judged lost and its task done twice. Until then this process lives on,
  # and the run counts as still running.
  pause=1
  until printf '%s\n' "$1" 2>/dev/null >"$dir/.run-$n.json.tmp" && mv -f "$dir/.run-$n.json.tmp" "$dir/run-$n.json"; do
    rm -f "$dir/.run-$n.json.tmp" 2>/dev/null
    sleep "$pause"
    [ "$pause" -lt 30 ] && pause=$((pause * 2))
  done
}

started=$(stamp)
self=$(starttime $$)
setsid "$@" </dev/null >>"$dir/stdout.jsonl" 2>>"$dir/stderr.log" &
pid=$!
head="\"n\": $n, \"supervisor_pid\": $$, \"supervisor_start\": $self, \"started_at\": \"$started\", \"pid\": $pid, \"pgid\": $pid"
record "{$head, \"proc_start\": $(starttime $pid)}"
pstart=$(sed -n 's/.*"proc_start": \([0-9a-z]*\)}$/\1/p' "$dir/run-$n.json")
wait "$pid"
code=$?
signal=null
[ "$code" -gt 128 ] && signal=$((code - 128))
record "{$head, \"proc_start\": ${pstart:-null}, \"exit_code\": $code, \"signal\": $signal, \"ended_at\": \"$(stamp)\"}"
if [ -n "$tmp" ]; then rm -rf -- "$tmp"; fi
