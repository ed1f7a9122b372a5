# Shared by the recipes in scripts/ (sourced, not run): a queue of runs that skips every run
# whose completion marker exists, says "run i/N" as it goes, prints instead of running under
# --dry-run, and runs up to $JOBS at once (OMP_NUM_THREADS split between them).
#
#   add_run STAGE MARKER LOG COMMAND...  queue one run (MARKER: the file whose presence means
#                                        done); a stage starts when every run of the ones before
#                                        it has ended (masks exist before they are fine-tuned)
#   run_queue                            run (or print) the queue
#   py                               the python launcher: torchrun when NGPU > 1

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DRY_RUN=${DRY_RUN:-0}
for arg in "$@"; do
  case "$arg" in
    --dry-run) DRY_RUN=1 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed 's/^# \{0,1\}//' | grep -v '^set -euo'; exit 0 ;;
    *) echo "error: unknown argument $arg (only --dry-run; settings are environment variables)" >&2; exit 2 ;;
  esac
done
NGPU=${NGPU:-0}
JOBS=${JOBS:-1}
PYTHON=${PYTHON:-python}

QUEUE_STAGES=()
QUEUE_MARKERS=()
QUEUE_LOGS=()
QUEUE_CMDS=()

# The launcher of a training script: plain python, or torchrun with one process per GPU.
py() {
  if [ "$NGPU" -gt 1 ]; then
    echo "torchrun --nproc_per_node $NGPU ${TORCHRUN_ARGS:-}"
  else
    echo "$PYTHON"
  fi
}

add_run() {
  QUEUE_STAGES+=("$1"); QUEUE_MARKERS+=("$2"); QUEUE_LOGS+=("$3"); shift 3
  QUEUE_CMDS+=("$*")
}

_run_one() {  # index total
  local i=$1 n=$2 marker=${QUEUE_MARKERS[$1]} log=${QUEUE_LOGS[$1]} cmd=${QUEUE_CMDS[$1]}
  local label="run $((i + 1))/$n"
  if [ -e "$marker" ]; then
    echo "$label: finished, skipped ($marker)"
    return 0
  fi
  if [ "$DRY_RUN" = 1 ]; then
    echo "$label: $cmd"
    return 0
  fi
  mkdir -p "$(dirname "$log")"
  echo "$label: $cmd   (log: $log)"
  local start=$SECONDS
  if (cd "$ROOT" && eval "$cmd") >"$log" 2>&1; then
    echo "$label: done in $((SECONDS - start)) s"
  else
    echo "$label: FAILED after $((SECONDS - start)) s; see $log" >&2
    return 1
  fi
}

run_queue() {
  local n=${#QUEUE_CMDS[@]} i failed=0 stage=""
  local todo=0
  for ((i = 0; i < n; i++)); do [ -e "${QUEUE_MARKERS[$i]}" ] || todo=$((todo + 1)); done
  echo "$n runs, $todo to do ($((n - todo)) finished)"
  if [ "$JOBS" -le 1 ] || [ "$DRY_RUN" = 1 ]; then
    for ((i = 0; i < n; i++)); do _run_one "$i" "$n" || failed=1; done
  else
    local threads=$(( $(nproc) / JOBS )); [ "$threads" -ge 1 ] || threads=1
    export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$threads}
    for ((i = 0; i < n; i++)); do
      if [ "${QUEUE_STAGES[$i]}" != "$stage" ]; then  # next stage: wait for the runs before it
        while [ "$(jobs -rp | wc -l)" -gt 0 ]; do wait -n || failed=1; done
        stage=${QUEUE_STAGES[$i]}
      fi
      while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do wait -n || failed=1; done
      _run_one "$i" "$n" &
    done
    while [ "$(jobs -rp | wc -l)" -gt 0 ]; do wait -n || failed=1; done
  fi
  if [ "$failed" = 1 ]; then
    echo "error: some runs failed (see their logs); re-run the same command to retry only those" >&2
    return 1
  fi
}

# Bytes of one bool mask file and of the model's weights, from the checkpoint's config.
model_sizes() {  # MODEL -> "prunable_weights weights_file_bytes"
  "$PYTHON" - "$1" <<'EOF'
import json, sys, pathlib
p = pathlib.Path(sys.argv[1])
try:
    c = json.loads((p / "config.json").read_text())
    h, i, l = c["hidden_size"], c["intermediate_size"], c["num_hidden_layers"]
    prunable = l * (4 * h * h + 2 * h * i) + h * h
except (OSError, KeyError, ValueError):
    prunable = 85_524_480  # BERT-base
w = p / "model.safetensors"
print(prunable, w.stat().st_size if w.is_file() else 4 * 110_000_000)
EOF
}
