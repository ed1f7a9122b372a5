"""Loss-based importance of heads and FFN neurons (utils/importance.py) on tiny models with
hand-set weights: gates that cost nothing, gate gradients against hand-computed ones, the
units each score removes, per-layer normalisation, and the least-squares rescaling."""
import numpy as np
import pytest
import torch
from conftest import tiny_config
from test_structured import known_model

from utils import importance as I
from utils import pruning as P
from utils import structured as S


def tiny_classifier(seed=0):
    from transformers import BertForSequenceClassification

    from utils.models import attach_pooler

    torch.manual_seed(seed)
    return attach_pooler(BertForSequenceClassification(tiny_config(hidden=8, heads=4, intermediate=16,
                                                                   num_labels=2)))


def batches(n=2, seed=1, size=3, length=5, vocab=60):
    g = torch.Generator().manual_seed(seed)
    return [{"input_ids": torch.randint(5, vocab, (size, length), generator=g),
             "attention_mask": torch.ones(size, length, dtype=torch.long),
             "labels": torch.randint(0, 2, (size,), generator=g)} for _ in range(n)]


def n_hooks(model):
    return sum(len(m._forward_pre_hooks) for m in model.modules())


def test_gates_of_one_leave_outputs_bit_equal_and_no_hook_outside():
    model = tiny_classifier().eval()
    b = batches(1)[0]
    before = n_hooks(model)
    with torch.no_grad():
        plain = model(**b).logits
    with I.UnitGates(model) as gates:
        assert n_hooks(model) == before + 2 * 2  # two layers: ao and o
        assert [g.numel() for g in gates.heads] == [4, 4] and [g.numel() for g in gates.neurons] == [16, 16]
        with torch.no_grad():
            gated = model(**b).logits
    assert torch.equal(plain, gated)
    assert n_hooks(model) == before


def test_gate_gradients_equal_hand_computed_ones():
    """dL/dgate_h = sum over tokens of (dL/dx)·x on head h's slice of attention.output.dense's
    input (neurons: of output.dense's input), computed here without gates."""
    model = tiny_classifier().eval()
    b = batches(1)[0]
    layers = S.encoder_layers(P.prunable_modules(model))
    kept = {}

    def keep(name):
        def pre(mod, args):
            args[0].retain_grad()
            kept[name] = args[0]
        return pre

    handles = [layers[li][part].register_forward_pre_hook(keep((li, part))) for li in range(2) for part in ("ao", "o")]
    model.zero_grad()
    model(**b).loss.backward()
    for h in handles:
        h.remove()
    (grads,) = I.gate_gradients(model, [b])
    for li in range(2):
        x, gx = kept[(li, "ao")], kept[(li, "ao")].grad
        hand = (x * gx).sum((0, 1)).view(4, 2).sum(1)
        assert torch.allclose(grads[0][li], hand, atol=1e-6, rtol=1e-4)
        x, gx = kept[(li, "o")], kept[(li, "o")].grad
        assert torch.allclose(grads[1][li], (x * gx).sum((0, 1)), atol=1e-6, rtol=1e-4)
    assert all(p.grad is None or p.grad.abs().sum() > 0 for p in model.parameters())  # untouched by scoring


def test_taylor_and_fisher_are_mean_abs_and_mean_square():
    g1 = ([torch.tensor([1.0, -2.0])], [torch.tensor([3.0])])
    g2 = ([torch.tensor([-3.0, 0.0])], [torch.tensor([-1.0])])
    assert I.gradient_importance([g1, g2], "taylor").tolist() == [2.0, 1.0, 2.0]
    assert I.gradient_importance([g1, g2], "fisher").tolist() == [5.0, 2.0, 5.0]
    with pytest.raises(ValueError):
        I.gradient_importance([], "fisher")


def test_unit_scores_order_matches_the_unit_table():
    model = tiny_classifier()
    layout = S.current_layout(model)
    table, raw = I.unit_scores(model, layout, "fisher", batches(2), normalise="size")
    ref = S.unit_table(model, layout)
    assert (table["layer"] == ref["layer"]).all() and (table["kind"] == ref["kind"]).all()
    assert np.allclose(table["score"], raw / ref["size"])
    grads = I.gate_gradients(model, batches(2))
    assert np.allclose(raw, I.gradient_importance(grads, "fisher"))
    none, _ = I.unit_scores(model, layout, "fisher", batches(2), normalise="none")
    assert np.allclose(none["score"], raw)
    rec = I.score_record(table, raw, "fisher", "size", 2, kept=ref["alive"])
    assert rec["batches"] == 2 and len(rec["units"]) == 40 and rec["units"][0]["unit"] == "head"


def scaled_layer_model(scale=0.01):
    """known_model with layer 1's FFN weights shrunk: its neurons have the smallest |w|."""
    model = known_model()
    parts = S.encoder_layers(P.prunable_modules(model))[1]
    with torch.no_grad():
        parts["i"].weight.mul_(scale)
        parts["o"].weight.mul_(scale)
    return model


def neurons_kept(masks):
    return [int(lay["neurons"].sum()) for lay in S.layout_from_masks(masks, 2)]


def test_layer_normalisation_never_empties_a_layer_first():
    # magnitude: layer 1's 16 neurons (16 weights each, 256 in all) go before anything else
    mag = S.structured_prune(scaled_layer_model(), 0.25)
    assert neurons_kept(mag) == [16, 0]
    model = scaled_layer_model()
    table, _ = I.unit_scores(model, S.current_layout(model), "layer_norm_magnitude")
    norm = S.structured_prune(model, 0.25, table=table)
    # scores over each group's RMS: layer 1's head 0 (0.08), layer 0's heads 1 (0.18) and 3
    # (0.55), then layer 0's four weakest neurons (0.72-0.83); layer 1's small neurons stay
    assert neurons_kept(norm) == [12, 16]
    assert [lay["heads"].tolist() for lay in S.layout_from_masks(norm, 2)] == [[True, False, True, False],
                                                                              [False, True, True, True]]
    # per group, the normalised scores have RMS 1
    sel = (table["layer"] == 1) & (table["kind"] == 1)
    assert np.sqrt(np.mean(table["score"][sel] ** 2)) == pytest.approx(1.0)


def test_chosen_units_per_event_follow_the_score():
    """Hand-set importances: the lowest-score units go first, event after event (masks nest)."""
    model = known_model()
    layout = S.current_layout(model)
    table = S.unit_table(model, layout)
    score = np.arange(len(table["score"]), dtype=float)[::-1].copy()  # the last units lowest
    table["score"] = score
    first = S.structured_prune(model, 16 / 1024, table=table)  # one neuron: the last of layer 1
    assert neurons_kept(first) == [16, 15]
    assert not S.layout_from_masks(first, 2)[1]["neurons"][15]
    table2 = S.unit_table(model, S.current_layout(model))
    table2["score"] = score
    second = S.structured_prune(model, 64 / 1024, table=table2)  # three more neurons
    assert neurons_kept(second) == [16, 12]
    assert not S.layout_from_masks(second, 2)[1]["neurons"][12:].any()


def test_least_squares_scales_reproduce_a_known_solution():
    """If the pruned model's inputs are the full ones divided by k_u per unit, s_u = k_u."""
    g = torch.Generator().manual_seed(0)
    x_full = torch.randn(200, 6, generator=g, dtype=torch.float64)
    w = torch.randn(5, 6, generator=g, dtype=torch.float64)
    k = torch.tensor([2.0, 0.5, 4.0], dtype=torch.float64)  # 3 units of 2 columns
    x = x_full / k.repeat_interleave(2)
    s = I.least_squares_scales(x.T @ x, x.T @ x_full, w.T @ w, [True, True, True], 2)
    assert torch.allclose(s, k)
    # a removed unit keeps scale 1; the kept ones compensate in the least-squares sense
    s2 = I.least_squares_scales(x.T @ x, x.T @ x_full, w.T @ w, [True, False, True], 2)
    assert s2[1] == 1.0
    cols = torch.tensor([0, 1, 4, 5])
    contrib = torch.stack([(x[:, c:c + 2] @ w[:, c:c + 2].T).reshape(-1) for c in (0, 4)], 1)
    ref = torch.linalg.lstsq(contrib, (x_full @ w.T).reshape(-1, 1)).solution[:, 0]
    assert torch.allclose(s2[[0, 2]], ref) and cols.numel() == 4


def test_rescaling_a_pruned_model_brings_its_outputs_closer():
    model = tiny_classifier(3).eval()
    full = tiny_classifier(3).eval()
    data = batches(4, seed=5)
    masks = S.structured_prune(tiny_classifier(3), 0.3)
    P.apply_masks(model, masks)
    with torch.no_grad():
        ref = [full.bert(**{k: v for k, v in b.items() if k != "labels"}).last_hidden_state for b in data]
        before = sum(float(((model.bert(**{k: v for k, v in b.items() if k != "labels"}).last_hidden_state - r) ** 2).sum())
                     for b, r in zip(data, ref))
    P.remove_masks(model)
    model.load_state_dict(full.state_dict())
    scales = I.rescale_kept_units(model, masks, data)
    with torch.no_grad():
        after = sum(float(((model.bert(**{k: v for k, v in b.items() if k != "labels"}).last_hidden_state - r) ** 2).sum())
                    for b, r in zip(data, ref))
    assert len(scales) == 2 and after < before
    pruned = sum(int((~m).sum()) for k, m in masks.items() if "pooler" not in k)
    total = sum(m.numel() for k, m in masks.items() if "pooler" not in k)
    assert P.model_sparsity(model, "no_pooler") == pytest.approx(100.0 * pruned / total)


def test_oneshot_structured_script_writes_mask_scores_and_rescaled_model(tmp_path, tiny_bert_dir):
    """On a tiny MRPC: the Fisher mask at 30 %, its per-unit scores beside it, the rescaled
    model (loadable, pruned as the mask says) and the dev score without training."""
    import json

    import oneshot_structured
    from test_glue_scripts import write_mrpc

    from utils.models import load_model

    data = write_mrpc(tmp_path / "MRPC")
    out = tmp_path / "fisher"
    res = oneshot_structured.main(["--task_name", "MRPC", "--data_dir", str(data), "--model_name_or_path",
                                   str(tiny_bert_dir), "--output_dir", str(out), "--structure_score", "fisher",
                                   "--score_batches", "2", "--per_gpu_train_batch_size", "4", "--rate", "0.3",
                                   "--rescale", "--do_eval", "--cache_dir", str(tmp_path / "cache")])
    masks = P.load_mask(out / "mask.pt")
    scores = json.loads((out / "mask_scores.json").read_text())
    assert scores["score"] == "fisher" and scores["batches"] == 2 and scores["normalise"] == "size"
    kept = [u["kept"] for u in scores["units"]]
    layout = S.layout_from_masks(masks, 16)
    assert kept == [bool(x) for lay in layout for x in (*lay["heads"].tolist(), *lay["neurons"].tolist())]
    removed = [u["score"] for u in scores["units"] if not u["kept"]]
    survivors = [u["score"] for u in scores["units"] if u["kept"] and u["unit"] == "neuron"]
    assert removed and max(s for s in removed) <= max(survivors)
    assert 25.0 < res["sparsity"] < 35.0 and "acc" in res["eval"] and res["seconds"]["scoring"] > 0
    assert len(scores["scales"]) == 2
    rec = json.loads((out / "mask_provenance.json").read_text())
    assert rec["kind"] == "structured_fisher" and rec["rescaled"] is True
    model = load_model("glue", out / "model", num_labels=2)
    for layer in S.encoder_layers(P.prunable_modules(model)):
        for part in ("i", "o", "q", "ao"):
            key = next(k for k, m in P.prunable_modules(model).items() if m is layer[part]) + ".weight_mask"
            assert bool(((layer[part].weight == 0) | masks[key]).all())  # pruned weights are zero


def test_structured_imp_with_fisher_scores_writes_them_beside_each_mask(tiny_bert_dir, tmp_path):
    """LT_glue.py --structure heads_ffn --structure_score fisher: at each event the units with
    the lowest Fisher score per weight go (among those alive), and mask_scores.json says why."""
    import json

    import LT_glue
    from test_glue_scripts import common, write_mrpc

    data = write_mrpc(tmp_path / "MRPC")
    out = tmp_path / "imp"
    LT_glue.main(common(tiny_bert_dir, data, out, "--structure", "heads_ffn", "--structure_score", "fisher",
                        "--score_batches", "2", "--save_steps", "2", "--logging_steps", "0", "--max_steps", "4",
                        "--learning_rate", "1e-3", "--save_round_weights", "0"))
    alive = None
    for step in (2, 4):
        scores = json.loads((out / f"checkpoint-{step}" / "mask_scores.json").read_text())
        assert scores["score"] == "fisher" and scores["batches"] == 2 and scores["normalise"] == "size"
        units = scores["units"]
        kept = [u["kept"] for u in units]
        layout = S.layout_from_masks(P.load_mask(out / f"checkpoint-{step}" / "mask.pt"), 16)
        assert kept == [bool(x) for lay in layout for x in (*lay["heads"].tolist(), *lay["neurons"].tolist())]
        # removed at this event: the lowest scores among the units alive before it (one head per
        # layer is always kept, so compare neurons only)
        before = alive if alive is not None else [True] * len(units)
        gone = [u["score"] for u, a in zip(units, before) if a and not u["kept"] and u["unit"] == "neuron"]
        stay = [u["score"] for u in units if u["kept"] and u["unit"] == "neuron"]
        assert gone and max(gone) <= min(stay)
        alive = kept
    rec = json.loads((out / "checkpoint-4" / "mask_provenance.json").read_text())
    assert rec["args"]["structure_score"] == "fisher"


def test_structure_score_flags_refused_where_they_cannot_work(tiny_bert_dir, tmp_path, capsys):
    import oneshot
    from utils.errors import run_cli

    with pytest.raises(SystemExit) as e:
        run_cli(oneshot.main, ["--structure", "heads_ffn", "--structure_score", "fisher", "--rate", "0.3",
                               "--model_name_or_path", str(tiny_bert_dir), "--output_dir", str(tmp_path / "o")])
    assert e.value.code == 2 and "fisher needs a task's training batches" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        run_cli(oneshot.main, ["--structure_score", "layer_norm_magnitude", "--rate", "0.3",
                               "--model_name_or_path", str(tiny_bert_dir), "--output_dir", str(tmp_path / "o")])
    assert e.value.code == 2 and "it needs --structure heads_ffn" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
    # layer_norm_magnitude needs no data: oneshot.py takes it
    oneshot.main(["--structure", "heads_ffn", "--structure_score", "layer_norm_magnitude", "--rate", "0.3",
                  "--model_name_or_path", str(tiny_bert_dir), "--output_dir", str(tmp_path / "ln")])
    assert S.is_structured(P.load_mask(tmp_path / "ln" / "mask.pt"), 16)
