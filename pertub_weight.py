"""Layer-shuffled pre-trained weights (docs/faithfulness.md §5.2).

Permutes the depth order of the encoder layers: target layer i receives all six prunable
matrices of layer perm[i] (one permutation for all six); the pooler, biases, LayerNorms and
embeddings stay put. The file feeds ``--weight_pertub`` of the *_trans.py scripts; it is written in
the format its name asks for (``*.safetensors``, ``*.gz`` gzipped, else ``torch.save``). A shrunk
model (shrink.py) whose layers differ in size is refused: such layers cannot be swapped.

    python pertub_weight.py --model_name_or_path ../shared/data/models/all-MiniLM-L6-v2
    # -> tmp/shuffle_weight.pt, where the README's fine-tuning commands read it
"""
import argparse
import json

from utils.args import Parser, command_of
from utils.errors import run_cli
from utils.io import check_file_writable, save_tensor_dict
from utils.models import load_model, load_weight_file
from utils.provenance import checkpoint_identity, environment, write_record
from utils.rundir import plain_args
from utils.shuffle import shuffled_layer_weights
from utils.shrink import check_swappable


def parse_args(argv=None):
    p = Parser(description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter,
               ranges={"seed": (lambda v: v == -1 or 0 <= v < 2**32, "must be -1 (unseeded) or lie in 0 .. 2**32 - 1")})
    p.add_argument("--model_name_or_path", default="bert-base-uncased", help="local BERT checkpoint")
    p.add_argument("--seed", type=int, default=42,
                   help="seed of the permutation (recorded beside the file; -1: unseeded, as the original)")
    p.add_argument("--output", default="tmp/shuffle_weight.pt",
                   help="file to write (folders are created): *.safetensors as safetensors, *.gz gzipped, "
                        "else torch.save; every form loads with --weight_pertub")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    out = check_file_writable(args.output, "--output")
    model = load_model("glue", args.model_name_or_path)
    check_swappable(model.config, f"--model_name_or_path {args.model_name_or_path}")
    seed = None if args.seed is not None and args.seed < 0 else args.seed
    weights, perm = shuffled_layer_weights(model, seed=seed)
    save_tensor_dict(out, weights)
    load_weight_file(load_model("glue", args.model_name_or_path), out)  # the original's check
    write_record(out, {"kind": "shuffle", "script": "pertub_weight.py", "command": command_of("pertub_weight.py", args),
                       "seed": seed, "permutation": perm, "matrices": len(weights),
                       "checkpoint": checkpoint_identity(args.model_name_or_path, model.config),
                       "args": plain_args(args), "environment": environment()})
    print(f"layer permutation (target <- source): {json.dumps(perm)}")
    print(f"wrote {len(weights)} matrices to {out} (record: {out.with_name(out.stem + '_provenance.json')})")
    return perm


if __name__ == "__main__":
    run_cli(main)
