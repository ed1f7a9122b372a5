"""The trainer's resumable state: what it holds, when it is saved, and how a run resumes from it.

:class:`Checkpointer` belongs to one :class:`utils.train.Trainer`. At the points
``--checkpoint_steps`` chooses it copies everything the rest of the run depends on into CPU
buffers (:class:`StateBuffers`) and has a thread write it (:class:`StateWriter`, through
:func:`utils.resume.save_state`); :meth:`Checkpointer.restore` puts a saved state back, so the
resumed run ends bit for bit as an uninterrupted one (CPU, ``--num_workers 0``).
"""
import copy
import threading
import time

import torch

from utils.masks import apply_masks, masking_impl, unwrap
from utils.resume import rng_states, save_state


class StateBuffers:
    """CPU copies of the state's tensors in memory kept from one state to the next.

    Copying into memory already touched avoids allocating (and page-faulting) ~3x the weights
    at every state; on this VM fresh pages made the copy, which training waits for, take from
    0.5 s to several seconds for BERT-base. A buffer is reused only once the state written from
    it is on disk (:meth:`Checkpointer.save` waits for the previous writer first).
    """

    def __init__(self):
        self.buffers = {}

    def copy(self, key, tensor, dtype=None):
        tensor = tensor.detach()
        dtype = dtype or tensor.dtype
        buf = self.buffers.get(key)
        if buf is None or buf.shape != tensor.shape or buf.dtype != dtype:
            buf = self.buffers[key] = torch.empty(tensor.shape, dtype=dtype)
        buf.copy_(tensor)
        return buf

    def deep(self, obj, key=""):
        """A deep copy of ``obj`` with every tensor copied to a CPU buffer (AdamW's moments change
        at the next step)."""
        if isinstance(obj, torch.Tensor):
            return self.copy(key, obj)
        if isinstance(obj, dict):
            return {k: self.deep(v, f"{key}/{k}") for k, v in obj.items()}
        if isinstance(obj, (list, tuple)):
            return type(obj)(self.deep(v, f"{key}/{i}") for i, v in enumerate(obj))
        return copy.deepcopy(obj)


class StateWriter:
    """Writes a resumable state in a background thread, so training waits only for the in-memory
    copy (scripts/bench.py --only state_write measures both)."""

    def __init__(self, output_dir, state):
        self.error = None

        def run():
            try:
                save_state(output_dir, state)
            except BaseException as err:  # surfaced by join()
                self.error = err
        self.thread = threading.Thread(target=run, name="state-writer", daemon=False)
        self.thread.start()

    def join(self):
        self.thread.join()
        if self.error is not None:
            raise self.error


class Checkpointer:
    """Saves and restores one trainer's state. ``hooks`` (name -> (get() -> dict, set(dict)))
    carry what the trainer's driver keeps, e.g. the IMP runner's pruning-event counter."""

    def __init__(self, trainer):
        self.trainer = trainer
        self.hooks = {}
        self.buffers, self.writer = StateBuffers(), None

    def due(self, pruned):
        """``--checkpoint_steps N``: every N updates; 0 (default): after every pruning event when
        there are any (IMP), else at the end of every epoch; -1: never."""
        t = self.trainer
        every = getattr(t.config, "checkpoint_steps", 0)
        if every < 0:  # the same answer on every rank: all of them take part in saving
            return False
        if every > 0:
            return t.global_step % every == 0
        if self.hooks.get("imp") is not None:
            return pruned
        return t.batches_done >= len(t.loader)

    def state(self):
        """Everything the rest of the run depends on, as a dict of tensors and plain values. The
        tensors are CPU copies in buffers reused by the next call (:class:`StateBuffers`)."""
        t, buf = self.trainer, self.buffers
        epoch, done, gen_state = t.epoch, t.batches_done, t.epoch_gen_state
        if done >= len(t.loader):  # the epoch is over: resume at the start of the next one
            epoch, done = epoch + 1, 0
            gen_state = t.gen.get_state() if t.gen is not None else None
        model = unwrap(t.model)
        return {"global_step": t.global_step, "epoch": epoch, "batches_done": done, "epoch_gen_state": gen_state,
                "model": {k: buf.copy("model/" + k, v, torch.bool if k.endswith(".weight_mask") else None)
                          for k, v in model.state_dict().items()},  # masks as bool: 4x smaller
                "mask_impl": masking_impl(model), "optimizer": buf.deep(t.optimizer.state_dict(), "optimizer"),
                "scheduler": t.scheduler.state_dict(), "scaler": t.scaler.state_dict() if t.scaler else None,
                "rng": rng_states(), "results": t.run_record.results, "record": t.run_record.record,
                "elapsed": time.time() - t.run_record.started, "total_loss": t.total_loss,
                "logged_loss": t.logged_loss, "extra": {name: get() for name, (get, _) in self.hooks.items()}}

    def save(self):
        """Rank 0 writes the state; under torchrun it carries every rank's RNG states."""
        t, runtime = self.trainer, self.trainer.runtime
        t.run_record.write()
        per_rank = [rng_states()]
        if runtime.world_size > 1:
            import torch.distributed as dist

            gathered = [None] * runtime.world_size if runtime.is_main else None
            dist.gather_object(per_rank[0], gathered, dst=0)
            per_rank = gathered
        if runtime.is_main:
            self.wait()  # the previous state is on disk: its buffers may be reused
            state = self.state()  # a CPU copy: training may go on while it is written
            state["rng_per_rank"] = per_rank
            self.writer = StateWriter(t.config.output_dir, state)
        if runtime.world_size > 1:
            import torch.distributed as dist

            dist.barrier()  # every rank has handed over its RNG state

    def wait(self):
        """Block until the state being written in the background is on disk (re-raises its error)."""
        if self.writer is not None:
            self.writer.join()
            self.writer = None

    def restore(self, state):
        """Load a saved state: masks, weights, optimizer, schedule, scaler, counters, results;
        the RNG states are restored once the saved position in the epoch is reached."""
        t = self.trainer
        model = unwrap(t.model)
        masks = {k: v for k, v in state["model"].items() if k.endswith(".weight_mask")}
        if masks:
            apply_masks(model, masks, state["mask_impl"] or "plain")
        current = model.state_dict()
        model.load_state_dict({k: v.to(current[k].dtype) if k in masks else v for k, v in state["model"].items()})
        t.reset_optimizer()  # parameter groups and gradient masking of the masked model
        t.optimizer.load_state_dict(state["optimizer"])
        t.scheduler.load_state_dict(state["scheduler"])
        if t.scaler is not None and state["scaler"] is not None:
            t.scaler.load_state_dict(state["scaler"])
        t.global_step, t.epoch, t.skip = state["global_step"], state["epoch"], state["batches_done"]
        t.resume_gen = state["epoch_gen_state"]
        t.pending_rng = state["rng_per_rank"][t.runtime.rank]
        t.run_record.results, t.run_record.record = state["results"], state["record"]
        t.total_loss, t.logged_loss = state["total_loss"], state["logged_loss"]
        t.run_record.started = time.time() - state["elapsed"]
        for name, (_, set_) in self.hooks.items():
            set_(state["extra"][name])
        print(f"resumed at update {t.global_step} (epoch {t.epoch}, batch {t.skip})")
