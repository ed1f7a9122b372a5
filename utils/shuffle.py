"""Layer-shuffled pre-trained weights (``pertub_weight.py``), above :mod:`utils.masks`."""
import numpy as np

from utils.masks import _ENCODER_LINEAR, POOLER, dense_weight, prunable_modules

# --- layer-shuffled weights (pertub_weight.py) --------------------------------------------

def shuffled_layer_weights(model, seed=None):
    """The prunable matrices with whole encoder layers permuted (docs/faithfulness.md §5.2).

    Target layer i receives all six matrices of layer perm[i] (one permutation for all six);
    the pooler is copied unchanged; keys are plain ``…weight`` names. Returns (dict, perm).
    """
    modules = prunable_modules(model)
    n_layers = 1 + max(int(_ENCODER_LINEAR.match(n).group(1)) for n in modules if n != POOLER)
    perm = np.random.default_rng(seed).permutation(n_layers).tolist()
    out = {}
    for name, module in modules.items():
        if name == POOLER:
            source = name
        else:
            layer = int(_ENCODER_LINEAR.match(name).group(1))
            source = name.replace(f"bert.encoder.layer.{layer}.", f"bert.encoder.layer.{perm[layer]}.", 1)
        out[name + ".weight"] = dense_weight(modules[source]).detach().clone().cpu()
    return out, perm
