"""Runs say what they are: completion markers, mask and weight provenance, the pooler option,
emptied-matrix warnings, and the report classifying real runs after they were moved."""
import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

import glue_trans
import LT_glue
import oneshot
import pertub_weight
from conftest import save_pretrained_bert
from test_glue_scripts import common, write_mrpc
from utils import pruning as P
from utils.models import load_model
from utils.provenance import index_dir, sha256_file, sidecar_path
from utils.runs import collect
from utils.rundir import prepare_output_dir


def quiet_pooler_model(path):
    """A tiny checkpoint whose pooler holds the smallest weights (as MiniLM's does)."""
    save_pretrained_bert(path, seed=3)
    state = load_file(path / "model.safetensors")
    key = next(k for k in state if k.endswith("pooler.dense.weight"))
    state[key] = state[key] * 1e-3
    save_file(state, path / "model.safetensors", metadata={"format": "pt"})
    return path


def imp_argv(model_dir, data, out, *extra):
    return common(model_dir, data, out, "--save_steps", "2", "--logging_steps", "2", "--evaluate_during_training",
                  "--max_steps", "6", "--learning_rate", "1e-3", "--save_round_weights", "0", *extra)


def test_pooler_emptied_by_default_and_kept_with_option(tmp_path, capsys):
    model_dir = quiet_pooler_model(tmp_path / "quiet")
    data = write_mrpc(tmp_path / "MRPC")
    n_pooler = 32 * 32
    # learning rate 0: the ranking sees the checkpoint's magnitudes (Adam would grow the pooler)
    LT_glue.main(imp_argv(model_dir, data, tmp_path / "paper", "--max_steps", "2", "--learning_rate", "0"))
    err = capsys.readouterr().err
    masks = P.load_mask(tmp_path / "paper" / "checkpoint-2" / "mask.pt")
    pooler = masks["bert.pooler.dense.weight_mask"]
    assert int(pooler.sum()) == 0  # 10 % of 17,408 weights (1,741) takes all 1,024 of the pooler first
    assert "bert.pooler.dense.weight_mask is pruned entirely" in err and "cannot see the input" in err
    report = json.loads((tmp_path / "paper" / "checkpoint-2" / "mask_sparsity.json").read_text())
    assert [e["key"] for e in report["emptied"]] == ["bert.pooler.dense.weight_mask"]
    # a run that loads the mask warns again, before training
    glue_trans.main(common(model_dir, data, tmp_path / "ft", "--mask_dir", str(tmp_path / "paper" / "checkpoint-2" / "mask.pt"),
                           "--max_steps", "1", "--logging_steps", "0", "--save_steps", "0"))
    assert "bert.pooler.dense.weight_mask is pruned entirely" in capsys.readouterr().err

    LT_glue.main(imp_argv(model_dir, data, tmp_path / "nopool", "--prunable_set", "no_pooler", "--learning_rate", "0"))
    assert "pruned entirely" not in capsys.readouterr().err
    rest = P.count_prunable(load_model("glue", str(model_dir))) - n_pooler
    pruned = 0
    for k, step in enumerate((2, 4, 6)):
        pruned += round(P.imp_amount(k) * (rest - pruned))
        masks = P.load_mask(tmp_path / "nopool" / f"checkpoint-{step}" / "mask.pt")
        assert "bert.pooler.dense.weight_mask" in masks and bool(masks["bert.pooler.dense.weight_mask"].all())
        assert sum(int((~m).sum()) for m in masks.values()) == pruned
        report = json.loads((tmp_path / "nopool" / f"checkpoint-{step}" / "mask_sparsity.json").read_text())
        assert report["prunable_set"] == "no_pooler" and report["prunable"]["total"] == rest
        assert report["prunable"]["sparsity"] == pytest.approx(10.0 * (k + 1), abs=0.01)
    results = json.loads((tmp_path / "nopool" / "results.json").read_text())
    assert [round(e["sparsity"], 2) for e in results["evaluations"]] == [0.0, 10.0, 20.0]  # over the rest


def test_imp_sidecar_and_completion_marker(tiny_bert_dir, tmp_path, record_index):
    data = write_mrpc(tmp_path / "MRPC")
    out = tmp_path / "imp"
    LT_glue.main(imp_argv(tiny_bert_dir, data, out))
    mask = out / "checkpoint-4" / "mask.pt"
    rec = json.loads(sidecar_path(mask).read_text())
    assert sidecar_path(mask).name == "mask_provenance.json"
    assert rec["kind"] == "imp" and rec["task"] == "mrpc" and rec["seed"] == 57
    assert (rec["pruning_event"], rec["step"], rec["prunable_set"]) == (2, 4, "paper")
    assert rec["sparsity"] == pytest.approx(20.0, abs=0.01) and rec["script"] == "LT_glue.py"
    assert rec["sha256"] == sha256_file(mask)
    assert rec["checkpoint"]["weights_sha256"] == sha256_file(tiny_bert_dir / "model.safetensors")
    assert rec["args"]["learning_rate"] == 1e-3 and "--save_steps 2" in rec["command"]
    # the content-addressed index knows it (the IMP run wrote it under --cache_dir)
    indexed = json.loads((index_dir(tmp_path / "cache") / f"{rec['sha256']}.json").read_text())
    assert indexed == rec
    done = json.loads((out / "complete.json").read_text())
    results = json.loads((out / "results.json").read_text())
    assert done["kind"] == "imp" and done["task"] == "mrpc" and done["global_step"] == 6
    assert done["headline"] == {"metric": "acc", "value": 100 * results["evaluations"][-1]["acc"], "step": 6,
                                "source": "last in-loop"}
    assert done["baseline"]["metric"] == "acc" and done["baseline"]["value"] == 50.0  # 8 of 16 dev rows
    assert [m["sha256"] for m in results["masks"]][1] == rec["sha256"]
    # every run records the versions, the git commit of the checkout and its peak memory
    env = json.loads((out / "args.json").read_text())["environment"]
    import numpy
    import transformers

    assert env["versions"]["torch"] == torch.__version__ and env["versions"]["numpy"] == numpy.__version__
    assert env["versions"]["transformers"] == transformers.__version__ and env["started"]
    assert len(env.get("git_commit", "")) == 40 and isinstance(env["git_dirty"], bool)
    assert rec["environment"] == env and "environment" not in rec["args"]  # the run's, once: args are the flags
    assert results["peak_memory"]["host_peak_mb"] > 50


def test_marker_removed_when_a_run_restarts(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    for name in ("complete.json", "results.json", "notes.txt"):
        (out / name).write_text("{}")
    (out / "checkpoint-9").mkdir()
    (out / "args.json").write_text('{"script": "glue_trans.py", "output_dir": "run"}')  # written by this tool
    args = type("A", (), {"output_dir": str(out), "do_train": True, "overwrite_output_dir": True, "resume": True,
                          "keep_foreign_files": True})()  # notes.txt is the user's: run beside it
    prepare_output_dir(args)  # --resume keeps the folder, but a finished-looking marker goes
    assert not (out / "complete.json").exists() and (out / "results.json").exists() and (out / "checkpoint-9").is_dir()
    args.resume = False
    prepare_output_dir(args)  # a fresh run clears what an earlier run wrote, and only that
    from utils.io import BOOKKEEPING

    assert sorted(p.name for p in out.iterdir() if p.name not in BOOKKEEPING) == ["notes.txt"]


def test_loaded_mask_and_weights_recorded_in_args(tiny_bert_dir, tmp_path, capsys):
    data = write_mrpc(tmp_path / "MRPC")
    LT_glue.main(imp_argv(tiny_bert_dir, data, tmp_path / "imp"))
    ticket = tmp_path / "imp" / "checkpoint-6" / "mask.pt"
    copied = tmp_path / "dif_mask" / "mrpc_mask.pt"  # the README's workflow: copy the file alone
    copied.parent.mkdir()
    shutil.copy(ticket, copied)
    pertub_weight.main(["--model_name_or_path", str(tiny_bert_dir), "--output", str(tmp_path / "shuffle.pt")])
    shuffle_rec = json.loads((tmp_path / "shuffle_provenance.json").read_text())
    assert shuffle_rec["kind"] == "shuffle" and shuffle_rec["seed"] == 42
    assert sorted(shuffle_rec["permutation"]) == [0, 1] and shuffle_rec["sha256"] == sha256_file(tmp_path / "shuffle.pt")
    out = tmp_path / "ft"
    glue_trans.main(common(tiny_bert_dir, data, out, "--mask_dir", str(copied), "--weight_pertub",
                           str(tmp_path / "shuffle.pt"), "--max_steps", "1", "--logging_steps", "0", "--save_steps", "0"))
    args = json.loads((out / "args.json").read_text())
    prov = args["provenance"]
    assert prov["mask"]["path"] == str(copied) and prov["mask"]["sha256"] == sha256_file(ticket)
    assert prov["mask"]["record"]["pruning_event"] == 3 and prov["mask"]["record"]["task"] == "mrpc"
    assert prov["weight_pertub"]["record"]["permutation"] == shuffle_rec["permutation"]
    # overwriting the copied file with another mask changes what the next run records
    oneshot.main(["--weight", "rand", "--rate", "0.5", "--model_name_or_path", str(tiny_bert_dir),
                  "--output_dir", str(tmp_path / "rand")])
    shutil.copy(tmp_path / "rand" / "mask.pt", copied)
    glue_trans.main(common(tiny_bert_dir, data, tmp_path / "ft2", "--mask_dir", str(copied), "--max_steps", "1",
                           "--logging_steps", "0", "--save_steps", "0"))
    rec2 = json.loads((tmp_path / "ft2" / "args.json").read_text())["provenance"]["mask"]["record"]
    assert rec2["kind"] == "random" and rec2["rate"] == 0.5 and rec2["sparsity"] == pytest.approx(50.0, abs=0.01)
    capsys.readouterr()
    # a file nobody recorded: the run keeps its sha256 and says it has no record
    anon = tmp_path / "anon.pt"
    torch.save(P.load_mask(ticket), anon)
    glue_trans.main(common(tiny_bert_dir, data, tmp_path / "ft3", "--mask_dir", str(anon), "--max_steps", "1",
                           "--logging_steps", "0", "--save_steps", "0"))
    prov3 = json.loads((tmp_path / "ft3" / "args.json").read_text())["provenance"]["mask"]
    assert prov3["record"] is None and prov3["sha256"] == sha256_file(anon)
    assert "no provenance record found for mask" in capsys.readouterr().err


def test_mask_from_another_checkpoint_warns(tiny_bert_dir, tmp_path, capsys):
    other = save_pretrained_bert(tmp_path / "other", seed=11)  # same shapes, other weights
    oneshot.main(["--weight", "pre", "--rate", "0.3", "--model_name_or_path", str(other),
                  "--output_dir", str(tmp_path / "omp")])
    data = write_mrpc(tmp_path / "MRPC")
    capsys.readouterr()
    glue_trans.main(common(tiny_bert_dir, data, tmp_path / "ft", "--mask_dir", str(tmp_path / "omp" / "mask.pt"),
                           "--max_steps", "1", "--logging_steps", "0", "--save_steps", "0"))
    err = capsys.readouterr().err
    assert f"was made from checkpoint {other}" in err and f"this run uses {tiny_bert_dir}" in err


def test_report_classifies_real_runs_after_moves(tiny_bert_dir, tmp_path, record_index):
    """IMP, oneshot, pertub_weight and fixed-mask fine-tunes on a tiny model; then every folder
    and mask is moved or renamed and the record index is gone: the report still knows each run."""
    data = write_mrpc(tmp_path / "MRPC")
    runs = tmp_path / "runs"
    LT_glue.main(imp_argv(tiny_bert_dir, data, runs / "imp", "--prunable_set", "no_pooler"))
    for kind, weight in (("random", "rand"), ("omp", "pre")):
        oneshot.main(["--weight", weight, "--rate", "0.3", "--model_name_or_path", str(tiny_bert_dir),
                      "--output_dir", str(runs / kind), "--prunable_set", "no_pooler"])
    pertub_weight.main(["--model_name_or_path", str(tiny_bert_dir), "--output", str(runs / "shuffle.pt")])
    ticket = tmp_path / "dif_mask" / "mrpc_mask.pt"
    ticket.parent.mkdir()
    shutil.copy(runs / "imp" / "checkpoint-6" / "mask.pt", ticket)
    plans = {
        "dense_1": ["--dir", "pre", "--seed", "1"], "dense_2": ["--dir", "pre", "--seed", "2"],
        "ticket": ["--mask_dir", str(ticket)], "reinit": ["--dir", "rand", "--mask_dir", str(ticket)],
        "random": ["--mask_dir", str(runs / "random" / "mask.pt")],
        "omp": ["--mask_dir", str(runs / "omp" / "mask.pt")],
        "shuffled": ["--weight_pertub", str(runs / "shuffle.pt"), "--mask_dir", str(ticket)],
    }
    for name, flags in plans.items():
        argv = common(tiny_bert_dir, data, runs / "ft" / name, "--max_steps", "2", "--logging_steps", "0",
                      "--save_steps", "0", "--learning_rate", "1e-3")
        glue_trans.main(argv + flags)
    # move and rename everything; drop the index and every mask file
    moved = tmp_path / "elsewhere" / "renamed"
    shutil.move(str(runs), str(moved))
    for i, name in enumerate(sorted(plans)):
        shutil.move(str(moved / "ft" / name), str(moved / f"run{i:02d}"))
    for p in list(moved.rglob("mask.pt")) + [ticket]:
        p.unlink()
    shutil.rmtree(record_index / "records", ignore_errors=True)
    shutil.rmtree(tmp_path / "cache" / "records", ignore_errors=True)
    finished, unfinished = collect(moved)
    assert unfinished == []
    got = {r["path"]: (r["method"], r["source"], r["set"], None if r["sparsity"] is None else round(r["sparsity"]))
           for r in finished}
    expected = {"dense_1": ("full", None, None, 0), "dense_2": ("full", None, None, 0),
                "ticket": ("imp", "mrpc", "no_pooler", 30), "reinit": ("reinit", "mrpc", "no_pooler", 30),
                "random": ("random", "random", "no_pooler", 30), "omp": ("omp", "omp", "no_pooler", 30),
                "shuffled": ("shuffled", "mrpc", "no_pooler", 30)}
    for i, name in enumerate(sorted(plans)):
        assert got[f"run{i:02d}"] == expected[name], name
    assert got["imp"][0] == "imp_search"


def test_same_seed_same_masks(tiny_bert_dir, tmp_path):
    data = write_mrpc(tmp_path / "MRPC")
    for name in ("a", "b"):
        LT_glue.main(imp_argv(tiny_bert_dir, data, tmp_path / name, "--seed", "5"))
    for step in (2, 4, 6):
        ma = P.load_mask(tmp_path / "a" / f"checkpoint-{step}" / "mask.pt")
        mb = P.load_mask(tmp_path / "b" / f"checkpoint-{step}" / "mask.pt")
        assert ma.keys() == mb.keys() and all(torch.equal(ma[k], mb[k]) for k in ma)
    ra = json.loads((tmp_path / "a" / "results.json").read_text())["evaluations"]
    rb = json.loads((tmp_path / "b" / "results.json").read_text())["evaluations"]
    assert ra == rb


def test_written_files_get_the_usual_permissions(tmp_path):
    from utils import io

    write_json = io.write_json
    write_json(tmp_path / "a.json", {"x": 1})
    mode = (tmp_path / "a.json").stat().st_mode & 0o777
    assert mode == 0o666 & ~io._UMASK  # what open() would give, not mkstemp's 0600
    if not io._UMASK & 0o044:
        assert mode & 0o044 == 0o044  # others can read results and masks
