#!/usr/bin/env bash
# The GPU checks behind the GPU figures of docs/performance.md, in one short run (about 5 minutes on an H200):
#   1. scripts/bench.py --device cuda: masked vs dense training step (MiniLM and BERT-base
#      shapes), fp32 vs bf16 vs fp16 autocast steps, structured (shrunk) vs masked model;
#   2. a dense STS-B fine-tune (all 5,749 training pairs, 3 epochs, lr 1e-4, all 1,500 dev pairs)
#      in fp32, with --fp16 (GradScaler) and with --bf16: score and wall time of each;
#   3. STS-B IMP (the small profile's command: 7 one-epoch rounds on 2,000 pairs, to 79 %)
#      under torchrun with the NCCL backend and --fp16, then its 50 % ticket fine-tuned (fp16).
# Every step runs under its own time limit and the next one runs even if it failed; the
# summary at the end lists each run's headline score, its trivial baseline and wall time.
#
#   MODEL=/path/to/bert DATA=/path/to/glue OUT=/tmp/gpu bash scripts/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
MODEL=${MODEL:-../shared/data/models/all-MiniLM-L6-v2}
DATA=${DATA:-../shared/data/glue}
OUT=${OUT:-runs/gpu_check}
PY=${PYTHON:-python3}
RUNS=$OUT/runs
if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "error: gpu_check.sh needs a CUDA device (torch.cuda.is_available() is False)" >&2
  exit 2
fi
mkdir -p "$RUNS"

step() {  # NAME LIMIT_S COMMAND...: run with a time limit, log to $RUNS/NAME.log, say how it ended
  local name=$1 limit=$2 start=$SECONDS rc
  shift 2
  echo "== $name: $*"
  timeout "$limit" "$@" > "$RUNS/$name.log" 2>&1
  rc=$?
  echo "== $name: exit $rc after $((SECONDS - start)) s"
  [ "$rc" = 0 ] || tail -n 15 "$RUNS/$name.log"
}

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
"$PY" -c "import torch, transformers; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'transformers', transformers.__version__, torch.cuda.get_device_name(0))"

STSB=(--task_name STS-B --data_dir "$DATA/STS-B" --model_type bert --model_name_or_path "$MODEL"
      --do_train --do_eval --do_lower_case --max_seq_length 128 --per_gpu_train_batch_size 32
      --per_gpu_eval_batch_size 64 --learning_rate 1e-4 --overwrite_output_dir --logging_steps 0)

# 1. benchmarks (JSON records in $OUT/bench_cuda.json)
step bench "${BENCH_LIMIT:-240}" "$PY" scripts/bench.py --device cuda \
  --only masked_step,mixed_precision,structured --steps 20 --warmup 3 --json_out "$OUT/bench_cuda.json"

# 2. dense fine-tune in three precisions
for prec in fp32 fp16 bf16; do
  flag=(); [ "$prec" = fp32 ] || flag=(--$prec)
  step "dense_$prec" 150 "$PY" glue_trans.py "${STSB[@]}" --output_dir "$RUNS/dense_$prec" --dir pre \
    --num_train_epochs 3 --save_steps 0 --seed 1 "${flag[@]}"
done

# 3. IMP under torchrun (NCCL) with --fp16, then the 50 % ticket
step imp_torchrun 200 "$PY" -m torch.distributed.run --nproc_per_node 1 LT_glue.py "${STSB[@]}" --max_train_samples 2000 \
  --max_eval_samples 500 --output_dir "$RUNS/imp_fp16" --evaluate_during_training --logging_steps 63 --save_steps 63 \
  --num_train_epochs 10 --max_steps 441 --round_schedule per_round --prunable_set no_pooler \
  --save_round_weights 0 --seed 57 --fp16
ticket=$(ls "$RUNS"/imp_fp16/checkpoint-315/mask.pt 2>/dev/null)
if [ -n "$ticket" ]; then
  step ticket50_fp16 120 "$PY" glue_trans.py "${STSB[@]}" --max_train_samples 2000 --max_eval_samples 500 \
    --output_dir "$RUNS/ticket50_fp16" --dir pre --mask_dir "$ticket" --num_train_epochs 3 --save_steps 0 \
    --seed 1 --fp16
fi

# summary: every run's final headline score and wall time, from the files the runs wrote
"$PY" - "$RUNS" <<'EOF' | tee "$OUT/summary.txt"
import json, sys
from pathlib import Path
from utils.io import read_json
for d in sorted(p for p in Path(sys.argv[1]).iterdir() if p.is_dir()):
    c, r, a = (read_json(d / f, {}) for f in ("complete.json", "results.json", "args.json"))
    if not c:
        print(f"{d.name}: unfinished"); continue
    h, b = c.get("headline") or {}, c.get("baseline") or {}
    print(f"{d.name}: {h.get('metric')} {h.get('value', float('nan')):.1f} (baseline {b.get('value')}) | "
          f"wall {c.get('wall_time_s')} s, device {a.get('device')}, amp {a.get('amp_dtype')}, "
          f"world {a.get('world_size')}, peak memory {json.dumps(r.get('peak_memory'))}")
EOF
tar czf "$OUT/runs.tgz" --exclude='*.pt' --exclude='*.safetensors' --exclude='state*' -C "$OUT" runs
