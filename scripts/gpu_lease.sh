#!/usr/bin/env bash
# The device side of a teacher lease on a lent GPU machine, one step per device call (the data
# travels first with scripts/gpu_carry.sh; docs/training.md, GPU host):
#
#   scripts/gpu_lease.sh start WORK BUDGET_S DATA_SPEC TEACH_SPEC TEACHER...
#       copies this checkout to WORK/repo and runs scripts/gpu_teachers.sh there in a session of
#       its own (setsid), so that the runs outlive the call; the arguments after WORK are
#       gpu_teachers.sh's (data paths absolute: the runs start in WORK/repo); its output goes to
#       WORK/lease.log
#   scripts/gpu_lease.sh wait WORK SECONDS
#       returns once the teachers' outputs are written, the lease has stopped, or SECONDS have
#       passed, then prints the log's end and each run's last line
#   scripts/gpu_lease.sh collect WORK OUT
#       copies the teacher outputs and their report, each teacher's float16-weight ONNX export, the
#       commands and every run's history, config and log into OUT (OUT/teacher.npz, OUT/teacher.json,
#       OUT/NAME.onnx, OUT/runs.tgz; each export is a few MB, under a device call's 16 MiB). It only
#       copies: a collecting command that killed runs by pattern once killed itself, and the
#       machine went back with every checkpoint on it.
set -euo pipefail

running() { [ -s "$1/lease.pid" ] && kill -0 "$(cat "$1/lease.pid")" 2>/dev/null; }

start() {
  local work
  work=$(realpath -m "$1")
  shift
  [ $# -ge 4 ] || { echo "start: expected WORK BUDGET_S DATA_SPEC TEACH_SPEC TEACHER..." >&2; exit 2; }
  if running "$work"; then echo "start: a lease is already running in $work" >&2; exit 1; fi
  mkdir -p "$work/repo"
  local skip
  skip=(--exclude=./.git --exclude=./.gpu --exclude=./.cache --exclude=./.venv --exclude=./runs --exclude=./reports)
  tar cf - "${skip[@]}" . | tar xf - -C "$work/repo"
  # only the detached command goes to the background: `cd … && cmd &` would background a subshell
  # that keeps this call's stdout open until the lease ends, so the call would not return
  (cd "$work/repo" || exit 1
   PYTHONUNBUFFERED=1 setsid nohup bash scripts/gpu_teachers.sh "$work/out" "$@" >"$work/lease.log" 2>&1 </dev/null &
   echo $! >"$work/lease.pid")
  echo "started gpu_teachers.sh (pid $(cat "$work/lease.pid")); log: $work/lease.log"
}

wait_for() {
  local work=$1 end=$((SECONDS + $2))
  while [ $SECONDS -lt "$end" ] && running "$work" && [ ! -s "$work/out/teacher.json" ]; do sleep 10; done
  tail -n 5 "$work/lease.log" || true
  local log
  for log in "$work"/out/runs/*.log; do [ -f "$log" ] && echo "$(basename "$log"): $(tail -n 1 "$log" | cut -c1-240)"; done
  if [ -s "$work/out/teacher.json" ]; then echo "teacher outputs written"
  elif running "$work"; then echo "still running"
  else echo "stopped without teacher outputs"; fi
}

collect() {
  local work=$1 out=$2 f
  mkdir -p "$out"
  for f in teacher.npz teacher.json; do [ -f "$work/out/$f" ] && cp "$work/out/$f" "$out/"; done
  for f in "$work"/out/weights/*.onnx; do [ -f "$f" ] && cp "$f" "$out/"; done
  (cd "$work" && { find lease.log out -maxdepth 3 \( -name '*.log' -o -name 'commands*.txt' -o -name history.csv \
    -o -name config.json \) 2>/dev/null || true; } | tar czf "$out/runs.tgz" -T -)
  ls -la "$out"
}

case "${1:-}" in
  start) shift; start "$@" ;;
  wait) [ $# -eq 3 ] || { echo "usage: $0 wait WORK SECONDS" >&2; exit 2; }; wait_for "$2" "$3" ;;
  collect) [ $# -eq 3 ] || { echo "usage: $0 collect WORK OUT" >&2; exit 2; }; collect "$2" "$3" ;;
  *) echo "usage: $0 start WORK BUDGET_S DATA_SPEC TEACH_SPEC TEACHER... | wait WORK SECONDS | collect WORK OUT" >&2; exit 2 ;;
esac
