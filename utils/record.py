"""A run's record: its results as they come, and how it ends, finished or failed.

:class:`RunRecord` keeps ``results.json`` (every evaluation, rewritten atomically after each),
``result.pt`` (the original's list of evaluations, plain types) and writes last either
``complete.json`` (:meth:`RunRecord.finish`: the run reached its end; it names the task's
headline metric beside the trivial baseline) or ``failed.json`` (:meth:`RunRecord.fail`: the
loss or the weights became NaN/inf; the run exits with code 3 and is never counted finished).
Only rank 0 writes.
"""
import time
from pathlib import Path

import numpy as np
import torch

from utils.errors import RunFailed
from utils.io import atomic_write, settle, write_json
from utils.metrics import headline
from utils.provenance import peak_memory
from utils.rundir import COMPLETE, FAILED


def plain(obj):
    """Recursively convert tensors/numpy scalars to python numbers (for result.pt / JSON)."""
    if isinstance(obj, dict):
        return {k: plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    if isinstance(obj, (torch.Tensor, np.generic, np.ndarray)):
        return obj.item() if getattr(obj, "size", 1) in (1, ()) or obj.ndim == 0 else obj.tolist()
    return obj


def on_any_rank(flag, runtime):
    """``flag`` or'ed over every process (itself in one process)."""
    if runtime.world_size <= 1:
        return flag
    import torch.distributed as dist

    t = torch.tensor([int(flag)], device=runtime.device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def weights_finite(model):
    checks = [torch.isfinite(p.detach()).all() for p in model.parameters() if p.is_floating_point()]
    return bool(torch.stack(checks).all()) if checks else True


class RunRecord:
    """``results`` (``results.json``: ``script``, ``evaluations``, the driver's fields such as
    ``task`` and ``kind``, ``baseline``) and ``record`` (``result.pt``) of one run; ``step()``
    gives the run's current update."""

    def __init__(self, output_dir, runtime, script="", extra=None, baseline=None, step=lambda: 0):
        self.out, self.runtime = Path(output_dir), runtime
        self.results = {"script": script, "evaluations": [], **(extra or {})}
        if baseline is not None:  # the trivial score on the evaluated rows, for every report
            self.results["baseline"] = baseline
        self.record = []  # result.pt, as the original's record_result
        self.started = time.time()
        self.step = step  # the run's update counter, read when a file is written

    def add(self, entry, metrics):
        """One evaluation: ``entry`` (step, sparsity, metrics) in results.json, ``metrics`` in result.pt."""
        self.record.append(metrics)
        self.results["evaluations"].append(entry)
        self.write()

    def write(self):
        if not self.runtime.is_main:
            return
        self.results["wall_time_s"] = round(time.time() - self.started, 1)
        self.results["peak_memory"] = peak_memory()
        self.results["global_step"] = self.step()
        write_json(self.out / "results.json", plain(self.results))
        record = plain(self.record)
        atomic_write(self.out / "result.pt", lambda tmp: torch.save(record, tmp))

    def fail(self, reason):
        """Record why the run stops, in ``results.json`` and ``failed.json`` (never ``complete.json``),
        and raise :class:`utils.errors.RunFailed` (exit code 3)."""
        self.results["failed"] = {"reason": reason, "step": self.step()}
        self.write()
        if self.runtime.is_main:
            write_json(self.out / FAILED, {"failed": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "reason": reason,
                                           "step": self.step(), "script": self.results.get("script"),
                                           "task": self.results.get("task"), "kind": self.results.get("kind")})
            settle(self.out)
        raise RunFailed(f"training diverged: {reason}; the run stopped there (see {self.out / FAILED}; it is not "
                        "finished): try a lower --learning_rate")

    def headline(self):
        """The task's headline metric of the run's last evaluation (the final one for fine-tuning),
        in percent, with the step and which evaluation it was; None without one."""
        evals = self.results.get("evaluations", [])
        last = self.results.get("final") or (evals[-1] if evals else None)
        task = self.results.get("task")
        if last is None or not task:
            return None
        try:
            score = headline(task, last)
        except KeyError:
            return None
        if score is not None:
            score.update(step=last.get("step"), source="final" if last.get("tag") == "final" else "last in-loop")
        return score

    def finish(self):
        """End of the run: final results, then the completion marker ``complete.json`` (the last
        file written; rank 0), and the manifest settled to what the run really wrote."""
        self.write()
        if not self.runtime.is_main:
            return
        marker = {"finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "script": self.results.get("script"),
                  "task": self.results.get("task"), "kind": self.results.get("kind"),
                  "global_step": self.step(), "wall_time_s": self.results.get("wall_time_s"),
                  "headline": self.headline(), "baseline": self.results.get("baseline")}
        write_json(self.out / COMPLETE, plain(marker))
        settle(self.out)
