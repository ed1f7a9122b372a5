# GLUE settings and helpers shared by glue_tickets.sh and transfer.sh (sourced after
# recipe_lib.sh): the budget profiles, the flags every GLUE run shares, IMP round lengths.
recipe_settings glue
DATA=${DATA:-../shared/data/glue}

case "$PROFILE" in
  paper)  # the paper's commands: full data, lr 2e-5, IMP rounds of 3 epochs, 3-epoch fine-tunes
    TASKS=${TASKS:-MNLI QQP STS-B WNLI QNLI MRPC RTE SST-2 CoLA}
    SPARSITIES=${SPARSITIES:-10 20 30 40 50 60 70 80 90}
    METHODS=${METHODS:-imp random omp reinit shuffled}
    SETS=${SETS:-paper}
    LR=2e-5; BATCH=32; SEQ=128; FT_EPOCHS=3; ROUND_EPOCHS=3; MAX_TRAIN=""; MAX_EVAL=""
    SCHEDULE=whole_run; AMP="" ;;
  small)  # the small-scale reproduction on CPU (README): subsets, lr 1e-4, 1-epoch rounds;
          # CoLA trains on all 8,551 rows (on 2,000 the dense model reached only 11.3 Matthews)
    TASKS=${TASKS:-STS-B MRPC CoLA}
    TRAIN_ALL=${TRAIN_ALL:-CoLA}
    SPARSITIES=${SPARSITIES:-50 60 70}
    METHODS=${METHODS:-imp random reinit}
    SETS=${SETS:-no_pooler}
    LR=1e-4; BATCH=32; SEQ=128; FT_EPOCHS=3; ROUND_EPOCHS=1; MAX_TRAIN=2000; MAX_EVAL=500
    SCHEDULE=per_round; AMP="" ;;
  quick)  # the README's quickstart: one task, minutes on 2 CPU cores (lr 2e-4 and 5-epoch
          # fine-tunes: at 1e-4 and 3 epochs the 50 % ticket reached only 31.7 Pearson)
    TASKS=${TASKS:-STS-B}
    SPARSITIES=${SPARSITIES:-50}
    METHODS=${METHODS:-imp random}
    SETS=${SETS:-no_pooler}
    SEEDS=${SEEDS_QUICK:-1 2}
    LR=2e-4; BATCH=32; SEQ=64; FT_EPOCHS=5; ROUND_EPOCHS=1; MAX_TRAIN=640; MAX_EVAL=300
    SCHEDULE=per_round; AMP="" ;;
  *) echo "error: PROFILE must be paper, small or quick, not '$PROFILE'" >&2; exit 2 ;;
esac
BATCH_PER_GPU=$(per_process "$BATCH")
need_model "and DATA=<GLUE root>"

LAUNCH=$(py)
max_train() {  # TASK: the training-row cap (none for the tasks in TRAIN_ALL)
  case " ${TRAIN_ALL:-} " in *" $1 "*) echo "" ;; *) echo "$MAX_TRAIN" ;; esac
}
subset() {  # TASK
  local cap; cap=$(max_train "$1")
  echo "${cap:+--max_train_samples $cap} ${MAX_EVAL:+--max_eval_samples $MAX_EVAL}"
}
common() {  # TASK: the flags every GLUE run shares
  echo "--task_name $1 --data_dir $DATA/$1 --model_type bert --model_name_or_path $MODEL --do_train --do_eval" \
       "--do_lower_case --max_seq_length $SEQ --per_gpu_train_batch_size $BATCH_PER_GPU" \
       "--per_gpu_eval_batch_size 64 --learning_rate $LR $(subset "$1") $AMP --overwrite_output_dir $EXTRA"
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
