"""Nothing a user has is lost, and nothing that failed is recorded as finished.

A run whose loss or weights become NaN/inf stops with ``failed.json`` (exit code 3), never
``complete.json``, and the report lists it apart; an evaluation-only run is its own kind; a
warm-up longer than the run is warned about; every script refuses a seed numpy cannot take;
``pertub_weight.py`` writes the format its file name asks for; ``--overwrite_output_dir``
removes only what earlier runs recorded writing (the manifest); a run holds its folder's lock.
"""
import fcntl
import hashlib
import json
import os

import pytest
import torch
from test_glue_scripts import write_mrpc

import glue_trans
import LT_glue
import LT_pretrain
import LT_squad
import oneshot
import pertub_weight
import pretrain_trans
import squad_trans
from utils.errors import run_cli
from utils.io import _LOCKS, LOCK, MANIFEST, own_entries
from utils.models import load_model, load_weight_file
from utils.report import write_report
from utils.runs import collect
from utils.tables import summarise
from utils.train import Trainer


@pytest.fixture
def mrpc(tmp_path):
    return write_mrpc(tmp_path / "MRPC")


def argv(model, data, out, *extra, train=True):
    return ["--task_name", "MRPC", "--data_dir", str(data), "--model_name_or_path", str(model),
            "--output_dir", str(out), "--cache_dir", str(out.parent / "cache"), "--overwrite_output_dir",
            "--max_steps", "4", "--logging_steps", "0", "--save_steps", "0", "--seed", "3",
            *(["--do_train"] if train else []), *extra]


def run(main, args, capsys):
    """(exit code, stderr lines) of one in-process run."""
    capsys.readouterr()
    try:
        run_cli(main, args)
        code = 0
    except SystemExit as exc:
        code = exc.code
    return code, capsys.readouterr().err.strip().splitlines()


def sha_tree(folder):
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


# --- finished means trained and finite ---------------------------------------------------------

@pytest.mark.parametrize("main", [glue_trans.main, LT_glue.main], ids=["glue_trans", "LT_glue"])
def test_diverged_run_fails_exit_3_and_is_listed_apart(main, tiny_bert_dir, mrpc, tmp_path, capsys):
    out = tmp_path / "runs" / "diverged"
    extra = ("--save_steps", "2") if main is LT_glue.main else ()
    code, err = run(main, argv(tiny_bert_dir, mrpc, out, "--learning_rate", "1e6", "--max_steps", "6", *extra), capsys)
    assert code == 3 and len([e for e in err if e.startswith("error: ")]) == 1 and "Traceback" not in "\n".join(err)
    assert err[-1].startswith("error: training diverged: the training loss became nan at update ")
    failed = json.loads((out / "failed.json").read_text())
    assert failed["step"] >= 1 and "at update" in failed["reason"] and not (out / "complete.json").exists()
    assert json.loads((out / "results.json").read_text())["failed"]["reason"] == failed["reason"]
    runs = collect(tmp_path / "runs")
    finished, unfinished = runs  # unpacks as it always did
    assert finished == [] and unfinished == [] and [f["path"] for f in runs.failed] == ["diverged"]
    assert failed["reason"] in runs.failed[0]["why"]
    text, _, _ = write_report(tmp_path / "runs", figures=False)
    assert "## Failed runs" in text and f"- diverged: {runs.failed[0]['why']}" in text
    assert "0 finished runs, 0 unfinished, 1 failed" in text
    # --resume would repeat the failure: refused in one line
    code, err = run(main, argv(tiny_bert_dir, mrpc, out, "--learning_rate", "1e6", "--max_steps", "6", *extra,
                               "--resume"), capsys)
    assert code == 2 and "--resume: the run in" in err[-1] and "failed" in err[-1]


def test_non_finite_weight_after_the_last_update_fails(tiny_bert_dir, mrpc, tmp_path, capsys, monkeypatch):
    step = Trainer.optimizer_step

    def poisoned(self):
        step(self)
        if self.global_step == 4:  # the last update: no later loss would show it
            with torch.no_grad():
                next(self.model.parameters()).view(-1)[0] = float("inf")
    monkeypatch.setattr(Trainer, "optimizer_step", poisoned)
    out = tmp_path / "inf"
    code, err = run(glue_trans.main, argv(tiny_bert_dir, mrpc, out), capsys)
    assert code == 3 and "a weight became NaN or infinite at update 4" in err[-1]
    assert json.loads((out / "failed.json").read_text())["step"] == 4 and not (out / "complete.json").exists()


def test_evaluation_only_run_is_its_own_kind(tiny_bert_dir, mrpc, tmp_path, capsys):
    runs = tmp_path / "runs"
    assert run(glue_trans.main, argv(tiny_bert_dir, mrpc, runs / "dense"), capsys)[0] == 0
    assert run(glue_trans.main, argv(tiny_bert_dir, mrpc, runs / "eval", train=False), capsys)[0] == 0
    complete = json.loads((runs / "eval" / "complete.json").read_text())
    assert complete["kind"] == "eval_only" and complete["global_step"] == 0
    assert json.loads((runs / "eval" / "results.json").read_text())["kind"] == "eval_only"
    # a record from before eval_only existed (kind finetune, --do_train off) is one too
    legacy = runs / "legacy"
    legacy.mkdir()
    for name in ("args.json", "results.json", "complete.json"):
        text = (runs / "eval" / name).read_text().replace('"eval_only"', '"finetune"')
        (legacy / name).write_text(text)
    found = collect(runs)
    assert [r["path"] for r in found.finished] == ["dense"]
    assert sorted(r["path"] for r in found.eval_only) == ["eval", "legacy"]
    assert len(summarise(found.finished)["full"]["mrpc"]) == 1  # only the trained run is pooled
    text, _, _ = write_report(runs, figures=False)
    assert "## Evaluation-only runs" in text and "- eval: glue_trans.py on MRPC" in text
    # an evaluation-only run never replaces a finished training run
    before = sha_tree(runs / "dense")
    code, err = run(glue_trans.main, argv(tiny_bert_dir, mrpc, runs / "dense", train=False), capsys)
    assert code == 2 and "never replaces it" in err[-1] and sha_tree(runs / "dense") == before


def test_warmup_longer_than_the_run_is_warned_at_the_start(tiny_bert_dir, mrpc, tmp_path, capsys):
    code, err = run(glue_trans.main, argv(tiny_bert_dir, mrpc, tmp_path / "w", "--warmup_steps", "100"), capsys)
    assert code == 0 and (tmp_path / "w" / "complete.json").is_file()
    assert "warning: --warmup_steps 100 is longer than the schedule's 4 updates" in "\n".join(err)


MODULES = [glue_trans, LT_glue, squad_trans, LT_squad, pretrain_trans, LT_pretrain, oneshot, pertub_weight]


@pytest.mark.parametrize("seed", ["-5", str(2**32)])
@pytest.mark.parametrize("module", MODULES, ids=[m.__name__ for m in MODULES])
def test_every_script_refuses_a_seed_numpy_cannot_take(module, seed, capsys):
    required = {"glue_trans": ["--task_name", "MRPC", "--data_dir", "d"], "LT_glue": ["--task_name", "MRPC", "--data_dir", "d"],
                "pretrain_trans": ["--train_data_file", "t"], "LT_pretrain": ["--train_data_file", "t"]}
    out = [] if module in (oneshot, pertub_weight) else ["--output_dir", "o"]
    with pytest.raises(SystemExit) as exc:
        module.parse_args([*out, *required.get(module.__name__, []), "--seed", seed])
    assert exc.value.code == 2 and "argument --seed" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["shuffle.safetensors", "shuffle.pt.gz", "shuffle.pt"])
def test_pertub_weight_writes_the_format_its_name_asks_for(name, tiny_bert_dir, tmp_path, capsys):
    out = tmp_path / name
    assert run(pertub_weight.main, ["--model_name_or_path", str(tiny_bert_dir), "--output", str(out)], capsys)[0] == 0
    assert load_weight_file(load_model("glue", str(tiny_bert_dir)), out) == 13


# --- a run owns its output folder -----------------------------------------------------------------

def test_overwrite_removes_only_what_runs_recorded(tiny_bert_dir, mrpc, tmp_path, capsys):
    out = tmp_path / "shared"  # e.g. the repository root: folders that only share a name with ours
    for rel in ("runs/keep.txt", "resume/notes.txt", "checkpoint-7/mine.txt", "notes.txt"):
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        (out / rel).write_text(rel)
    foreign = sha_tree(out)
    # refused at first: the folder holds entries no run of this tool wrote; nothing is written
    code, err = run(glue_trans.main, argv(tiny_bert_dir, mrpc, out, "--save_steps", "2"), capsys)
    assert code == 2 and err == [
        f"error: --output_dir {out} holds entries no run of this tool wrote (checkpoint-7, notes.txt, resume, "
        "… (4 in all)): a run never mixes its files with others' (and --overwrite_output_dir removes only what "
        "its runs wrote); move them, give another --output_dir, or pass --keep_foreign_files"]
    assert sha_tree(out) == foreign and sorted(p.name for p in out.iterdir()) == sorted(
        ["runs", "resume", "checkpoint-7", "notes.txt"])
    # --keep_foreign_files: the run writes beside them, and never removes them
    assert run(glue_trans.main, argv(tiny_bert_dir, mrpc, out, "--save_steps", "2", "--keep_foreign_files"),
               capsys)[0] == 0
    own = own_entries(out)
    assert {"checkpoint-2", "checkpoint-4", "args.json", "complete.json"} <= set(own)
    assert not {"runs", "resume", "checkpoint-7", "notes.txt"} & set(own)  # there before: not ours
    assert run(glue_trans.main, argv(tiny_bert_dir, mrpc, out, "--max_steps", "1", "--keep_foreign_files"),
               capsys)[0] == 0
    names = {p.name for p in out.iterdir()}
    assert "checkpoint-2" not in names and "checkpoint-4" not in names  # the earlier run's, cleared
    after = sha_tree(out)
    assert all(after.get(k) == v for k, v in foreign.items())  # every foreign file, byte for byte
    assert json.loads((out / "complete.json").read_text())["global_step"] == 1


def test_a_folder_written_before_manifests_is_still_cleared(tiny_bert_dir, mrpc, tmp_path, capsys):
    out = tmp_path / "old"
    assert run(glue_trans.main, argv(tiny_bert_dir, mrpc, out, "--save_steps", "2"), capsys)[0] == 0
    (out / MANIFEST).unlink()  # as a run of an earlier version left it: args.json, no manifest
    assert run(glue_trans.main, argv(tiny_bert_dir, mrpc, out, "--max_steps", "1"), capsys)[0] == 0
    assert not (out / "checkpoint-2").exists() and (out / "complete.json").is_file()


def test_oneshot_replaces_a_mask_only_when_asked(tiny_bert_dir, tmp_path, capsys):
    out = tmp_path / "omp"
    base = ["--model_name_or_path", str(tiny_bert_dir), "--output_dir", str(out)]
    assert run(oneshot.main, [*base, "--rate", "0.3"], capsys)[0] == 0
    before = sha_tree(out)
    code, err = run(oneshot.main, [*base, "--rate", "0.6"], capsys)
    assert code == 2 and "already holds mask.pt and weight.pt" in err[-1] and sha_tree(out) == before
    assert run(oneshot.main, [*base, "--rate", "0.6", "--overwrite_output_dir"], capsys)[0] == 0
    assert sha_tree(out)["mask.pt"] != before["mask.pt"]


def test_the_lock_is_held_for_the_run_and_given_back(tiny_bert_dir, mrpc, tmp_path, capsys, monkeypatch):
    out = tmp_path / "locked"
    seen = []
    original = Trainer.train

    def probe(self):  # while the run trains, another process could not take the lock
        fd = os.open(out / LOCK, os.O_RDONLY)
        try:
            with pytest.raises(BlockingIOError):
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            seen.append(True)
        finally:
            os.close(fd)
        return original(self)
    monkeypatch.setattr(Trainer, "train", probe)
    assert run(glue_trans.main, argv(tiny_bert_dir, mrpc, out), capsys)[0] == 0
    assert seen == [True] and not _LOCKS
    fd = os.open(out / LOCK, os.O_RDONLY)  # given back when the run ended
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        os.close(fd)


@pytest.mark.slow
def test_two_processes_started_together_one_runs_one_is_refused(tiny_bert_dir, mrpc, tmp_path):
    """Two glue_trans.py processes started at the same moment into one --output_dir: exactly one
    trains and finishes, the other is refused at once with one line and exit code 2."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    out = tmp_path / "shared_out"
    cmd = [sys.executable, str(root / "glue_trans.py"), *argv(tiny_bert_dir, mrpc, out, "--max_steps", "300",
                                                               "--checkpoint_steps", "-1")]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen(cmd, cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    results = [(p.wait(timeout=600), p.stderr.read()) for p in procs]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 2], results
    refused = next(err for code, err in results if code == 2)
    lines = [line for line in refused.strip().splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "is in use by another run" in lines[0] and str(out) in lines[0]
    assert "Traceback" not in refused
    done = json.loads((out / "complete.json").read_text())
    assert done["global_step"] == 300
