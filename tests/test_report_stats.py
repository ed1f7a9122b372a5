"""What the report must tell apart (utils/stats.py, utils/tables.py, utils/overlap.py): the
ticket against dense with an interval beside the one-std rule, the ticket against OMP with
their masks' overlap, IMP series and prunable sets kept apart, cross-task re-init shown."""
import json

import pytest
import torch
from scipy import stats as st

import report
from tests.test_report import imp_mask, oneshot_mask, write_run
from utils.archive import slim_copy
from utils.report import write_report
from utils.runs import collect
from utils.stats import difference, verdict
from utils.tables import comparisons, summarise, table2, transfer_matrices

DENSE = [82.0, 84.0, 86.0]  # mean 84, sample std 2


def test_welch_interval_equals_scipy():
    a, b = [70.0, 71.0, 72.0], DENSE
    d = difference(a, b)
    ci = st.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    assert d["method"] == "welch" and d["diff"] == pytest.approx(-13.0)
    assert (d["low"], d["high"]) == (pytest.approx(ci.low), pytest.approx(ci.high))
    assert verdict(d) == "below dense"
    assert verdict(difference([90.0, 91.0, 92.0], b)) == "above dense"


def test_one_run_against_several_uses_the_others_spread():
    d = difference([83.0], DENSE)
    half = st.t.ppf(0.975, 2) * 2.0 * (1 + 1 / 3) ** 0.5
    assert d["method"] == "one_run"
    assert (d["low"], d["high"]) == (pytest.approx(-1 - half), pytest.approx(-1 + half))
    assert verdict(d) == "not distinguishable from dense"
    none = difference([83.0], [84.0])
    assert none["low"] is None and verdict(none) == "one run each, no interval"
    assert difference([], DENSE) is None and verdict(None) is None


def _dense(root, task="sts-b"):
    for seed, s in enumerate(DENSE, 1):
        write_run(root / f"d{seed}", task, s, seed=seed)


def test_rule_matching_but_interval_not_distinguishable_and_below(tmp_path):
    r = tmp_path / "runs"
    _dense(r)
    write_run(r / "t50", "sts-b", 83.0, mask=imp_mask("sts-b", 50.0))  # rule: 83 >= 82, matching
    for seed, s in enumerate((70.0, 71.0, 72.0), 1):
        write_run(r / f"t70_{seed}", "sts-b", s, seed=seed, mask=imp_mask("sts-b", 70.0))
    write_run(r / "o70", "sts-b", 71.0, mask=oneshot_mask("omp", 70.0))
    finished, _ = collect(r)
    rows = {c["sparsity"]: c for c in comparisons(summarise(finished))}
    assert rows[50]["paper_rule"] is True and rows[50]["ticket_verdict"] == "not distinguishable from dense"
    assert rows[70]["paper_rule"] is False and rows[70]["ticket_verdict"] == "below dense"
    assert rows[70]["omp_verdict"] == "below dense" and rows[70]["ticket_omp_verdict"] == "not distinguishable from OMP"
    assert rows[70]["imp"] == (71.0, 1.0, 3) and rows[70]["random_overlap"] == pytest.approx(0.3)
    text = report.main([str(r), "--out", str(tmp_path / "o"), "--no_figures"])
    assert "| 50% | 83.0 | — | — | — | -1.0 [" in text and "| not distinguishable from dense | matching |" in text
    assert "| below dense | not matching |" in text


def test_transfer_cells_are_kept_apart_by_prunable_set(tmp_path):
    r = tmp_path / "runs"
    _dense(r)
    write_run(r / "t70", "sts-b", 79.0, mask=imp_mask("sts-b", 70.0))
    write_run(r / "m70", "mrpc", 80.0, mask=imp_mask("mrpc", 70.0))
    # a synthetic MRPC -> STS-B run with the paper set's mask must not overwrite the diagonal
    write_run(r / "x", "sts-b", 0.0, mask=imp_mask("mrpc", 70.0, pset="paper"))
    finished, _ = collect(r)
    m = transfer_matrices(summarise(finished), 70)
    assert sorted(m) == ["no_pooler", "paper"]
    assert m["no_pooler"][2][("STS-B", "sts-b")] == (79.0, None, 1, False)
    assert m["paper"][2] == {("MRPC", "sts-b"): (0.0, None, 1, False)}
    text = report.main([str(r), "--out", str(tmp_path / "o"), "--no_figures"])
    assert "Set paper:" in text and "Set no_pooler:" not in text  # no_pooler: diagonal only


def test_tickets_of_two_imp_budgets_are_separate_series(tmp_path):
    r = tmp_path / "runs"
    _dense(r)
    short = {"save_steps": 63, "learning_rate": 1e-4, "round_schedule": "per_round", "max_train_samples": 2000}
    long_ = {**short, "save_steps": 189, "round_schedule": "whole_run", "train_subset_seed": 0}
    write_run(r / "a", "sts-b", 83.0, mask={**imp_mask("sts-b", 50.0), "args": short, "sha256": "a"})
    write_run(r / "b", "sts-b", 60.0, mask={**imp_mask("sts-b", 50.0), "args": long_, "sha256": "b"})
    write_run(r / "o", "sts-b", 75.0, mask=oneshot_mask("omp", 50.0))
    finished, _ = collect(r)
    rows = table2(summarise(finished))
    assert [(x["series"], x["ticket_shown"], x["omp"][0]) for x in rows] == [
        ("rounds of 189, lr 0.0001, whole_run, 2000 rows (subset seed 0)", 60.0, 75.0),
        ("rounds of 63, lr 0.0001, per_round, 2000 rows", 83.0, 75.0)]
    assert rows[0]["paper_sparsity"] is None and rows[1]["paper_sparsity"] == 50


def test_cross_task_reinit_is_shown_as_such(tmp_path):
    r = tmp_path / "runs"
    _dense(r, "mrpc")
    write_run(r / "t", "mrpc", 80.0, mask=imp_mask("mrpc", 70.0))
    write_run(r / "re", "mrpc", 68.0, init="rand", mask=imp_mask("sts-b", 70.0))
    finished, _ = collect(r)
    sources, targets, cells = transfer_matrices(summarise(finished), 70)["no_pooler"]
    assert cells[("STS-B (re-init)", "mrpc")] == (68.0, None, 1, False)
    text = report.main([str(r), "--out", str(tmp_path / "o"), "--no_figures"])
    assert "| STS-B (re-init) | 68.0 |" in text


def test_reinit_on_its_own_task_only_is_not_missing_elsewhere(tmp_path):
    """A re-init run on its own task, in a matrix with a real transfer run: its cell on the other
    task is "–" (nobody asks for it), never listed as missing; a ticket's absent cell still is."""
    r = tmp_path / "runs"
    _dense(r / "mrpc", "mrpc")
    _dense(r / "sts-b", "sts-b")
    write_run(r / "m", "mrpc", 80.0, mask=imp_mask("mrpc", 70.0))
    write_run(r / "s", "sts-b", 79.0, mask=imp_mask("sts-b", 70.0))
    write_run(r / "x", "sts-b", 60.0, mask=imp_mask("mrpc", 70.0))  # MRPC's ticket on STS-B
    write_run(r / "re", "mrpc", 68.0, init="rand", mask=imp_mask("mrpc", 70.0))
    text = report.main([str(r), "--out", str(tmp_path / "o"), "--no_figures"])
    assert "| MRPC (re-init) | 68.0 | – |" in text and "– : not asked for" in text
    assert "transfer MRPC (re-init)" not in text
    assert "| STS-B | missing | 79.0 |" in text and "- transfer STS-B → MRPC (set no_pooler)" in text


Q = "bert.encoder.layer.0.attention.self.query.weight_mask"


def _mask_folder(folder, bits, record):
    folder.mkdir(parents=True, exist_ok=True)
    torch.save({Q: torch.tensor(bits, dtype=torch.bool)}, folder / "mask.pt")
    from utils.provenance import sha256_file

    rec = {**record, "file": "mask.pt", "sha256": sha256_file(folder / "mask.pt")}
    (folder / "mask_provenance.json").write_text(json.dumps(rec))
    return rec


def test_overlap_from_mask_files_and_from_the_slim_record_alone(tmp_path):
    r = tmp_path / "runs"
    _dense(r)
    ckpt = {"weights_sha256": "w" * 64}
    base = {"prunable_set": "no_pooler", "sparsity": 50.0, "checkpoint": ckpt}
    t_sts = _mask_folder(r / "imp_s" / "checkpoint-4", [1, 1, 0, 0], {**base, "kind": "imp", "task": "sts-b"})
    t_mrpc = _mask_folder(r / "imp_m" / "checkpoint-4", [1, 0, 0, 1], {**base, "kind": "imp", "task": "mrpc"})
    _mask_folder(r / "masks" / "omp_no_pooler_50", [1, 0, 1, 0], {**base, "kind": "omp"})
    write_run(r / "ts", "sts-b", 83.0, mask=t_sts)
    write_run(r / "tm", "mrpc", 80.0, mask=t_mrpc)
    text, tables, figures = write_report(r, tmp_path / "o")
    cmp = {c["task"]: c for c in tables["comparisons"]}
    assert cmp["sts-b"]["omp_overlap"] == 0.5 and cmp["mrpc"]["omp_overlap"] == 0.5
    shares = {(c["a"], c["b"]): c["share"] for c in tables["overlap"]}
    assert shares[("MRPC", "STS-B")] == 0.5 and shares[("STS-B", "STS-B")] == 1.0
    assert "| 50% | 83.0 | — |" in text and "50.00% (50%)" in text
    assert "overlap_no_pooler.png" in [p.name for p in figures]
    # the slim record has no mask files, yet its report shows the same overlaps
    slim_copy(r, tmp_path / "rec")
    assert not list((tmp_path / "rec").rglob("mask.pt"))
    text2, tables2, _ = write_report(tmp_path / "rec", None)
    assert tables2["comparisons"] == tables["comparisons"] and tables2["overlap"] == tables["overlap"]


def test_readme_brief_names_metric_and_baseline_and_waits_for_a_second_seed(tmp_path):
    """The README's per-task brief: a task's heading names its metric and trivial baseline; a task
    whose tickets are on one seed only is left out (docs/results.md shows it)."""
    from utils import docs
    r = tmp_path / "rec"
    for seed, s in enumerate((76.0, 78.0, 77.0), 1):
        write_run(r / "mrpc" / f"d{seed}", "mrpc", s, seed=seed)
        write_run(r / "cola" / f"d{seed}", "cola", s - 50, seed=seed)
    for seed, s in enumerate((79.0, 80.0), 1):
        write_run(r / "mrpc" / f"t50_{seed}", "mrpc", s, seed=seed, mask=imp_mask("mrpc", 50.0))
    write_run(r / "mrpc" / "o50", "mrpc", 70.0, mask=oneshot_mask("omp", 50.0))
    write_run(r / "cola" / "t50_1", "cola", 30.0, mask=imp_mask("cola", 50.0))
    lines = docs._brief(str(r)).splitlines()
    assert lines[0] == "**MRPC (accuracy)**, full model 77.0 ± 1.0 (n=3), trivial baseline 68.4:"
    assert lines[4].startswith("| 50% | 79.5 ± 0.7 (n=2) | 70.0 | — | ")
    assert not any("CoLA" in line for line in lines) and len(lines) == 5


def test_docs_transfer_block_shows_one_prunable_set(tmp_path):
    """The docs' transfer block (utils.docs._set_blocks) takes one set's matrix out of the
    report: the no_pooler matrix with its off-diagonal cell, not the paper set's."""
    from utils import docs
    r = tmp_path / "rec"
    _dense(r)
    write_run(r / "t70", "sts-b", 79.0, mask=imp_mask("sts-b", 70.0))
    write_run(r / "mx", "sts-b", 61.0, mask=imp_mask("mrpc", 70.0))
    write_run(r / "px", "sts-b", 3.0, mask=imp_mask("mrpc", 70.0, pset="paper"))
    block = docs._set_blocks(str(r), docs.TRANSFER, "no_pooler")
    assert block.splitlines()[0] == "Set no_pooler:"
    assert "| MRPC | 61.0 |" in block and "| STS-B | 79.0 |" in block and "3.0" not in block
    assert docs._set_blocks(str(r), docs.TRANSFER, "heads_ffn").startswith("(no set heads_ffn")
