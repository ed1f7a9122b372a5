"""Report of finished runs: Table 2, score against sparsity and the transfer matrix, as
Markdown on stdout, CSV files and PNG figures (utils/report.py, utils/figures.py).

    python report.py runs/glue_small                    # tables on stdout, files in runs/glue_small/report/
    python report.py runs/glue_small --out figs/small --transfer_sparsity 70
    python report.py runs/glue_small --bench bench.json  # + structured speed-ups (scripts/bench.py --json_out)
"""
import argparse
from pathlib import Path

from utils.archive import check_slim_target, slim_copy
from utils.args import Parser
from utils.errors import run_cli
from utils.io import check_dir_writable
from utils.report import write_report


def parse_args(argv=None):
    p = Parser(description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("runs_dir", help="folder holding the runs (any depth)")
    p.add_argument("--out", default=None,
                   help="where report.md, the CSVs and the figures go (default: RUNS_DIR/report; a committed "
                        "record's figures: report.py results/NAME --out figs/NAME)")
    p.add_argument("--no_figures", action="store_true", help="tables only")
    p.add_argument("--transfer_sparsity", type=int, default=70, help="sparsity (%%) of the transfer matrix")
    p.add_argument("--slim_copy", default=None, metavar="DIR",
                   help="also copy the runs' slim records (JSON only: no weights or masks) to DIR, "
                        "from which the same report regenerates")
    p.add_argument("--slim_masks", default="", metavar="LEVELS",
                   help="with --slim_copy: also the IMP tickets at these sparsities (comma-separated "
                        "percents; a structured run's at every sparsity, about 40 kB each), gzipped "
                        "(mask.pt.gz), so pending fine-tunes need no new IMP run")
    p.add_argument("--bench", default=None, metavar="FILE",
                   help="scripts/bench.py output (its --json_out list, or its JSON lines): append the "
                        "'Structured speed-ups' table and write structured_speed.csv")
    args = p.parse_args(argv)
    levels = mask_levels(args)
    if any(not v.isdigit() for v in levels):
        p.error(f"argument --slim_masks: give sparsities in percent, e.g. 50,60,70, not {args.slim_masks!r}")
    if levels and not args.slim_copy:
        p.error("argument --slim_masks: only with --slim_copy DIR")
    return args


def mask_levels(args):
    """``--slim_masks`` as a list of sparsities (strings of digits when valid)."""
    return [v for v in args.slim_masks.replace(",", " ").split() if v]


def main(argv=None):
    args = parse_args(argv)
    out = args.out or str(Path(args.runs_dir) / "report")
    check_dir_writable(out, "--out")
    if args.slim_copy:
        check_slim_target(args.runs_dir, args.slim_copy)
        check_dir_writable(args.slim_copy, "--slim_copy")
    text, _, figures = write_report(args.runs_dir, out, figures=not args.no_figures,
                                    transfer_sparsity=args.transfer_sparsity, bench=args.bench)
    print(text, end="")
    print(f"wrote {out}/report.md, table2.csv, curves.csv, transfer.csv"
          + (", structured_speed.csv" if args.bench else "")
          + (f" and {len(figures)} figure(s)" if figures else ""))
    if args.slim_copy:
        print(f"copied {slim_copy(args.runs_dir, args.slim_copy, mask_levels(args))} record files to {args.slim_copy}")
    return text


if __name__ == "__main__":
    run_cli(main)
