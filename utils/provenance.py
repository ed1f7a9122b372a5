"""Provenance: what made a mask or a weight file, and which checkpoint it came from.

Every mask file gets a sidecar ``<stem>_provenance.json`` beside it (``mask.pt`` ->
``mask_provenance.json``): the script and command that made it, the kind of mask (``imp``,
``omp``, ``random``), task, seed, pruning event and step (IMP) or rate (one-shot), the
prunable set, its exact sparsity, the sha256 of the mask file and an identity of the
checkpoint it was made from (config hash and weights-file hash). ``pertub_weight.py`` writes
the same kind of record for its output (kind ``shuffle``, with the permutation and seed).

Records are also kept in a small content-addressed index, ``<cache>/records/<sha256>.json``,
so a mask copied by hand without its sidecar (the ``tmp/dif_mask/`` workflow of docs/commands.md) is
still recognised by its bytes. A run that loads a mask or a weight file copies the record and
the file's sha256 into its ``args.json`` (:func:`describe_input`), beside the checkpoint's
identity and the sha256 of every data file it reads (:func:`run_inputs`), which ``--resume``
compares with the files it finds then.

Example::

    rec = mask_record(...)                      # a dict
    write_record("out/checkpoint-3/mask.pt", rec)   # sidecar + index, with the file's sha256
    found = find_record("tmp/dif_mask/mrpc_mask.pt")  # sidecar, else the index, else None
"""
import hashlib
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

from utils.glue import eval_task_names, get_task
from utils.io import read_json, write_json

_HASH_CACHE = {}  # (path, size, mtime_ns) -> sha256: a run hashes its checkpoint once
_VOLATILE_CONFIG = {  # config keys that differ between task heads of one checkpoint
    "architectures", "finetuning_task", "id2label", "label2id", "num_labels", "problem_type",
    "transformers_version", "torch_dtype", "dtype", "_name_or_path", "output_attentions",
    "output_hidden_states", "return_dict", "use_cache", "_attn_implementation_autoset",
}
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


def sha256_file(path, chunk=1 << 22):
    """Hex sha256 of a file's bytes (cached per path, size and mtime within the process)."""
    path = Path(path)
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _HASH_CACHE:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(chunk), b""):
                h.update(block)
        _HASH_CACHE[key] = h.hexdigest()
    return _HASH_CACHE[key]


def sidecar_path(path):
    """``…/mask.pt`` -> ``…/mask_provenance.json``."""
    p = Path(path)
    return p.with_name(p.stem + "_provenance.json")


def index_dir(cache_dir=None):
    """Folder of the content-addressed record index (``$BERT_TICKETS_CACHE/records``)."""
    base = Path(cache_dir) if cache_dir else Path(
        os.environ.get("BERT_TICKETS_CACHE", Path.home() / ".cache" / "bert-tickets"))
    return base / "records"


def config_digest(config):
    """sha256 of the architecture-defining part of a config (the task-head keys left out)."""
    conf = config.to_dict() if hasattr(config, "to_dict") else dict(config)
    conf = {k: v for k, v in conf.items() if k not in _VOLATILE_CONFIG}
    blob = json.dumps(conf, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()


def checkpoint_identity(name_or_path, config, init="pre"):
    """Who the weights came from: the folder, its config digest and its weights file's sha256.

    ``init="rand"`` (random weights of that architecture) records no weights hash.
    """
    ident = {"name_or_path": str(name_or_path), "config_sha256": config_digest(config), "init": init,
             "num_hidden_layers": getattr(config, "num_hidden_layers", None),
             "hidden_size": getattr(config, "hidden_size", None),
             "vocab_size": getattr(config, "vocab_size", None)}
    if init == "pre":
        for name in WEIGHT_FILES:
            f = Path(name_or_path) / name
            if f.is_file():
                ident["weights_file"] = name
                ident["weights_sha256"] = sha256_file(f)
                break
    return ident


def data_files(args):
    """The data files a run reads, from its flags, in reading order (those that exist): GLUE's
    ``train.tsv`` (with ``--do_train``) and dev file(s) in ``--data_dir``; SQuAD's ``--train_file``
    (with ``--do_train``) and ``--predict_file`` (under ``--data_dir`` when given); the MLM texts."""
    files = []
    if hasattr(args, "task_name"):  # GLUE

        task = get_task(args.task_name)
        if args.do_train:
            files.append(Path(args.data_dir) / task.train_file)
        files += [Path(args.data_dir) / get_task(name).dev_file for name in eval_task_names(task.name)]
    elif hasattr(args, "predict_file"):  # SQuAD (utils.squad reads the same paths)
        for flag, default, read in (("train_file", "train-v1.1.json", args.do_train),
                                    ("predict_file", "dev-v1.1.json", True)):
            given = getattr(args, flag, None)
            if read and (given or getattr(args, "data_dir", None)):
                files.append(Path(args.data_dir) / (given or default) if getattr(args, "data_dir", None)
                             else Path(given))
    elif hasattr(args, "train_data_file"):  # MLM
        if args.do_train and args.train_data_file:
            files.append(Path(args.train_data_file))
        if getattr(args, "eval_data_file", None):
            files.append(Path(args.eval_data_file))
    return [f for f in dict.fromkeys(files) if f.is_file()]


def run_inputs(args, config=None, provenance=None):
    """What a run records, when it starts, of the files it reads (``args.json`` ``provenance``):
    what ``provenance`` already holds (the mask, the weight file, the checkpoint of a fixed-mask run), the
    checkpoint's identity with its weights file's sha256 (from ``config``, for an IMP run) and
    ``data``: ``{path: sha256}`` of every data file (:func:`data_files`). ``--resume`` compares
    them (:func:`utils.resume.check_same_inputs`)."""
    prov = dict(provenance or {})
    if "checkpoint" not in prov and config is not None:
        prov["checkpoint"] = checkpoint_identity(args.model_name_or_path, config)
    prov["data"] = {str(f): sha256_file(f) for f in data_files(args)}
    return prov


def same_checkpoint(a, b):
    """False when two identities surely name different checkpoints (weights or config differ)."""
    if not a or not b:
        return True
    if a.get("weights_sha256") and b.get("weights_sha256"):
        return a["weights_sha256"] == b["weights_sha256"]
    return a.get("config_sha256") == b.get("config_sha256")


def write_record(path, record, cache_dir=None):
    """Write ``record`` (plus the file's sha256 and size) as the sidecar of ``path`` and into
    the index; returns the completed record."""
    rec = dict(record)
    rec["file"] = Path(path).name
    rec["sha256"] = sha256_file(path)
    rec["bytes"] = Path(path).stat().st_size
    rec.setdefault("created", time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    write_json(sidecar_path(path), rec)
    try:  # the index is a convenience: a read-only cache must not fail the run
        write_json(index_dir(cache_dir) / f"{rec['sha256']}.json", rec)
    except OSError:
        pass
    return rec


def find_record(path, cache_dir=None):
    """The record of the file at ``path``: its sidecar if it matches the bytes, else the index
    entry for its sha256, else None. The returned record always carries the current sha256."""
    digest = sha256_file(path)
    side = read_json(sidecar_path(path))
    if isinstance(side, dict) and side.get("sha256") == digest:
        return side
    for folder in dict.fromkeys([index_dir(cache_dir), index_dir()]):  # --cache_dir's, then the default
        indexed = read_json(folder / f"{digest}.json")
        if isinstance(indexed, dict) and indexed.get("sha256") == digest:
            return indexed
    return None


def describe_input(path, model_identity=None, what="mask", cache_dir=None):
    """What a run records about a mask or weight file it loads: path, sha256 and the maker's
    record (or ``record: null`` when none is known). Warns when the record names another
    checkpoint than the one this run uses."""
    digest = sha256_file(path)
    record = find_record(path, cache_dir)
    if record is not None and model_identity is not None:
        made_from = record.get("checkpoint")
        if made_from and made_from.get("init", "pre") == "pre" and not same_checkpoint(made_from, model_identity):
            print(f"warning: {what} {path} was made from checkpoint {made_from.get('name_or_path')} "
                  f"but this run uses {model_identity.get('name_or_path')} (same shapes, different "
                  "weights or config)", file=sys.stderr)
    return {"path": str(path), "sha256": digest, "record": record}


def environment():
    """Versions of python and the libraries a result depends on, the project's git commit (and
    whether the tree had uncommitted changes) when run from a checkout, and the start time."""
    versions = {"python": platform.python_version()}
    for name in ("torch", "transformers", "datasets", "numpy"):
        try:
            versions[name] = __import__(name).__version__
        except ImportError:
            versions[name] = None
    env = {"versions": versions, "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
           "host": platform.node()}
    root = Path(__file__).resolve().parents[1]
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True,
                                text=True, timeout=10)
        if commit.returncode == 0:
            status = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                                    capture_output=True, text=True, timeout=10)
            env["git_commit"] = commit.stdout.strip()
            env["git_dirty"] = bool(status.stdout.strip())
    except (OSError, subprocess.SubprocessError):
        pass
    return env


def peak_memory():
    """Peak resident memory of this process (MB) and, where CUDA was used, peak GPU memory."""
    out = {"host_peak_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        out["gpu_peak_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return out
