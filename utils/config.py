"""A run's configuration and its runtime, kept apart.

:class:`Config` is what the flags parsed into, frozen: no module writes into it, so what a run
records in ``args.json`` and what ``--resume`` compares are the flags themselves.
:class:`Runtime` is where the run executes (device, rank, world size, mixed precision), found
once at the start by :func:`setup_runtime`; it is passed beside the configuration, never stored
in it. What a run learns later (the prunable set a mask was made on, the provenance of its
inputs) is returned by the function that learns it and passed on explicitly.
"""
import atexit
import os
import random
from contextlib import nullcontext
from dataclasses import dataclass

import numpy as np
import torch

from utils.errors import UserError


class FrozenConfig(AttributeError):
    """Raised on any attempt to change a :class:`Config`."""


class Config:
    """The parsed flags, read-only: ``config.learning_rate``; ``getattr(config, "x", default)``
    for flags only some scripts define; :meth:`replace` for a changed copy. ``argv`` is the
    argument list that was parsed (the command a run records is the one it ran)."""

    __slots__ = ("_fields", "_argv")

    def __init__(self, fields, argv=None):
        object.__setattr__(self, "_fields", dict(fields))
        object.__setattr__(self, "_argv", None if argv is None else tuple(argv))

    def __getattr__(self, name):
        try:
            return object.__getattribute__(self, "_fields")[name]
        except KeyError:
            raise AttributeError(f"no flag --{name} in this configuration") from None

    def __setattr__(self, name, value):
        raise FrozenConfig(f"the run configuration is frozen: --{name} cannot be set after parsing "
                           "(pass what the run learns as an argument instead)")

    __delattr__ = __setattr__

    def __contains__(self, name):
        return name in self._fields

    def __eq__(self, other):
        return isinstance(other, Config) and self._fields == other._fields and self._argv == other._argv

    def __repr__(self):
        return f"Config({', '.join(f'{k}={v!r}' for k, v in sorted(self._fields.items()))})"

    @property
    def argv(self):
        return None if self._argv is None else list(self._argv)

    def fields(self):
        """The flags as a new dict (changing it changes nothing here)."""
        return dict(self._fields)

    def replace(self, **changes):
        """A copy with ``changes`` applied (every name must be a flag of this configuration)."""
        unknown = sorted(set(changes) - set(self._fields))
        if unknown:
            raise FrozenConfig(f"replace(): no flag --{unknown[0]} in this configuration")
        return Config({**self._fields, **changes}, self._argv)


def freeze(namespace, argv=None):
    """A :class:`Config` of an argparse namespace (or a dict)."""
    fields = namespace if isinstance(namespace, dict) else vars(namespace)
    return Config(fields, argv)


@dataclass(frozen=True)
class Runtime:
    """Where the run executes. ``rank`` 0 writes the run's files; ``world_size`` > 1 under torchrun."""
    device: torch.device
    local_rank: int = -1
    rank: int = 0
    world_size: int = 1
    n_gpu: int = 0
    amp_dtype: torch.dtype = None

    @property
    def is_main(self):
        return self.rank == 0

    def record(self):
        """What ``args.json`` keeps of the runtime (plain types, beside the flags)."""
        return {"device": str(self.device), "local_rank": self.local_rank, "rank": self.rank,
                "world_size": self.world_size, "n_gpu": self.n_gpu,
                "amp_dtype": None if self.amp_dtype is None else str(self.amp_dtype)}


CPU = Runtime(torch.device("cpu"))


def setup_runtime(config):
    """The :class:`Runtime` of this process; under ``torchrun`` (one process per GPU) the process
    group is started here. ``--fp16``/``--bf16`` give the autocast dtype."""
    local_rank = int(os.environ.get("LOCAL_RANK", getattr(config, "local_rank", -1)))
    no_cuda, fp16, bf16 = (getattr(config, k, False) for k in ("no_cuda", "fp16", "bf16"))
    if local_rank != -1 and not all(os.environ.get(k) for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR")):
        raise UserError(f"--local_rank {local_rank}: this process was not started by torchrun (no RANK, "
                        "WORLD_SIZE, MASTER_ADDR in its environment); run it with torchrun --nproc_per_node N, "
                        "or drop --local_rank")
    use_cuda = torch.cuda.is_available() and not no_cuda
    if local_rank != -1:
        import torch.distributed as dist

        backend = "nccl" if use_cuda else "gloo"
        if not dist.is_initialized():
            dist.init_process_group(backend=backend)
            atexit.register(lambda: dist.is_initialized() and dist.destroy_process_group())
        if backend == "nccl":
            torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank) if backend == "nccl" else torch.device("cpu")
        rank, world_size, n_gpu = dist.get_rank(), dist.get_world_size(), int(backend == "nccl")
    else:  # one device per process; use torchrun for several
        device = torch.device("cuda" if use_cuda else "cpu")
        rank, world_size, n_gpu = 0, 1, int(use_cuda)
    if fp16 and bf16:
        raise UserError("--fp16 and --bf16 exclude each other")
    if fp16 and device.type != "cuda":
        raise UserError("--fp16 needs a CUDA device; on CPU use --bf16")
    amp_dtype = torch.float16 if fp16 else torch.bfloat16 if bf16 else None
    return Runtime(device, local_rank, rank, world_size, n_gpu, amp_dtype)


def set_seed(seed):
    """Seed python, numpy and torch (all devices), as the original's ``set_seed``."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)


def autocast(runtime):
    """Mixed-precision context for forward passes (``--fp16`` / ``--bf16``), else a no-op."""
    if runtime.amp_dtype is None:
        return nullcontext()
    return torch.autocast(runtime.device.type, dtype=runtime.amp_dtype)


def barrier(runtime):
    """Wait for every process (a no-op in one process)."""
    if runtime.world_size > 1:
        import torch.distributed as dist

        dist.barrier()
