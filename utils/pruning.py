"""The pruning library in one import, for users' code and the tests: ``from utils import pruning as P``.

Each behaviour has one home, and this module re-exports them:

* :mod:`utils.masks`: the prunable set, masks on a model (``plain`` or ``hooks``), gradient
  masking, effective weights (the base);
* :mod:`utils.magnitude`: global magnitude pruning and IMP's rewinding;
* :mod:`utils.sparsity`: sparsity reports and reading mask files;
* :mod:`utils.maskfile`: writing mask files (:func:`utils.maskfile.save_mask`);
* :mod:`utils.shuffle`: layer-shuffled weights.

Example::

    masks = global_magnitude_prune(model, 0.1)          # 10 % of the prunable set
    save_mask("out/mask.pt", masks, model=model)        # utils.maskfile; + out/mask_sparsity.json
    apply_masks(other_model, load_mask("out/mask.pt", other_model))
"""
from utils.magnitude import (  # noqa: F401
    CHUNK,
    global_magnitude_prune,
    imp_amount,
    magnitude_masks,
    rewind,
    snapshot_state,
)
from utils.masks import (  # noqa: F401
    _ENCODER_LINEAR,
    IMPLS,
    MASK_SUFFIX,
    POOLER,
    PRUNABLE_SETS,
    GradientMasker,
    apply_masks,
    count_prunable,
    current_masks,
    dense_weight,
    effective_state_dict,
    enforce_masks,
    in_prunable_set,
    mask_gradients,
    mask_key,
    masking_impl,
    prunable_modules,
    prunable_shapes,
    remove_masks,
    scored_names,
    unwrap,
)
from utils.shuffle import (  # noqa: F401
    shuffled_layer_weights,
)
from utils.sparsity import (  # noqa: F401
    check_mask_fits,
    emptied_matrices,
    format_sparsity,
    load_mask,
    model_sparsity,
    report_path,
    sparsity_report,
    warn_emptied,
)

__all__ = [
    "CHUNK",
    "global_magnitude_prune",
    "imp_amount",
    "magnitude_masks",
    "rewind",
    "snapshot_state",
    "_ENCODER_LINEAR",
    "IMPLS",
    "MASK_SUFFIX",
    "POOLER",
    "PRUNABLE_SETS",
    "GradientMasker",
    "apply_masks",
    "count_prunable",
    "current_masks",
    "dense_weight",
    "effective_state_dict",
    "enforce_masks",
    "in_prunable_set",
    "mask_gradients",
    "mask_key",
    "masking_impl",
    "prunable_modules",
    "prunable_shapes",
    "remove_masks",
    "scored_names",
    "unwrap",
    "shuffled_layer_weights",
    "check_mask_fits",
    "emptied_matrices",
    "format_sparsity",
    "load_mask",
    "model_sparsity",
    "report_path",
    "sparsity_report",
    "warn_emptied",
]
