"""Run under torchrun by tests/test_ddp.py: three IMP rounds of LT_glue's code on two CPU ranks
(gloo), then every rank writes checksums of its masks and weights to ``<out>/rank<r>.json``.

A rank whose mask differed from rank 0's, or whose weights drifted, shows up as a different
checksum. Arguments: the LT_glue.py argv (tiny model and data made by the test).
"""
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

import LT_glue  # noqa: E402
from utils import pruning as P  # noqa: E402
from utils.glue import glue_experiment  # noqa: E402
from utils.lottery import run_imp, start_run  # noqa: E402
from utils.models import load_model  # noqa: E402


def checksum(tensors):
    """Exact digest of a dict of tensors: sums of the float64 values and of their positions."""
    out = {}
    for k, v in tensors.items():
        v = v.detach().double().flatten()
        out[k] = [float(v.sum()), float((v * torch.arange(1, v.numel() + 1, dtype=torch.float64)).sum())]
    return out


def main(argv):
    args = LT_glue.parse_args(argv)
    tokenizer, runtime = start_run(args, "LT_glue.py")
    experiment = glue_experiment(args, runtime, tokenizer)
    model = load_model("glue", args.model_name_or_path, num_labels=2)
    trainer = run_imp(args, runtime, model, experiment, "LT_glue.py")
    masks = P.current_masks(model)
    record = {"rank": runtime.rank, "world_size": runtime.world_size, "global_step": trainer.global_step,
              "pruned": sum(int((~m).sum()) for m in masks.values()),
              "masks": checksum({k: m.float() for k, m in masks.items()}),
              "weights": checksum(P.effective_state_dict(model))}
    Path(args.output_dir, f"rank{runtime.rank}.json").write_text(json.dumps(record))


if __name__ == "__main__":
    main(sys.argv[1:])
