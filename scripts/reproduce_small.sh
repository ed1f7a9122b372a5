#!/usr/bin/env bash
# The README's small-scale reproduction on MiniLM-L6 (../shared/data), CPU-sized: the `small`
# profile of glue_tickets.sh on STS-B, MRPC and CoLA with the pooler left out of the prunable
# set, then STS-B once more with the paper's prunable set (pooler included) for the IMP ticket
# and random pruning, so the pooler's effect is measured. Two runs side by side, one thread
# each. Re-running skips every finished run, so a killed reproduction resumes run by run.
#
#   bash scripts/reproduce_small.sh [--dry-run]        # OUT=runs/glue_small by default
#   python report.py runs/glue_small --figures figs/small
set -euo pipefail
here="$(dirname "$0")"
export PROFILE=small JOBS=${JOBS:-2} OUT=${OUT:-runs/glue_small}
SETS=no_pooler TASKS="${TASKS:-STS-B MRPC CoLA}" bash "$here/glue_tickets.sh" "$@"
SETS=paper TASKS=STS-B METHODS="imp random" bash "$here/glue_tickets.sh" "$@"
