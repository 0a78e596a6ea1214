#!/usr/bin/env bash
# KerasTuner's distributed search on one machine: a chief oracle and N workers.
#
#   tuning/distributed_localhost.sh OUT [WORKERS] [-- extra `keras-timbre search` options]
#   tuning/distributed_localhost.sh searches/dist 2 -- --data ../shared/nsynth-mini --max-trials 12 --epochs 5
#
# Run it from the repository root (or with keras-timbre installed). Each
# process logs to OUT/<id>.log; the chief writes the results when all are done.
#
# On several machines, run the same `keras-timbre search` command on each,
# with KERASTUNER_ORACLE_IP set to the chief's address, a port open between
# them, KERASTUNER_TUNER_ID=chief on one machine and tuner0, tuner1, ... on the
# others, and OUT on storage that every machine mounts at the same path.
set -euo pipefail
out=${1:?usage: $0 OUT [WORKERS] [-- search options]}
shift
workers=2
if [[ $# -gt 0 && "$1" != "--" ]]; then workers=$1; shift; fi
if [[ "${1:-}" == "--" ]]; then shift; fi
search=(python -m keras_timbre.cli search --out "$out" --quiet)

export KERASTUNER_ORACLE_IP=127.0.0.1
export KERASTUNER_ORACLE_PORT=${KERASTUNER_ORACLE_PORT:-$(python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
mkdir -p "$out"
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT INT TERM
KERASTUNER_TUNER_ID=chief "${search[@]}" "$@" > "$out/chief.log" 2>&1 &
pids+=($!)
for i in $(seq 0 $((workers - 1))); do
  KERASTUNER_TUNER_ID=tuner$i "${search[@]}" "$@" > "$out/tuner$i.log" 2>&1 &
  pids+=($!)
done
echo "chief and $workers workers on port $KERASTUNER_ORACLE_PORT; logs in $out/*.log"
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=1; done
pids=()
tail -n 3 "$out"/chief.log
exit $status
