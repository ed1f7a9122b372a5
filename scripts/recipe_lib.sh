# Sourced by the recipes in scripts/ (not run): --help, and a shell API for a queue of one's own
# runs. The recipes themselves are planned and queued in Python (utils/recipes.py, utils/queue.py).
#
#   add_run STAGE MARKER LOG COMMAND...  queue one run (MARKER: the file whose presence means
#                                        done); a stage starts when every run of the ones before
#                                        it has ended (masks exist before they are fine-tuned)
#   run_queue                            run (or, with --dry-run, print) the queue: skips every
#                                        run whose marker exists, says "run i/N" as it goes, runs
#                                        up to $JOBS at once, and a run holds a lock (flock on
#                                        LOG.lock), so a second copy of the queue skips it
#   unpack_masks DIR                     unpack the IMP tickets a slim record carries (mask.pt.gz)
#                                        and the packed state of an unfinished run (state.packed)
#                                        where the mask is missing
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DRY_RUN=${DRY_RUN:-0}
for arg in "$@"; do
  case "$arg" in
    --dry-run) DRY_RUN=1 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed 's/^# \{0,1\}//' | grep -v '^set -euo'; exit 0 ;;
  esac
done
QUEUE_FILE=""

add_run() {
  [ -n "$QUEUE_FILE" ] || { QUEUE_FILE=$(mktemp); trap 'rm -f "$QUEUE_FILE"' EXIT; }
  local stage=$1 marker=$2 log=$3; shift 3
  printf '%s\0%s\0%s\0%s\0' "$stage" "$marker" "$log" "$*" >> "$QUEUE_FILE"
}

run_queue() {
  [ -n "$QUEUE_FILE" ] || { echo "0 runs, 0 to do (0 finished)"; return 0; }
  local dry=""; [ "$DRY_RUN" = 1 ] && dry=--dry-run
  "${PYTHON:-python}" "$ROOT/utils/queue.py" --nul "$QUEUE_FILE" $dry
}

unpack_masks() {
  "${PYTHON:-python}" "$ROOT/utils/queue.py" unpack "$1"
  if [ -n "$(find "$1" -path '*/resume/state.packed' -print -quit)" ]; then
    (cd "$ROOT" && "${PYTHON:-python}" -m utils.state_pack unpack_all "$1")
  fi
}
