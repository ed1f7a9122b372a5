"""--resume: a run killed with SIGKILL (mid-round, or while writing its state) and restarted with
the same command plus --resume ends bit for bit where an uninterrupted run ends."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from test_glue_scripts import write_mrpc
from utils import pruning as P
from utils.resume import read_state

pytestmark = pytest.mark.slow  # kill-and-resume / multi-process runs

ROOT = Path(__file__).resolve().parents[1]


def run(script, argv, env_extra=None, expect_kill=False):
    env = {**os.environ, "OMP_NUM_THREADS": "1", **(env_extra or {})}
    proc = subprocess.run([sys.executable, str(ROOT / script), *argv], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    if expect_kill:
        assert proc.returncode == -9, proc.stderr[-2000:]
    else:
        assert proc.returncode == 0, proc.stderr[-2000:]
    return proc


def glue_argv(model, data, out, *extra):
    return ["--task_name", "MRPC", "--data_dir", str(data), "--model_name_or_path", str(model),
            "--output_dir", str(out), "--cache_dir", str(out.parent / "cache"), "--do_train",
            "--overwrite_output_dir", "--per_gpu_train_batch_size", "8", "--learning_rate", "1e-3",
            "--seed", "3", "--evaluate_during_training", *extra]


def evaluations(out):
    return json.loads((out / "results.json").read_text())["evaluations"]


def same_masks(a, b, step):
    ma, mb = P.load_mask(a / f"checkpoint-{step}" / "mask.pt"), P.load_mask(b / f"checkpoint-{step}" / "mask.pt")
    return all(torch.equal(ma[k], mb[k]) for k in ma)


@pytest.fixture
def imp_setup(tiny_bert_dir, tmp_path):
    data = write_mrpc(tmp_path / "MRPC", n_train=40)  # 5 batches of 8 per epoch
    extra = ["--save_steps", "4", "--logging_steps", "2", "--max_steps", "12", "--num_train_epochs", "10"]
    return tiny_bert_dir, data, extra


def test_imp_killed_mid_round_resumes_bit_for_bit(imp_setup, tmp_path):
    model, data, extra = imp_setup
    ref = tmp_path / "ref"
    run("LT_glue.py", glue_argv(model, data, ref, *extra))
    out = tmp_path / "killed"
    # update 6: after the state of event 1 (update 4) and mid-round 2, in the epoch's 2nd batch
    run("LT_glue.py", glue_argv(model, data, out, *extra), {"BERT_TICKETS_KILL_AT_STEP": "6"}, expect_kill=True)
    assert (out / "resume" / "state.pt").is_file() and not (out / "complete.json").exists()
    proc = run("LT_glue.py", glue_argv(model, data, out, *extra, "--resume"))
    assert "resumed at update 4" in proc.stdout
    for step in (4, 8, 12):
        assert same_masks(ref, out, step), step
    assert evaluations(out) == evaluations(ref)
    wa = load_file(ref / "checkpoint-12" / "model.safetensors")
    wb = load_file(out / "checkpoint-12" / "model.safetensors")
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    # resuming a finished run changes nothing
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    proc = run("LT_glue.py", glue_argv(model, data, out, *extra, "--resume"))
    assert "is finished" in proc.stdout
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before


def test_imp_packed_state_resumes_elsewhere_bit_for_bit(imp_setup, tmp_path):
    """An unfinished IMP run packed into a record (utils/state_pack), the record copied into a
    fresh runs folder and unpacked as the recipes do, then resumed: the same masks and scores as
    an uninterrupted run, from a state a small fraction of the saved one."""
    from test_state_pack import recipe_unpack
    from utils.state_pack import pack_run

    model, data, extra = imp_setup
    ref = tmp_path / "ref"
    run("LT_glue.py", glue_argv(model, data, ref, *extra))
    out = tmp_path / "runs" / "imp"
    run("LT_glue.py", glue_argv(model, data, out, *extra), {"BERT_TICKETS_KILL_AT_STEP": "6"}, expect_kill=True)
    pack_run(out, tmp_path / "record" / "imp")
    fresh = tmp_path / "fresh"
    shutil.copytree(tmp_path / "record", fresh)
    recipe_unpack(fresh)
    moved = fresh / "imp"
    assert (moved / "resume" / "state.pt").is_file() and (moved / "checkpoint-4" / "mask.pt").is_file()
    assert (tmp_path / "record" / "imp" / "resume" / "state.packed").stat().st_size * 5 < \
        (out / "resume" / "state.pt").stat().st_size
    argv = [a if a != str(out) else str(moved) for a in glue_argv(model, data, out, *extra, "--resume")]
    proc = run("LT_glue.py", argv)
    assert "resumed at update 4" in proc.stdout
    for step in (4, 8, 12):
        assert same_masks(ref, moved, step), step
    assert evaluations(moved) == evaluations(ref)


def test_glue_trans_killed_resumes_bit_for_bit(tiny_bert_dir, tmp_path):
    data = write_mrpc(tmp_path / "MRPC", n_train=40)
    extra = ["--num_train_epochs", "3", "--logging_steps", "3", "--save_steps", "0", "--checkpoint_steps", "2",
             "--gradient_accumulation_steps", "1"]
    ref, out = tmp_path / "ref", tmp_path / "killed"
    run("glue_trans.py", glue_argv(tiny_bert_dir, data, ref, *extra))
    run("glue_trans.py", glue_argv(tiny_bert_dir, data, out, *extra), {"BERT_TICKETS_KILL_AT_STEP": "9"},
        expect_kill=True)
    proc = run("glue_trans.py", glue_argv(tiny_bert_dir, data, out, *extra, "--resume"))
    assert "resumed at update 8" in proc.stdout
    ra, rb = json.loads((ref / "results.json").read_text()), json.loads((out / "results.json").read_text())
    assert ra["evaluations"] == rb["evaluations"] and ra["final"] == rb["final"]


def test_kill_while_writing_state_falls_back_to_previous(imp_setup, tmp_path):
    model, data, extra = imp_setup
    ref = tmp_path / "ref"
    run("LT_glue.py", glue_argv(model, data, ref, *extra))
    out = tmp_path / "killed"
    # the state of event 1 is written, then the process dies half-way through the state of event 2
    run("LT_glue.py", glue_argv(model, data, out, *extra, "--checkpoint_steps", "4"),
        {"BERT_TICKETS_KILL_IN_WRITE": "state.pt:2"}, expect_kill=True)
    states = sorted(p.name for p in (out / "resume").iterdir() if not p.name.startswith("."))
    assert states == ["state.prev.pt"]  # the half-written new state never replaced a good one
    read_state(out / "resume" / "state.prev.pt")  # intact
    proc = run("LT_glue.py", glue_argv(model, data, out, *extra, "--checkpoint_steps", "4", "--resume"))
    assert "resumed at update 4" in proc.stdout
    assert evaluations(out) == evaluations(ref) and same_masks(ref, out, 12)


def test_kill_while_writing_a_mask_keeps_the_old_one(tiny_bert_dir, tmp_path):
    out = tmp_path / "omp"
    run("oneshot.py", ["--rate", "0.3", "--model_name_or_path", str(tiny_bert_dir), "--output_dir", str(out)])
    before = (out / "mask.pt").read_bytes()
    run("oneshot.py", ["--rate", "0.6", "--model_name_or_path", str(tiny_bert_dir), "--output_dir", str(out),
                       "--overwrite_output_dir"], {"BERT_TICKETS_KILL_IN_WRITE": "mask.pt"}, expect_kill=True)
    assert (out / "mask.pt").read_bytes() == before
    masks = P.load_mask(out / "mask.pt")
    assert round(100 * sum(int((~m).sum()) for m in masks.values()) / sum(m.numel() for m in masks.values())) == 30


def test_resume_refusals(imp_setup, tmp_path):
    model, data, extra = imp_setup
    out = tmp_path / "r"
    none = run_err("LT_glue.py", glue_argv(model, data, out, *extra, "--resume"))
    assert "has no args.json" in none
    run("LT_glue.py", glue_argv(model, data, out, *extra), {"BERT_TICKETS_KILL_AT_STEP": "2"}, expect_kill=True)
    nostate = run_err("LT_glue.py", glue_argv(model, data, out, *extra, "--resume"))
    assert "no saved state" in nostate  # killed before the first pruning event's state
    run("LT_glue.py", glue_argv(model, data, out, *extra), {"BERT_TICKETS_KILL_AT_STEP": "6"}, expect_kill=True)
    other = run_err("LT_glue.py", glue_argv(model, data, out, *extra, "--learning_rate", "5e-4", "--resume"))
    assert "--learning_rate was 0.001" in other and "now 0.0005" in other
    ok = run("LT_glue.py", glue_argv(model, data, out, *extra, "--per_gpu_eval_batch_size", "3", "--resume"))
    assert "resumed at update 4" in ok.stdout


def run_err(script, argv):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(ROOT / script), *argv], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --resume"), lines
    return lines[0]


def test_overwrite_clears_an_older_runs_checkpoints(imp_setup, tmp_path):
    model, data, extra = imp_setup
    out = tmp_path / "o"
    run("LT_glue.py", glue_argv(model, data, out, *extra))
    assert (out / "checkpoint-12").is_dir()
    shorter = [a if a != "12" else "8" for a in extra]
    run("LT_glue.py", glue_argv(model, data, out, *shorter))
    assert sorted(p.name for p in out.iterdir() if p.name.startswith("checkpoint-")) == ["checkpoint-4", "checkpoint-8"]
    shutil.rmtree(out)


def sha_tree(folder):
    import hashlib

    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_resume_refuses_replaced_weights_or_data(tiny_bert_dir, tmp_path):
    """A killed IMP run whose checkpoint weights file or training data was replaced in place
    before --resume: refused in one line naming the file (IMP's rewind target would come from the
    new weights, the rest of the run from other rows), the run's folder byte for byte as it was;
    with the files put back it resumes."""
    from conftest import save_pretrained_bert
    from utils.provenance import sha256_file

    model = tmp_path / "model"
    shutil.copytree(tiny_bert_dir, model)
    data = write_mrpc(tmp_path / "MRPC", n_train=40)
    extra = ["--save_steps", "4", "--logging_steps", "2", "--max_steps", "12", "--num_train_epochs", "10"]
    out = tmp_path / "killed"
    run("LT_glue.py", glue_argv(model, data, out, *extra), {"BERT_TICKETS_KILL_AT_STEP": "6"}, expect_kill=True)
    recorded = json.loads((out / "args.json").read_text())["provenance"]
    weights, train = model / "model.safetensors", data / "train.tsv"
    assert recorded["checkpoint"]["weights_sha256"] == sha256_file(weights)
    assert recorded["data"] == {str(train): sha256_file(train), str(data / "dev.tsv"): sha256_file(data / "dev.tsv")}
    before = sha_tree(out)
    fix = "resume only with the files the run started from, or start it again without --resume"

    original = weights.read_bytes()
    other = save_pretrained_bert(tmp_path / "other", seed=11)  # same shapes, other weights
    shutil.copy(other / "model.safetensors", weights)
    err = run_err("LT_glue.py", glue_argv(model, data, out, *extra, "--resume"))
    assert err == (f"error: --resume: the checkpoint's weights file {weights} changed since the run started (sha256 "
                   f"{recorded['checkpoint']['weights_sha256'][:12]} then, {sha256_file(weights)[:12]} now); {fix}")
    assert sha_tree(out) == before
    weights.write_bytes(original)

    rows = train.read_text()
    write_mrpc(tmp_path / "MRPC2", n_train=40, seed=5)
    shutil.copy(tmp_path / "MRPC2" / "train.tsv", train)
    err = run_err("LT_glue.py", glue_argv(model, data, out, *extra, "--resume"))
    assert err == (f"error: --resume: the data file {train} changed since the run started (sha256 "
                   f"{recorded['data'][str(train)][:12]} then, {sha256_file(train)[:12]} now); {fix}")
    assert sha_tree(out) == before
    train.write_text(rows)

    proc = run("LT_glue.py", glue_argv(model, data, out, *extra, "--resume"))
    assert "resumed at update 4" in proc.stdout and (out / "complete.json").is_file()


def test_fixed_mask_resume_refuses_replaced_dev_file(tiny_bert_dir, tmp_path):
    """The same for a fixed-mask fine-tune: its dev file replaced between the kill and --resume."""
    from utils.provenance import sha256_file

    data = write_mrpc(tmp_path / "MRPC", n_train=40)
    extra = ["--num_train_epochs", "3", "--logging_steps", "3", "--save_steps", "0", "--checkpoint_steps", "2"]
    out = tmp_path / "killed"
    run("glue_trans.py", glue_argv(tiny_bert_dir, data, out, *extra), {"BERT_TICKETS_KILL_AT_STEP": "3"},
        expect_kill=True)
    dev = data / "dev.tsv"
    then = sha256_file(dev)
    before = sha_tree(out)
    flipped = dev.read_text().replace("\n1\t", "\nX\t").replace("\n0\t", "\n1\t").replace("\nX\t", "\n0\t")
    dev.write_text(flipped)  # every gold label flipped, same rows
    err = run_err("glue_trans.py", glue_argv(tiny_bert_dir, data, out, *extra, "--resume"))
    assert err == (f"error: --resume: the data file {dev} changed since the run started (sha256 {then[:12]} then, "
                   f"{sha256_file(dev)[:12]} now); resume only with the files the run started from, or start it "
                   "again without --resume")
    assert sha_tree(out) == before
