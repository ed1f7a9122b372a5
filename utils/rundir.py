"""A run's output folder: checked before anything is written, then owned by the run.

A folder holds one run. :func:`check_output_dir` refuses, before anything is written, a folder
the run may not write (a file, unwritable, not empty without ``--overwrite_output_dir``, a
finished run under an evaluation-only one); :func:`prepare_output_dir` takes its lock and
records in its manifest (:mod:`utils.io`) what the run will write; :func:`save_args` writes
``args.json``, the run's identity: its flags, its runtime, the script and command, the
environment and the provenance of every input it read.
"""
from pathlib import Path

from utils.args import command_of
from utils.errors import UserError
from utils.io import (
    BOOKKEEPING,
    LOCK,
    check_dir_writable,
    claim,
    clear_own,
    is_empty_folder,
    lock_folder,
    own_entries,
    read_json,
    release_locks,
    write_json,
)
from utils.provenance import environment

COMPLETE = "complete.json"  # written last, only by a run that reached its end
FAILED = "failed.json"  # written instead, by a run that stopped (its loss or weights became NaN/inf)
STALE_FILES = {"results.json", "result.pt", "args.json", "predictions.json", "nbest_predictions.json"}
# what a training run may write at the top of its folder (checkpoint-<step>/ is claimed when made)
RUN_FILES = (*sorted(STALE_FILES), COMPLETE, FAILED)
RUN_DIRS = ("runs", "resume", "model")


def check_output_dir(config):
    """Refuse, before anything is written, an ``--output_dir`` that is a file or cannot be written,
    a non-empty folder without ``--overwrite_output_dir``, and, for an evaluation-only run (no
    ``--do_train``), a folder holding a finished or failed run (only an earlier evaluation-only
    run may be replaced, with ``--overwrite_output_dir``)."""
    out = check_dir_writable(config.output_dir, "--output_dir")
    if out.is_dir() and not is_empty_folder(out) and config.do_train and not config.overwrite_output_dir:
        raise UserError(f"--output_dir {out} exists and is not empty; use --overwrite_output_dir")
    if config.do_train or not out.is_dir() or getattr(config, "resume", False):
        return
    for name in (COMPLETE, FAILED):
        if (out / name).is_file():
            earlier = read_json(out / name)
            kind = earlier.get("kind") if isinstance(earlier, dict) else None
            if kind != "eval_only":
                raise UserError(f"--output_dir {out} holds a {'finished' if name == COMPLETE else 'failed'} run "
                                f"({name}): an evaluation-only run (no --do_train) never replaces it; give "
                                "another --output_dir")
            if not config.overwrite_output_dir:
                raise UserError(f"--output_dir {out} holds an evaluation-only run ({name}); use "
                                "--overwrite_output_dir to replace it")


def prepare_output_dir(config):
    """Create ``--output_dir`` and take its lock for the rest of the run; refuse a non-empty one
    unless ``--overwrite_output_dir``, which removes what earlier runs of this tool recorded writing
    there (the manifest, :mod:`utils.io`) and nothing else, so ``--output_dir .`` never touches a
    folder that only shares a name (``runs/``); then record what this run will write.

    A completion marker left by an earlier run in the folder is removed first, so a run that
    is killed never looks finished."""
    check_output_dir(config)
    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    fresh_lock = not (out / LOCK).exists()
    lock_folder(out)
    foreign = foreign_entries(out)
    if foreign and not getattr(config, "keep_foreign_files", False):
        release_locks()
        if fresh_lock:
            (out / LOCK).unlink(missing_ok=True)
        shown = ", ".join(foreign[:3]) + (f", … ({len(foreign)} in all)" if len(foreign) > 3 else "")
        raise UserError(f"--output_dir {out} holds entries no run of this tool wrote ({shown}): a run never "
                        "mixes its files with others' (and --overwrite_output_dir removes only what its runs "
                        "wrote); move them, give another --output_dir, or pass --keep_foreign_files")
    claim(out, *legacy_entries(out), adopt=True)
    (out / COMPLETE).unlink(missing_ok=True)
    (out / FAILED).unlink(missing_ok=True)
    if config.overwrite_output_dir and not getattr(config, "resume", False):  # --resume keeps everything
        clear_own(out)
    claim(out, RUN_FILES, RUN_DIRS)
    return out


def foreign_entries(out):
    """Top-level entries of ``out`` that no run of this tool wrote: not its bookkeeping, not in
    its manifest, not an earlier run's files of a folder from before manifests."""
    known = set(BOOKKEEPING) | set(own_entries(out) or {})
    files, dirs = legacy_entries(out)
    known |= set(files) | set(dirs)
    return sorted(p.name for p in Path(out).iterdir() if p.name not in known)


def legacy_entries(out):
    """(files, folders) a run folder from before manifests holds of its run (its ``args.json`` names
    a script of this tool): :data:`RUN_FILES`, ``checkpoint-*/``, ``runs/``, ``resume/``. Nothing
    for a folder with a manifest, or without such a run."""
    earlier = read_json(out / "args.json")
    if own_entries(out) is not None or not (isinstance(earlier, dict) and "script" in earlier
                                            and "output_dir" in earlier):
        return [], []
    files = [p.name for p in out.iterdir() if p.is_file() and p.name in RUN_FILES]
    dirs = [p.name for p in out.iterdir() if p.is_dir() and (p.name.startswith("checkpoint-")
                                                             or p.name in ("runs", "resume"))]
    return files, dirs


def plain_value(v):
    """``v`` as plain JSON types (devices and dtypes as strings)."""
    if isinstance(v, (int, float, str, bool, type(None))):
        return v
    if isinstance(v, (list, tuple)):
        return [plain_value(x) for x in v]
    if isinstance(v, dict):
        return {str(k): plain_value(x) for k, x in v.items()}
    return str(v)


def plain_args(config):
    """The run's flags as plain JSON types, sorted by name."""
    fields = config.fields() if hasattr(config, "fields") else vars(config)
    return {k: plain_value(v) for k, v in sorted(fields.items())}


def save_args(config, runtime, script, provenance=None):
    """``args.json``: the full configuration next to every run (plain types only): the flags,
    the runtime (device, ranks, autocast dtype), the script, the command, the environment
    (versions, git commit, start time), the parsed ``argv`` and the provenance of every mask,
    weight and data file the run loaded."""
    conf = plain_args(config)
    conf.update(runtime.record())
    conf.update(environment=environment(), script=script, command=command_of(script.split()[0], config),
                argv=config.argv, provenance=plain_value(provenance or {}))
    write_json(Path(config.output_dir) / "args.json", dict(sorted(conf.items())))
