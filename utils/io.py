"""Atomic file writes: every file the project writes goes to a temporary name in the same
folder and is renamed into place, so a killed writer never leaves a half-written file.

Example::

    write_json("out/results.json", {"acc": 0.8})
    atomic_write("out/mask.pt", lambda tmp: torch.save(masks, tmp))
"""
import json
import os
import tempfile
from pathlib import Path


def atomic_write(path, write_fn):
    """Write a file through ``write_fn(tmp_path)`` then rename it into place: never half-written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write_fn(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_json(path, obj):
    """Atomic JSON write (indent 1, keys in insertion order)."""
    def _write(tmp):
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(obj, f, indent=1, ensure_ascii=False)
            f.write("\n")
    atomic_write(path, _write)


def write_text(path, text):
    """Atomic text write."""
    def _write(tmp):
        with open(tmp, "w") as f:
            f.write(text)
    atomic_write(path, _write)


def read_json(path, default=None):
    """The JSON value in ``path``, or ``default`` when the file is missing or not JSON."""
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return default
