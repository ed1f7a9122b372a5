"""The IMP budget table: per IMP run under OUT/<task>/imp_* (scripts/imp_budget.sh) and pruning
event, the ticket's overlap with the OMP mask in OUT/masks/omp_<set>_<sparsity>/ beside the
round's learning-rate integral, IMP's in-loop score and the measured movement of the weights.

    python scripts/imp_budget.py runs/imp_budget [--model ../shared/data/models/all-MiniLM-L6-v2]
        [--json_out results/imp_budget/budget.json]
"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from utils.budget import budget_rows, budget_table  # noqa: E402
from utils.errors import UserError, run_cli  # noqa: E402
from utils.io import write_json  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out", help="the recipe's OUT folder")
    p.add_argument("--model", default="../shared/data/models/all-MiniLM-L6-v2",
                   help="the checkpoint IMP rewound to (its model.safetensors gives theta0 for the movement)")
    p.add_argument("--json_out", default=None, help="also write the rows as JSON (atomic)")
    args = p.parse_args(argv)
    out = Path(args.out)
    runs = sorted(d for d in out.glob("*/imp_*") if (d / "complete.json").is_file())
    if not runs:
        raise UserError(f"{out}: no finished IMP run under {out}/<task>/imp_*")
    studies = [budget_rows(d, out / "masks", Path(args.model) / "model.safetensors") for d in runs]
    for st in studies:  # the record names runs inside OUT, not this machine's paths
        st["run"] = str(Path(st["run"]).relative_to(out))
    print(budget_table(studies))
    if args.json_out:
        write_json(args.json_out, studies)


if __name__ == "__main__":
    run_cli(main)
