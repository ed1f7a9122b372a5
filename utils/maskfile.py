"""Writing mask files: the original format (a dict of ``bert.…weight_mask`` 0/1 tensors) and its
sparsity report beside it, with the heads and neurons kept per layer for a structured mask.
Reading them is :func:`utils.pruning.load_mask`. Above :mod:`utils.pruning` and
:mod:`utils.structured`, which it reports on.
"""
import torch

from utils.errors import UserError
from utils.io import atomic_write, write_json
from utils.masks import unwrap
from utils.sparsity import report_path, sparsity_report, warn_emptied
from utils.structured import head_size, structure_report


def save_mask(path, masks, model=None, fmt="bool", prunable_set="paper", structure="unstructured"):
    """Write a mask file (dict of mask key -> tensor, CPU) and its sparsity report beside it.

    ``fmt="bool"`` (default) stores 1 byte per entry; ``fmt="float"`` the original's float32
    0./1. tensors (4× larger). Both load here, in ``prune.custom_from_mask`` and in the
    original code. ``structure="heads_ffn"`` (needs ``model``) adds the heads and FFN neurons
    kept per layer to the report. Returns the sparsity report.
    """
    dtype = {"bool": torch.bool, "float": torch.float32}.get(fmt)
    if dtype is None:
        raise UserError(f"--mask_format must be bool or float, not {fmt!r}")
    data = {k: v.detach().to("cpu", dtype).contiguous() for k, v in masks.items()}
    atomic_write(path, lambda tmp: torch.save(data, tmp))
    report = sparsity_report(data, model, prunable_set)
    if structure == "heads_ffn":
        report["structure"] = structure_report(data, head_size(unwrap(model)))
    write_json(report_path(path), report)
    warn_emptied(report, path)
    return report
