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
        os.chmod(tmp, usual_mode())  # mkstemp makes 0600 files; give the usual permissions
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


_WRITES = {}


def _read_umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _read_umask()  # read once: os.umask is process-wide, and states are written from a thread


def usual_mode(folder=False):
    """The permissions a plain ``open``/``mkdir`` would give under this process's umask
    (``tempfile`` makes 0600 files and 0700 folders)."""
    return (0o777 if folder else 0o666) & ~_UMASK


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


def load_tensor_dict(path, what):
    """A dict of tensors saved with ``torch.save`` (loaded with ``weights_only=True``, onto the
    CPU) or as safetensors; a gzipped ``torch.save`` file (``*.gz``, as the slim records ship
    tickets) is read through gzip. ``what`` names the file in errors, e.g. ``"mask file"``: a
    missing, empty, truncated or foreign file raises :class:`utils.errors.UserError` in one line."""
    from pathlib import Path

    import torch

    from utils.errors import UserError, first_line

    path = Path(path)
    if not path.is_file():
        raise UserError(f"{what} {path} not found")
    if path.stat().st_size == 0:
        raise UserError(f"{what} {path} is empty (0 bytes)")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            data = load_file(str(path))
        elif path.suffix == ".gz":
            import gzip
            import io

            with gzip.open(path, "rb") as f:
                data = torch.load(io.BytesIO(f.read()), map_location="cpu", weights_only=True)
        else:
            data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # not a torch file, truncated, or a pickle of arbitrary objects
        raise UserError(f"{what} {path} is not readable (not a torch.save or safetensors file, or truncated "
                        f"or damaged: {first_line(err, 120)})") from None
    if not isinstance(data, dict) or not data or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise UserError(f"{what} {path} is not a dict of tensors")
    return data
