"""Smaller models from structured masks: the shrunk architecture (per-layer sizes, building and
loading its modules, which :mod:`utils.models` uses) and shrinking a masked model (exporting
the result is :mod:`utils.export`).

A structured mask (``--structure heads_ffn``: whole attention heads and whole FFN neurons, see
:mod:`utils.structured`) zeroes rows and columns that can be cut out for real. :func:`shrink_model`
slices every encoder layer in place: the query/key/value rows and biases of the kept heads, the
attention.output.dense columns of the kept heads, the intermediate.dense rows and biases of the
kept neurons and the output.dense columns of the kept neurons. The shrunk model computes exactly
what the masked full model computes (pruned heads' Q/K/V biases and pruned neurons' biases only
ever meet masked columns), with fewer parameters and fewer FLOPs.

An exported folder (:func:`utils.export.save_model_folder`, also ``--save_model`` of the *_trans.py scripts)
holds ``config.json``, ``model.safetensors`` (effective weights: no mask buffers) and the
tokenizer files. When layers differ from the config's uniform sizes, the config records them:
``bert_tickets_heads`` (heads per layer) and ``bert_tickets_intermediate`` (FFN neurons per
layer); ``hidden_size`` and ``num_attention_heads`` stay the original's, so the head size is
still ``hidden_size / num_attention_heads``. :func:`utils.models.load_model`, the loader every
script uses, builds the smaller modules itself from those records, so such a folder is an
ordinary ``--model_name_or_path`` (fine-tuned dense, evaluated, or pruned again).

Example (``shrink.py`` does the first three lines from the command line)::

    model = load_model("glue", "out/mrpc/model")                 # a --save_model folder
    model, layout = shrink_model(model, load_mask("mask.pt", model))
    save_model_folder(model, "small/", tokenizer_source="out/mrpc/model")   # utils.export
    model = load_model("glue", "small/")                         # the smaller layers, built
"""
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn
from transformers.models.bert.modeling_bert import BertPooler

from utils.errors import UserError, first_line
from utils.masks import POOLER, mask_key, masking_impl, prunable_modules, remove_masks, unwrap
from utils.sparsity import check_mask_fits
from utils.structured import head_size, layout_from_masks

HEADS_ATTR = "bert_tickets_heads"  # config.json: attention heads kept, per layer
INTERMEDIATE_ATTR = "bert_tickets_intermediate"  # config.json: FFN neurons kept, per layer
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json",
                   "added_tokens.json")
WEIGHTS = "model.safetensors"
STALE_WEIGHTS = ("pytorch_model.bin", "model.safetensors.index.json", "pytorch_model.bin.index.json")


# --- which folders are shrunk --------------------------------------------------------------

def is_shrunk(config):
    """True when ``config`` records per-layer sizes (a folder written from a shrunk model)."""
    return getattr(config, HEADS_ATTR, None) is not None or getattr(config, INTERMEDIATE_ATTR, None) is not None


def recorded_sizes(config, source="the model"):
    """``(heads per layer, FFN neurons per layer)`` of a config: the recorded lists of a shrunk
    folder, else the config's uniform sizes. Raises :class:`UserError` on inconsistent records."""
    n = config.num_hidden_layers
    heads = getattr(config, HEADS_ATTR, None) or [config.num_attention_heads] * n
    inter = getattr(config, INTERMEDIATE_ATTR, None) or [config.intermediate_size] * n
    if len(heads) != n or len(inter) != n:
        raise UserError(f"{source}: config.json records sizes for {len(heads)} / {len(inter)} layers "
                        f"({HEADS_ATTR} / {INTERMEDIATE_ATTR}), but num_hidden_layers is {n}")
    if any(int(h) < 1 or int(h) > config.num_attention_heads for h in heads) or any(int(i) < 0 for i in inter):
        raise UserError(f"{source}: config.json {HEADS_ATTR} must lie in 1..{config.num_attention_heads} "
                        f"and {INTERMEDIATE_ATTR} must be >= 0, got {list(heads)} and {list(inter)}")
    return [int(h) for h in heads], [int(i) for i in inter]


def check_swappable(config, source):
    """Refuse layer shuffling (pertub_weight.py) when the layers differ in size."""
    heads, inter = recorded_sizes(config, source)
    if len(set(heads)) > 1 or len(set(inter)) > 1:
        raise UserError(f"{source} is a shrunk model whose layers differ in size (heads {heads}, FFN "
                        f"neurons {inter}): its layers cannot be swapped; shuffle the full checkpoint instead")


# --- slicing -------------------------------------------------------------------------------

def _slice_linear(linear, rows=None, cols=None):
    """Keep ``rows`` (output features, with their biases) and ``cols`` (input features) of an
    nn.Linear, in place: new parameters, no initialisation (0 features is fine)."""
    w = linear.weight.detach()
    b = None if linear.bias is None else linear.bias.detach()
    if rows is not None:
        w = w.index_select(0, rows.to(w.device))
        b = None if b is None else b.index_select(0, rows.to(b.device))
    if cols is not None:
        w = w.index_select(1, cols.to(w.device))
    linear.weight = nn.Parameter(w.clone().contiguous(), requires_grad=linear.weight.requires_grad)
    if b is not None:
        linear.bias = nn.Parameter(b.clone().contiguous(), requires_grad=linear.bias.requires_grad)
    linear.out_features, linear.in_features = w.shape


def _head_rows(heads, d):
    """Row indices of query/key/value (columns of attention.output.dense) for head indices."""
    return (heads[:, None] * d + torch.arange(d)[None, :]).reshape(-1)


def _slice_layer(layer, heads, neurons, d):
    """Slice one BertLayer to ``heads`` (head indices) and ``neurons`` (neuron indices)."""
    att = layer.attention.self
    rows = _head_rows(heads, d)
    for linear in (att.query, att.key, att.value):
        _slice_linear(linear, rows=rows)
    _slice_linear(layer.attention.output.dense, cols=rows)
    att.num_attention_heads = int(heads.numel())
    att.all_head_size = att.num_attention_heads * d
    _slice_linear(layer.intermediate.dense, rows=neurons)
    _slice_linear(layer.output.dense, cols=neurons)


def _layers(model):
    return model.bert.encoder.layer


def resize_layers(model, heads, intermediate):
    """Cut every layer to its first ``heads[l]`` heads and ``intermediate[l]`` neurons (the
    architecture of a shrunk folder, before its weights are loaded). Records the sizes."""
    d = head_size(model)
    for layer, h, n in zip(_layers(model), heads, intermediate):
        _slice_layer(layer, torch.arange(h), torch.arange(n), d)
    record_sizes(model)
    return model


def layer_sizes(model):
    """``(heads per layer, FFN neurons per layer)`` read from the modules."""
    d = head_size(model)
    layers = _layers(model)
    return ([lay.attention.self.query.out_features // d for lay in layers],
            [lay.intermediate.dense.out_features for lay in layers])


def record_sizes(model):
    """Write the per-layer sizes into ``model.config`` when they are not the uniform ones (and
    drop stale records when they are), so the saved config.json rebuilds this architecture."""
    config = model.config
    heads, inter = layer_sizes(model)
    if all(h == config.num_attention_heads for h in heads) and all(n == config.intermediate_size for n in inter):
        for attr in (HEADS_ATTR, INTERMEDIATE_ATTR):
            if hasattr(config, attr):
                delattr(config, attr)
    else:
        setattr(config, HEADS_ATTR, heads)
        setattr(config, INTERMEDIATE_ATTR, inter)
    return heads, inter


def count_parameters(model):
    """Parameters of the model (tied tensors counted once)."""
    return sum(p.numel() for p in model.parameters())


def shrink_model(model, masks, source="mask"):
    """Slice every encoder layer of ``model`` (a BertFor… model with ``bert.pooler``) to the
    heads and FFN neurons ``masks`` keeps, in place; masks the model carries are made permanent
    first. The outputs equal those of the model with ``masks`` applied.

    ``masks`` is a mask dict (``{"bert.….weight_mask": 0/1 tensor}``) of the model's prunable
    set; an unstructured one, or one of another architecture, raises :class:`UserError` (its
    message names ``source``). A
    layer whose FFN is pruned entirely keeps 0 neurons (its FFN adds its output bias). A layer
    whose every head is pruned keeps one head with zeroed weights (transformers reshapes with
    -1 heads, which cannot be 0), so its attention adds its output bias, as when masked.
    Returns ``(model, layout)``, ``layout`` as :func:`utils.structured.layout_from_masks`.
    """
    model = unwrap(model)
    check_mask_fits(masks, model, source)
    d = head_size(model)
    layout = layout_from_masks(masks, d, source)
    if masking_impl(model) is not None:
        remove_masks(model)  # effective weights become the plain parameters
    with torch.no_grad():
        pooler = prunable_modules(model)[POOLER]
        pooler.weight.mul_(masks[mask_key(POOLER)].to(pooler.weight.device, pooler.weight.dtype))
        for layer, keep in zip(_layers(model), layout):
            heads = keep["heads"].nonzero().reshape(-1).cpu()
            dead = heads.numel() == 0
            if dead:
                heads = torch.zeros(1, dtype=torch.long)
            _slice_layer(layer, heads, keep["neurons"].nonzero().reshape(-1).cpu(), d)
            if dead:
                att = layer.attention.self
                for linear in (att.query, att.key, att.value):
                    linear.weight.zero_()
                layer.attention.output.dense.weight.zero_()
    record_sizes(model)
    return model, layout


# --- loading (through utils.models.load_model) --------------------------------------------

def build_shrunk(cls, config, name_or_path, init="pre"):
    """The task model ``cls`` of a shrunk folder: the architecture from ``config`` (random
    weights, seeded by the caller), its layers cut to the recorded sizes, then, with
    ``init="pre"``, the folder's ``model.safetensors`` loaded over it. Every backbone
    (``bert.*``) tensor must be in the file with its shape; a task head missing from the file,
    or of another shape (e.g. another number of labels), starts fresh, as from_pretrained's."""
    heads, inter = recorded_sizes(config, f"--model_name_or_path {name_or_path}")
    model = cls(config)
    if getattr(model.bert, "pooler", None) is None:
        model.bert.pooler = BertPooler(config)
        model.bert.pooler.apply(model._init_weights)
    resize_layers(model, heads, inter)
    if init == "rand":
        return model
    _load_weights(model, Path(name_or_path))
    return model.eval()  # as from_pretrained returns it


def _read_weights(folder):
    """The tensors of ``folder/model.safetensors`` (keys given the ``bert.`` prefix when the
    file is a bare BertModel's)."""
    path = folder / WEIGHTS
    if not path.is_file():
        raise UserError(f"--model_name_or_path {folder}: a shrunk model's config.json but no {WEIGHTS} beside it")
    try:
        state = load_file(str(path))
    except Exception as err:  # truncated or not safetensors
        raise UserError(f"--model_name_or_path {folder}: cannot read {WEIGHTS}: {first_line(err, 160)}") from None
    if state and not any(k.startswith("bert.") for k in state):
        state = {"bert." + k: v for k, v in state.items()}
    return state


def _load_weights(model, folder):
    state = _read_weights(folder)
    own = model.state_dict()
    fresh = []
    load = {}
    for key, target in own.items():
        value = state.get(key)
        backbone = key.startswith("bert.")
        if value is None or tuple(value.shape) != tuple(target.shape):
            if backbone:
                what = "is missing" if value is None else f"has shape {tuple(value.shape)}, the model's is {tuple(target.shape)}"
                raise UserError(f"--model_name_or_path {folder}: {WEIGHTS}: {key} {what} (the file does not match "
                                f"the sizes its config.json records)")
            fresh.append(key)
            continue
        load[key] = value
    model.load_state_dict(load, strict=False)  # in place: tied tensors (MLM decoder) stay tied
    mismatched = [k for k in fresh if k in state]
    if mismatched:
        print(f"note: {folder}: {mismatched[0]} has another shape in the file (another task head?); "
              "the task head starts fresh")


def load_pooler_state(folder):
    """``bert.pooler.dense`` weights of a shrunk folder, as a BertPooler state dict."""
    state = _read_weights(Path(folder))
    return {k[len("bert.pooler."):]: v for k, v in state.items() if k.startswith("bert.pooler.")}
