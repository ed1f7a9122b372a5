# GLUE settings and helpers shared by glue_tickets.sh and transfer.sh (sourced after
# recipe_lib.sh): the budget profiles, the flags every GLUE run shares, IMP round lengths.
recipe_settings glue
path_setting DATA ../shared/data/glue

# The profiles are data in utils/profiles.py (the docs' profile table is generated from it):
# TASKS SPARSITIES METHODS SETS TRAIN_ALL SUBSET_TASKS MAX_EVAL ROUND_EPOCHS SCHEDULE IMP_LR (a user's
# setting wins), LR BATCH SEQ FT_EPOCHS MAX_TRAIN, and the seeds per method (seed_settings).
profile_lines=$("$PYTHON" "$ROOT/utils/profiles.py" glue "$PROFILE") || exit 2
eval "$profile_lines"
check_settings
whole_number ROUND_EPOCHS "$ROUND_EPOCHS" 1; ROUND_EPOCHS=$((10#$ROUND_EPOCHS))
case $SCHEDULE in per_round|whole_run) ;; *) die "SCHEDULE must be per_round or whole_run, not '$SCHEDULE'" ;; esac
AMP=${AMP:-}
SUBSET_SEED=${SUBSET_SEED:-0}
BATCH_PER_GPU=$(per_process "$BATCH")
need_model "and DATA=<GLUE root>"

LAUNCH=$(py)
max_train() {  # TASK: the training-row cap (none for the tasks in TRAIN_ALL)
  case " ${TRAIN_ALL:-} " in *" $1 "*) echo "" ;; *) echo "$MAX_TRAIN" ;; esac
}
subset() {  # TASK: the row flags (a seeded random subset for the tasks in SUBSET_TASKS)
  local cap seeded=""; cap=$(max_train "$1")
  case " $SUBSET_TASKS " in *" $1 "*) [ -n "$cap" ] && seeded="--train_subset_seed $SUBSET_SEED" ;; esac
  echo "${cap:+--max_train_samples $cap} $seeded ${MAX_EVAL:+--max_eval_samples $MAX_EVAL}"
}
common() {  # TASK: the flags every GLUE run shares
  echo "--task_name $(q "$1") --data_dir $(q "$DATA/$1") --model_type bert --model_name_or_path $(q "$MODEL") --do_train --do_eval" \
       "--do_lower_case --max_seq_length $SEQ --per_gpu_train_batch_size $BATCH_PER_GPU" \
       "--per_gpu_eval_batch_size 64 $(subset "$1") $AMP --overwrite_output_dir $EXTRA"
}
train_rows() {  # rows the run trains on (header excluded; CoLA has none)
  local f="$DATA/$1/train.tsv" n
  if [ -f "$f" ]; then n=$(wc -l < "$f"); [ "$1" = CoLA ] || n=$((n - 1)); else n=${PAPER_ROWS[$1]:-0}; fi
  local cap; cap=$(max_train "$1")
  if [ -n "$cap" ] && [ "$n" -gt "$cap" ]; then n=$cap; fi
  echo "$n"
}
declare -A PAPER_ROUND=([MNLI]=36813 [QQP]=34110 [QNLI]=9819 [SST-2]=6312 [CoLA]=801 [STS-B]=537 [MRPC]=342 [RTE]=231 [WNLI]=57)
declare -A PAPER_ROWS=([MNLI]=392702 [QQP]=363846 [QNLI]=104743 [SST-2]=67349 [CoLA]=8551 [STS-B]=5749 [MRPC]=3668 [RTE]=2490 [WNLI]=635)
round_steps() {  # updates per IMP round
  if [ "$PROFILE" = paper ]; then echo "${PAPER_ROUND[$1]}"; return; fi  # global batch 32 on any NGPU
  local rows; rows=$(train_rows "$1")
  echo $(( ROUND_EPOCHS * ((rows + BATCH - 1) / BATCH) ))
}
EVENTS=$(($(top_sparsity) / 10))  # IMP stops after the pruning event that reaches the top sparsity
imp_stop() {  # paper: all 10 events over 30 epochs (the schedule spans them); else stop at the top
  [ "$PROFILE" = paper ] || echo "--max_steps $((S * EVENTS))"
}
lower() { echo "$1" | tr '[:upper:]' '[:lower:]'; }
