# Shared by the recipes in scripts/ (sourced, not run): a queue of runs that skips every run
# whose completion marker exists, says "run i/N" as it goes, prints instead of running under
# --dry-run, and runs up to $JOBS at once (OMP_NUM_THREADS split between them). A run holds a
# lock (flock on LOG.lock) while it runs, so a second copy of the same recipe started beside the
# first (another core, another GPU) skips it and takes the next one.
#
#   add_run STAGE MARKER LOG COMMAND...  queue one run (MARKER: the file whose presence means
#                                        done); a stage starts when every run of the ones before
#                                        it has ended (masks exist before they are fine-tuned)
#   run_queue                            run (or print) the queue
#   py                               the python launcher: torchrun when NGPU > 1
#   q PATH                           PATH quoted for a command (printf %q): a command stays one
#                                    copy-pasteable line that eval runs as printed
#   path_setting VAR DEFAULT         VAR as an absolute path: a user's value from the folder the
#                                    recipe was started in, the default from the repository root
#   check_settings                   refuse SPARSITIES, SETS, METHODS a recipe cannot honour
#
# Every refused setting: one `error: ...` line on stderr, exit code 2, before anything runs.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DRY_RUN=${DRY_RUN:-0}
for arg in "$@"; do
  case "$arg" in
    --dry-run) DRY_RUN=1 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed 's/^# \{0,1\}//' | grep -v '^set -euo'; exit 0 ;;
    *) echo "error: unknown argument $arg (only --dry-run; settings are environment variables)" >&2; exit 2 ;;
  esac
done
# A refused setting: one line on stderr, exit code 2 (at planning time: nothing has run).
die() { echo "error: $*" >&2; exit 2; }

# VALUE is a whole number of at least MIN (no sign, no spaces).
whole_number() {  # NAME VALUE MIN
  [[ "$2" =~ ^[0-9]+$ ]] && [ "$((10#$2))" -ge "$3" ] && return 0
  if [ "$3" -ge 1 ]; then die "$1 must be a positive whole number, not '$2'"; fi
  die "$1 must be a whole number >= $3, not '$2'"
}

NGPU=${NGPU:-0}
NNODES=${NNODES:-1}
JOBS=${JOBS:-1}
PYTHON=${PYTHON:-python}
whole_number JOBS "$JOBS" 1
whole_number NGPU "$NGPU" 0  # 0: CPU
whole_number NNODES "$NNODES" 1
JOBS=$((10#$JOBS)); NGPU=$((10#$NGPU)); NNODES=$((10#$NNODES))

# One path as one word of a command string (the queue evals commands; spaces and quotes survive).
q() { printf '%q' "$1"; }

# An absolute path without . or .. parts (nothing on disk is read: the path may not exist yet).
abs_path() {  # PATH BASE
  local p=$1 part out=() parts=()
  [[ "$p" == /* ]] || p=$2/$p
  IFS=/ read -r -a parts <<< "$p"
  for part in "${parts[@]}"; do
    case $part in
      ''|.) ;;
      ..) [ "${#out[@]}" -eq 0 ] || out=("${out[@]:0:${#out[@]}-1}") ;;
      *) out+=("$part") ;;
    esac
  done
  local IFS=/
  echo "/${out[*]}"
}

# Set VAR to an absolute path, so that the runs (started from the repository root) and the
# completion markers (checked here) name the same files wherever the recipe was started: a value
# the user gave is relative to the current folder, the default to the repository root.
path_setting() {  # VAR DEFAULT
  local v=${!1:-}
  if [ -n "$v" ]; then v=$(abs_path "$v" "$PWD"); else v=$(abs_path "$2" "$ROOT"); fi
  printf -v "$1" '%s' "$v"
}

QUEUE_STAGES=()
QUEUE_MARKERS=()
QUEUE_LOGS=()
QUEUE_CMDS=()

# The launcher of a training script: plain python, or torchrun with one process per GPU (and,
# with NNODES > 1, the rendezvous that scripts/multinode.sh puts in TORCHRUN_ARGS).
py() {
  if [ "$NGPU" -gt 1 ] || [ "$NNODES" -gt 1 ]; then
    echo "torchrun --nproc_per_node $((NGPU > 0 ? NGPU : 1)) ${TORCHRUN_ARGS:-}"
  else
    echo "$PYTHON"
  fi
}

# Per-process batch that keeps the global batch: divided by every process of every node.
per_process() {
  local procs=$(( (NGPU > 1 ? NGPU : 1) * NNODES ))
  if [ $(($1 % procs)) -ne 0 ]; then
    echo "error: batch $1 does not split over $procs processes" >&2; return 2
  fi
  echo $(($1 / procs))
}

add_run() {
  QUEUE_STAGES+=("$1"); QUEUE_MARKERS+=("$2"); QUEUE_LOGS+=("$3"); shift 3
  QUEUE_CMDS+=("$*")
}

_run_one() {  # index total
  local i=$1 n=$2 marker=${QUEUE_MARKERS[$1]} log=${QUEUE_LOGS[$1]} cmd=${QUEUE_CMDS[$1]//@RUN@/$(($1 + 1))}
  local label="run $((i + 1))/$n"
  if [ -e "$marker" ]; then
    echo "$label: finished, skipped ($marker)"
    return 0
  fi
  if [ -f "$(dirname "$marker")/resume/state.pt" ] || [ -f "$(dirname "$marker")/resume/state.prev.pt" ]; then
    cmd="$cmd --resume"  # a killed run continues from its latest state
  fi
  if [ "$DRY_RUN" = 1 ]; then
    echo "$label: $cmd"
    return 0
  fi
  mkdir -p "$(dirname "$log")"
  local lockfd="" rc=0
  if command -v flock >/dev/null; then  # a second queue of the same recipe leaves this run alone
    exec {lockfd}>"$log.lock"
    if ! flock -n "$lockfd"; then
      exec {lockfd}>&-
      echo "$label: running in another queue, skipped"
      return 0
    fi
    if [ -e "$marker" ]; then  # finished by another queue since the check above
      exec {lockfd}>&-
      echo "$label: finished, skipped ($marker)"
      return 0
    fi
  fi
  echo "$label: $cmd   (log: $log)"
  local start=$SECONDS
  if (cd "$ROOT" && eval "$cmd") >"$log" 2>&1; then
    echo "$label: done in $((SECONDS - start)) s"
  else
    echo "$label: FAILED after $((SECONDS - start)) s; see $log" >&2
    rc=1
  fi
  [ -z "$lockfd" ] || exec {lockfd}>&-
  return $rc
}

# Before a stage starts: wait for every unfinished run of the stages before it that another
# queue is running (its lock), so that masks exist before they are fine-tuned.
_await_earlier() {  # index of the stage's first run
  local j
  command -v flock >/dev/null || return 0
  for ((j = 0; j < $1; j++)); do
    [ -e "${QUEUE_MARKERS[$j]}" ] || [ ! -e "${QUEUE_LOGS[$j]}.lock" ] || flock "${QUEUE_LOGS[$j]}.lock" true
  done
}

run_queue() {
  local n=${#QUEUE_CMDS[@]} i failed=0 stage=""
  local todo=0
  for ((i = 0; i < n; i++)); do [ -e "${QUEUE_MARKERS[$i]}" ] || todo=$((todo + 1)); done
  echo "$n runs, $todo to do ($((n - todo)) finished)"
  if [ "$JOBS" -le 1 ] || [ "$DRY_RUN" = 1 ]; then
    for ((i = 0; i < n; i++)); do
      if [ "${QUEUE_STAGES[$i]}" != "$stage" ]; then
        [ "$DRY_RUN" = 1 ] || _await_earlier "$i"
        stage=${QUEUE_STAGES[$i]}
      fi
      _run_one "$i" "$n" || failed=1
    done
  else
    local threads=$(( $(nproc) / JOBS )); [ "$threads" -ge 1 ] || threads=1
    export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$threads}
    for ((i = 0; i < n; i++)); do
      if [ "${QUEUE_STAGES[$i]}" != "$stage" ]; then  # next stage: wait for the runs before it
        while [ "$(jobs -rp | wc -l)" -gt 0 ]; do wait -n || failed=1; done
        _await_earlier "$i"
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
  if [ "$DRY_RUN" != 1 ]; then  # runs another queue held: wait for them, then check they finished
    _await_earlier "$n"
    local left=0
    for ((i = 0; i < n; i++)); do [ -e "${QUEUE_MARKERS[$i]}" ] || left=$((left + 1)); done
    if [ "$left" -gt 0 ]; then
      echo "error: $left run(s) held by another queue did not finish; re-run the same command to retry them" >&2
      return 1
    fi
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

# Unpack the IMP tickets a committed slim record carries (mask.pt.gz, written by report.py
# --slim_masks) where the mask itself is missing, so their fine-tunes need no new IMP run.
#   unpack_masks DIR
unpack_masks() {
  local gz
  while IFS= read -r -d '' gz; do
    [ -e "${gz%.gz}" ] && continue
    gzip -dc "$gz" > "${gz%.gz}.part" && mv "${gz%.gz}.part" "${gz%.gz}"
  done < <(find "$1" -name 'mask.pt.gz' -print0)
}

# The pruning flags of a set: paper / no_pooler (unstructured, --prunable_set) or heads_ffn
# (structured: whole heads and FFN neurons, the pooler dense).
set_flags() {
  case $1 in
    heads_ffn) echo "--structure heads_ffn" ;;
    paper|no_pooler) echo "--prunable_set $1" ;;
    *) echo "error: unknown set '$1' in SETS (paper no_pooler heads_ffn)" >&2; return 2 ;;
  esac
}

# Random and OMP masks at every sparsity and prunable set (they do not depend on the task) and
# the layer-shuffled weights, as stage-1 runs (a mask runs only while its provenance record is
# missing, so --overwrite_output_dir only replaces a mask whose writing was interrupted).
# Random pruning draws a fresh mask for every fine-tuning seed k of SEEDS_RANDOM (mask seed
# IMP_SEED + k - 1: seed 1's is the mask of earlier records), so its spread samples the mask
# too; OMP is one mask. Uses OUT, SETS,
# SPARSITIES, METHODS, MODEL, IMP_SEED; counts the masks in n_oneshot. $1: the head to build
# (glue | squad | pretrain).
oneshot_masks() {
  local SET sp rate dir seed
  for SET in $SETS; do
    for sp in $SPARSITIES; do
      rate=$(printf '0.%02d' "$sp"); [ "$sp" = 100 ] && rate=1.0
      case " $METHODS " in *" random "*)
        for seed in $SEEDS_RANDOM; do
          dir=$(random_mask_dir "$SET" "$sp" "$seed")
          add_run 1 "$dir/mask_provenance.json" "$dir.log" \
            "$PYTHON oneshot.py --weight rand --model $1 --rate $rate --model_name_or_path $(q "$MODEL")" \
            "--output_dir $(q "$dir") $(set_flags "$SET") --seed $((IMP_SEED + seed - 1)) --overwrite_output_dir"
          n_oneshot=$((n_oneshot + 1))
        done ;;
      esac
      case " $METHODS " in *" omp "*)
        dir=$OUT/masks/omp_${SET}_$sp
        add_run 1 "$dir/mask_provenance.json" "$dir.log" \
          "$PYTHON oneshot.py --weight pre --model $1 --rate $rate --model_name_or_path $(q "$MODEL")" \
          "--output_dir $(q "$dir") $(set_flags "$SET") --seed $IMP_SEED --overwrite_output_dir"
        n_oneshot=$((n_oneshot + 1)) ;;
      esac
    done
  done
  case " $METHODS " in *" shuffled "*)
    add_run 1 "$OUT/masks/shuffle_weight_provenance.json" "$OUT/masks/shuffle.log" \
      "$PYTHON pertub_weight.py --model_name_or_path $(q "$MODEL") --output $(q "$OUT/masks/shuffle_weight.pt") --seed $IMP_SEED" ;;
  esac
}

# The folder of the random mask that fine-tuning seed $3 uses (set $1, sparsity $2).
random_mask_dir() { echo "$OUT/masks/random_$1_$2_s$3"; }

# The *_trans.py flags of one method (ticket: IMP mask on theta0; re-init: IMP mask on random
# weights; random: a random mask on theta0; OMP: theta0's own magnitude mask; shuffled: the IMP
# mask on layer-shuffled theta0):
#   method_flags METHOD SET SPARSITY TICKET_MASK SEED
method_flags() {
  case $1 in
    imp)      echo "--dir pre --mask_dir $(q "$4")" ;;
    reinit)   echo "--dir rand --mask_dir $(q "$4")" ;;
    random)   echo "--dir pre --mask_dir $(q "$(random_mask_dir "$2" "$3" "$5")/mask.pt")" ;;
    omp)      echo "--dir pre --mask_dir $(q "$OUT/masks/omp_$2_$3/mask.pt")" ;;
    shuffled) echo "--dir pre --weight_pertub $(q "$OUT/masks/shuffle_weight.pt") --mask_dir $(q "$4")" ;;
    *) echo "error: unknown method '$1' in METHODS (imp random omp reinit shuffled)" >&2; return 2 ;;
  esac
}

# The IMP ticket of an IMP run at a sparsity, from its results.json (whatever the round
# length); before the run has written it, the path the recipe expects.
#   ticket_mask IMP_DIR SPARSITY EXPECTED_PATH
ticket_mask() {
  "$PYTHON" - "$1" "$2" "$3" <<'EOF'
import json, sys, pathlib
d, sp, fallback = pathlib.Path(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
try:
    masks = json.loads((d / "results.json").read_text()).get("masks", [])
    print(next(str(d / m["path"]) for m in masks if round(m["sparsity"]) == round(sp)))
except (OSError, ValueError, StopIteration):
    print(fallback)
EOF
}

# One task's runs: IMP per prunable set and the dense seeds (stage $A), then every method at
# every sparsity with the mask fixed (stage $B). Uses SETS, SEEDS, MASK_SEEDS, SPARSITIES,
# METHODS, IMP_SEED, LAUNCH; counts IMP runs in n_imp.
#   tickets_plan TASK_OUT IMP_SCRIPT FT_SCRIPT "COMMON" "IMP_FLAGS" "FT_FLAGS" EXPECT_FN
# EXPECT_FN IMP_DIR SPARSITY prints where that IMP run will write the mask of that sparsity.
tickets_plan() {
  local out=$1 imp_script=$2 ft_script=$3 common=$4 impf=$5 ftf=$6 expect=$7
  local SET seed sp method dir ticket
  for SET in $SETS; do set_flags "$SET" > /dev/null || exit 2; done
  for SET in $SETS; do
    dir=$out/imp_$SET
    # an IMP record without its masks (copied from a slim record) must run again if a fine-tune
    # still needs one of them
    if [ -e "$dir/complete.json" ]; then
      for sp in $SPARSITIES; do
        ticket=$(ticket_mask "$dir" "$sp" "$($expect "$dir" "$sp")")
        for method in $METHODS; do
          case $method in imp|reinit|shuffled) ;; *) continue ;; esac
          for seed in $(seeds_of "$method"); do
            if [ ! -e "$ticket" ] && [ ! -e "$out/${method}_${SET}_${sp}_s$seed/complete.json" ]; then
              echo "note: $dir has no $ticket, which $out/${method}_${SET}_${sp}_s$seed needs: IMP runs again"
              [ "$DRY_RUN" = 1 ] || rm -f "$dir/complete.json"
              break 3
            fi
          done
        done
      done
    fi
    add_run "$A" "$dir/complete.json" "$dir.log" \
      "$LAUNCH $imp_script $common --output_dir $(q "$dir") $impf $(set_flags "$SET") --save_round_weights 0 --seed $IMP_SEED"
    n_imp=$((n_imp + 1))
  done
  for seed in $SEEDS; do
    dir=$out/dense_s$seed
    add_run "$A" "$dir/complete.json" "$dir.log" \
      "$LAUNCH $ft_script $common --output_dir $(q "$dir") --dir pre $ftf --seed $seed"
  done
  # seed-major: every cell's first seed, then every cell's second, ... so that a queue stopped
  # half-way leaves every cell covered at a lower n rather than some cells complete
  local rank=1 most=0 list
  for method in $METHODS; do
    list=($(seeds_of "$method")); [ "${#list[@]}" -gt "$most" ] && most=${#list[@]}
  done
  declare -A tickets=()
  for SET in $SETS; do
    for sp in $SPARSITIES; do
      tickets[$SET.$sp]=$(ticket_mask "$out/imp_$SET" "$sp" "$($expect "$out/imp_$SET" "$sp")")
    done
  done
  for ((rank = 1; rank <= most; rank++)); do
    for SET in $SETS; do
      for sp in $SPARSITIES; do
        for method in $METHODS; do
          list=($(seeds_of "$method"))
          [ "${#list[@]}" -ge "$rank" ] || continue
          seed=${list[$((rank - 1))]}
          dir=$out/${method}_${SET}_${sp}_s$seed
          add_run "$B" "$dir/complete.json" "$dir.log" \
            "$LAUNCH $ft_script $common --output_dir $(q "$dir") $(method_flags "$method" "$SET" "$sp" "${tickets[$SET.$sp]}" "$seed") $ftf --seed $seed"
        done
      done
    done
  done
}

# Settings every recipe shares (environment variables with defaults); $1 names the family
# for the default OUT (runs/<family>_<profile>).
recipe_settings() {
  PROFILE=${PROFILE:-small}
  path_setting MODEL ../shared/data/models/all-MiniLM-L6-v2
  path_setting OUT "runs/$1_$PROFILE"
  IMP_SEED=${IMP_SEED:-57}
  EXTRA=${EXTRA:-}
  AMP=${AMP_GPU:-}  # fp32 as the paper; AMP_GPU=--fp16 or --bf16 for mixed precision
}

# Fine-tuning seeds, per method: SEEDS (the full model), SEEDS_IMP, SEEDS_OMP, SEEDS_RANDOM,
# SEEDS_REINIT, SEEDS_SHUFFLED; a method's list defaults to MASK_SEEDS [1]. A profile passes its
# defaults (DENSE IMP OMP RANDOM REINIT, empty: MASK_SEEDS); what the user set wins.
seed_settings() {
  SEEDS=${SEEDS:-${1:-1 2 3}}
  MASK_SEEDS=${MASK_SEEDS:-1}
  SEEDS_IMP=${SEEDS_IMP:-${2:-$MASK_SEEDS}}
  SEEDS_OMP=${SEEDS_OMP:-${3:-$MASK_SEEDS}}
  SEEDS_RANDOM=${SEEDS_RANDOM:-${4:-$MASK_SEEDS}}
  SEEDS_REINIT=${SEEDS_REINIT:-${5:-$MASK_SEEDS}}
  SEEDS_SHUFFLED=${SEEDS_SHUFFLED:-$MASK_SEEDS}
  local v
  for v in "$SEEDS" "$SEEDS_IMP" "$SEEDS_OMP" "$SEEDS_RANDOM" "$SEEDS_REINIT" "$SEEDS_SHUFFLED"; do
    [[ "$v" =~ ^[[:space:]]*([1-9][0-9]*[[:space:]]*)+$ ]] || {
      echo "error: seeds must be positive whole numbers separated by spaces, not '$v'" >&2; exit 2; }
  done
}

# The fine-tuning seeds of a method.
seeds_of() {
  case $1 in
    imp) echo "$SEEDS_IMP" ;; omp) echo "$SEEDS_OMP" ;; random) echo "$SEEDS_RANDOM" ;;
    reinit) echo "$SEEDS_REINIT" ;; shuffled) echo "$SEEDS_SHUFFLED" ;; *) echo "$MASK_SEEDS" ;;
  esac
}

# Refuse a missing checkpoint folder (dry runs print the commands anyway). $1: what else to pass.
need_model() {
  if [ ! -d "$MODEL" ] && [ "$DRY_RUN" != 1 ]; then
    echo "error: MODEL=$MODEL is not a folder; pass MODEL=<local BERT checkpoint> $1" >&2
    exit 2
  fi
}

# Refuse, before anything is planned, what the recipe cannot honour: a sparsity IMP never writes
# (it prunes 100/imp_rounds = 10 % of the prunable set per event, so its masks are 10, 20, ...
# 90 %: a 55 % ticket would never exist), an unknown set or method, an empty list.
check_settings() {
  local sp s m
  [ -n "${SPARSITIES//[[:space:]]/}" ] || die "SPARSITIES is empty (percent, of 10 20 30 40 50 60 70 80 90)"
  [ -n "${SETS//[[:space:]]/}" ] || die "SETS is empty (of paper no_pooler heads_ffn)"
  for sp in $SPARSITIES; do
    [[ "$sp" =~ ^[1-9]0$ ]] || die "SPARSITIES: '$sp' is not a sparsity IMP writes (percent, of 10 20 30 40 50 60 70 80 90: IMP prunes 10 % per event)"
  done
  for s in $SETS; do set_flags "$s" > /dev/null || exit 2; done
  for m in $METHODS; do method_flags "$m" paper 10 none 1 > /dev/null || exit 2; done
}

# The largest of SPARSITIES.
top_sparsity() {
  local s top=0
  for s in $SPARSITIES; do [ "$s" -gt "$top" ] && top=$s; done
  echo "$top"
}

# Print the plan and the disk it needs, run the queue. $1: recipe name; $2: masks per IMP run.
finish_recipe() {
  local prunable wbytes
  read -r prunable wbytes < <(model_sizes "$MODEL" 2>/dev/null || echo "85524480 440000000")
  echo "$1: profile $PROFILE, ${TASKS:+tasks [$TASKS], }sets [$SETS], sparsities [$SPARSITIES], methods [$METHODS]"
  echo "$1: disk needed about $(( (n_imp * $2 * prunable + n_oneshot * (prunable + wbytes) + ${#QUEUE_CMDS[@]} * 200000) / 1000000 )) MB under $OUT"
  run_queue
  echo "$1: all runs finished; report: $PYTHON report.py $OUT"
}
