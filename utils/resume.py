"""Resumable training state: what a killed run needs to continue exactly where it stopped.

A state is written atomically to ``<output_dir>/resume/state.pt`` (a safetensors file: the
tensors in its body, the rest pickled into its header) every ``--checkpoint_steps``
updates (default: after every pruning event for IMP, at the end of every epoch for the
fine-tuning scripts); the state before it is kept as ``state.prev.pt``, so a damaged latest
state falls back to the previous one. It holds the weights and masks, AdamW's moments, the
schedule, the GradScaler, the RNG states (python, numpy, torch, CUDA, the sampler's own
generator at the start of the epoch), the position in the epoch, the results so far and the
IMP runner's pruning-event counter.

``--resume`` reloads it; the run then ends with exactly the result of an uninterrupted run
(bit for bit on CPU, with ``--num_workers 0``). Under torchrun every rank takes part: rank 0
writes the state with every rank's RNG states, and every rank resumes from it. The flags in :data:`MAY_DIFFER` may change on
resume; any other difference with the run's ``args.json`` is refused, naming the flag, and so is
a changed input file (the mask, the weight file, the checkpoint's weights, a data file: their
sha256 are recorded in ``args.json`` when the run starts, :func:`check_same_inputs`).

Two deterministic fault-injection points serve the tests: ``BERT_TICKETS_KILL_AT_STEP=k``
installs :func:`kill_hook` on the trainer (SIGKILL right after update k; nothing is installed
without the variable) and ``BERT_TICKETS_KILL_IN_WRITE=<file name>`` (SIGKILL half-way through
writing that file, before it is renamed into place; see :mod:`utils.io`).
"""
import base64
import os
import pickle
import random
import signal
import sys
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from utils.errors import UserError, first_line
from utils.io import atomic_write, read_json

STATE, PREVIOUS = "state.pt", "state.prev.pt"
# flags that may differ between a run and its resumption (evaluation, logging, I/O, devices)
MAY_DIFFER = {"per_gpu_eval_batch_size", "num_workers", "logging_steps", "evaluate_during_training",
              "overwrite_output_dir", "resume", "cache_dir", "overwrite_cache", "local_rank", "no_cuda",
              "do_eval", "eval_all_checkpoints", "server_ip", "server_port", "fp16_opt_level", "checkpoint_steps",
              "output_dir"}  # a run folder may move (a record's packed state unpacked elsewhere, utils/state_pack)


def state_dir(output_dir):
    return Path(output_dir) / "resume"


def kill_hook():
    """Fault injection for tests: with ``BERT_TICKETS_KILL_AT_STEP=k`` in the environment, an
    ``after_update(trainer)`` hook that SIGKILLs this process right after update k (once the state
    being written is on disk, so the kill point is deterministic); None without it."""
    target = os.environ.get("BERT_TICKETS_KILL_AT_STEP")
    if target is None:
        return None

    def kill(trainer):
        if trainer.global_step == int(target):
            trainer.checkpoints.wait()
            sys.stdout.flush()
            os.kill(os.getpid(), signal.SIGKILL)
    return kill


def rng_states():
    states = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states):
    random.setstate(states["python"])
    np.random.set_state(states["numpy"])
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def _split(obj, tensors):
    """Replace every tensor in ``obj`` by a placeholder, collecting the tensors (contiguous, CPU)."""
    if isinstance(obj, torch.Tensor):
        key = str(len(tensors))
        tensors[key] = obj.detach().cpu().contiguous()
        return {"__tensor__": key}
    if isinstance(obj, dict):
        return {k: _split(v, tensors) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_split(v, tensors) for v in obj)
    return obj


def _join(obj, tensors):
    if isinstance(obj, dict):
        if set(obj) == {"__tensor__"}:
            return tensors[obj["__tensor__"]]
        return {k: _join(v, tensors) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_join(v, tensors) for v in obj)
    return obj


def save_state(output_dir, state):
    """Write ``state`` as the latest state (one safetensors file: every tensor in its body, the
    rest pickled into its header); the state before it becomes the previous state."""
    folder = state_dir(output_dir)
    folder.mkdir(parents=True, exist_ok=True)
    latest, previous = folder / STATE, folder / PREVIOUS
    tensors = {}
    meta = _split(state, tensors)
    header = {"bert_tickets_state": base64.b64encode(pickle.dumps(meta)).decode("ascii")}

    def write(tmp):
        save_file(tensors, tmp, metadata=header)
        if latest.exists():  # keep the last good state until the new one is complete
            os.replace(latest, previous)
    atomic_write(latest, write)


def read_state(path):
    """A state written by :func:`save_state` (our own file: its header is unpickled)."""
    with safe_open(str(path), "pt") as f:
        meta = pickle.loads(base64.b64decode(f.metadata()["bert_tickets_state"]))
    return _join(meta, load_file(str(path)))


def load_state(output_dir):
    """The latest readable state (the previous one, with a warning, when the latest is damaged)."""
    folder = state_dir(output_dir)
    errors = []
    for name in (STATE, PREVIOUS):
        path = folder / name
        if not path.is_file():
            continue
        try:
            state = read_state(path)
            if errors:
                print(f"warning: {errors[-1]}; resuming from the previous state {path}", file=sys.stderr)
            return state
        except Exception as err:  # truncated or damaged
            errors.append(f"{path} is damaged ({first_line(err, 100)})")
    if errors:
        raise UserError(f"--resume: no readable state in {folder}: {'; '.join(errors)}")
    raise UserError(f"--resume: no saved state in {folder} (the run never reached its first checkpoint; "
                    "start it again without --resume)")


def check_resumable(config):
    """Before anything is loaded: a finished run says so; a run made by another command is refused
    naming the first flag that differs (the configuration's fields that both runs have, but
    :data:`MAY_DIFFER`). Returns ``"finished"`` or ``"resume"``."""
    out = Path(config.output_dir)
    saved = read_json(out / "args.json")
    if saved is None:
        raise UserError(f"--resume: {out} has no args.json: there is no run to resume there")
    current = config.fields()
    for key in sorted(set(saved) & set(current) - MAY_DIFFER):  # flags both runs have
        a, b = saved[key], current[key]
        if isinstance(b, tuple):
            b = list(b)
        if a != b:
            raise UserError(f"--resume: --{key} was {a!r} in the run in {out}, now {b!r}; resume with the same "
                            "command (only evaluation, logging and I/O flags may differ)")
    if (out / "complete.json").is_file():
        return "finished"
    failed = read_json(out / "failed.json")
    if failed is not None:
        why = failed.get("reason", "see failed.json") if isinstance(failed, dict) else "see failed.json"
        raise UserError(f"--resume: the run in {out} failed ({why}); resuming would repeat it: start it again "
                        "without --resume (e.g. with a lower --learning_rate)")
    return "resume"


def _short(digest):
    return str(digest)[:12] if digest else "none"


def check_same_inputs(args, now):
    """On resume the run reads the very files it started from: the mask and weight file, the
    checkpoint's weights file (IMP's rewind target comes from it) and every data file, compared
    by sha256 with what ``args.json`` recorded when the run started (``now`` is what this start
    found, :func:`utils.provenance.run_inputs`). A run recorded before a kind of record existed
    is not checked for it. Refused in one line naming the file."""
    saved = (read_json(Path(args.output_dir) / "args.json") or {}).get("provenance") or {}
    now = now or {}
    fix = "resume only with the files the run started from, or start it again without --resume"
    for what, flag in (("mask", "mask_dir"), ("weight_pertub", "weight_pertub")):
        a, b = (saved.get(what) or {}).get("sha256"), (now.get(what) or {}).get("sha256")
        if a != b:
            path = (saved.get(what) or now.get(what) or {}).get("path") or getattr(args, flag, None)
            raise UserError(f"--resume: the {what} file {path} changed since the run started (sha256 {_short(a)} "
                            f"then, {_short(b)} now); {fix}")
    then, ckpt = saved.get("checkpoint") or {}, now.get("checkpoint") or {}
    if then.get("weights_sha256") and then.get("init", "pre") == "pre" and \
            then["weights_sha256"] != ckpt.get("weights_sha256"):
        path = Path(args.model_name_or_path) / (then.get("weights_file") or "model.safetensors")
        raise UserError(f"--resume: the checkpoint's weights file {path} changed since the run started (sha256 "
                        f"{_short(then['weights_sha256'])} then, {_short(ckpt.get('weights_sha256'))} now); {fix}")
    current = now.get("data") or {}
    for path, digest in (saved.get("data") or {}).items():
        if current.get(path) != digest:
            raise UserError(f"--resume: the data file {path} changed since the run started (sha256 {_short(digest)} "
                            f"then, {_short(current.get(path))} now); {fix}")
