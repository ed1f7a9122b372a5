"""What every data family shares: on-disk caches of tokenised data sets (one key scheme, one
atomic write) and the padding collator.

A cache folder is named ``<prefix>_<digest>``; the digest hashes the data file's identity
(absolute path, size, mtime), the tokenizer (class, size, name and full definition) and every
preprocessing parameter, so a changed file, tokenizer or setting never reuses a stale cache.
Folders are written with ``save_to_disk`` into a temporary sibling and renamed into place.
"""
import hashlib
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import torch
from datasets import load_from_disk

from utils.errors import UserError, first_line

CACHE_VERSION = 2  # bump when any cached layout changes


def tokenizer_fingerprint(tokenizer):
    """Hash of the full tokenizer definition (vocabulary, normaliser, lower-casing…)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        spec = json.dumps(sorted(tokenizer.get_vocab().items()))
    else:  # drop the truncation/padding state that every call leaves behind
        spec = {k: v for k, v in json.loads(backend.to_str()).items() if k not in ("truncation", "padding")}
        spec = json.dumps(spec, sort_keys=True)
    return hashlib.sha256(spec.encode("utf-8")).hexdigest()


def cache_folder(path, tokenizer, prefix, params, cache_dir=None):
    """(cache folder, digest) for one data file; ``cache_dir`` or ``.cache/`` beside the file."""
    path = Path(path).resolve()
    stat = path.stat()
    key = {
        "version": CACHE_VERSION, "data": str(path), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns,
        "tokenizer_class": type(tokenizer).__name__, "vocab_size": len(tokenizer),
        "name_or_path": str(getattr(tokenizer, "name_or_path", "")),
        "tokenizer": tokenizer_fingerprint(tokenizer), "params": params,
    }
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode("utf-8")).hexdigest()[:16]
    root = Path(cache_dir) if cache_dir else path.parent / ".cache"
    return root / f"{prefix}_{digest}", digest


def save_atomic(dataset, target):
    """``save_to_disk`` into a temporary sibling folder, then rename it into place."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.tmp-")
    try:
        dataset.save_to_disk(tmp)
        old = None
        if target.exists():  # overwrite_cache: a rename cannot replace a non-empty folder
            old = tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.old-")
            os.replace(target, Path(old) / "data")
        try:
            os.replace(tmp, target)
        except OSError:  # another process wrote the same cache meanwhile: keep theirs
            pass
        if old:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _load_cache(target, load_from_disk):
    """A cached data set; a damaged one (a file missing or cut) is refused naming the folder and the flag
    that rebuilds it."""
    try:
        return load_from_disk(str(target))
    except (OSError, ValueError, IndexError, KeyError) as err:  # a file gone or cut, ArrowInvalid, bad JSON state
        missing = isinstance(err, FileNotFoundError) and err.filename
        why = f"{Path(err.filename).name} is missing" if missing else first_line(err, 120)
        raise UserError(f"the tokenised-data cache {target} is damaged ({why}); rebuild it with --overwrite_cache") from None


def cached_dataset(path, tokenizer, prefix, params, build, cache_dir=None, overwrite=False):
    """Load the cached data set for (file, tokenizer, params), or ``build(digest)`` and cache it.

    ``build`` receives the digest (a stable fingerprint for ``Dataset.map``). An unwritable
    cache folder costs a warning, not the run.
    """
    target, digest = cache_folder(path, tokenizer, prefix, params, cache_dir)
    if target.is_dir() and not overwrite:
        return _load_cache(target, load_from_disk)
    dataset = build(digest)
    if len(dataset) == 0:  # datasets cannot load an empty saved set back; the caller refuses it anyway
        return dataset
    try:
        save_atomic(dataset, target)
    except OSError as err:
        print(f"warning: cannot write the cache {target} ({err.strerror or err}); running uncached",
              file=sys.stderr)
    return dataset


class PaddingCollator:
    """Pads ``input_ids`` (pad id), ``token_type_ids`` and ``attention_mask`` (0) to the batch's
    longest row, or to ``pad_to_max_length`` when it is an int (the original padded every batch
    to --max_seq_length); label columns become tensors (float for STS-B regression). Columns it
    does not know (SQuAD's offsets, example ids) are dropped.
    """

    pad_keys = ("input_ids", "token_type_ids", "attention_mask")
    label_keys = ("labels", "start_positions", "end_positions")

    def __init__(self, tokenizer, pad_to_max_length=None):
        self.pad_values = {"input_ids": tokenizer.pad_token_id, "token_type_ids": 0, "attention_mask": 0}
        self.pad_to_max_length = pad_to_max_length

    def __call__(self, features):
        """Batch of tensors from a list of feature dicts."""
        longest = max(len(f["input_ids"]) for f in features)
        length = self.pad_to_max_length or longest
        if longest > length:
            raise ValueError(f"a sequence of {longest} tokens does not fit pad_to_max_length={length}")
        batch = {}
        for key, pad in self.pad_values.items():
            if key in features[0]:
                rows = [list(f[key]) + [pad] * (length - len(f[key])) for f in features]
                batch[key] = torch.tensor(rows, dtype=torch.long)
        for key in self.label_keys:
            if key in features[0]:
                values = [f[key] for f in features]
                dtype = torch.float if isinstance(values[0], float) else torch.long
                batch[key] = torch.tensor(values, dtype=dtype)
        return batch
