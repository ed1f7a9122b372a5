"""Models and tokenizers: the three task heads, pre-trained or random weights, the pooler
that transformers 5 leaves out of the QA and MLM models, and ``--weight_pertub`` files.

Nothing here downloads: ``--model_name_or_path`` is a local folder, or a name already in the
local Hugging Face cache (``HF_HUB_OFFLINE=1`` is set on import).

Example::

    model = load_model("squad", "../shared/data/models/all-MiniLM-L6-v2")
    tokenizer = load_tokenizer("../shared/data/models/all-MiniLM-L6-v2")
"""
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # this tool never downloads a model
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import datasets  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from safetensors import SafetensorError, safe_open
from transformers import (  # noqa: E402
    AutoConfig,
    AutoTokenizer,
    BertForMaskedLM,
    BertForQuestionAnswering,
    BertForSequenceClassification,
    BertModel,
)
from transformers.models.bert.modeling_bert import BertPooler  # noqa: E402

from utils.errors import UserError, first_line  # noqa: E402
from utils.io import load_tensor_dict
from utils.shrink import build_shrunk, is_shrunk, load_pooler_state

transformers.logging.set_verbosity_error()
transformers.utils.logging.disable_progress_bar()
datasets.disable_progress_bars()  # one tqdm bar (training) is enough in logs

HEADS = {
    "glue": BertForSequenceClassification,
    "squad": BertForQuestionAnswering,
    "pretrain": BertForMaskedLM,
}


def _not_found(name_or_path, flag):
    return UserError(f"{flag} {name_or_path}: no such folder, and not in the local Hugging Face cache (this "
                     "tool never downloads; pass a local checkpoint folder)")


def _check_folder(name_or_path, flag, needs=("config.json",), kind="checkpoint"):
    """Refuse a path that is a file (e.g. the folder's ``config.json``) or a folder holding none of
    the files ``needs``; names that are no path (a name in the local Hugging Face cache) pass."""
    path = Path(name_or_path)
    if path.is_file():
        hint = f", e.g. {path.parent}" if any((path.parent / n).is_file() for n in needs) else ""
        raise UserError(f"{flag} {name_or_path} is a file; give the {kind} folder{hint}")
    if path.is_dir() and not any((path / n).is_file() for n in needs):
        names = needs[0] if len(needs) == 1 else f"{', '.join(needs[:-1])} or {needs[-1]}"
        raise UserError(f"{flag} {name_or_path}: no {names} in it (not a {kind} folder?)")


def _config(name_or_path, flag="--model_name_or_path", **overrides):
    """The config of a checkpoint folder; errors name ``flag`` (``--config_name`` when it came from there,
    which may also name the ``config.json`` file itself)."""
    if not (flag == "--config_name" and Path(name_or_path).is_file()):
        _check_folder(name_or_path, flag)
    try:
        return AutoConfig.from_pretrained(name_or_path, **overrides)
    except (OSError, ValueError) as err:
        if not Path(name_or_path).exists():
            raise _not_found(name_or_path, flag) from None
        raise UserError(f"{flag} {name_or_path}: cannot load the model config: "
                        f"{first_line(err, 200)}") from None


TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "tokenizer_config.json")


def load_tokenizer(name_or_path, do_lower_case=None, flag="--model_name_or_path"):
    """The checkpoint's tokenizer; ``do_lower_case`` overrides its own setting when given. Errors
    name ``flag`` (``--tokenizer_name`` when the tokenizer comes from there)."""
    _check_folder(name_or_path, flag, needs=TOKENIZER_FILES, kind="tokenizer")
    kwargs = {} if do_lower_case is None else {"do_lower_case": do_lower_case}
    try:
        return AutoTokenizer.from_pretrained(name_or_path, **kwargs)
    except (OSError, ValueError) as err:
        if not Path(name_or_path).exists():
            raise _not_found(name_or_path, flag) from None
        raise UserError(f"{flag} {name_or_path}: cannot load a tokenizer: "
                        f"{first_line(err, 200)}") from None


def attach_pooler(model, name_or_path=None):
    """Give a QA or MLM model the ``bert.pooler`` that transformers 5 omits (docs/faithfulness.md §7.1).

    The pooler takes the checkpoint's pre-trained pooler weights (read through ``BertModel``,
    which keeps them), so the prunable set, the global ranking and the mask keys are the same
    on every head. It stays unused in the forward pass. Returns the model.
    """
    bert = model.bert
    if getattr(bert, "pooler", None) is not None:
        return model
    pooler = BertPooler(model.config)
    if name_or_path is not None:
        pooler.load_state_dict(_pretrained_pooler_state(name_or_path))
    bert.pooler = pooler.to(next(model.parameters()).device)
    return model


def _pretrained_pooler_state(name_or_path):
    """The checkpoint's pooler weights (read through ``BertModel``, or from the file of a
    shrunk folder, whose layers BertModel cannot build)."""
    if is_shrunk(_config(name_or_path)):
        return load_pooler_state(name_or_path)
    return BertModel.from_pretrained(name_or_path).pooler.state_dict()


def load_model(kind, name_or_path, init="pre", seed=42, **config_overrides):
    """Build the task model ``kind`` (glue | squad | pretrain) from a checkpoint.

    ``init="pre"`` loads the pre-trained weights (the head starts random, N(0, 0.02));
    ``init="rand"`` builds the same architecture with every weight drawn fresh from the
    standard BERT init (normal(0, 0.02), zero biases, LayerNorm 1/0), seeded by ``seed``.
    ``config_overrides`` go to the config (``num_labels``, ``finetuning_task``…). A shrunk
    folder (its config records per-layer sizes, :mod:`utils.shrink`) gives the smaller layers.
    """
    if kind not in HEADS:
        raise UserError(f"--model must be one of {', '.join(HEADS)}, not {kind!r}")
    if init not in ("pre", "rand"):
        raise UserError(f"--dir/--weight must be 'pre' or 'rand', not {init!r}")
    config = _config(name_or_path, **config_overrides)
    if getattr(config, "model_type", "bert") != "bert":
        raise UserError(f"--model_name_or_path {name_or_path} is a {config.model_type} model; "
                        "only BERT is supported (--model_type bert)")
    cls = HEADS[kind]
    torch.manual_seed(seed)  # the random head (and --dir rand) is reproducible per --seed

    if is_shrunk(config):
        model = build_shrunk(cls, config, name_or_path, init)
        if init == "pre" and kind == "pretrain" and _missing_mlm_head(name_or_path):
            print(f"note: {name_or_path} has no MLM head; cls.predictions starts random")
        return model
    if init == "rand":
        model = cls(config)
        if getattr(model.bert, "pooler", None) is None:
            model.bert.pooler = BertPooler(config)
            model.bert.pooler.apply(model._init_weights)
        return model

    try:
        model = _from_pretrained(cls, name_or_path, config)
    except SafetensorError as err:  # a model.safetensors cut short (a killed copy) or empty
        weights = Path(name_or_path) / "model.safetensors"
        raise UserError(f"--model_name_or_path {name_or_path}: cannot load the weights {weights} (truncated or "
                        f"damaged?): {first_line(err, 160)}") from None
    except (OSError, ValueError) as err:
        raise UserError(f"--model_name_or_path {name_or_path}: cannot load weights: "
                        f"{first_line(err, 200)}") from None
    if kind == "pretrain" and _missing_mlm_head(name_or_path):
        print(f"note: {name_or_path} has no MLM head; cls.predictions starts random")
    return attach_pooler(model, name_or_path)


def _from_pretrained(cls, name_or_path, config):
    """``from_pretrained``; a fine-tuned folder whose task head has another shape (another
    ``num_labels``) loads with that head fresh, as a head missing from the folder would, and
    says so. A backbone of another shape is still refused."""
    try:
        return cls.from_pretrained(name_or_path, config=config)
    except RuntimeError as err:
        if "ignore_mismatched_sizes" not in str(err):
            raise
    model = cls.from_pretrained(name_or_path, config=config, ignore_mismatched_sizes=True)
    reference = model.state_dict()  # the config's shapes

    weights = Path(name_or_path) / "model.safetensors"
    if weights.is_file():
        with safe_open(str(weights), "pt") as f:
            shapes = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys() if k.startswith("bert.")}
        bad = [k for k, shape in shapes.items() if k in reference and shape != tuple(reference[k].shape)]
        if bad:
            raise UserError(f"--model_name_or_path {name_or_path}: {bad[0]} has shape {shapes[bad[0]]}, "
                            f"the config asks for {tuple(reference[bad[0]].shape)}")
    print(f"note: {name_or_path} holds a task head of another shape (another number of labels?); "
          "it starts fresh")
    return model


# what a --config_name must share with the checkpoint: the shapes of its weights
ARCHITECTURE = (("hidden_size", "hidden"), ("num_hidden_layers", "layers"), ("num_attention_heads", "heads"),
                ("intermediate_size", "intermediate"), ("vocab_size", "vocab"), ("max_position_embeddings", "positions"))


def _differences(other, config):
    """``"hidden 48 vs 32, …"``: the sizes in which config ``other`` differs from ``config``."""
    return ", ".join(f"{label} {getattr(other, key, None)} vs {getattr(config, key, None)}"
                     for key, label in ARCHITECTURE if getattr(other, key, None) != getattr(config, key, None))


def check_model_limits(args):
    """Refuse flags the checkpoint cannot serve: a ``--config_name`` of another architecture
    (the weights are always built with the checkpoint's own config, so such a config would be
    silently ignored), ``--max_seq_length`` above its positions."""
    config = _config(args.model_name_or_path)
    if getattr(args, "config_name", ""):
        other = _config(args.config_name, "--config_name")
        differ = _differences(other, config)
        if differ:
            raise UserError(f"--config_name {args.config_name} differs in size from --model_name_or_path "
                            f"{args.model_name_or_path} ({differ}): the weights are always built with the "
                            "checkpoint's own config; drop --config_name, or give one of the same sizes")
    seq = getattr(args, "max_seq_length", None)
    limit = getattr(config, "max_position_embeddings", None)
    if seq is not None and limit and seq > limit:
        raise UserError(f"--max_seq_length {seq} is above the {limit} positions of {args.model_name_or_path}")


def _missing_mlm_head(name_or_path):
    """True when the checkpoint holds no ``cls.predictions`` weights (e.g. MiniLM sentence models)."""
    folder = Path(name_or_path)
    st = folder / "model.safetensors"
    if st.is_file():
        with safe_open(str(st), "pt") as f:
            return not any("predictions" in k for k in f.keys())
    return False  # cannot tell cheaply (hub cache or .bin): say nothing


def load_weight_file(model, path):
    """``--weight_pertub``: overwrite model tensors with a partial state dict (e.g. shuffled
    layers). Every key must exist in the model with the same shape (the original loaded it
    strictly). Call before masks are attached. Returns the number of tensors replaced."""
    path = Path(path)
    weights = load_tensor_dict(path, "--weight_pertub file")
    state = model.state_dict()
    for key, value in weights.items():
        if key not in state:
            raise UserError(f"--weight_pertub {path}: key {key} is not in the model")
        if tuple(value.shape) != tuple(state[key].shape):
            raise UserError(f"--weight_pertub {path}: {key} has shape {tuple(value.shape)}, "
                            f"the model's is {tuple(state[key].shape)}")
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise UserError(f"--weight_pertub {path}: {key} holds NaN or infinite values")
    with torch.no_grad():
        for key, value in weights.items():
            state[key].copy_(value)
    return len(weights)
