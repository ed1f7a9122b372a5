"""The recipes planned in Python: plan() returns the runs (stage, folder, command, marker) that
the shell wrappers queue, reading what IMP wrote; quoting survives the shell; one list of methods
for the recipes and the report."""
import json
import shlex
import subprocess

import pytest

from utils.profiles import MASK_METHODS, METHODS
from utils.recipe_lib import RecipeError, q
from utils.recipes import plan


@pytest.fixture
def env(tmp_path):
    d = tmp_path / "glue" / "MRPC"
    d.mkdir(parents=True)
    (d / "train.tsv").write_text("header\n" + "row\n" * 100)  # 100 rows: 4 batches of 32
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "config.json").write_text(json.dumps({"hidden_size": 8, "intermediate_size": 16,
                                                                "num_hidden_layers": 2}))
    return {"PROFILE": "small", "TASKS": "MRPC", "DATA": str(tmp_path / "glue"), "MODEL": str(tmp_path / "model"),
            "OUT": str(tmp_path / "runs"), "PWD": str(tmp_path), "SPARSITIES": "50 70", "METHODS": "imp omp random",
            "SEEDS": "1 2", "SEEDS_IMP": "1 2", "SEEDS_OMP": "1", "SEEDS_RANDOM": "1"}


def test_plan_lists_the_runs_with_stages_markers_and_ticket_paths(env, tmp_path):
    s, p = plan("glue_tickets", env, dry_run=True)
    out = tmp_path / "runs"
    stages = [r.stage for r in p.runs]
    assert stages == sorted(stages) and set(stages) == {1, 2}  # one-shot masks, IMP and dense in stage 1
    masks = [r for r in p.runs if "oneshot.py" in r.cmd]
    assert [r.marker for r in masks] == [f"{out}/masks/random_no_pooler_50_s1/mask_provenance.json",
                                        f"{out}/masks/omp_no_pooler_50/mask_provenance.json",
                                        f"{out}/masks/random_no_pooler_70_s1/mask_provenance.json",
                                        f"{out}/masks/omp_no_pooler_70/mask_provenance.json"]
    imp = next(r for r in p.runs if "LT_glue.py" in r.cmd)
    argv = shlex.split(imp.cmd)
    assert argv[argv.index("--save_steps") + 1] == "12" and argv[argv.index("--max_steps") + 1] == "84"
    assert imp.marker == f"{out}/mrpc/imp_no_pooler/complete.json" and imp.log == f"{out}/mrpc/imp_no_pooler.log"
    cells = [r for r in p.runs if r.stage == 2]
    # seed-major: (imp, omp, random) x (50, 70) at seed 1, then imp's second seed at both levels
    assert [r.marker.split("/")[-2] for r in cells] == [
        "imp_no_pooler_50_s1", "omp_no_pooler_50_s1", "random_no_pooler_50_s1",
        "imp_no_pooler_70_s1", "omp_no_pooler_70_s1", "random_no_pooler_70_s1",
        "imp_no_pooler_50_s2", "imp_no_pooler_70_s2"]
    ticket = shlex.split(cells[0].cmd)
    assert ticket[ticket.index("--mask_dir") + 1] == f"{out}/mrpc/imp_no_pooler/checkpoint-60/mask.pt"
    # once IMP has written its results, the ticket's path is the one it recorded
    (out / "mrpc" / "imp_no_pooler").mkdir(parents=True)
    (out / "mrpc" / "imp_no_pooler" / "results.json").write_text(json.dumps(
        {"masks": [{"sparsity": 50.02, "path": "checkpoint-61/mask.pt"}]}))
    _, p2 = plan("glue_tickets", env, dry_run=True)
    first = shlex.split(next(r for r in p2.runs if r.stage == 2).cmd)
    assert first[first.index("--mask_dir") + 1] == f"{out}/mrpc/imp_no_pooler/checkpoint-61/mask.pt"
    assert p.header[0] == "glue_tickets: profile small, tasks [MRPC], sets [no_pooler], sparsities [50 70], " \
                          "methods [imp omp random]"


def test_a_refused_setting_raises_before_any_run(env):
    with pytest.raises(RecipeError, match="SPARSITIES: '55' is not a sparsity IMP writes"):
        plan("glue_tickets", {**env, "SPARSITIES": "50 55"})
    with pytest.raises(RecipeError, match="unknown method 'lottery' in METHODS"):
        plan("transfer", {**env, "METHODS": "imp lottery"})


@pytest.mark.parametrize("text", ["plain/path-1.0", "a b", "dossier ü ñ 数据", "it's", 'quo"te', "$HOME", "a;b&c",
                                  "(x)", "*?[]", "tab\there", "back\\slash", ""])
def test_quoting_survives_the_shell(text):
    words = subprocess.run(["bash", "-c", f"printf '%s\\n' {q(text)}"], capture_output=True, text=True).stdout
    assert words == text + "\n"


def test_one_list_of_methods_for_recipes_and_report():
    from utils import runs, tables

    assert METHODS[0] == "full" and MASK_METHODS == METHODS[1:] == ("imp", "random", "omp", "reinit", "shuffled")
    assert set(runs.LABELS) >= set(METHODS) and tables.MASK_METHODS is MASK_METHODS


def test_structured_nr_plan_dense_then_cells_then_short_fine_tunes(env, tmp_path):
    env = {**env, "TASKS": "", "SPARSITIES": "", "METHODS": "", "SEEDS": "1 2", "TASK": "MRPC",
           "CELLS": "fisher:none:1:50 magnitude:size:0:70", "SHORT": "fisher:none:1:50 magnitude:size:0:70"}
    _, p = plan("structured_nr", env)
    out = tmp_path / "runs"
    assert [r.stage for r in p.runs] == [1, 1, 2, 2, 2, 2, 3, 3, 3, 3]
    assert [r.marker for r in p.runs[:2]] == [f"{out}/dense_s{k}/complete.json" for k in (1, 2)]
    assert all("--save_model" in r.cmd for r in p.runs[:2])
    fisher = shlex.split(p.runs[2].cmd)
    assert fisher[fisher.index("--model_name_or_path") + 1] == f"{out}/dense_s1/model"
    assert "--rescale" in fisher and fisher[fisher.index("--rate") + 1] == "0.50"
    assert p.runs[2].marker == f"{out}/fisher_none_r1_50_s1/results.json"
    assert "--rescale" not in shlex.split(p.runs[3].cmd)
    ft_rescaled, ft_masked = (shlex.split(r.cmd) for r in p.runs[6:8])
    assert ft_rescaled[ft_rescaled.index("--model_name_or_path") + 1] == f"{out}/fisher_none_r1_50_s1/model"
    assert ft_masked[ft_masked.index("--mask_dir") + 1] == f"{out}/magnitude_size_r0_70_s1/mask.pt"
    assert ft_masked.count("--model_name_or_path") == 1
    with pytest.raises(RecipeError, match="CELLS: 'fisher:50' is not SCORE:NORMALISE:RESCALE:RATE"):
        plan("structured_nr", {**env, "CELLS": "fisher:50"})


def test_structured_seeds_table_from_a_record(tmp_path, monkeypatch):
    """The docs' seeded no-retraining table: per cell the score from each dense seed's model, the
    mean gap to that seed's own dense model, the measured speed-up and the short fine-tune."""
    from utils import docs, structured_record

    def write(rel, obj):
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(obj))
    for k, dense in ((1, 80.0), (2, 76.0)):
        write(f"dense_s{k}/complete.json", {"headline": {"value": dense}})
        write(f"fisher_none_r1_50_s{k}/results.json", {"eval": {"pearson": (dense - 2 * k) / 100}})
    write("magnitude_size_r0_70_s1/results.json", {"eval": {"pearson": 0.3}})
    write("fisher_none_r1_50_s2_ft/complete.json", {"headline": {"value": 75.5}})
    write("bench_masks_seeds.json", [{"mask_path": f"fisher_none_r1_50_s{k}/mask.pt", "infer_ratio": v}
                                     for k, v in ((1, 1.8), (2, 2.0))])
    monkeypatch.setattr(structured_record, "ROOT", tmp_path.parent)
    lines = docs._structured_seeds(tmp_path.name).splitlines()
    assert lines[2] == "| full model (the dense fine-tune itself) | | | 80.0 / 76.0 | | | |"
    assert lines[3] == "| fisher (raw) | yes | 50 % | 78.0 / 72.0 | -3.0 | 1.90× | — / 75.5 |"  # mean speed-up
    assert lines[4] == "| magnitude | no | 70 % | 30.0 / — | -50.0 | — | — |"


def test_structured_score_sets_share_the_random_masks_and_get_their_score(env, tmp_path):
    env = {**env, "SETS": "heads_ffn heads_ffn_fisher_none", "METHODS": "imp random", "SEEDS_IMP": "1",
           "SEEDS": "1"}
    _, p = plan("glue_tickets", env, dry_run=True)
    out = tmp_path / "runs"
    masks = [r for r in p.runs if "oneshot.py" in r.cmd]
    assert len(masks) == 2 and all("--structure heads_ffn --seed" in r.cmd for r in masks)  # one per level, no score
    imps = {r.marker.split("/")[-2]: r.cmd for r in p.runs if "LT_glue.py" in r.cmd}
    assert "--structure_score" not in imps["imp_heads_ffn"]
    assert "--structure heads_ffn --structure_score fisher --score_normalise none" in imps["imp_heads_ffn_fisher_none"]
    cell = next(r.cmd for r in p.runs if "random_heads_ffn_fisher_none_50_s1" in r.marker)
    assert f"--mask_dir {out}/masks/random_heads_ffn_50_s1/mask.pt" in cell
    with pytest.raises(RecipeError, match="METHODS omp with SETS heads_ffn_fisher_none"):
        plan("glue_tickets", {**env, "METHODS": "imp omp"})
    with pytest.raises(RecipeError, match="unknown set 'heads_ffn_magic'"):
        plan("glue_tickets", {**env, "SETS": "heads_ffn_magic"})


def test_structured_tickets_of_two_scores_are_two_series():
    from utils.runs import imp_series

    base = {"save_steps": 189, "learning_rate": 3e-4, "round_schedule": "whole_run", "max_train_samples": 2000,
            "structure": "heads_ffn"}
    magnitude = imp_series({**base, "structure_score": "magnitude"})
    fisher = imp_series({**base, "structure_score": "fisher", "score_normalise": "none", "score_batches": 16})
    assert magnitude == imp_series(base) == "rounds of 189, lr 0.0003, whole_run, 2000 rows"  # old records keep theirs
    assert fisher == magnitude + ", fisher score (none, 16 batches)"


def test_a_dry_run_never_says_the_runs_finished(env, capsys):
    from utils.recipes import main

    assert main(["glue_tickets", "--dry-run"], env=env) == 0
    out = capsys.readouterr().out
    assert "all runs finished" not in out and "glue_tickets: dry run, nothing ran; report: python report.py" in out
