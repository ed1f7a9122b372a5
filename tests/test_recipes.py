"""The shell recipes: dry runs print the expected commands and skip finished runs; the queue
runs what is missing, stage by stage, and says run i/N."""
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# the small profile's settings before seeds per method and OMP (tests of other behaviour pin them)
ONE_SEED = {"SPARSITIES": "50 60 70", "METHODS": "imp random reinit", "SEEDS": "1 2 3", "MASK_SEEDS": "1",
            "SEEDS_IMP": "1", "SEEDS_OMP": "1", "SEEDS_RANDOM": "1", "SEEDS_REINIT": "1",
            "ROUND_EPOCHS": "1", "SCHEDULE": "per_round", "IMP_LR": "1e-4", "IMP_TAG": "none"}


def recipe(name, env, *args):
    full = {**os.environ, "PYTHON": "python", **env}
    return subprocess.run(["bash", str(ROOT / "scripts" / name), *args], cwd=ROOT, env=full,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture
def glue_root(tmp_path):
    """A GLUE root with an MRPC train file of 100 rows (+ header): rounds of 4 updates at batch 32."""
    d = tmp_path / "glue" / "MRPC"
    d.mkdir(parents=True)
    (d / "train.tsv").write_text("header\n" + "row\n" * 100)
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"hidden_size": 8, "intermediate_size": 16, "num_hidden_layers": 2}))
    return tmp_path


def lines_of(out):
    return [line for line in out.splitlines() if line.startswith("run ")]


def test_imp_budget_other_than_the_profiles_names_its_runs(glue_root):
    """IMP_LR/ROUND_EPOCHS/SCHEDULE off the profile name the IMP run and the fine-tunes of its
    masks (imp, reinit), not random pruning; the profile's budget keeps the set's name."""
    out_dir = glue_root / "runs"
    env = {"PROFILE": "small", "TASKS": "MRPC", "DATA": str(glue_root / "glue"), "MODEL": str(glue_root / "model"),
           "OUT": str(out_dir), "SPARSITIES": "50", "METHODS": "imp random reinit", "SEEDS": "1",
           "MASK_SEEDS": "1", "SEEDS_IMP": "1", "SEEDS_RANDOM": "1", "SEEDS_REINIT": "1", "SETS": "heads_ffn_fisher_none"}
    dirs = lambda res: sorted({w.split("/mrpc/")[1] for w in res.stdout.split() if "/mrpc/" in w and
                               "checkpoint" not in w and "data" not in w})
    same = recipe("glue_tickets.sh", {**env, "IMP_LR": "3e-4"}, "--dry-run")  # the small profile's rate
    assert same.returncode == 0, same.stderr
    assert dirs(same) == ["dense_s1", "imp_heads_ffn_fisher_none", "imp_heads_ffn_fisher_none_50_s1",
                          "random_heads_ffn_fisher_none_50_s1", "reinit_heads_ffn_fisher_none_50_s1"]
    other = recipe("glue_tickets.sh", {**env, "IMP_LR": "1e-4"}, "--dry-run")
    assert other.returncode == 0, other.stderr
    assert dirs(other) == ["dense_s1", "imp_heads_ffn_fisher_none_lr1e-4", "imp_heads_ffn_fisher_none_lr1e-4_50_s1",
                           "random_heads_ffn_fisher_none_50_s1", "reinit_heads_ffn_fisher_none_lr1e-4_50_s1"]
    ticket = next(r for r in lines_of(other.stdout) if "imp_heads_ffn_fisher_none_lr1e-4_50_s1" in r)
    assert "/mrpc/imp_heads_ffn_fisher_none_lr1e-4/checkpoint-" in ticket
    three = recipe("glue_tickets.sh", {**env, "IMP_LR": "1e-4", "ROUND_EPOCHS": "1", "SCHEDULE": "per_round"},
                   "--dry-run")
    assert "imp_heads_ffn_fisher_none_r1_lr1e-4_per_round" in dirs(three)
    kept = recipe("glue_tickets.sh", {**env, "IMP_LR": "1e-4", "IMP_TAG": "none"}, "--dry-run")
    assert "imp_heads_ffn_fisher_none" in dirs(kept) and "imp_heads_ffn_fisher_none_lr1e-4" not in dirs(kept)
    for bad, word in (({"IMP_TAG": "yes"}, "IMP_TAG"), ({"IMP_LR": "fast"}, "IMP_LR")):
        res = recipe("glue_tickets.sh", {**env, **bad}, "--dry-run")
        assert res.returncode == 2 and word in res.stderr and len(res.stderr.strip().splitlines()) == 1, res.stderr


def test_glue_dry_run_commands(glue_root):
    out_dir = glue_root / "runs"
    env = {"PROFILE": "small", "TASKS": "MRPC", "DATA": str(glue_root / "glue"), "MODEL": str(glue_root / "model"),
           "OUT": str(out_dir), "SPARSITIES": "50 60 70", "METHODS": "imp random reinit", "SEEDS": "1 2 3",
           "SEEDS_IMP": "1", "SEEDS_RANDOM": "1", "SEEDS_REINIT": "1", "ROUND_EPOCHS": "1", "SCHEDULE": "per_round",
           "IMP_LR": "1e-4", "IMP_TAG": "none"}  # the short-round record's names: by set alone
    res = recipe("glue_tickets.sh", env, "--dry-run")
    assert res.returncode == 0, res.stderr
    runs = lines_of(res.stdout)
    # 3 random masks, IMP, 3 dense seeds, 3 methods x 3 sparsities
    assert len(runs) == 16 and runs[0].startswith("run 1/16: ") and runs[-1].startswith("run 16/16: ")
    imp = next(r for r in runs if "LT_glue.py" in r)
    for flag in ("--save_steps 4", "--logging_steps 4", "--max_steps 28", "--round_schedule per_round",
                 "--prunable_set no_pooler", "--learning_rate 1e-4", "--max_train_samples 2000",
                 f"--output_dir {out_dir}/mrpc/imp_no_pooler", "--seed 57", "--save_round_weights 0"):
        assert flag in imp, flag
    assert "--train_subset_seed" not in imp and "--max_eval_samples" not in imp  # MRPC: first rows, full dev
    ticket60 = next(r for r in runs if "imp_no_pooler_60_s1" in r)
    assert f"--dir pre --mask_dir {out_dir}/mrpc/imp_no_pooler/checkpoint-24/mask.pt" in ticket60
    reinit70 = next(r for r in runs if "reinit_no_pooler_70_s1" in r)
    assert f"--dir rand --mask_dir {out_dir}/mrpc/imp_no_pooler/checkpoint-28/mask.pt" in reinit70
    random50 = next(r for r in runs if "/mrpc/random_no_pooler_50_s1" in r)
    assert f"--mask_dir {out_dir}/masks/random_no_pooler_50_s1/mask.pt" in random50
    assert sum("--dir pre --num_train_epochs 3" in r or ("dense_s" in r and "--dir pre" in r) for r in runs) == 3
    assert "disk needed about" in res.stdout

    # finished runs are skipped; a finished IMP run's own mask list decides the ticket's path
    (out_dir / "mrpc" / "dense_s2").mkdir(parents=True)
    (out_dir / "mrpc" / "dense_s2" / "complete.json").write_text("{}")
    (out_dir / "masks" / "random_no_pooler_50_s1").mkdir(parents=True)
    (out_dir / "masks" / "random_no_pooler_50_s1" / "mask_provenance.json").write_text("{}")

    imp_dir = out_dir / "mrpc" / "imp_no_pooler"
    imp_dir.mkdir(parents=True)
    (imp_dir / "results.json").write_text(json.dumps({"masks": [{"sparsity": 60.0, "path": "checkpoint-99/mask.pt"}]}))
    res = recipe("glue_tickets.sh", env, "--dry-run")
    runs = lines_of(res.stdout)
    assert "16 runs, 14 to do (2 finished)" in res.stdout
    assert sum("finished, skipped" in r for r in runs) == 2
    assert any(r.startswith("run ") and "finished, skipped" in r and "dense_s2" in r for r in runs)
    ticket60 = next(r for r in runs if "imp_no_pooler_60_s1" in r)
    assert f"--mask_dir {imp_dir}/checkpoint-99/mask.pt" in ticket60
    # a killed run that left a resumable state continues with --resume
    (imp_dir / "resume").mkdir()
    (imp_dir / "resume" / "state.pt").write_text("")
    runs = lines_of(recipe("glue_tickets.sh", env, "--dry-run").stdout)
    imp = next(r for r in runs if "LT_glue.py" in r)
    assert imp.endswith("--resume") and sum("--resume" in r for r in runs) == 1


def test_small_profile_seeds_per_method_omp_and_fresh_random_masks(glue_root):
    """The small profile: dense over 5 seeds, ticket and OMP over 3, random pruning over 2 with
    a fresh mask each (mask seed 57 + k - 1), re-init 1, at 40-70 %; STS-B on a seeded subset;
    full dev sets; the IMP round budget overridable (and a bad seed list refused)."""
    for task in ("STS-B",):
        d = glue_root / "glue" / task
        d.mkdir(parents=True)
        (d / "train.tsv").write_text("header\n" + "row\n" * 100)
    env = {"PROFILE": "small", "TASKS": "MRPC STS-B", "DATA": str(glue_root / "glue"),
           "MODEL": str(glue_root / "model"), "OUT": str(glue_root / "runs")}
    res = recipe("glue_tickets.sh", env, "--dry-run")
    assert res.returncode == 0, res.stderr
    runs = lines_of(res.stdout)
    # masks: random 4 levels x 2 seeds + OMP 4; per task IMP 1 + dense 5 + (3 + 3 + 2 + 1) x 4
    assert len(runs) == 12 + 2 * (1 + 5 + 36)
    rnd = [r for r in runs if "oneshot.py --weight rand" in r]
    assert len(rnd) == 8 and any("random_no_pooler_40_s2 --prunable_set no_pooler --seed 58" in r for r in rnd)
    assert sum("oneshot.py --weight pre" in r for r in runs) == 4
    for method, n in (("imp", 3), ("omp", 3), ("random", 2), ("reinit", 1)):
        assert sum(f"/mrpc/{method}_no_pooler_40_s" in r for r in runs) == n, method
    assert sum("/mrpc/dense_s" in r for r in runs) == 5
    # seed-major: every cell's first seed before any cell's second (a stopped queue covers all)
    masked = [r.rsplit("--seed ", 1)[1] for r in runs if "/mrpc/" in r and "--mask_dir" in r]
    assert masked == ["1"] * 16 + ["2"] * 12 + ["3"] * 8
    random2 = next(r for r in runs if "/mrpc/random_no_pooler_60_s2 " in r)
    assert "random_no_pooler_60_s2/mask.pt" in random2 and "--seed 2" in random2
    omp3 = next(r for r in runs if "/sts-b/omp_no_pooler_70_s3 " in r)
    assert "masks/omp_no_pooler_70/mask.pt" in omp3
    sts_imp = next(r for r in runs if "LT_glue.py" in r and "STS-B" in r)
    assert "--max_train_samples 2000 --train_subset_seed 0" in sts_imp and "--max_eval_samples" not in sts_imp
    # the profile's IMP budget: the paper's round length at 3e-4, near-constant within a round
    small_imp = next(r for r in runs if "LT_glue.py" in r and "MRPC" in r)
    assert "--save_steps 12" in small_imp and "--learning_rate 3e-4" in small_imp and "whole_run" in small_imp
    longer = recipe("glue_tickets.sh", {**env, "TASKS": "MRPC", "ROUND_EPOCHS": "3", "IMP_LR": "2e-4",
                                        "SCHEDULE": "whole_run"}, "--dry-run")
    imp = next(r for r in lines_of(longer.stdout) if "LT_glue.py" in r)
    assert "--save_steps 12" in imp and "--learning_rate 2e-4" in imp and "--round_schedule whole_run" in imp
    ft = next(r for r in lines_of(longer.stdout) if "/mrpc/dense_s1 " in r)
    assert "--learning_rate 1e-4" in ft
    bad = recipe("glue_tickets.sh", {**env, "SEEDS_OMP": "1 x"}, "--dry-run")
    assert bad.returncode == 2 and "seeds must be positive whole numbers separated by spaces, not '1 x'" in bad.stderr


def test_torchrun_and_bad_profile(glue_root):
    env = {"PROFILE": "paper", "TASKS": "MRPC", "DATA": str(glue_root / "glue"), "MODEL": str(glue_root / "model"),
           "OUT": str(glue_root / "runs"), "NGPU": "2", "SPARSITIES": "70", "METHODS": "imp"}
    res = recipe("glue_tickets.sh", env, "--dry-run")
    imp = next(r for r in lines_of(res.stdout) if "LT_glue.py" in r)
    assert "torchrun --nproc_per_node 2" in imp and "--per_gpu_train_batch_size 16" in imp
    assert "--save_steps 342" in imp and "--num_train_epochs 30" in imp and "--max_steps" not in imp
    assert "--learning_rate 2e-5" in imp and "--round_schedule whole_run" in imp
    bad = recipe("glue_tickets.sh", {**env, "PROFILE": "huge"}, "--dry-run")
    assert bad.returncode == 2 and bad.stderr.strip().splitlines() == [
        "error: PROFILE must be paper, small or quick, not 'huge'"]


def queue_script(tmp_path, *runs, name="mini.sh"):
    """A script that queues ``runs`` (``add_run`` argument strings, $D = tmp_path) with
    recipe_lib and runs the queue."""
    script = tmp_path / name
    body = "\n".join(f"add_run {r}" for r in runs)
    script.write_text(f"set -euo pipefail\nsource {ROOT}/scripts/recipe_lib.sh\nD={tmp_path}\n{body}\nrun_queue\n")
    return script


def start_holding(script, tmp_path, held="a", **kw):
    """Start ``script`` in the background; return once it holds run ``held`` (its log exists)."""
    proc = subprocess.Popen(["bash", str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)
    deadline = time.time() + 30
    while not (tmp_path / f"{held}.log").exists() and time.time() < deadline:
        time.sleep(0.05)
    return proc


def test_queue_runs_missing_runs_in_stages(tmp_path):
    """recipe_lib's queue: runs what has no marker, stage after stage, two at a time."""
    log = tmp_path / "order.txt"
    script = queue_script(tmp_path, f'1 $D/a.done $D/a.log "sleep 0.3; echo a >> {log}; touch $D/a.done"',
                          f'1 $D/b.done $D/b.log "echo b >> {log}; touch $D/b.done"',
                          f'2 $D/c.done $D/c.log "echo c >> {log}; touch $D/c.done"')
    (tmp_path / "b.done").write_text("")
    env = {**os.environ, "JOBS": "2"}
    res = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert "3 runs, 2 to do (1 finished)" in res.stdout
    assert "run 2/3: finished, skipped" in res.stdout
    assert log.read_text().split() == ["a", "c"]  # c (stage 2) waited for a (stage 1)
    again = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, timeout=60)
    assert "3 runs, 0 to do (3 finished)" in again.stdout and log.read_text().split() == ["a", "c"]


def test_two_queues_share_the_runs(tmp_path):
    """Two copies of one recipe started together: each run happens once (the lock), and the
    second stage of either copy starts only after the first stage's runs, wherever they ran."""
    log = tmp_path / "order.txt"
    script = queue_script(tmp_path, f'1 $D/a.done $D/a.log "sleep 1.5; echo a >> {log}; touch $D/a.done"',
                          f'1 $D/b.done $D/b.log "sleep 1.5; echo b >> {log}; touch $D/b.done"',
                          f'2 $D/c.done $D/c.log "test -e $D/a.done && test -e $D/b.done; echo c >> {log}; touch $D/c.done"')
    env = {**os.environ, "JOBS": "1"}
    first = start_holding(script, tmp_path, env=env)
    second = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, timeout=60)
    assert all((tmp_path / f"{x}.done").exists() for x in "abc")  # it waited for the runs held by the first
    out1, _ = first.communicate(timeout=60)
    assert first.returncode == 0 and second.returncode == 0, second.stderr
    assert "run 1/3: running in another queue, skipped" in second.stdout
    assert sorted(log.read_text().split()) == ["a", "b", "c"]  # each once
    assert log.read_text().split()[-1] == "c"
    assert "run 1/3: done" in out1


def test_run_failed_in_the_other_queue_is_reported(tmp_path):
    script = queue_script(tmp_path, '1 $D/a.done $D/a.log "sleep 1.5; exit 3"')
    first = start_holding(script, tmp_path)
    second = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=60)
    first.communicate(timeout=60)
    assert first.returncode == 1 and second.returncode == 1
    assert "run 1/1: running in another queue, skipped" in second.stdout
    assert second.stderr.strip().splitlines() == [
        "error: 1 run(s) held by another queue did not finish; re-run the same command to retry them"]


def test_failed_run_reported(tmp_path):
    script = queue_script(tmp_path, '1 $D/x.done $D/x.log "exit 3"', name="fail.sh")
    res = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=60)
    assert res.returncode != 0 and "run 1/1: FAILED" in res.stderr and not (tmp_path / "x.done").exists()


@pytest.mark.parametrize("name,expected", [
    ("squad_tickets.sh", ["LT_squad.py", "--doc_stride 64", "--save_steps 125", "--max_steps 875"]),
    ("mlm_tickets.sh", ["LT_pretrain.py", "--mlm", "--save_steps 100", "--max_steps 600", "--block_size 128"]),
])
def test_squad_and_mlm_dry_runs(name, expected, tmp_path):
    res = recipe(name, {"OUT": str(tmp_path / "r")}, "--dry-run")
    assert res.returncode == 0, res.stderr
    runs = lines_of(res.stdout)
    assert len(runs) == 16
    imp = next(r for r in runs if "imp_no_pooler --" in r or "imp_no_pooler " in r and "LT_" in r)
    for flag in expected:
        assert flag in imp, flag
    ticket70 = next(r for r in runs if "imp_no_pooler_70_s1" in r)
    step = 875 if name.startswith("squad") else 600  # MLM: the 70 % mask is written after 6 rounds
    assert f"imp_no_pooler/checkpoint-{step}/mask.pt" in ticket70


def test_transfer_dry_run(glue_root):
    env = {"PROFILE": "small", "TASKS": "MRPC", "TARGETS": "MRPC STS-B", "DATA": str(glue_root / "glue"),
           "MODEL": str(glue_root / "model"), "OUT": str(glue_root / "runs"),
           "EXTRA_SOURCES": f"mlm={glue_root}/mlmrun", "ROUND_EPOCHS": "1", "IMP_TAG": "none"}
    res = recipe("transfer.sh", env, "--dry-run")
    assert res.returncode == 0, res.stderr
    runs = lines_of(res.stdout)
    # OMP mask; sources mlm, mrpc, omp on targets MRPC and STS-B, minus the MRPC diagonal
    assert len(runs) == 1 + 5
    assert any("mrpc_to_sts-b_no_pooler_70_s1" in r and "imp_no_pooler/checkpoint-28/mask.pt" in r for r in runs)
    assert not any("mrpc_to_mrpc" in r for r in runs)
    # OMP's row is glue_tickets' OMP runs of each target, not a second copy under transfer/
    omp = [r for r in runs if "masks/omp_no_pooler_70/mask.pt" in r and "glue_trans.py" in r]
    assert len(omp) == 2 and not any("omp_to_" in r for r in runs)
    assert any(f"--output_dir {glue_root}/runs/mrpc/omp_no_pooler_70_s1 " in r for r in omp)
    assert any(f"--output_dir {glue_root}/runs/sts-b/omp_no_pooler_70_s1 " in r for r in omp)


def test_quickstart_without_data_says_what_to_pass(tmp_path):
    res = recipe("quickstart.sh", {"MODEL": str(tmp_path / "none"), "DATA": str(tmp_path / "none")})
    assert res.returncode == 2 and res.stdout == ""
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: quickstart needs") and "MODEL=" in lines[0] and "DATA=" in lines[0]


def test_imp_record_without_masks_runs_again(glue_root):
    out_dir = glue_root / "runs"
    env = {"PROFILE": "small", "TASKS": "MRPC", "DATA": str(glue_root / "glue"), "MODEL": str(glue_root / "model"),
           "OUT": str(out_dir), **ONE_SEED}
    imp = out_dir / "mrpc" / "imp_no_pooler"
    imp.mkdir(parents=True)
    (imp / "complete.json").write_text("{}")  # a slim record: the marker without the mask files
    res = recipe("glue_tickets.sh", env, "--dry-run")
    assert "IMP runs again" in res.stdout
    assert (imp / "complete.json").exists()  # a dry run changes nothing
    for d in ("imp", "reinit"):  # once every fine-tune of the ticket is finished, IMP is not needed
        for sp in (50, 60, 70):
            (out_dir / "mrpc" / f"{d}_no_pooler_{sp}_s1").mkdir()
            (out_dir / "mrpc" / f"{d}_no_pooler_{sp}_s1" / "complete.json").write_text("{}")
    res = recipe("glue_tickets.sh", env, "--dry-run")
    assert "IMP runs again" not in res.stdout
    assert any("finished, skipped" in r and "imp_no_pooler/complete.json" in r for r in lines_of(res.stdout))


def test_one_shot_mask_record_without_its_mask_is_made_again(glue_root):
    """A slim record keeps a random or OMP mask's provenance (the run's marker) but not the mask:
    the recipe makes the mask again instead of skipping it (a dry run only says so)."""
    from utils.recipes import plan

    out_dir = glue_root / "runs"
    env = {"PROFILE": "small", "TASKS": "MRPC", "DATA": str(glue_root / "glue"), "MODEL": str(glue_root / "model"),
           "OUT": str(out_dir), **ONE_SEED, "SPARSITIES": "50", "METHODS": "random omp"}
    slim, whole = out_dir / "masks" / "random_no_pooler_50_s1", out_dir / "masks" / "omp_no_pooler_50"
    for d in (slim, whole):
        d.mkdir(parents=True)
        (d / "mask_provenance.json").write_text("{}")
    (whole / "mask.pt").write_bytes(b"mask")
    res = recipe("glue_tickets.sh", env, "--dry-run")
    assert res.returncode == 0, res.stderr
    assert f"note: {slim}/mask.pt is missing" in res.stdout and f"{whole}/mask.pt is missing" not in res.stdout
    assert (slim / "mask_provenance.json").exists()  # a dry run changes nothing
    plan("glue_tickets", env)  # a real run removes the stale marker before its queue starts
    assert not (slim / "mask_provenance.json").exists() and (whole / "mask_provenance.json").exists()
    runs = lines_of(recipe("glue_tickets.sh", env, "--dry-run").stdout)
    assert any("oneshot.py" in r and str(slim) in r and "finished" not in r for r in runs)  # to do
    assert any("finished, skipped" in r and str(whole) in r for r in runs)


def test_structured_set_dry_run(glue_root):
    env = {"PROFILE": "small", "TASKS": "MRPC", "DATA": str(glue_root / "glue"), "MODEL": str(glue_root / "model"),
           "OUT": str(glue_root / "runs"), **ONE_SEED, "SETS": "heads_ffn", "METHODS": "imp random"}
    res = recipe("glue_tickets.sh", env, "--dry-run")
    assert res.returncode == 0, res.stderr
    runs = lines_of(res.stdout)
    assert len(runs) == 3 + 1 + 3 + 6  # random structured masks, IMP, dense, 2 methods x 3 sparsities
    masks = [r for r in runs if "oneshot.py" in r]
    assert len(masks) == 3 and all("--weight rand" in r and "--structure heads_ffn" in r for r in masks)
    imp = next(r for r in runs if "LT_glue.py" in r)
    assert "--structure heads_ffn" in imp and "--prunable_set" not in imp and "imp_heads_ffn" in imp
    assert sum(("imp_heads_ffn_" in r or "random_heads_ffn_" in r) and "glue_trans.py" in r for r in runs) == 6
    bad = recipe("glue_tickets.sh", {**env, "SETS": "rows"}, "--dry-run")
    assert bad.returncode != 0 and "unknown set 'rows'" in bad.stderr


def test_unpack_masks_restores_missing_tickets_only(tmp_path):
    import gzip

    ck = tmp_path / "runs" / "mrpc" / "imp_no_pooler" / "checkpoint-315"
    ck.mkdir(parents=True)
    (ck / "mask.pt.gz").write_bytes(gzip.compress(b"ticket bytes"))
    other = tmp_path / "runs" / "sts-b" / "imp_paper" / "checkpoint-189"
    other.mkdir(parents=True)
    (other / "mask.pt.gz").write_bytes(gzip.compress(b"packed"))
    (other / "mask.pt").write_bytes(b"already here")
    res = subprocess.run(["bash", "-c", f'source "{ROOT}/scripts/recipe_lib.sh" && unpack_masks "$0"',
                          str(tmp_path / "runs")], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert (ck / "mask.pt").read_bytes() == b"ticket bytes"
    assert (other / "mask.pt").read_bytes() == b"already here"  # an existing mask is never replaced
    assert not list(tmp_path.rglob("*.part"))


def test_train_all_tasks_use_every_row(glue_root):
    env = {"PROFILE": "small", "TASKS": "MRPC", "DATA": str(glue_root / "glue"), "MODEL": str(glue_root / "model"),
           "OUT": str(glue_root / "runs"), **ONE_SEED}
    capped = lines_of(recipe("glue_tickets.sh", env, "--dry-run").stdout)
    full = lines_of(recipe("glue_tickets.sh", {**env, "TRAIN_ALL": "MRPC"}, "--dry-run").stdout)
    python_runs = [r for r in capped if "glue_trans.py" in r or "LT_glue.py" in r]
    assert python_runs and all("--max_train_samples 2000" in r for r in python_runs)
    assert len(full) == len(capped) and not any("--max_train_samples" in r for r in full)
    assert not any("--max_eval_samples" in r for r in full)  # full dev sets


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="checks the refusal without CUDA")
def test_gpu_check_refuses_without_cuda(tmp_path):
    res = recipe("gpu_check.sh", {"PYTHON": "python3", "OUT": str(tmp_path / "g")})
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == [
        "error: gpu_check.sh needs a CUDA device (torch.cuda.is_available() is False)"]
    assert res.stdout == "" and not (tmp_path / "g").exists()


# --- settings a recipe cannot honour: one line, exit code 2, nothing run ------------------------

def glue_env(root, **extra):
    return {"PROFILE": "small", "TASKS": "MRPC", "DATA": str(root / "glue"), "MODEL": str(root / "model"),
            "OUT": str(root / "runs"), **ONE_SEED, **extra}


REFUSED_SETTINGS = [
    ("glue_tickets.sh", {"SPARSITIES": "50 55"},
     "error: SPARSITIES: '55' is not a sparsity IMP writes (percent, of 10 20 30 40 50 60 70 80 90: IMP prunes 10 % per event)"),
    ("glue_tickets.sh", {"SPARSITIES": "100"}, "error: SPARSITIES: '100' is not a sparsity IMP writes"),
    ("glue_tickets.sh", {"SPARSITIES": "5O"}, "error: SPARSITIES: '5O' is not a sparsity IMP writes"),
    ("glue_tickets.sh", {"SETS": "no_pooler rows"}, "error: unknown set 'rows' in SETS (paper no_pooler heads_ffn)"),
    ("glue_tickets.sh", {"METHODS": "imp lottery"},
     "error: unknown method 'lottery' in METHODS (imp random omp reinit shuffled)"),
    ("glue_tickets.sh", {"JOBS": "two"}, "error: JOBS must be a positive whole number, not 'two'"),
    ("glue_tickets.sh", {"JOBS": "0"}, "error: JOBS must be a positive whole number, not '0'"),
    ("glue_tickets.sh", {"NGPU": "-1"}, "error: NGPU must be a whole number >= 0, not '-1'"),
    ("glue_tickets.sh", {"NGPU": "1.5"}, "error: NGPU must be a whole number >= 0, not '1.5'"),
    ("glue_tickets.sh", {"NNODES": "0"}, "error: NNODES must be a positive whole number, not '0'"),
    ("glue_tickets.sh", {"ROUND_EPOCHS": "x"}, "error: ROUND_EPOCHS must be a positive whole number, not 'x'"),
    ("glue_tickets.sh", {"SCHEDULE": "cosine"}, "error: SCHEDULE must be per_round or whole_run, not 'cosine'"),
    ("transfer.sh", {"EXTRA_SOURCES": "runs/mlm_small/mlm/imp_no_pooler"},
     "error: EXTRA_SOURCES: 'runs/mlm_small/mlm/imp_no_pooler' is not a name=DIR pair"),
    ("transfer.sh", {"EXTRA_SOURCES": "mlm="}, "error: EXTRA_SOURCES: 'mlm=' is not a name=DIR pair"),
    ("transfer.sh", {"EXTRA_SOURCES": "mrpc=/elsewhere"},
     "error: EXTRA_SOURCES: the name 'mrpc' is already a source (a task of SOURCES, or omp); give another name"),
    ("transfer.sh", {"TRANSFER_SPARSITY": "75"}, "error: TRANSFER_SPARSITY: '75' is not a sparsity IMP writes"),
    ("transfer.sh", {"SET": "rows"}, "error: SET: unknown set 'rows' (paper no_pooler heads_ffn)"),
    ("transfer.sh", {"WITH_OMP": "yes"}, "error: WITH_OMP must be 0 or 1, not 'yes'"),
    ("squad_tickets.sh", {"SPARSITIES": "65"}, "error: SPARSITIES: '65' is not a sparsity IMP writes"),
    ("squad_tickets.sh", {"METHODS": "imp omp magic"}, "error: unknown method 'magic' in METHODS"),
    ("mlm_tickets.sh", {"SETS": "all"}, "error: unknown set 'all' in SETS"),
    ("mlm_tickets.sh", {"NGPU": "3"}, "error: batch 8 does not split over 3 processes"),
]


@pytest.mark.parametrize("name,env,message", REFUSED_SETTINGS, ids=[
    f"{n[:-3]}:{','.join(f'{k}={v}' for k, v in e.items())}" for n, e, _ in REFUSED_SETTINGS])
def test_settings_refused_before_anything_runs(name, env, message, glue_root):
    """Refused at planning time, without --dry-run too: one line, exit code 2, no run started
    (OUT is never made)."""
    for dry in (["--dry-run"], []):
        res = recipe(name, glue_env(glue_root, **env), *dry)
        assert res.returncode == 2, (res.stdout, res.stderr)
        assert len(res.stderr.strip().splitlines()) == 1 and res.stderr.startswith(message), res.stderr
        assert not lines_of(res.stdout)
        assert not (glue_root / "runs").exists()


FAKE_PYTHON = r'''#!/usr/bin/env python3
"""A stand-in for python: the training scripts record their argv and write their completion marker;
anything else (the recipes' helpers) runs in the real python."""
import json, os, sys
from pathlib import Path
script = sys.argv[1] if len(sys.argv) > 1 else ""
if script not in ("LT_glue.py", "glue_trans.py", "oneshot.py", "pertub_weight.py"):
    os.execv(os.environ["REAL_PYTHON"], [os.environ["REAL_PYTHON"], *sys.argv[1:]])
argv = sys.argv[1:]
with open(os.environ["ARGV_LOG"], "a") as f:
    f.write(json.dumps({"cwd": os.getcwd(), "argv": argv}) + "\n")
out = Path(argv[argv.index("--output_dir") + 1])
out.mkdir(parents=True, exist_ok=True)
(out / ("mask_provenance.json" if script == "oneshot.py" else "complete.json")).write_text("{}")
'''


def test_spaces_in_data_and_out_run_and_relative_paths_mean_the_current_folder(glue_root, tmp_path):
    """DATA, OUT and MODEL with spaces, given relative to the folder the recipe is started in (not
    the repository root): every run gets each path as one argument, absolute, and writes where
    the queue looks for its marker; a second start from elsewhere finds every run finished."""
    here = tmp_path / "start here"
    (here / "my glue").mkdir(parents=True)
    shutil.copytree(glue_root / "glue" / "MRPC", here / "my glue" / "MRPC")
    shutil.copytree(glue_root / "model", here / "my model")
    fake = tmp_path / "fakepy"
    fake.write_text(FAKE_PYTHON)
    fake.chmod(0o755)
    log = tmp_path / "argv.jsonl"
    env = {**os.environ, "PYTHON": str(fake), "REAL_PYTHON": sys.executable, "ARGV_LOG": str(log),
           "PROFILE": "quick", "TASKS": "MRPC", "DATA": "my glue", "MODEL": "./my model", "OUT": "my runs",
           "SPARSITIES": "50", "METHODS": "imp random", "SEEDS": "1", "SEEDS_RANDOM": "1", "SEEDS_IMP": "1",
           "JOBS": "2"}
    res = subprocess.run(["bash", str(ROOT / "scripts" / "glue_tickets.sh")], cwd=here, env=env,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "5 runs, 5 to do (0 finished)" in res.stdout and "all runs finished" in res.stdout
    runs = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(runs) == 5 and all(r["cwd"] == str(ROOT) for r in runs)
    out, data, model = here / "my runs", here / "my glue", here / "my model"
    for r in runs:
        a = r["argv"]
        assert a[a.index("--model_name_or_path") + 1] == str(model)
        assert Path(a[a.index("--output_dir") + 1]).parent in (out / "mrpc", out / "masks")
        if a[0] != "oneshot.py":
            assert a[a.index("--data_dir") + 1] == str(data / "MRPC")
    ticket = next(r["argv"] for r in runs if str(out / "mrpc" / "imp_no_pooler_50_s1") in r["argv"])
    assert ticket[ticket.index("--mask_dir") + 1] == str(out / "mrpc" / "imp_no_pooler" / "checkpoint-20" / "mask.pt")
    random = next(r["argv"] for r in runs if str(out / "mrpc" / "random_no_pooler_50_s1") in r["argv"])
    assert random[random.index("--mask_dir") + 1] == str(out / "masks" / "random_no_pooler_50_s1" / "mask.pt")
    assert sorted(p.parent.name for p in out.rglob("complete.json")) == [
        "dense_s1", "imp_no_pooler", "imp_no_pooler_50_s1", "random_no_pooler_50_s1"]
    # the same recipe started from another folder, with the same folders given absolute: all done
    again = subprocess.run(["bash", str(ROOT / "scripts" / "glue_tickets.sh"), "--dry-run"], cwd=tmp_path,
                           env={**env, "DATA": str(data), "MODEL": str(model), "OUT": str(out)},
                           capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and "5 runs, 0 to do (5 finished)" in again.stdout, again.stdout + again.stderr
    # a dry run prints commands that run as printed (copy-pasteable: each path one word)
    (out / "mrpc" / "dense_s1" / "complete.json").unlink()
    dry = subprocess.run(["bash", str(ROOT / "scripts" / "glue_tickets.sh"), "--dry-run"], cwd=here, env=env,
                         capture_output=True, text=True, timeout=120)
    line = next(r for r in lines_of(dry.stdout) if "dense_s1" in r and "finished" not in r)
    words = subprocess.run(["bash", "-c", 'eval "printf \'%s\\n\' $0"', line.split(": ", 1)[1]],
                           capture_output=True, text=True, timeout=60).stdout.splitlines()
    assert words[words.index("--data_dir") + 1] == str(data / "MRPC")
    assert words[words.index("--output_dir") + 1] == str(out / "mrpc" / "dense_s1")
