"""Shrink a model with a structured mask: cut the pruned heads and FFN neurons out for real.

Loads ``--model_name_or_path`` (a pre-trained checkpoint, or a fine-tuned folder written with
``--save_model``), checks the mask against it (``--structure heads_ffn`` masks only: whole heads
and FFN neurons), slices every encoder layer and writes ``--output_dir``: ``config.json`` (with
the per-layer sizes), ``model.safetensors``, the tokenizer files and ``model_provenance.json``.
The folder is a ``--model_name_or_path`` for every script (``utils.models.load_model``; in
Python ``utils.models.load_model("glue", DIR)``); its outputs equal the masked model's.

    python shrink.py --mask_dir out/structured/mask.pt --model glue \
        --model_name_or_path ../shared/data/models/all-MiniLM-L6-v2 --output_dir small/
"""
import argparse
import types
from pathlib import Path

from utils.args import Parser, command_of, input_paths
from utils.errors import run_cli
from utils.io import check_inputs_apart, lock_folder
from utils.models import HEADS, load_model
from utils.provenance import checkpoint_identity, describe_input, environment, write_record
from utils.sparsity import load_mask
from utils.export import save_model_folder
from utils.shrink import WEIGHTS, count_parameters, shrink_model
from utils.rundir import check_output_dir, plain_args


def parse_args(argv=None):
    p = Parser(description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--mask_dir", required=True, help="structured mask.pt (--structure heads_ffn)")
    p.add_argument("--model_name_or_path", required=True,
                   help="local BERT checkpoint, or a fine-tuned folder written with --save_model")
    p.add_argument("--output_dir", required=True, help="folder for the smaller model (created)")
    p.add_argument("--model", default="glue", choices=tuple(HEADS),
                   help="task head to build (a fine-tuned folder's head is kept; a checkpoint's starts random)")
    p.add_argument("--tokenizer_name", default="", help="tokenizer folder if not the model's")
    p.add_argument("--overwrite_output_dir", action="store_true", help="allow a non-empty --output_dir")
    p.add_argument("--cache_dir", default="", help="provenance index folder (default ~/.cache/bert-tickets)")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    out = Path(args.output_dir)
    # checks first: nothing is written until the model and the mask have been accepted
    check_output_dir(types.SimpleNamespace(output_dir=out, do_train=True,
                                           overwrite_output_dir=args.overwrite_output_dir))
    check_inputs_apart(out, input_paths(args))
    if out.is_dir():
        lock_folder(out, create=False)  # another run writing there: refused now
    model = load_model(args.model, args.model_name_or_path)
    identity = checkpoint_identity(args.model_name_or_path, model.config)
    masks = load_mask(args.mask_dir, model)
    before = count_parameters(model)

    # shrink, then save the folder and its record
    model, layout = shrink_model(model, masks, f"mask {args.mask_dir}")
    after = count_parameters(model)
    out.mkdir(parents=True, exist_ok=True)
    lock_folder(out)
    save_model_folder(model, out, args.tokenizer_name or args.model_name_or_path)
    kept = [{"heads": x["heads"].nonzero().reshape(-1).tolist(), "neurons": int(x["neurons"].sum()),
             "heads_total": int(x["heads"].numel()), "neurons_total": int(x["neurons"].numel())} for x in layout]
    cache = args.cache_dir or None
    write_record(out / WEIGHTS, {
        "kind": "shrunk", "script": "shrink.py", "command": command_of("shrink.py", args), "model": args.model,
        "mask": describe_input(args.mask_dir, identity, "mask", cache), "checkpoint": identity,
        "parameters_before": before, "parameters_after": after, "layers": kept,
        "args": plain_args(args), "environment": environment()}, cache)

    # report
    print(f"parameters: {before:,} -> {after:,} ({100.0 * after / before:.1f} % kept)")
    for i, k in enumerate(kept):
        dead = " (one zeroed head stays: transformers needs >= 1)" if not k["heads"] else ""
        print(f"layer {i}: {len(k['heads'])}/{k['heads_total']} heads {k['heads']}{dead}, "
              f"{k['neurons']}/{k['neurons_total']} FFN neurons")
    print(f"wrote {out} (config.json, {WEIGHTS}, tokenizer, model_provenance.json)")
    return {"parameters_before": before, "parameters_after": after, "layers": kept, "output_dir": str(out)}


if __name__ == "__main__":
    run_cli(main)
