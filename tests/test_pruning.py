"""Prunable set, global magnitude pruning, mask files, masking, rewinding (utils/pruning.py)."""
import json

import pytest
import torch
from torch.nn.utils import prune
from transformers import BertConfig, BertForMaskedLM, BertForQuestionAnswering, BertForSequenceClassification

from conftest import tiny_config
from utils import pruning as P
from utils.maskfile import save_mask
from utils.errors import UserError, run_cli
from utils.models import attach_pooler

MINILM = dict(num_layers=6, hidden=384, heads=12, intermediate=1536)


def seq_model(seed=0, **cfg):
    torch.manual_seed(seed)
    return BertForSequenceClassification(tiny_config(**cfg))


def with_pooler(cls, seed=0, **cfg):
    torch.manual_seed(seed)
    return attach_pooler(cls(tiny_config(**cfg)))


def known_weights(model):
    """Distinct magnitudes 1, 2, 3, … in prunable order (signs alternate): exact thresholds."""
    value = 1
    with torch.no_grad():
        for module in P.prunable_modules(model).values():
            n = module.weight.numel()
            vals = torch.arange(value, value + n, dtype=torch.float32)
            vals[::2] *= -1
            module.weight.copy_(vals.view_as(module.weight))
            value += n
    return value - 1


# --- the prunable set --------------------------------------------------------------------

@pytest.mark.parametrize("cfg,matrices,weights", [
    (dict(), 13, 2 * (4 * 32 * 32 + 2 * 32 * 64) + 32 * 32),
    (MINILM, 37, 6 * (4 * 384 * 384 + 2 * 384 * 1536) + 384 * 384),
])
def test_prunable_set_size_every_head(cfg, matrices, weights):
    for cls in (BertForSequenceClassification, BertForQuestionAnswering, BertForMaskedLM):
        model = with_pooler(cls, **cfg)
        mods = P.prunable_modules(model)
        assert len(mods) == matrices
        assert P.count_prunable(model) == weights
        names = list(mods)
        assert names[0] == "bert.encoder.layer.0.attention.self.query"
        assert names[5] == "bert.encoder.layer.0.output.dense"
        assert names[-1] == "bert.pooler.dense"
        assert not any("embeddings" in n or "classifier" in n or "qa_outputs" in n or "cls." in n for n in names)


def test_prunable_set_bert_base_sizes_only():
    with torch.device("meta"):
        model = BertForSequenceClassification(BertConfig())
    assert len(P.prunable_modules(model)) == 73
    assert P.count_prunable(model) == 85_524_480
    keys = list(P.prunable_shapes(model))
    assert keys[0] == "bert.encoder.layer.0.attention.self.query.weight_mask"
    assert keys[-2] == "bert.encoder.layer.11.output.dense.weight_mask"
    assert keys[-1] == "bert.pooler.dense.weight_mask"


def test_model_without_pooler_is_refused():
    torch.manual_seed(0)
    with pytest.raises(UserError, match="attach_pooler"):
        P.prunable_modules(BertForQuestionAnswering(tiny_config()))


# --- global magnitude pruning ------------------------------------------------------------

def test_imp_schedule_exact_counts_match_torch():
    ours, ref = seq_model(1), seq_model(1)
    total = P.count_prunable(ours)
    pruned_expected = 0
    for k in range(10):
        amount = P.imp_amount(k)
        pruned_expected += round(amount * (total - pruned_expected))
        P.global_magnitude_prune(ours, amount)
        prune.global_unstructured([(m, "weight") for m in P.prunable_modules(ref).values()],
                                  pruning_method=prune.L1Unstructured, amount=amount)
        a, b = P.current_masks(ours), P.current_masks(ref)
        pruned = sum(int((~m).sum()) for m in a.values())
        assert pruned == pruned_expected
        assert abs(100.0 * pruned / total - 10 * (k + 1)) < 0.01
        assert all(torch.equal(a[key], b[key]) for key in a)  # same mask as torch's, weight by weight
    assert pruned_expected == total


def test_known_weights_exact_threshold_and_nesting():
    model = seq_model()
    n = known_weights(model)
    previous = None
    for k in range(4):
        masks = P.global_magnitude_prune(model, P.imp_amount(k))
        pruned_count = sum(int((~m).sum()) for m in masks.values())
        # magnitudes are 1..n, so exactly the smallest `pruned_count` magnitudes are gone
        all_mags = torch.cat([m.flatten() for m in _original_magnitudes(model)])
        all_masks = torch.cat([m.flatten() for m in masks.values()])
        assert int(all_mags[~all_masks].max()) == pruned_count
        assert int(all_mags[all_masks].min()) == pruned_count + 1
        if previous is not None:  # nested: nothing pruned earlier comes back
            for key in masks:
                assert not bool((masks[key] & ~previous[key]).any())
        previous = masks
    assert n == P.count_prunable(model)


def _original_magnitudes(model):
    value, out = 1, []
    for module in P.prunable_modules(model).values():
        n = module.weight.numel()
        out.append(torch.arange(value, value + n).view_as(module.weight))
        value += n
    return out


def test_ties_broken_by_position_with_exact_count():
    w = [torch.tensor([[1.0, -1.0, 1.0], [1.0, 2.0, 0.0]])]
    (mask,) = P.magnitude_masks(w, None, 0.5)
    assert mask.tolist() == [[False, False, True], [True, True, False]]


def test_large_input_matches_full_sort():
    torch.manual_seed(3)
    ws = [torch.randn(1500, 1000), torch.randn(1000, 1600)]  # 3.1M: the bracketed path
    prev = P.magnitude_masks(ws, None, 0.3)
    masks = P.magnitude_masks(ws, prev, P.imp_amount(3))
    scores = torch.cat([torch.where(p, w.abs(), torch.tensor(-1.0)).flatten() for w, p in zip(ws, prev)])
    remaining = int(torch.cat([p.flatten() for p in prev]).sum())
    n_prune = round(P.imp_amount(3) * remaining)
    order = torch.argsort(scores)
    expected = torch.ones(scores.numel(), dtype=torch.bool)
    expected[order[: scores.numel() - remaining + n_prune]] = False
    assert torch.equal(torch.cat([m.flatten() for m in masks]), expected)


def test_earlier_mask_decides_not_the_weight_values():
    """Pruned entries stay pruned and do not count even when their weights are large; surviving
    zeros and ties among survivors go first, ties by position; float and bool masks agree."""
    gen = torch.Generator().manual_seed(5)
    ws = [torch.randint(-4, 5, (300, 700), generator=gen).float(), torch.randint(-4, 5, (500, 500), generator=gen).float()]
    prev = [torch.rand(w.shape, generator=gen) > 0.3 for w in ws]
    for w, p in zip(ws, prev):
        w[~p] = 100.0  # would be kept by magnitude if the mask were ignored
    n_prune = round(0.37 * int(sum(p.sum() for p in prev)))
    flat_w = torch.cat([w.flatten() for w in ws]).abs()
    flat_p = torch.cat([p.flatten() for p in prev])
    alive = flat_p.nonzero().flatten()
    order = alive[torch.sort(flat_w[alive], stable=True).indices]  # |w|, then position
    expected = flat_p.clone()
    expected[order[:n_prune]] = False
    for masks in (prev, [p.float() for p in prev]):
        got = torch.cat([m.flatten() for m in P.magnitude_masks(ws, masks, 0.37)])
        assert torch.equal(got, expected)


def test_pruning_restores_thread_count():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        P.magnitude_masks([torch.randn(50, 50)], None, 0.5)
        assert torch.get_num_threads() == 2
        with pytest.raises(UserError):
            P.magnitude_masks([torch.randn(50, 50)], None, 1.5)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_amount_out_of_range():
    with pytest.raises(UserError, match="amount"):
        P.magnitude_masks([torch.ones(2, 2)], None, 1.5)


# --- applying masks: hooks and hook-free -------------------------------------------------

def _train(model, impl, masks, steps=6, eager=True):
    """The trainer's update order: backward, mask gradients, clip, AdamW with weight decay."""
    P.apply_masks(model, masks, impl)
    masker = P.GradientMasker(model, eager=eager)
    no_decay = ("bias", "LayerNorm.weight")
    params = list(model.named_parameters())
    opt = torch.optim.AdamW([
        {"params": [p for n, p in params if not any(x in n for x in no_decay)], "weight_decay": 0.1},
        {"params": [p for n, p in params if any(x in n for x in no_decay)], "weight_decay": 0.0}],
        lr=1e-2)
    gen = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(steps):
        ids = torch.randint(5, 100, (4, 12), generator=gen)
        torch.manual_seed(1)  # same dropout both ways
        loss = model(input_ids=ids, labels=torch.randint(0, 2, (4,), generator=gen)).loss
        loss.backward()
        masker()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 0.5)
        opt.step()
        opt.zero_grad()
    return P.effective_state_dict(model)


@pytest.mark.parametrize("eager", [True, False], ids=["in-backward", "after-backward"])
def test_hooks_and_hook_free_training_give_equal_weights(eager):
    base = seq_model(5)
    masks = P.magnitude_masks([m.weight for m in P.prunable_modules(base).values()], None, 0.6)
    masks = {P.mask_key(n): m for n, m in zip(P.prunable_modules(base), masks)}
    plain_model, hooks_model = seq_model(5), seq_model(5)
    a = _train(plain_model, "plain", masks, eager=eager)
    b = _train(hooks_model, "hooks", masks)
    assert P.masking_impl(plain_model) == "plain" and P.masking_impl(hooks_model) == "hooks"
    assert set(a) == set(b)
    for key in a:
        assert torch.equal(a[key], b[key]), key
    for name, module in P.prunable_modules(plain_model).items():  # pruned entries exactly zero
        assert bool((module.weight[~masks[P.mask_key(name)]] == 0).all())
    dense = _train(seq_model(5), "plain", {k: torch.ones_like(v) for k, v in masks.items()}, eager=eager)
    assert not torch.equal(dense["classifier.weight"], a["classifier.weight"])  # the mask mattered


def test_gradient_masker_hooks_are_removed():
    model = seq_model()
    P.global_magnitude_prune(model, 0.5)
    masker = P.GradientMasker(model)
    assert len(masker.handles) == 13
    masker.remove()
    model(input_ids=torch.randint(5, 100, (2, 8)), labels=torch.tensor([0, 1])).loss.backward()
    q = model.bert.encoder.layer[0].attention.self.query
    assert bool((q.weight.grad[~q.weight_mask.bool()] != 0).any())  # no hook left behind


def test_remove_masks_leaves_plain_zeroed_weights():
    for impl in P.IMPLS:
        model = seq_model()
        P.global_magnitude_prune(model, 0.5, impl=impl)
        P.remove_masks(model)
        assert P.masking_impl(model) is None
        assert abs(P.model_sparsity(model) - 50.0) < 0.01
        assert not any(k.endswith(("_mask", "_orig")) for k in model.state_dict())


# --- mask files --------------------------------------------------------------------------

def test_mask_transfers_between_heads(tmp_path):
    src = with_pooler(BertForSequenceClassification, seed=1)
    masks = P.global_magnitude_prune(src, 0.3)
    path = tmp_path / "mask.pt"
    save_mask(path, masks, model=src)
    for cls in (BertForQuestionAnswering, BertForMaskedLM, BertForSequenceClassification):
        target = with_pooler(cls, seed=2)
        loaded = P.load_mask(path, target)
        P.apply_masks(target, loaded)
        assert all(torch.equal(P.current_masks(target)[k], masks[k]) for k in masks)
        assert abs(P.model_sparsity(target) - 30.0) < 0.01
    # and back: a QA model's mask into a sequence-classification model
    qa = with_pooler(BertForQuestionAnswering, seed=3)
    save_mask(tmp_path / "qa.pt", P.global_magnitude_prune(qa, 0.2), model=qa)
    P.apply_masks(seq_model(), P.load_mask(tmp_path / "qa.pt", seq_model()))


def test_original_float_format_round_trip(tmp_path):
    # the original: prune with torch hooks, save every state-dict entry ending in _mask
    ref = seq_model(4)
    prune.global_unstructured([(m, "weight") for m in P.prunable_modules(ref).values()],
                              pruning_method=prune.L1Unstructured, amount=0.4)
    original = {k: v for k, v in ref.state_dict().items() if k.endswith("_mask")}
    assert len(original) == 13 and all(v.dtype == torch.float32 for v in original.values())
    torch.save(original, tmp_path / "orig.pt")
    loaded = P.load_mask(tmp_path / "orig.pt", seq_model())
    assert list(loaded) == list(original)
    # ours in float format has the original's keys, dtype and values
    save_mask(tmp_path / "ours.pt", loaded, fmt="float")
    ours = torch.load(tmp_path / "ours.pt", weights_only=True)
    assert list(ours) == list(original)
    assert all(ours[k].dtype == torch.float32 and torch.equal(ours[k], original[k]) for k in ours)
    # ours in bool format is 4x smaller and works with torch's custom_from_mask as the original used it
    save_mask(tmp_path / "bool.pt", loaded)
    bools = torch.load(tmp_path / "bool.pt", weights_only=True)
    assert all(v.dtype == torch.bool and v.element_size() == 1 for v in bools.values())
    # 4x in the tensors; the fixed pickle overhead weighs on a tiny model's file (BERT-base: scripts/bench.py)
    assert (tmp_path / "ours.pt").stat().st_size > 3.0 * (tmp_path / "bool.pt").stat().st_size
    model = seq_model()
    for name, module in P.prunable_modules(model).items():
        prune.CustomFromMask.apply(module, "weight", mask=bools[P.mask_key(name)])
    assert abs(P.model_sparsity(model) - 40.0) < 0.01


def test_sparsity_report_written_beside_mask(tmp_path):
    model = seq_model()
    masks = P.global_magnitude_prune(model, 0.5)
    save_mask(tmp_path / "m" / "mask.pt", masks, model=model)
    report = json.loads((tmp_path / "m" / "mask_sparsity.json").read_text())
    total = P.count_prunable(model)
    assert report["matrices"] == 13
    assert report["prunable"] == {"total": total, "pruned": round(total / 2), "sparsity": 100.0 * round(total / 2) / total}
    n_params = sum(p.numel() for p in model.parameters())
    assert report["model"]["total"] == n_params
    assert report["per_matrix"]["bert.pooler.dense.weight_mask"]["total"] == 32 * 32
    assert sum(v["pruned"] for v in report["per_matrix"].values()) == round(total / 2)


def _mask_of(model):
    return {k: v.float() for k, v in P.current_masks(model).items()}


@pytest.mark.parametrize("case,message", [
    ("missing", "1 missing key"),
    ("extra", "1 extra key"),
    ("shape", "has shape"),
    ("values", "values other than 0 and 1"),
    ("notmask", "weight_mask tensor"),
    ("notdict", "is not a dict of tensors"),
    ("garbage", "is not readable"),
    ("absent", "not found"),
])
def test_bad_mask_files(tmp_path, case, message):
    model = seq_model()
    masks = _mask_of(model)
    path = tmp_path / "mask.pt"
    if case == "missing":
        masks.pop("bert.pooler.dense.weight_mask")
    elif case == "extra":
        masks["bert.encoder.layer.7.output.dense.weight_mask"] = torch.ones(32, 64)
    elif case == "shape":
        masks["bert.pooler.dense.weight_mask"] = torch.ones(16, 16)
    elif case == "values":
        masks["bert.pooler.dense.weight_mask"] = torch.full((32, 32), 0.5)
    elif case == "notmask":
        masks = model.state_dict()
    elif case == "notdict":
        masks = [torch.ones(2)]
    if case == "garbage":
        path.write_text("hello")
    elif case != "absent":
        torch.save(masks, path)
    with pytest.raises(UserError, match=message):
        P.load_mask(path, model)


def test_user_error_is_one_line_exit_2(capsys):
    def main(argv):
        raise UserError("mask.pt: something\nwrong")
    with pytest.raises(SystemExit) as exc:
        run_cli(main)
    assert exc.value.code == 2
    assert capsys.readouterr().err == "error: mask.pt: something wrong\n"


# --- rewinding ---------------------------------------------------------------------------

@pytest.mark.parametrize("impl", P.IMPLS)
def test_rewind_restores_pretrained_times_mask(impl):
    model = seq_model(7)
    snap = P.snapshot_state(model)
    masks = P.global_magnitude_prune(model, 0.3, impl=impl)
    masker_opt = torch.optim.SGD(model.parameters(), lr=0.5)
    for _ in range(3):  # move every weight, in place (as AdamW does)
        model(input_ids=torch.randint(5, 100, (2, 8)), labels=torch.tensor([0, 1])).loss.backward()
        P.mask_gradients(model)
        masker_opt.step()
        masker_opt.zero_grad()
    trained_head = model.classifier.weight.detach().clone()
    assert not torch.equal(trained_head, snap["classifier.weight"])
    P.rewind(model, snap)
    state = P.effective_state_dict(model)
    for key, value in snap.items():
        if key.startswith("bert."):
            mk = key[:-len("weight")] + "weight_mask"
            expected = value * masks[mk] if mk in masks else value
            assert torch.equal(state[key], expected), key
    assert torch.equal(model.classifier.weight, trained_head)  # head keeps its trained values
    P.rewind(model, snap, include_head=True)
    assert torch.equal(model.classifier.weight, snap["classifier.weight"])


def test_snapshot_is_a_copy_not_a_view():
    model = seq_model()
    snap = P.snapshot_state(model)
    with torch.no_grad():
        model.bert.encoder.layer[0].attention.self.query.weight.add_(1.0)
    assert not torch.equal(snap["bert.encoder.layer.0.attention.self.query.weight"],
                           model.bert.encoder.layer[0].attention.self.query.weight)


def test_shuffled_layer_weights_permute_whole_layers():
    model = seq_model(num_layers=4)
    weights, perm = P.shuffled_layer_weights(model, seed=3)
    assert sorted(perm) == [0, 1, 2, 3] and perm != [0, 1, 2, 3]
    assert len(weights) == 4 * 6 + 1
    layers = model.bert.encoder.layer
    for i, j in enumerate(perm):
        assert torch.equal(weights[f"bert.encoder.layer.{i}.attention.self.key.weight"], layers[j].attention.self.key.weight)
        assert torch.equal(weights[f"bert.encoder.layer.{i}.output.dense.weight"], layers[j].output.dense.weight)
    assert torch.equal(weights["bert.pooler.dense.weight"], model.bert.pooler.dense.weight)
    assert not any("bias" in k or "LayerNorm" in k for k in weights)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_pruning_other_dtypes_exact_counts_and_nested(dtype):
    gen = torch.Generator().manual_seed(0)
    ws = [torch.randn(300, 400, generator=gen).to(dtype), torch.randn(500, 600, generator=gen).to(dtype)]
    first = P.magnitude_masks(ws, None, 0.3)
    second = P.magnitude_masks(ws, [m.to(dtype) for m in first], 0.2)  # masks in the weights' dtype
    assert sum(int((~m).sum()) for m in first) == 126000  # round(0.3 * 420000)
    assert sum(int((~m).sum()) for m in second) == 126000 + 58800  # + round(0.2 * 294000)
    assert all(not bool((b & ~a).any()) for a, b in zip(first, second))
    flat = torch.cat([w.float().abs().flatten() for w in ws])
    kept = torch.cat([m.flatten() for m in first])
    assert float(flat[~kept].max()) <= float(flat[kept].min())
