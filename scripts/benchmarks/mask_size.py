"""Figure ``mask_size``: bytes of a saved mask, bool against the original's float32.

Saves a 50 % magnitude mask of BERT-base's prunable set (``--quick``: a 4-layer 64-wide model)
with ``utils.maskfile.save_mask`` in both formats, compares the file sizes, and checks that the
bool file loads with ``weights_only=True`` and still works where the original applied masks,
``prune.CustomFromMask.apply``. Target: 4x fewer bytes per mask entry with the same keys; the
file ratio may fall short of 4 only by the fixed zip/pickle framing (at most 0.1 % of the file).
"""
import tempfile
from pathlib import Path

import torch
from torch.nn.utils import prune

from scripts.benchmarks.harness import base_record, build_model, log, prunable_shape_list, random_weights, shape_dict
from utils.magnitude import magnitude_masks
from utils.maskfile import save_mask
from utils.masks import mask_key, prunable_modules


def figure_mask_size(opts):
    """Bool vs float mask files of a 50 % mask; the bool file must work in torch's prune."""
    name = "prune-small" if opts.quick else "bert-base"
    keys_shapes = prunable_shape_list(name)
    log(f"mask_size: {name}")
    weights = random_weights([s for _, s in keys_shapes], opts.seed)
    masks = dict(zip([k for k, _ in keys_shapes], magnitude_masks(weights, None, 0.5)))
    del weights
    n = sum(m.numel() for m in masks.values())
    with tempfile.TemporaryDirectory(dir=opts.tmp) as tmp:
        paths = {fmt: Path(tmp) / f"mask_{fmt}.pt" for fmt in ("bool", "float")}
        report = None
        for fmt, path in paths.items():
            report = save_mask(path, masks, fmt=fmt)
        size = {fmt: path.stat().st_size for fmt, path in paths.items()}
        loaded = torch.load(paths["bool"], map_location="cpu", weights_only=True)
        loads = set(loaded) == set(masks) and all(v.dtype == torch.bool for v in loaded.values())
        prune_sparsity = apply_like_original(name, loaded, opts.seed)
    sparsity = report["prunable"]["sparsity"]
    ratio = size["float"] / size["bool"]
    return [base_record(
        "mask_size", opts, model=shape_dict(name), n_entries=n, n_matrices=len(masks),
        sparsity=sparsity, bool_bytes=size["bool"], float_bytes=size["float"], ratio=ratio,
        element_ratio=float(torch.float32.itemsize / torch.bool.itemsize),
        framing_bytes=size["bool"] - n, loads_weights_only=loads,
        loads_in_torch_prune=loads and prune_sparsity == sparsity,
        torch_prune_sparsity=prune_sparsity,
        target="4x fewer bytes per mask entry (bool vs float32) with the same keys; the file "
               "ratio falls short of 4 only by the fixed zip/pickle framing (framing_bytes, "
               "required <= 0.1 % of the file)",
        meets_target=(torch.float32.itemsize // torch.bool.itemsize >= 4
                      and size["bool"] - n <= 0.001 * size["bool"]))]


def apply_like_original(name, masks, seed):
    """Apply a loaded mask with ``prune.CustomFromMask.apply`` as the original did.

    Returns the sparsity (%) of the masks the modules now carry, or None when a module's
    effective weight is not ``weight_orig`` with exactly the masked entries zeroed.
    """
    model = build_model(name, seed)
    modules = prunable_modules(model)
    pruned = total = 0
    for mod_name, module in modules.items():
        prune.CustomFromMask.apply(module, "weight", mask=masks[mask_key(mod_name)])
        keep = module.weight_mask.bool()
        # weights that happen to be exactly 0 in the random init are not counted as pruned
        if not (bool((module.weight[~keep] == 0).all())
                and torch.equal(module.weight[keep], module.weight_orig[keep])):
            return None
        pruned += int((~keep).sum())
        total += keep.numel()
    return 100.0 * pruned / total

