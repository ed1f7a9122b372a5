#!/usr/bin/env bash
# The first small-scale reproduction on MiniLM-L6 (../shared/data), kept as "the short-round
# variant" (its record is results/small): the `small` profile as it was then, pinned below
# (50/60/70 %, ticket, random pruning and re-init over one seed, dense over 3, the first 2,000
# training rows, the first 500 dev rows, 1-epoch IMP rounds), task after task. STS-B with the pooler left out of the prunable
# set, then STS-B again with the paper's prunable set (pooler included; IMP ticket and random
# pruning) so the pooler's effect is measured, STS-B with structured tickets (heads_ffn: IMP
# ticket and random structured pruning), then MRPC and CoLA (pooler left out). Two runs
# side by side, one thread each. Re-running skips every finished run, so a killed
# reproduction resumes run by run.
#
#   bash scripts/reproduce_small_short_rounds.sh [--dry-run]   # OUT=runs/glue_small by default
#   (it first copies the committed record results/small into OUT: finished runs are skipped)
#   python report.py runs/glue_small --out figs/small
set -euo pipefail
here="$(dirname "$0")"
export PROFILE=small JOBS=${JOBS:-2} OUT=${OUT:-runs/glue_small}
export SPARSITIES="50 60 70" METHODS=${METHODS:-imp random reinit} SEEDS="1 2 3" MASK_SEEDS=1 SEEDS_IMP=1 \
  SEEDS_OMP=1 SEEDS_RANDOM=1 SEEDS_REINIT=1 MAX_EVAL=500 SUBSET_TASKS=none ROUND_EPOCHS=1 SCHEDULE=per_round IMP_LR=1e-4 \
  IMP_TAG=none  # this record named its IMP runs by their set alone
# on a fresh machine, start from the committed slim record: its finished runs are skipped
# (an IMP run whose masks a missing fine-tune needs runs again)
SEED=${SEED:-$here/../results/small}
if [ -d "$SEED" ] && [ "${1:-}" != --dry-run ]; then
  mkdir -p "$OUT" && cp -rn "$SEED"/. "$OUT"/
  source "$here/recipe_lib.sh" && unpack_masks "$OUT"  # the tickets the record carries
fi
SETS=no_pooler TASKS=STS-B bash "$here/glue_tickets.sh" "$@"
SETS=paper TASKS=STS-B METHODS="imp random" bash "$here/glue_tickets.sh" "$@"
# structured tickets (whole heads and FFN neurons) against random structured pruning
SETS=heads_ffn TASKS=STS-B METHODS="imp random" bash "$here/glue_tickets.sh" "$@"
for task in ${MORE_TASKS:-MRPC CoLA}; do
  SETS=no_pooler TASKS=$task bash "$here/glue_tickets.sh" "$@"
done
