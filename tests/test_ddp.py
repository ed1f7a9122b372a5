"""Two CPU processes under torchrun (gloo): IMP keeps one mask on every rank, the ranks' weights
stay identical, and only rank 0 writes files."""
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from test_glue_scripts import common, write_mrpc
from utils import pruning as P

pytestmark = pytest.mark.slow  # kill-and-resume / multi-process runs

ROOT = Path(__file__).resolve().parents[1]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(script, argv, timeout=300):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
           "--master_addr", "127.0.0.1", "--master_port", str(free_port()), str(script), *argv]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="module")
def ddp_run(tiny_bert_dir, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ddp")
    data = write_mrpc(tmp / "MRPC", n_train=64)
    out = tmp / "imp"
    argv = common(tiny_bert_dir, data, out, "--save_steps", "2", "--logging_steps", "2",
                  "--evaluate_during_training", "--max_steps", "6", "--learning_rate", "1e-3",
                  "--no_cuda")
    proc = torchrun(ROOT / "tests" / "ddp_worker.py", argv)
    return out, proc


def test_every_rank_holds_the_same_mask_and_weights(ddp_run):
    out, _ = ddp_run
    ranks = [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["world_size"] for r in ranks] == [2, 2]
    assert [r["global_step"] for r in ranks] == [6, 6]
    assert ranks[0]["pruned"] == ranks[1]["pruned"] > 0
    assert ranks[0]["masks"] == ranks[1]["masks"]
    assert ranks[0]["weights"] == ranks[1]["weights"]


def test_rank0_writes_masks_and_results(ddp_run):
    out, proc = ddp_run
    total, pruned = None, 0
    for k, step in enumerate((2, 4, 6)):
        masks = P.load_mask(out / f"checkpoint-{step}" / "mask.pt")
        total = total or sum(m.numel() for m in masks.values())
        pruned += round(P.imp_amount(k) * (total - pruned))
        assert sum(int((~m).sum()) for m in masks.values()) == pruned
    results = json.loads((out / "results.json").read_text())
    assert [round(m["sparsity"]) for m in results["masks"]] == [10, 20, 30]
    assert [e["step"] for e in results["evaluations"]] == [2, 4, 6]  # rank 0 evaluates
    assert results["global_step"] == 6
    assert proc.stdout.count("pruning event 1/10") == 1  # printed once, by rank 0


def test_two_ranks_killed_and_resumed_equal_uninterrupted(tiny_bert_dir, tmp_path):
    """A two-rank (gloo) IMP run killed mid-round and resumed with --resume ends with the same
    masks, evaluations and rank checksums as an uninterrupted two-rank run."""
    data = write_mrpc(tmp_path / "MRPC", n_train=64)

    def argv(out, *extra):
        return common(tiny_bert_dir, data, out, "--save_steps", "2", "--logging_steps", "2",
                      "--evaluate_during_training", "--max_steps", "6", "--learning_rate", "1e-3",
                      "--no_cuda", *extra)

    ref, out = tmp_path / "ref", tmp_path / "killed"
    torchrun(ROOT / "tests" / "ddp_worker.py", argv(ref))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), "BERT_TICKETS_KILL_AT_STEP": "3"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(free_port()), str(ROOT / "tests" / "ddp_worker.py"), *argv(out)]
    killed = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert killed.returncode != 0 and (out / "resume" / "state.pt").is_file()
    proc = torchrun(ROOT / "tests" / "ddp_worker.py", argv(out, "--resume"))
    assert proc.stdout.count("resumed at update 2") == 2  # both ranks
    for step in (2, 4, 6):
        a = P.load_mask(ref / f"checkpoint-{step}" / "mask.pt")
        b = P.load_mask(out / f"checkpoint-{step}" / "mask.pt")
        assert all(bool((a[k] == b[k]).all()) for k in a)
    for r in (0, 1):
        ra = json.loads((ref / f"rank{r}.json").read_text())
        rb = json.loads((out / f"rank{r}.json").read_text())
        assert ra["weights"] == rb["weights"] and ra["masks"] == rb["masks"]
    ea = json.loads((ref / "results.json").read_text())["evaluations"]
    eb = json.loads((out / "results.json").read_text())["evaluations"]
    assert ea == eb
