"""One-shot pruning of the prunable set, with no training (docs/faithfulness.md §5.1).

``--weight pre``: one-shot magnitude pruning (OMP) of the pre-trained weights.
``--weight rand``: magnitude pruning of freshly initialised weights, i.e. a uniformly random
mask (the random-pruning baseline). ``--structure heads_ffn``: whole attention heads and FFN
neurons instead of single weights (``pre``: lowest mean |w| first; ``rand``: removed uniformly
at random, seeded by ``--seed``), the pooler dense, ``--rate`` of the encoder's weights. Writes ``mask.pt`` (the original format: 73 keys for
BERT-base), its sparsity report ``mask_sparsity.json``, its provenance ``mask_provenance.json``
and ``weight.pt`` (every other tensor,
as the original) to ``--output_dir`` (default ``pretrain_prun/`` or ``random_prun/``); a mask
already there is replaced only with ``--overwrite_output_dir``.

    python oneshot.py --weight pre --model glue --rate 0.5 \
        --model_name_or_path ../shared/data/models/all-MiniLM-L6-v2
"""
import argparse
from pathlib import Path

import torch

from utils.args import Parser, add_structure_arg, command_of
from utils.errors import UserError, run_cli
from utils.importance import unit_scores
from utils.io import atomic_write, check_dir_writable, check_inputs_apart, lock_folder
from utils.magnitude import global_magnitude_prune
from utils.maskfile import save_mask
from utils.masks import PRUNABLE_SETS, effective_state_dict
from utils.models import HEADS, load_model
from utils.provenance import checkpoint_identity, environment, write_record
from utils.rundir import plain_args
from utils.sparsity import format_sparsity
from utils.structured import current_layout, structured_prune


def parse_args(argv=None):
    p = Parser(description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--weight", default="pre", choices=("pre", "rand"),
                   help="prune the pre-trained weights (OMP) or random ones (random pruning)")
    p.add_argument("--model", default="glue", choices=tuple(HEADS),
                   help="task head to build (the mask is the same: heads are never pruned)")
    p.add_argument("--rate", type=float, default=0.2, help="fraction of the prunable set to remove")
    p.add_argument("--model_name_or_path", default="bert-base-uncased", help="local BERT checkpoint")
    p.add_argument("--output_dir", default=None, help="default: pretrain_prun/ (pre) or random_prun/ (rand)")
    p.add_argument("--overwrite_output_dir", action="store_true",
                   help="replace the mask.pt (and weight.pt) already in --output_dir")
    p.add_argument("--seed", type=int, default=42, help="seed of the random weights (--weight rand)")
    p.add_argument("--mask_format", choices=("bool", "float"), default="bool",
                   help="bool (4x smaller) or the original's float32 tensors")
    p.add_argument("--prunable_set", choices=PRUNABLE_SETS, default="paper",
                   help="paper: the 73 matrices incl. the pooler (original); no_pooler: leave the "
                        "pooler out (its mask stays all ones; --rate counts the rest)")
    add_structure_arg(p)
    args = p.parse_args(argv)
    if not 0.0 <= args.rate <= 1.0:
        p.error(f"--rate must lie in [0, 1], got {args.rate}")
    if args.structure_score in ("taylor", "fisher"):
        p.error(f"argument --structure_score: {args.structure_score} needs a task's training batches, which "
                "oneshot.py does not read; use oneshot_structured.py (or an IMP script)")
    return args


def check_output(args):
    """The output folder, refused before anything is written when it is a file, cannot be written,
    holds the model, or already holds a mask (unless --overwrite_output_dir)."""
    out = Path(args.output_dir or ("pretrain_prun" if args.weight == "pre" else "random_prun"))
    check_dir_writable(out, "--output_dir")
    check_inputs_apart(out, {"--model_name_or_path": args.model_name_or_path})
    held = [name for name in ("mask.pt", "weight.pt") if (out / name).exists()]
    if held and not args.overwrite_output_dir:
        raise UserError(f"--output_dir {out} already holds {' and '.join(held)}; use --overwrite_output_dir to "
                        "replace it, or give another --output_dir")
    if out.is_dir():
        lock_folder(out, create=False)  # another run writing there: refused now
    return out


def main(argv=None):
    args = parse_args(argv)
    out = check_output(args)
    model = load_model(args.model, args.model_name_or_path, init=args.weight, seed=args.seed)
    if args.structure == "heads_ffn":
        table = None
        if args.weight == "pre" and args.structure_score != "magnitude":
            table, _ = unit_scores(model, current_layout(model), args.structure_score)
        masks = structured_prune(model, args.rate, how="magnitude" if args.weight == "pre" else "random",
                                 seed=args.seed, table=table)
    else:
        masks = global_magnitude_prune(model, args.rate, prunable_set=args.prunable_set)
    out.mkdir(parents=True, exist_ok=True)
    lock_folder(out)
    report = save_mask(out / "mask.pt", masks, model=model, fmt=args.mask_format,
                       prunable_set=args.prunable_set, structure=args.structure)
    write_record(out / "mask.pt", {
        "kind": "omp" if args.weight == "pre" else "random", "structure": args.structure,
        "script": "oneshot.py", "command": command_of("oneshot.py", args), "task": None, "seed": args.seed,
        "weight": args.weight, "rate": args.rate, "prunable_set": args.prunable_set,
        "sparsity": report["prunable"]["sparsity"], "emptied": [e["key"] for e in report["emptied"]],
        "checkpoint": checkpoint_identity(args.model_name_or_path, model.config, init=args.weight),
        "structured": report.get("structure"), "args": plain_args(args), "environment": environment()})
    weights = {k: v.clone() for k, v in effective_state_dict(model).items()}
    atomic_write(out / "weight.pt", lambda tmp: torch.save(weights, tmp))
    print(f"zero rate {report['prunable']['sparsity']:.4f}")
    print(format_sparsity(report))
    print(f"wrote {out / 'mask.pt'}, {out / 'mask_sparsity.json'}, {out / 'mask_provenance.json'}, "
          f"{out / 'weight.pt'}")
    return report


if __name__ == "__main__":
    run_cli(main)
