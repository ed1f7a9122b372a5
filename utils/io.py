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
        if _kill_requested(path.name):  # fault injection (tests)
            _die_half_written(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


_WRITES = {}


def _kill_requested(name):
    """``BERT_TICKETS_KILL_IN_WRITE=<file name>[:n]``: die during the n-th write (default first)
    of that file name in this process."""
    spec = os.environ.get("BERT_TICKETS_KILL_IN_WRITE")
    if not spec:
        return False
    target, _, nth = spec.partition(":")
    if target != name:
        return False
    _WRITES[name] = _WRITES.get(name, 0) + 1
    return _WRITES[name] == int(nth or 1)


def _die_half_written(tmp):
    """Leave ``tmp`` half-written and SIGKILL this process, as a crash during the write would."""
    import signal

    size = os.path.getsize(tmp)
    with open(tmp, "r+b") as f:
        f.truncate(size // 2)
    os.kill(os.getpid(), signal.SIGKILL)


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
