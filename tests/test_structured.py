"""Structured masks (--structure heads_ffn): units, ranking, the schedule, the one-head rule,
random structured pruning, the mask format and the scripts that make and load such masks."""
import json

import pytest
import torch
from conftest import tiny_config
from test_glue_scripts import common, masks_at, write_mrpc

import glue_trans
import LT_glue
import LT_pretrain
import LT_squad
import oneshot
from utils import pruning as P
from utils import structured as S
from utils.errors import UserError, run_cli

# a 2-layer model, hidden 8, 4 heads of size 2, 16 FFN neurons: a head is 4*2*8 = 64 weights,
# a neuron 2*8 = 16; the encoder has 2 * (4*64 + 16*16) = 1024 prunable weights
HEAD_VALUES = [[0.5, 0.1, 0.9, 0.3], [0.05, 0.8, 0.7, 0.6]]


def known_model():
    """Every weight of a unit has the same magnitude (signs alternate), so scores are known."""
    from transformers import BertForSequenceClassification

    from utils.models import attach_pooler

    torch.manual_seed(0)
    model = attach_pooler(BertForSequenceClassification(tiny_config(hidden=8, heads=4, intermediate=16)))
    sign = lambda shape: torch.where(torch.arange(torch.Size(shape).numel()) % 2 == 0, 1.0, -1.0).view(shape)
    with torch.no_grad():
        for layer, parts in enumerate(S.encoder_layers(P.prunable_modules(model))):
            heads = torch.tensor(HEAD_VALUES[layer]).repeat_interleave(2)  # per row of q/k/v
            for x in ("q", "k", "v"):
                parts[x].weight.copy_(heads[:, None] * sign((8, 8)))
            parts["ao"].weight.copy_(heads[None, :] * sign((8, 8)))
            neurons = 0.205 + 0.2 * layer + 0.01 * torch.arange(16.0)  # layer 0: 0.205 … 0.355
            parts["i"].weight.copy_(neurons[:, None] * sign((16, 8)))
            parts["o"].weight.copy_(neurons[None, :] * sign((8, 16)))
    return model


def kept(masks, d=2):
    return [([int(i) for i in torch.nonzero(lay["heads"]).flatten()], [int(i) for i in torch.nonzero(lay["neurons"]).flatten()])
            for lay in S.layout_from_masks(masks, d)]


def pruned(masks):
    return sum(int((~m).sum()) for k, m in masks.items() if "pooler" not in k)


def test_units_cover_the_encoder_and_scores_are_mean_abs():
    model = known_model()
    table = S.unit_table(model, S.current_layout(model))
    assert S.encoder_total(table) == 1024 == P.count_prunable(model) - 8 * 8  # all but the pooler
    heads = table["kind"] == 0
    assert heads.sum() == 8 and (~heads).sum() == 32
    assert set(table["size"][heads]) == {64} and set(table["size"][~heads]) == {16}
    assert table["score"][heads].round(6).tolist() == [v for row in HEAD_VALUES for v in row]
    assert table["score"][~heads][:3].round(6).tolist() == [0.205, 0.215, 0.225]
    assert S.max_sparsity(model) == pytest.approx(1 - 2 * 64 / 1024)


def test_magnitude_events_exact_units_nested_and_format():
    model = known_model()
    # event 1: target round(0.1 * 1024) = 102: layer 1 head 0 (0.05, 64 weights), then layer 0
    # head 1 (0.1) overshoots to 128, nearer to 102 than 64 is, so it goes too
    m1 = S.structured_prune(model, 0.1)
    assert pruned(m1) == 128
    assert kept(m1) == [([0, 2, 3], list(range(16))), ([1, 2, 3], list(range(16)))]
    # event 2: target 205: layer 0's neurons 0.205, 0.215, … go until 208 (nearer than 192)
    m2 = S.structured_prune(model, 0.2)
    assert pruned(m2) == 208
    assert kept(m2) == [([0, 2, 3], list(range(5, 16))), ([1, 2, 3], list(range(16)))]
    assert all(not bool((m2[k] & ~m1[k]).any()) for k in m1)  # nested
    # the mask file format: every prunable key, 0/1, the pooler whole; whole rows and columns
    assert list(m2) == list(P.prunable_shapes(model))
    assert bool(m2["bert.pooler.dense.weight_mask"].all())
    q = m2["bert.encoder.layer.0.attention.self.query.weight_mask"]
    assert not q[2:4].any() and q[[0, 1, 4, 5, 6, 7]].all()
    ao = m2["bert.encoder.layer.0.attention.output.dense.weight_mask"]
    assert not ao[:, 2:4].any() and ao[:, [0, 1, 4, 5, 6, 7]].all()
    assert not m2["bert.encoder.layer.0.intermediate.dense.weight_mask"][:5].any()
    assert not m2["bert.encoder.layer.0.output.dense.weight_mask"][:, :5].any()
    # the model carries the mask: pruned weights are zero
    weights = P.prunable_modules(model)["bert.encoder.layer.0.attention.self.query"].weight
    assert torch.count_nonzero(weights[2:4]) == 0


def test_one_head_rule_caps_the_sparsity():
    model = known_model()
    masks = S.structured_prune(model, 1.0)
    # every neuron goes; each layer keeps its highest-scoring head (0.9 and 0.8)
    assert kept(masks) == [([2], []), ([1], [])]
    assert pruned(masks) == 1024 - 2 * 64
    again = S.structured_prune(model, 1.0)  # nothing more can go
    assert all(torch.equal(again[k], masks[k]) for k in masks)


def test_unstructured_mask_is_recognised():
    model = known_model()
    masks = P.global_magnitude_prune(model, 0.3)
    assert not S.is_structured(masks, 2)
    with pytest.raises(UserError, match="not pruned in whole heads and FFN neurons"):
        S.layout_from_masks(masks, 2, "some/mask.pt")


def test_random_structured_is_seeded_ignores_magnitude_and_hits_the_weight_count():
    layouts = []
    for seed in range(6):
        model = known_model()
        masks = S.structured_prune(model, 0.5, how="random", seed=seed)
        assert abs(pruned(masks) - 512) <= 32  # to the nearest unit (a head is 64)
        assert all(len(h) >= 1 for h, _ in kept(masks))
        layouts.append(kept(masks))
    again = S.structured_prune(known_model(), 0.5, how="random", seed=0)
    assert kept(again) == layouts[0]
    assert len({json.dumps(x) for x in layouts}) >= 5
    magnitude = kept(S.structured_prune(known_model(), 0.5))
    assert any(x != magnitude for x in layouts)


def test_oneshot_structured_masks_records_and_refusals(tiny_bert_dir, tmp_path, capsys):
    base = ["--model_name_or_path", str(tiny_bert_dir), "--rate", "0.5", "--structure", "heads_ffn"]
    rep_pre = oneshot.main(base + ["--weight", "pre", "--output_dir", str(tmp_path / "omp")])
    rep_rand = oneshot.main(base + ["--weight", "rand", "--seed", "3", "--output_dir", str(tmp_path / "rnd")])
    # tiny_bert_dir: 2 layers, hidden 32, 2 heads (2,048 weights each), 64 neurons (64 each)
    for rep, out in ((rep_pre, "omp"), (rep_rand, "rnd")):
        assert rep["prunable_set"] == "no_pooler"
        assert rep["prunable"]["total"] == 16384
        assert abs(rep["prunable"]["pruned"] - 8192) <= 1024
        assert rep["structure"]["heads_total"] == [2, 2] and min(rep["structure"]["heads_kept"]) >= 1
        masks = P.load_mask(tmp_path / out / "mask.pt")
        assert len(masks) == 13 and S.is_structured(masks, 16)
        record = json.loads((tmp_path / out / "mask_provenance.json").read_text())
        assert record["structure"] == "heads_ffn"
        assert record["structured"]["neurons_kept"] == rep["structure"]["neurons_kept"]
        assert json.loads((tmp_path / out / "mask_sparsity.json").read_text())["structure"] == rep["structure"]
    assert "heads kept per layer" in capsys.readouterr().out
    with pytest.raises(SystemExit) as e:
        oneshot.main(base + ["--prunable_set", "paper", "--output_dir", str(tmp_path / "x")])
    assert e.value.code == 2 and not (tmp_path / "x").exists()


def test_lt_glue_structured_schedule_and_glue_trans_loads_it(tiny_bert_dir, tmp_path, capsys):
    data = write_mrpc(tmp_path / "MRPC")
    out = tmp_path / "imp"
    results = LT_glue.main(common(tiny_bert_dir, data, out, "--structure", "heads_ffn", "--save_steps", "2",
                                  "--logging_steps", "0", "--max_steps", "6", "--learning_rate", "1e-3",
                                  "--save_round_weights", "0"))
    assert results["structure"] == "heads_ffn" and results["prunable_set"] == "no_pooler"
    previous = None
    for k, step in enumerate((2, 4, 6), start=1):
        masks = masks_at(out, step)
        assert S.is_structured(masks, 16) and bool(masks["bert.pooler.dense.weight_mask"].all())
        target = round(0.1 * k * 16384)
        assert abs(pruned(masks) - target) <= 1024  # to the nearest unit
        if previous is not None:
            assert all(not bool((masks[key] & ~previous[key]).any()) for key in masks)
        previous = masks
        report = json.loads((out / f"checkpoint-{step}" / "mask_sparsity.json").read_text())
        assert report["structure"]["neurons_total"] == [64, 64]
        record = json.loads((out / f"checkpoint-{step}" / "mask_provenance.json").read_text())
        assert record["structure"] == "heads_ffn" and record["pruning_event"] == k
    assert "every layer keeps one head" not in capsys.readouterr().out  # 3 events: below the cap
    # the structured mask is an ordinary mask for the fixed-mask script
    ft = tmp_path / "ft"
    res = glue_trans.main(common(tiny_bert_dir, data, ft, "--mask_dir", str(out / "checkpoint-6" / "mask.pt"),
                                 "--max_steps", "2", "--logging_steps", "0", "--save_steps", "0"))
    args = json.loads((ft / "args.json").read_text())
    assert args["provenance"]["mask"]["record"]["structure"] == "heads_ffn"
    assert res["initial_sparsity"] > 0


def test_structured_imp_announces_the_cap_and_refuses_paper_set(tiny_bert_dir, tmp_path, capsys):
    data = write_mrpc(tmp_path / "MRPC", n_train=16)
    out = tmp_path / "imp10"
    results = LT_glue.main(common(tiny_bert_dir, data, out, "--structure", "heads_ffn", "--save_steps", "1",
                                  "--logging_steps", "0", "--num_train_epochs", "100", "--save_round_weights", "0"))
    printed = capsys.readouterr().out
    # tiny_bert_dir: one head per layer is 2 * 2,048 of 16,384 weights, so the cap is 75 %
    assert "sparsity stops at 75.0 % of the encoder; pruning event(s) 8-10 of 10" in printed
    assert [round(m["sparsity"]) for m in results["masks"]][-3:] == [75, 75, 75]
    with pytest.raises(SystemExit) as e:
        run_cli(LT_glue.main, common(tiny_bert_dir, data, tmp_path / "bad", "--structure", "heads_ffn",
                                     "--prunable_set", "paper", "--save_steps", "1"))
    assert e.value.code == 2 and not (tmp_path / "bad").exists()
    assert "cannot be combined with --prunable_set paper" in capsys.readouterr().err


@pytest.mark.parametrize("module", [LT_glue, LT_squad, LT_pretrain])
def test_every_imp_script_takes_structure(module):
    extra = {LT_glue: ["--task_name", "MRPC", "--data_dir", "x"], LT_pretrain: ["--train_data_file", "x"]}
    args = module.parse_args(["--output_dir", "x", "--structure", "heads_ffn"] + extra.get(module, []))
    assert args.structure == "heads_ffn"


def test_lt_squad_structured_and_squad_trans_loads_a_structured_mask(tiny_bert_dir, tmp_path):
    from test_squad_scripts import squad_argv, squad_json, write_json

    import squad_trans

    files = {"train": write_json(tmp_path / "train.json", squad_json()),
             "eval": write_json(tmp_path / "eval.json", squad_json()), "cache": tmp_path / "cache"}
    out = tmp_path / "imp"
    results = LT_squad.main(squad_argv(tiny_bert_dir, files, out, extra=["--structure", "heads_ffn"]))
    assert results["structure"] == "heads_ffn" and len(results["masks"]) == 2
    for k, m in enumerate(results["masks"], start=1):
        masks = P.load_mask(out / m["path"])
        assert S.is_structured(masks, 16) and abs(pruned(masks) - round(0.1 * k * 16384)) <= 1024
    # a structured mask from oneshot.py, fine-tuned on SQuAD with the mask fixed
    oneshot.main(["--model_name_or_path", str(tiny_bert_dir), "--rate", "0.5", "--structure", "heads_ffn",
                  "--model", "squad", "--output_dir", str(tmp_path / "omp")])
    ft = tmp_path / "ft"
    res = squad_trans.main(squad_argv(tiny_bert_dir, files, ft, steps=2, save=0,
                                      extra=["--dir", "pre", "--mask_dir", str(tmp_path / "omp" / "mask.pt")]))
    after = P.current_masks(load_model_with_mask(tiny_bert_dir, tmp_path / "omp" / "mask.pt"))
    assert S.is_structured(after, 16)
    args = json.loads((ft / "args.json").read_text())
    assert args["provenance"]["mask"]["record"]["structure"] == "heads_ffn"
    assert 45 < res["initial_sparsity"] < 55  # percent of the paper's set (pooler dense)


def load_model_with_mask(model_dir, mask_path):
    from utils.models import load_model

    model = load_model("squad", str(model_dir))
    P.apply_masks(model, P.load_mask(mask_path, model))
    return model
