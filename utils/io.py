"""Atomic file writes: every file the project writes goes to a temporary name in the same
folder and is renamed into place, so a killed writer never leaves a half-written file. Also the
checks that an output folder or file can be written, made before anything is written, and what
makes a run own its output folder: the manifest of the entries runs of this tool wrote there
(``.bert_tickets_manifest.json``; ``--overwrite_output_dir`` clears those and nothing else) and
the lock a run holds for its whole life (``.bert_tickets.lock``, ``fcntl.flock``).

Example::

    write_json("out/results.json", {"acc": 0.8})
    atomic_write("out/mask.pt", lambda tmp: torch.save(masks, tmp))
    save_tensor_dict("tmp/shuffle.safetensors", weights)  # the format its name asks for
"""
import fcntl
import gzip
import io
import json
import os
import shutil
import signal
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from utils.errors import UserError, at_end, first_line


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
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{what} {path} is a folder; give the file, e.g. {_file_in(path, what)}")
    if not path.is_file():
        raise UserError(f"{what} {path} not found")
    if path.stat().st_size == 0:
        raise UserError(f"{what} {path} is empty (0 bytes)")
    try:
        if path.suffix == ".safetensors":
            data = load_file(str(path))
        elif path.suffix == ".gz":
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


def _file_in(folder, what):
    """The file of ``folder`` a user most likely meant: the name this tool writes there (mask.pt,
    shuffle_weight.pt; or its gzipped slim copy), else a ``*.pt`` file of that kind in it (a mask or
    not), else that name."""
    mask = "mask" in what
    usual = "mask.pt" if mask else "shuffle_weight.pt"
    try:  # a mask for --mask_dir, anything but a mask for --weight_pertub
        found = sorted(p.name for p in folder.iterdir() if p.name.endswith((".pt", ".pt.gz"))
                       and ("mask" in p.name) == mask and not p.name.startswith(".") and p.is_file())
    except OSError:
        found = []
    for name in (usual, usual + ".gz", *found):
        if name in found:
            return folder / name
    return folder / usual


def check_cache_dir(path, flag="--cache_dir"):
    """Refuse, before anything runs, a cache folder that is a file or lies below one (each cache
    write would fail). A folder that cannot be written is not refused: the run goes uncached, with a
    warning (:func:`utils.data.cached_dataset`)."""
    if not path:
        return None
    _refuse_below_file(Path(path), flag)
    return Path(path)


def _refuse_below_file(path, flag):
    """Refuse a folder ``path`` that is a file or lies below one; returns its nearest existing
    ancestor (``path`` itself when it exists)."""
    if path.exists() and not path.is_dir():
        raise UserError(f"{flag} {path} is a file, not a folder")
    base = path.absolute()
    while not base.exists() and base.parent != base:
        base = base.parent
    if not base.is_dir():
        raise UserError(f"{flag} {path}: {base} is a file, not a folder")
    return base


def check_dir_writable(path, flag):
    """Refuse, writing nothing, an output folder ``path`` (given by ``flag``) that is a file, lies
    inside a file, or cannot be created or written (a probe folder is made and removed)."""
    path = Path(path)
    base = _refuse_below_file(path, flag)
    try:
        os.rmdir(tempfile.mkdtemp(dir=base, prefix=".bert_tickets_probe-"))
    except OSError as err:
        raise UserError(f"{flag} {path} cannot be written ({err.strerror or err} in {base})") from None
    return path


def check_file_writable(path, flag):
    """Refuse, writing nothing, an output file ``path`` that is a folder or whose folder cannot be written."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{flag} {path} is a folder; give a file name, e.g. {path / 'shuffle_weight.pt'}")
    check_dir_writable(path.parent, f"{flag} {path}: its folder")
    return path


def save_tensor_dict(path, tensors):
    """Write a dict of tensors in the format :func:`load_tensor_dict` reads for that name:
    ``*.safetensors`` as safetensors, ``*.gz`` as a gzipped ``torch.save``, else ``torch.save``."""
    path = Path(path)
    if path.suffix == ".safetensors":
        data = {k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()}
        atomic_write(path, lambda tmp: save_file(data, tmp))
    elif path.suffix == ".gz":
        def write(tmp):
            with gzip.open(tmp, "wb") as f:
                torch.save(tensors, f)
        atomic_write(path, write)
    else:
        atomic_write(path, lambda tmp: torch.save(tensors, tmp))


def check_inputs_apart(out, inputs, flag="--output_dir"):
    """Refuse an output folder ``out`` that is, or holds, one of the run's inputs (``{flag: path}``;
    unset flags and names that are no path, e.g. a hub name, are skipped): writing or clearing it
    could destroy the input."""
    target = Path(out).resolve()
    for name, given in inputs.items():
        if not given or not Path(given).exists():
            continue
        path = Path(given).resolve()
        if path == target or target in path.parents:
            raise UserError(f"{flag} {out} {'is' if path == target else 'holds'} the {name} {given}: writing "
                            f"there could destroy it; give another {flag}")


# --- a run owns its output folder: the manifest of what it wrote, and its lock ---------------

MANIFEST = ".bert_tickets_manifest.json"  # top-level entries runs of this tool wrote in the folder
LOCK = ".bert_tickets.lock"  # flock-ed by the run writing the folder, for its whole life
BOOKKEEPING = (MANIFEST, LOCK)
_LOCKS = {}  # lock file -> open descriptor, for this process


def own_entries(folder):
    """The top-level entries of ``folder`` that runs of this tool recorded writing ({name: "file"|"dir"});
    None when the folder has no manifest."""
    data = read_json(Path(folder) / MANIFEST)
    entries = data.get("entries") if isinstance(data, dict) else None
    return {str(k): v for k, v in entries.items() if v in ("file", "dir")} if isinstance(entries, dict) else None


def claim(folder, names, dirs=(), adopt=False):
    """Record in the manifest that this run writes ``names`` (files) and ``dirs`` (folders) at the top of
    ``folder``; an entry that already exists and is not recorded is someone else's and stays unrecorded
    (it is never removed by a later ``--overwrite_output_dir``), unless ``adopt`` (entries known to be
    a run's of this tool)."""
    folder = Path(folder)
    entries = own_entries(folder) or {}
    new = {n: kind for kind, group in (("file", names), ("dir", dirs)) for n in group
           if n not in entries and (adopt or not (folder / n).exists())}
    if new or not (folder / MANIFEST).is_file():
        write_json(folder / MANIFEST, {"tool": "bert-tickets", "entries": {**entries, **new}})


def settle(folder):
    """At the end of a run: drop from the manifest what was claimed but never written."""
    folder = Path(folder)
    entries = own_entries(folder)
    if entries is not None and any(not (folder / n).exists() for n in entries):
        kept = {n: kind for n, kind in entries.items() if (folder / n).exists()}
        write_json(folder / MANIFEST, {"tool": "bert-tickets", "entries": kept})


def clear_own(folder):
    """Remove what runs of this tool recorded writing in ``folder`` (and only that); returns the names."""
    folder = Path(folder)
    entries = own_entries(folder) or {}
    for name, kind in entries.items():
        path = folder / name
        if Path(name).name != name or name in BOOKKEEPING:
            continue  # the manifest names top-level entries only
        if kind == "dir" and path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif kind == "file" and (path.is_file() or path.is_symlink()):
            path.unlink()
    write_json(folder / MANIFEST, {"tool": "bert-tickets", "entries": {}})
    return sorted(entries)


def is_empty_folder(folder):
    """True when ``folder`` holds nothing but this tool's bookkeeping (manifest, lock)."""
    return not any(p.name not in BOOKKEEPING for p in Path(folder).iterdir())


def lock_folder(folder, flag="--output_dir", create=True):
    """Take the exclusive lock of an output folder (``fcntl.flock`` on ``<folder>/.bert_tickets.lock``)
    for the rest of the run, so a second run into the same folder is refused at once, in one line.
    ``create=False`` only checks and takes an existing lock file (writing nothing). Taking a lock this
    process already holds is a no-op; :func:`release_locks` gives them all back."""
    path = Path(folder) / LOCK
    key = str(path.resolve())
    if key in _LOCKS or (not create and not path.is_file()):
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT if create else os.O_RDONLY, usual_mode())
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as err:
        holder = _lock_holder(fd)
        os.close(fd)
        if err.errno in (11, 35):  # EAGAIN/EWOULDBLOCK: another process holds it
            raise UserError(f"{flag} {folder} is in use by another run{holder} (it holds {path}); wait for it "
                            f"to end or give another {flag}") from None
        return  # a file system without flock: no lock, as before
    _LOCKS[key] = fd
    at_end(release_locks)  # run_cli gives the lock back when the script's main ends
    if create:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())


def _lock_holder(fd):
    try:
        pid = os.pread(fd, 32, 0).decode().strip()
    except OSError:
        return ""
    return f" (pid {pid})" if pid.isdigit() else ""


def release_locks():
    """Give back every output-folder lock this process holds (the end of a run; :func:`utils.errors.run_cli`)."""
    while _LOCKS:
        _, fd = _LOCKS.popitem()
        try:
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)
