"""Shrunk models (utils/shrink.py, shrink.py, --save_model): sliced shapes, outputs equal to the
masked model's, the exported folder through load_model and the scripts, and bad input."""
import json

import pytest
import torch
from conftest import save_pretrained_bert
from safetensors.torch import load_file

import glue_trans
import pertub_weight
import pretrain_trans
import shrink
import squad_trans
from test_glue_scripts import write_mrpc
from test_mlm_scripts import make_text
from test_squad_scripts import squad_argv, squad_json, write_json
from utils import pruning as P
from utils.maskfile import save_mask
from utils.errors import UserError, run_cli
from utils.models import _missing_mlm_head, attach_pooler, check_model_limits, load_model
from utils.export import save_model_folder
from utils.shrink import (
    HEADS_ATTR,
    INTERMEDIATE_ATTR,
    count_parameters,
    shrink_model,
)
from utils.structured import masks_from_layout, structured_prune

# Tiny model: 3 layers, hidden 32, 4 heads of size 8, FFN 64.
L, H, NH, D, FF = 3, 32, 4, 8, 64
PER_HEAD = 3 * (D * H + D) + H * D  # Q/K/V rows + biases, attention.output.dense columns: 1,048
PER_NEURON = H + 1 + H  # intermediate row + bias, output.dense column: 65
IDS = torch.tensor([[2, 60, 71, 66, 80, 3, 61, 75, 3, 0], [2, 90, 91, 92, 3, 70, 3, 0, 0, 0]])
ATT = (IDS != 0).long()


@pytest.fixture(scope="module")
def bert3(tmp_path_factory):
    """A 3-layer, 4-head tiny checkpoint (the session's tiny_bert_dir has 2 heads)."""
    return save_pretrained_bert(tmp_path_factory.mktemp("bert3"), seed=1, num_layers=L, heads=NH)


def rigged_masks(model):
    """structured_prune at 50 % after making layer 0's FFN and the heads of layers 1 and 2 tiny:
    layer 0 loses its whole FFN, layers 1 and 2 keep one head each (the one-head rule)."""
    with torch.no_grad():
        layers = model.bert.encoder.layer
        layers[0].intermediate.dense.weight.mul_(1e-3)
        layers[0].output.dense.weight.mul_(1e-3)
        for i in (1, 2):
            att = layers[i].attention
            for lin in (att.self.query, att.self.key, att.self.value, att.output.dense):
                lin.weight.mul_(1e-3)
    return structured_prune(model, 0.5)


def outputs(model, kind):
    with torch.no_grad():
        out = model.eval()(input_ids=IDS, attention_mask=ATT)
    return torch.cat([out.start_logits, out.end_logits], -1) if kind == "squad" else out.logits


def encoder_sizes(model):
    lay = model.bert.encoder.layer
    return ([lay_.attention.self.query.out_features // D for lay_ in lay],
            [lay_.intermediate.dense.out_features for lay_ in lay])


@pytest.mark.parametrize("kind", ["glue", "squad", "pretrain"])
def test_shrunk_shapes_and_outputs_equal_masked(bert3, kind):
    model = load_model(kind, str(bert3))
    masks = rigged_masks(model)  # applied (plain masking)
    pruned = sum(int((~m).sum()) for k, m in masks.items() if "pooler" not in k)
    assert pruned == round(0.5 * L * (4 * D * H * NH + 2 * H * FF)) == 12_288
    masked = outputs(model, kind)
    before = count_parameters(model)
    model, layout = shrink_model(model, masks)
    heads = [int(x["heads"].sum()) for x in layout]
    neurons = [int(x["neurons"].sum()) for x in layout]
    assert neurons[0] == 0 and heads[1] == heads[2] == 1
    assert encoder_sizes(model) == (heads, neurons)
    for i, layer in enumerate(model.bert.encoder.layer):
        att = layer.attention.self
        for lin in (att.query, att.key, att.value):
            assert tuple(lin.weight.shape) == (heads[i] * D, H) and tuple(lin.bias.shape) == (heads[i] * D,)
        assert tuple(layer.attention.output.dense.weight.shape) == (H, heads[i] * D)
        assert tuple(layer.intermediate.dense.weight.shape) == (neurons[i], H)
        assert tuple(layer.intermediate.dense.bias.shape) == (neurons[i],)
        assert tuple(layer.output.dense.weight.shape) == (H, neurons[i])
        assert (att.num_attention_heads, att.all_head_size) == (heads[i], heads[i] * D)
        assert not hasattr(layer.intermediate.dense, "weight_mask")
    assert getattr(model.config, HEADS_ATTR) == heads and getattr(model.config, INTERMEDIATE_ATTR) == neurons
    assert model.config.num_attention_heads == NH and model.config.hidden_size == H  # head size stays 8
    removed = (L * NH - sum(heads)) * PER_HEAD + (L * FF - sum(neurons)) * PER_NEURON
    assert count_parameters(model) == before - removed
    assert torch.allclose(outputs(model, kind), masked, atol=1e-5, rtol=0)


def test_layer_without_heads_keeps_one_zeroed_head(bert3):
    model = load_model("squad", str(bert3))
    layout = [{"heads": torch.zeros(NH, dtype=torch.bool), "neurons": torch.arange(FF) % 2 == 0},
              {"heads": torch.tensor([False, True, False, True]), "neurons": torch.zeros(FF, dtype=torch.bool)},
              {"heads": torch.ones(NH, dtype=torch.bool), "neurons": torch.ones(FF, dtype=torch.bool)}]
    masks = masks_from_layout(model, layout)
    P.apply_masks(model, masks, "hooks")  # also from torch.nn.utils.prune masking
    masked = outputs(model, "squad")
    model, _ = shrink_model(model, masks)
    assert encoder_sizes(model) == ([1, 2, 4], [32, 0, 64])
    assert float(model.bert.encoder.layer[0].attention.output.dense.weight.detach().abs().sum()) == 0.0
    assert torch.allclose(outputs(model, "squad"), masked, atol=1e-5, rtol=0)


def test_unstructured_or_foreign_mask_refused_model_untouched(bert3, tiny_bert_dir):
    model = load_model("glue", str(bert3))
    state = {k: v.clone() for k, v in model.state_dict().items()}
    masks = P.current_masks(model)
    masks["bert.encoder.layer.1.output.dense.weight_mask"][3, 5] = False
    with pytest.raises(UserError, match="layer.1.output.dense is not pruned in whole heads"):
        shrink_model(model, masks)
    with pytest.raises(UserError, match="mask does not fit this model"):  # a 2-layer model's mask
        shrink_model(model, P.current_masks(load_model("glue", str(tiny_bert_dir))))
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())


@pytest.fixture(scope="module")
def small(bert3, tmp_path_factory):
    """A shrunk GLUE model exported to a folder, with the masked full model's outputs."""
    model = load_model("glue", str(bert3), num_labels=3)
    masks = rigged_masks(model)
    masked = outputs(model, "glue")
    model, _ = shrink_model(model, masks)
    out = tmp_path_factory.mktemp("small") / "small"
    save_model_folder(model, out, bert3)
    return {"dir": out, "masked": masked, "sizes": encoder_sizes(model), "state": model.state_dict()}


def test_export_files_and_loaders(small, bert3):
    out = small["dir"]
    names = sorted(p.name for p in out.iterdir())
    assert names == ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"]
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no staging folder left
    for name in ("tokenizer.json", "tokenizer_config.json"):
        assert (out / name).read_bytes() == (bert3 / name).read_bytes()
    config = json.loads((out / "config.json").read_text())
    assert (config[HEADS_ATTR], config[INTERMEDIATE_ATTR]) == small["sizes"]
    assert (config["hidden_size"], config["num_attention_heads"], len(config["id2label"])) == (H, NH, 3)
    assert config["architectures"] == ["BertForSequenceClassification"]
    weights = load_file(out / "model.safetensors")
    assert not any(k.endswith(("_mask", "_orig")) for k in weights)
    assert weights["bert.encoder.layer.0.intermediate.dense.weight"].shape == (0, H)
    for model in (load_model("glue", str(out)), load_model("glue", out)):  # a str or a Path
        assert encoder_sizes(model) == small["sizes"] and not model.training
        assert torch.allclose(outputs(model, "glue"), small["masked"], atol=1e-5, rtol=0)
    # another head: the backbone loads, the head starts fresh (as from_pretrained)
    qa = load_model("squad", out)
    assert torch.equal(qa.bert.encoder.layer[1].attention.self.query.weight,
                       small["state"]["bert.encoder.layer.1.attention.self.query.weight"])
    assert torch.equal(qa.bert.pooler.dense.weight, small["state"]["bert.pooler.dense.weight"])
    mlm = load_model("pretrain", out)
    assert mlm.cls.predictions.decoder.weight is mlm.bert.embeddings.word_embeddings.weight  # still tied
    two = load_model("glue", out, num_labels=2)
    assert two.classifier.weight.shape == (2, H)
    # random weights of the small architecture
    rand = load_model("glue", out, init="rand", seed=3)
    assert encoder_sizes(rand) == small["sizes"]
    assert not torch.equal(rand.bert.embeddings.word_embeddings.weight,
                           small["state"]["bert.embeddings.word_embeddings.weight"])
    # the other readers of a checkpoint's config and weights
    assert _missing_mlm_head(str(out))
    stripped = load_model("squad", out)
    del stripped.bert.pooler
    stripped.bert.pooler = None
    attach_pooler(stripped, str(out))
    assert torch.equal(stripped.bert.pooler.dense.weight, small["state"]["bert.pooler.dense.weight"])
    check_model_limits(glue_trans.parse_args(["--task_name", "MRPC", "--data_dir", "x", "--output_dir", "y",
                                              "--model_name_or_path", str(out)]))


def test_failed_export_writes_nothing(small, tmp_path, monkeypatch):
    import utils.export

    model = load_model("glue", small["dir"])
    target = tmp_path / "export"

    def broken(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(utils.export, "save_weights", broken)
    with pytest.raises(OSError):
        save_model_folder(model, target, small["dir"])
    assert list(tmp_path.iterdir()) == []


# --- the scripts ---------------------------------------------------------------------------------------

def glue_argv(model_dir, data, out, *extra):
    return ["--task_name", "MRPC", "--data_dir", str(data), "--model_name_or_path", str(model_dir),
            "--output_dir", str(out), "--cache_dir", str(out.parent / "cache"), "--per_gpu_train_batch_size", "8",
            "--seed", "57", "--overwrite_output_dir", "--save_steps", "0", "--logging_steps", "0", *extra]


def save_structured_mask(model_dir, path):
    model = load_model("glue", str(model_dir))
    masks = rigged_masks(model)
    save_mask(path, masks, model=model, prunable_set="no_pooler")
    return masks


def test_save_model_then_shrink_then_scripts(bert3, tmp_path, capsys):
    data = write_mrpc(tmp_path / "MRPC")
    mask = tmp_path / "mask.pt"
    masks = save_structured_mask(bert3, mask)
    # fine-tune with the structured mask, save the model
    run = tmp_path / "ft"
    results = glue_trans.main(glue_argv(bert3, data, run, "--do_train", "--mask_dir", str(mask),
                                        "--max_steps", "3", "--learning_rate", "1e-3", "--save_model"))
    folder = run / "model"
    assert results["saved_model"] == str(folder)
    assert {"config.json", "model.safetensors", "tokenizer.json", "model_provenance.json"} <= {p.name for p in folder.iterdir()}
    weights = load_file(folder / "model.safetensors")
    assert not any(k.endswith(("_mask", "_orig")) for k in weights)
    for key, m in masks.items():
        assert bool((weights[key[: -len("_mask")]][~m] == 0).all())
    assert json.loads((folder / "model_provenance.json").read_text())["kind"] == "finetuned"
    # evaluate it without training, then shrink it and evaluate the small one: the same scores
    full_eval = glue_trans.main(glue_argv(folder, data, tmp_path / "eval_full", "--do_eval"))
    assert full_eval["global_step"] == 0 and full_eval["final"]["sparsity"] == pytest.approx(100 * 12_288 / 25_600)
    capsys.readouterr()
    small = tmp_path / "small"
    info = shrink.main(["--mask_dir", str(mask), "--model_name_or_path", str(folder), "--output_dir", str(small)])
    printed = capsys.readouterr().out
    assert f"parameters: {info['parameters_before']:,} -> {info['parameters_after']:,}" in printed
    assert "layer 1: 1/4 heads" in printed and "layer 0:" in printed and "0/64 FFN neurons" in printed
    record = json.loads((small / "model_provenance.json").read_text())
    assert record["kind"] == "shrunk" and record["parameters_after"] == info["parameters_after"]
    assert record["mask"]["sha256"] and record["checkpoint"]["name_or_path"] == str(folder)
    small_eval = glue_trans.main(glue_argv(small, data, tmp_path / "eval_small", "--do_eval"))
    for metric in ("acc", "f1"):
        assert small_eval["final"][metric] == pytest.approx(full_eval["final"][metric])
    assert small_eval["initial_sparsity"] == 0.0  # nothing left to prune in the slices
    # the small folder fine-tunes dense (no mask) in glue_trans.py and squad_trans.py
    dense = glue_trans.main(glue_argv(small, data, tmp_path / "dense", "--do_train", "--max_steps", "2",
                                      "--learning_rate", "1e-3", "--save_model"))
    assert dense["mask"] is None and dense["global_step"] == 2
    assert encoder_sizes(load_model("glue", tmp_path / "dense" / "model")) == encoder_sizes(load_model("glue", small))
    files = {"train": write_json(tmp_path / "train.json", squad_json()),
             "eval": write_json(tmp_path / "eval.json", squad_json()), "cache": tmp_path / "cache"}
    qa = squad_trans.main(squad_argv(small, files, tmp_path / "qa", steps=2, save=0, extra=["--dir", "pre"]))
    assert qa["global_step"] == 2 and qa["final"]["total"] == 8


def test_pretrain_trans_save_model(tiny_bert_dir, tmp_path):
    (tmp_path / "train.txt").write_text(make_text(n_lines=4), encoding="utf-8")
    out = tmp_path / "mlm"
    pretrain_trans.main(["--mlm", "--model_name_or_path", str(tiny_bert_dir), "--train_data_file",
                         str(tmp_path / "train.txt"), "--output_dir", str(out), "--cache_dir", str(tmp_path / "c"),
                         "--block_size", "16", "--do_train", "--max_steps", "1", "--save_steps", "0",
                         "--save_model"])
    model = load_model("pretrain", str(out / "model"))
    weights = load_file(out / "model" / "model.safetensors")
    assert "cls.predictions.transform.dense.weight" in weights and HEADS_ATTR not in model.config.to_dict()
    assert torch.equal(model.cls.predictions.transform.dense.weight, weights["cls.predictions.transform.dense.weight"])


# --- bad input: one line, exit 2, nothing written ------------------------------------------------------

def bad_cases(bert3, small, tmp_path):
    unstructured = P.current_masks(load_model("glue", str(bert3)))
    unstructured["bert.encoder.layer.2.attention.self.key.weight_mask"][0, 0] = False
    torch.save(unstructured, tmp_path / "unstructured.pt")
    other = save_pretrained_bert(tmp_path / "other", num_layers=L, heads=NH, intermediate=48)
    torch.save(P.current_masks(load_model("glue", str(other))), tmp_path / "other.pt")
    out = tmp_path / "out"
    shrink_argv = ["--model_name_or_path", str(bert3), "--output_dir", str(out), "--mask_dir"]
    return [
        (shrink.main, shrink_argv + [str(tmp_path / "unstructured.pt")],
         "is not pruned in whole heads and FFN neurons"),
        (shrink.main, shrink_argv + [str(tmp_path / "other.pt")], "has shape (48, 32), the model's weight is (64, 32)"),
        (pertub_weight.main, ["--model_name_or_path", str(small["dir"]), "--output", str(out / "s.pt")],
         "layers cannot be swapped"),
    ]


def test_bad_input_one_line_exit_2(bert3, small, tmp_path, capsys):
    for main, argv, expected in bad_cases(bert3, small, tmp_path):
        capsys.readouterr()
        with pytest.raises(SystemExit) as exc:
            run_cli(main, argv)
        err = capsys.readouterr().err.strip().splitlines()
        assert exc.value.code == 2 and len(err) == 1 and err[0].startswith("error: ") and expected in err[0], err
        assert not (tmp_path / "out").exists()
