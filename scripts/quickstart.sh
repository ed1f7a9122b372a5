#!/usr/bin/env bash
# Quickstart: a lottery ticket end to end in minutes on 2 CPU cores, offline, on MiniLM-L6 and
# STS-B from ../shared/data (the `quick` profile of glue_tickets.sh): IMP to 50 % sparsity
# (5 one-epoch rounds on 640 training pairs, the pooler left out of the prunable set), the
# dense model (2 seeds), then the 50 % ticket, the one-shot magnitude mask of the pre-trained
# weights (OMP) and a random 50 % mask fine-tuned with the mask fixed (5 epochs, lr 2e-4); then
# the report's Table 2, the ticket against dense and OMP, and the figure.
#
#   bash scripts/quickstart.sh            # runs in runs/quickstart, report in runs/quickstart/report
#   MODEL=/path/to/bert DATA=/path/to/glue bash scripts/quickstart.sh
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${MODEL:-../shared/data/models/all-MiniLM-L6-v2}
DATA=${DATA:-../shared/data/glue}
OUT=${OUT:-runs/quickstart}
if [ ! -d "$MODEL" ] || [ ! -f "$DATA/STS-B/train.tsv" ]; then
  echo "error: quickstart needs a BERT checkpoint folder and the GLUE STS-B files: pass MODEL=<checkpoint folder> DATA=<GLUE root with STS-B/train.tsv, dev.tsv> (defaults ../shared/data/models/all-MiniLM-L6-v2 and ../shared/data/glue)" >&2
  exit 2
fi
start=$SECONDS
PROFILE=quick JOBS=${JOBS:-2} MODEL=$MODEL DATA=$DATA OUT=$OUT bash scripts/glue_tickets.sh "$@"
[ "${1:-}" = --dry-run ] && exit 0
${PYTHON:-python} report.py "$OUT" --out "$OUT/report" | sed -n '/^## Table 2/,/^## Tickets of different tasks/p' | sed '$d'
echo "figure: $OUT/report/curve_sts-b_no_pooler.png; full report: $OUT/report/report.md"
echo "quickstart: $((SECONDS - start)) s"
