"""Mask overlap (utils/overlap.py), the IMP budget study (utils/budget.py) and the seeded
training subset (--train_subset_seed), on hand-made masks and numbers."""
import gzip
import io
import json
import math
from types import SimpleNamespace

import datasets
import pytest
import torch

from utils.args import train_rows
from utils.budget import budget_rows, lr_integral, movement, round_lr_integral
from utils.io import load_tensor_dict
from utils.overlap import file_overlap, kept_overlap, random_expectation

POOL = "bert.pooler.dense.weight_mask"
Q = "bert.encoder.layer.0.attention.self.query.weight_mask"


def test_overlap_of_hand_made_masks():
    a = {Q: torch.tensor([[1, 1, 0, 0], [1, 0, 1, 0]]), POOL: torch.ones(2, 2)}
    b = {Q: torch.tensor([[1, 0, 1, 0], [1, 0, 0, 1]]), POOL: torch.ones(2, 2)}
    # a keeps 4 of 8 in the query; b keeps 4; both keep (0,0) and (1,0): 2 of 4
    o = kept_overlap(a, b, "no_pooler")
    assert (o["shared"], o["kept_a"], o["kept_b"], o["total"]) == (2, 4, 4, 8)
    assert o["share"] == 0.5 and o["sparsity_a"] == 50.0
    # with the pooler in the set its 4 kept entries (shared by both) count: 6 of 8
    assert kept_overlap(a, b, "paper")["share"] == 0.75
    assert kept_overlap(a, a, "no_pooler")["share"] == 1.0


def test_overlap_refuses_masks_of_other_matrices_or_shapes():
    a = {Q: torch.ones(2, 2)}
    with pytest.raises(ValueError, match="in one only"):
        kept_overlap(a, {POOL: torch.ones(2, 2)}, "paper")
    with pytest.raises(ValueError, match="shapes"):
        kept_overlap(a, {Q: torch.ones(2, 3)}, "paper")


def test_random_expectation_is_one_minus_s_and_matches_random_masks():
    assert random_expectation(70) == pytest.approx(0.3)
    g = torch.Generator().manual_seed(0)
    n = 200_000
    shares = []
    for _ in range(3):
        a = {Q: (torch.rand(n, generator=g) >= 0.7)}
        b = {Q: (torch.rand(n, generator=g) >= 0.7)}
        shares.append(kept_overlap(a, b)["share"])
    assert abs(sum(shares) / 3 - 0.3) < 0.005


def test_gzipped_mask_files_load_and_overlap(tmp_path):
    m = {Q: torch.tensor([[True, False], [True, True]])}
    torch.save(m, tmp_path / "mask.pt")
    buf = io.BytesIO()
    torch.save(m, buf)
    (tmp_path / "mask.pt.gz").write_bytes(gzip.compress(buf.getvalue()))
    assert torch.equal(load_tensor_dict(tmp_path / "mask.pt.gz", "mask file")[Q], m[Q])
    assert file_overlap(tmp_path / "mask.pt", tmp_path / "mask.pt.gz")["share"] == 1.0


def test_lr_integral_of_linear_schedules():
    # per_round: 4 updates decaying to 0 at 4 -> lr * (4 + 3 + 2 + 1) / 4
    assert lr_integral(1.0, 4, 4) == pytest.approx(2.5)
    # whole_run: the first 2 updates of a schedule over 10 -> 1 + 0.9
    assert lr_integral(1.0, 2, 10) == pytest.approx(1.9)
    # warm-up of 2 then decay over the rest: 0, 0.5, then (4-2)/(4-2)=1, (4-3)/2=0.5
    assert lr_integral(1.0, 4, 4, warmup=2) == pytest.approx(2.0)
    assert round_lr_integral({"save_steps": 4, "learning_rate": 1e-4, "round_schedule": "per_round"}) == \
        pytest.approx(2.5e-4)
    assert round_lr_integral({"save_steps": 2, "learning_rate": 1.0, "round_schedule": "whole_run",
                              "max_steps": 10}) == pytest.approx(1.9)


def test_movement_over_kept_entries_only():
    theta0 = {"encoder.layer.0.attention.self.query.weight": torch.tensor([[3.0, 4.0], [1.0, 1.0]])}
    trained = {"bert.encoder.layer.0.attention.self.query.weight": torch.tensor([[3.0, 4.0], [100.0, 1.0]])}
    mask = {Q: torch.tensor([[1, 1], [0, 0]])}
    assert movement(trained, theta0, mask, "paper") == 0.0  # the moved entry is pruned
    mask = {Q: torch.tensor([[1, 0], [1, 0]])}
    # kept 3 and 1: ||(0, 99)|| / ||(3, 1)||
    assert movement(trained, theta0, mask, "paper") == pytest.approx(99 / math.sqrt(10))


def test_budget_rows_from_an_imp_folder(tmp_path):
    imp, masks = tmp_path / "sts-b" / "imp_x", tmp_path / "masks"
    ticket = {Q: torch.tensor([[1, 1, 0, 0]]), POOL: torch.ones(1, 2)}
    omp = {Q: torch.tensor([[1, 0, 1, 0]]), POOL: torch.ones(1, 2)}
    (imp / "checkpoint-4").mkdir(parents=True)
    (masks / "omp_no_pooler_50").mkdir(parents=True)
    torch.save(ticket, imp / "checkpoint-4" / "mask.pt")
    torch.save(omp, masks / "omp_no_pooler_50" / "mask.pt")
    (imp / "args.json").write_text(json.dumps({"save_steps": 4, "learning_rate": 1.0,
                                               "round_schedule": "per_round", "max_train_samples": 20,
                                               "train_subset_seed": 0}))
    (imp / "results.json").write_text(json.dumps({
        "prunable_set": "no_pooler", "baseline": {"metric": "pearson"},
        "evaluations": [{"step": 4, "pearson": 0.8}],
        "masks": [{"step": 4, "pruning_event": 1, "sparsity": 50.0000001, "path": "checkpoint-4/mask.pt"}]}))
    st = budget_rows(imp, masks)
    (row,) = st["rows"]
    assert row["sparsity"] == 50 and row["omp_overlap"] == 0.5 and row["random_overlap"] == 0.5
    assert row["toward_random"] == 1.0  # as unrelated to OMP as a random mask
    assert row["score_before"] == pytest.approx(80.0) and row["lr_integral"] == pytest.approx(2.5)
    assert row["movement"] is None and st["train_subset_seed"] == 0


def test_train_subset_seed_draws_rows_spread_over_the_file():
    d = datasets.Dataset.from_dict({"x": list(range(1000))})
    first = train_rows(d, SimpleNamespace(max_train_samples=100, train_subset_seed=None))
    assert first["x"] == list(range(100))
    a = train_rows(d, SimpleNamespace(max_train_samples=100, train_subset_seed=3))
    b = train_rows(d, SimpleNamespace(max_train_samples=100, train_subset_seed=3))
    c = train_rows(d, SimpleNamespace(max_train_samples=100, train_subset_seed=4))
    assert a["x"] == b["x"] and a["x"] != c["x"]
    assert len(set(a["x"])) == 100 and a["x"] == sorted(a["x"]) and max(a["x"]) > 500
    assert train_rows(d, SimpleNamespace(max_train_samples=5000, train_subset_seed=3)) is d


def test_train_subset_seed_needs_max_train_samples(capsys):
    import glue_trans

    with pytest.raises(SystemExit) as e:
        glue_trans.parse_args(["--task_name", "STS-B", "--data_dir", "x", "--output_dir", "o",
                               "--train_subset_seed", "1"])
    assert e.value.code == 2
    assert "--train_subset_seed: needs --max_train_samples" in capsys.readouterr().err
