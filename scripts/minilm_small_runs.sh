#!/usr/bin/env bash
# Small reproductions on a CPU machine with the MiniLM-L6 checkpoint and data in ../shared/data.
# Each run's wall time goes to $OUT/<name>.time, its log to $OUT/<name>.log, its results to
# $OUT/<name>/results.json. Usage: bash scripts/minilm_small_runs.sh [mrpc|stsb|squad|mlm ...]
set -euo pipefail
cd "$(dirname "$0")/.."
D=${DATA:-../shared/data}
M=$D/models/all-MiniLM-L6-v2
OUT=${OUT:-out/small}
mkdir -p "$OUT"

timed() {  # timed NAME SCRIPT ARGS...: run, log, record the wall time in seconds
  local name=$1; shift
  local start=$SECONDS
  python -u "$@" --output_dir "$OUT/$name" --overwrite_output_dir > "$OUT/$name.log" 2>&1
  echo $((SECONDS - start)) > "$OUT/$name.time"
  echo "$name: $((SECONDS - start)) s"
}

glue() {  # the paper's GLUE fine-tuning recipe: batch 32, lr 2e-5, seq 128, seed 57
  local task=$1 epochs=$2 log=$3
  timed "${task,,}_dense" glue_trans.py --dir pre --task_name "$task" --data_dir "$D/glue/$task" \
    --model_name_or_path "$M" --do_train --do_eval --do_lower_case --max_seq_length 128 \
    --per_gpu_train_batch_size 32 --learning_rate 2e-5 --num_train_epochs "$epochs" \
    --evaluate_during_training --logging_steps "$log" --save_steps 0 --seed 57
}

for what in "${@:-mrpc stsb squad mlm}"; do
  for w in $what; do
    case $w in
      mrpc) glue MRPC 3 115 ;;    # 3668 examples: 115 steps per epoch
      stsb) glue STS-B 1 90 ;;    # 5749 examples: 180 steps per epoch
      squad)  # SQuAD v1.1 dev split by article: train on 38 articles, evaluate on the other 10
        timed squad_dense squad_trans.py --dir pre --model_name_or_path "$M" --do_train --do_lower_case \
          --train_file "$D/squad/train-split-of-dev-v1.1.json" --predict_file "$D/squad/eval-split-of-dev-v1.1.json" \
          --max_seq_length 192 --doc_stride 64 --per_gpu_train_batch_size 16 --learning_rate 1e-4 --max_eval_samples 300 \
          --max_steps 40 --logging_steps 0 --save_steps 0 --bf16 --seed 57 ;;
      mlm)  # WikiText-2: train on test.txt, evaluate on valid.txt (MiniLM has no MLM head: it starts random)
        timed mlm_dense pretrain_trans.py --dir pre --mlm --model_name_or_path "$M" \
          --train_data_file "$D/wikitext-2/test.txt" --eval_data_file "$D/wikitext-2/valid.txt" --block_size 128 \
          --do_train --evaluate_during_training --per_gpu_train_batch_size 8 --per_gpu_eval_batch_size 16 \
          --learning_rate 1e-4 --max_steps 60 --logging_steps 30 --save_steps 0 --max_eval_samples 100 --bf16 --seed 57 ;;
      *) echo "unknown run $w (mrpc, stsb, squad, mlm)" >&2; exit 2 ;;
    esac
  done
done
