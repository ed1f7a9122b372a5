"""Exporting a model as a folder every script loads (``--save_model``, ``shrink.py``,
``oneshot_structured.py --rescale``): config with the per-layer sizes of a shrunk model,
effective weights, tokenizer files; written to a temporary folder and moved in at the end.

Above model loading (:mod:`utils.models`) and the shrunk architecture (:mod:`utils.shrink`),
which model loading uses.
"""
import os
import shutil
import tempfile
from pathlib import Path

from safetensors.torch import save_file

from utils.args import command_of
from utils.errors import UserError
from utils.io import atomic_write, usual_mode
from utils.masks import effective_state_dict, unwrap
from utils.models import load_tokenizer
from utils.provenance import environment, write_record
from utils.shrink import STALE_WEIGHTS, TOKENIZER_FILES, WEIGHTS, record_sizes


def save_weights(model, folder):
    """Write the model's effective weights (plain keys) as ``model.safetensors`` plus its
    ``config.json``: the folder loads with ``from_pretrained``, unlike the original's pickles."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state, seen = {}, set()
    for k, v in effective_state_dict(model).items():
        ptr = (v.data_ptr(), v.shape)
        state[k] = v.detach().cpu().clone() if ptr in seen else v.detach().cpu().contiguous()
        seen.add(ptr)  # tied tensors (MLM decoder = word embeddings) are stored twice
    atomic_write(folder / WEIGHTS, lambda tmp: save_file(state, tmp))
    unwrap(model).config.save_pretrained(folder)


def _copy_tokenizer(source, folder):
    src = Path(source)
    copied = [n for n in TOKENIZER_FILES if (src / n).is_file()] if src.is_dir() else []
    for name in copied:
        shutil.copyfile(src / name, folder / name)
    if not copied:  # a name in the local HF cache: let the tokenizer write its own files
        load_tokenizer(str(source)).save_pretrained(str(folder))


def save_model_folder(model, out_dir, tokenizer_source):
    """Write ``model`` (any BertFor… model: shrunk, masked or dense) to ``out_dir`` as a folder
    every script loads: ``config.json`` (with the per-layer sizes of a shrunk model),
    ``model.safetensors`` (effective weights, no mask buffers) and the tokenizer files of
    ``tokenizer_source``. Everything is written to a temporary folder beside ``out_dir`` first
    and moved in at the end, so a failure leaves nothing half-written. Returns ``out_dir``."""
    model = unwrap(model)
    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.exists() and not out.is_dir():
        raise UserError(f"{out} is a file, not a folder")
    record_sizes(model)
    model.config.architectures = [type(model).__name__]  # not the checkpoint's (often BertModel)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp"))
    try:
        _copy_tokenizer(tokenizer_source, tmp)  # first: the source may be out_dir itself
        save_weights(model, tmp)  # model.safetensors + config.json
        if not out.exists():
            os.chmod(tmp, usual_mode(folder=True))  # mkdtemp makes 0700 folders
            os.replace(tmp, out)
            return out
        for name in STALE_WEIGHTS:  # weights of an earlier export would shadow nothing but confuse
            (out / name).unlink(missing_ok=True)
        for path in sorted(tmp.iterdir(), key=lambda p: p.name == WEIGHTS):  # the weights last
            os.replace(path, out / path.name)
        return out
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def save_finetuned(args, model, script, provenance):
    """``--save_model`` of the *_trans.py scripts: the fine-tuned model (mask applied), its
    config and tokenizer into ``<output_dir>/model/``, with a provenance record beside the
    weights (``model_provenance.json``) naming the run's inputs (``provenance``). Returns the folder."""
    folder = Path(args.output_dir) / "model"
    save_model_folder(model, folder, args.tokenizer_name or args.model_name_or_path)
    mask = provenance.get("mask") or {}
    write_record(folder / WEIGHTS, {
        "kind": "finetuned", "script": script, "command": command_of(script.split()[0], args),
        "seed": args.seed, "init": args.dir or "pre", "mask": {"path": mask.get("path"), "sha256": mask.get("sha256")},
        "weight_pertub": args.weight_pertub, "checkpoint": provenance.get("checkpoint"),
        "environment": environment()}, getattr(args, "cache_dir", "") or None)
    print(f"--save_model: wrote {folder} (config.json, {WEIGHTS}, tokenizer)")
    return folder
