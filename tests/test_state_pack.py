"""utils/state_pack: a resumable state packed against the checkpoint it started from comes back
tensor for tensor (bytes, dtypes, key order), is a fraction of the state's size, and refuses
another checkpoint or a finished run in one line without writing anything."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from utils import state_pack as SP
from utils.errors import UserError
from utils.resume import STATE, read_state, save_state, state_dir


ROOT = Path(__file__).resolve().parents[1]


def recipe_unpack(folder):
    """The recipes' ``unpack_masks`` (scripts/recipe_lib.sh): tickets, then packed states."""
    proc = subprocess.run(["bash", "-c", f'source "{ROOT}/scripts/recipe_lib.sh" && unpack_masks "{folder}"'],
                          env={"PATH": "/usr/bin:/bin", "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"},
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc


def same(a, b):
    """Equal trees: tensors by dtype, shape and bytes; numpy arrays; the rest by value; key order."""
    if isinstance(a, torch.Tensor):
        return (isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape and
                (a.numel() == 0 or torch.equal(a.contiguous().view(torch.uint8), b.contiguous().view(torch.uint8))))
    if isinstance(a, np.ndarray):
        return np.array_equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b


def synthetic(seed=0):
    """A reference checkpoint and a state as IMP leaves it right after a pruning event."""
    g = torch.Generator().manual_seed(seed)
    ref = {"bert.l0.weight": torch.randn(16, 16, generator=g), "bert.l1.weight": torch.randn(16, 16, generator=g),
           "bert.emb.weight": torch.randn(10, 16, generator=g), "classifier.weight": torch.randn(2, 16, generator=g)}
    m0 = torch.rand(16, 16, generator=g) > 0.3
    m1 = torch.rand(16, 16, generator=g) > 0.6
    model = {"bert.l0.weight_orig": ref["bert.l0.weight"].clone(), "bert.l0.weight_mask": m0,  # hooks: weight_orig
             "bert.l1.weight": ref["bert.l1.weight"] * m1.float(), "bert.l1.weight_mask": m1,  # plain, -0.0 kept
             "bert.emb.weight": ref["bert.emb.weight"].clone(),
             "classifier.weight": ref["classifier.weight"] + 0.5}  # the trained head
    state = {"global_step": 4, "model": model, "optimizer": {"state": {}, "param_groups": [{"lr": 1e-3}]},
             "moments": torch.zeros(32, 8), "rng": {"numpy": np.random.RandomState(1).get_state()},
             "results": {"evaluations": [{"step": 4, "acc": 0.5}]}}
    return ref, state


def test_pack_roundtrip_is_exact_and_small(tmp_path):
    ref, state = synthetic()
    assert (state["model"]["bert.l1.weight"].view(torch.int32) < 0).any()  # a -0.0 that 0.0 would lose
    assert SP.write_packed(tmp_path / "s.packed", state, ref) > 0
    back = SP.read_packed(tmp_path / "s.packed", ref)
    assert same(back, state)
    meta, tensors = SP.pack_state(state, ref)
    kinds = {k: v["__packed__"] for k, v in meta["model"].items()}
    assert kinds == {"bert.l0.weight_orig": "ref", "bert.l0.weight_mask": "bits", "bert.l1.weight": "ref_masked",
                     "bert.l1.weight_mask": "bits", "bert.emb.weight": "ref", "classifier.weight": "raw"}
    assert meta["model"]["bert.l1.weight"]["how"] == "mul" and meta["moments"]["__packed__"] == "zeros"
    # kept: two masks as bits (256 bits = 32 bytes each) and the 2x16 head
    assert sorted(t.numel() * t.element_size() for t in tensors.values()) == [32, 32, 128]


def test_masked_with_where_keeps_positive_zero(tmp_path):
    ref, state = synthetic()
    m1 = state["model"]["bert.l1.weight_mask"]
    state["model"]["bert.l1.weight"] = torch.where(m1, ref["bert.l1.weight"], torch.zeros(()))
    meta, _ = SP.pack_state(state, ref)
    assert meta["model"]["bert.l1.weight"]["how"] == "where"
    SP.write_packed(tmp_path / "s.packed", state, ref)
    assert same(SP.read_packed(tmp_path / "s.packed", ref), state)


def test_another_checkpoint_is_refused(tmp_path):
    ref, state = synthetic(seed=0)
    SP.write_packed(tmp_path / "s.packed", state, ref)
    other = {k: v.clone() for k, v in ref.items()}
    other["bert.emb.weight"][0, 0] += 1.0
    with pytest.raises(UserError, match="differs from the state that was packed"):
        SP.read_packed(tmp_path / "s.packed", other)


def fake_run(folder, model_dir, finished=False):
    """A run folder made by LT_glue.py from ``model_dir``, with a state after its first pruning event."""
    from utils.models import load_model

    folder.mkdir(parents=True)
    args = {"script": "LT_glue.py", "model_name_or_path": str(model_dir), "task_name": "MRPC",
            "output_dir": str(folder)}
    (folder / "args.json").write_text(json.dumps(args))
    model = load_model("glue", str(model_dir), num_labels=2, finetuning_task="mrpc")
    sd = {k: v.detach().clone() for k, v in model.state_dict().items()}
    name = next(k for k in sd if k.endswith("query.weight"))
    mask = torch.rand(sd[name].shape) > 0.5
    sd[name] = sd[name] * mask.float()
    sd[name[:-len("weight")] + "weight_mask"] = mask
    save_state(folder, {"global_step": 4, "model": sd, "optimizer": {"state": {}, "param_groups": []}})
    (folder / "checkpoint-4").mkdir()
    torch.save({"bert." + name: mask.float()}, folder / "checkpoint-4" / "mask.pt")
    (folder / "checkpoint-4" / "mask_sparsity.json").write_text("{}")
    if finished:
        (folder / "complete.json").write_text("{}")
    return folder


def test_pack_run_and_unpack_into_another_runs_folder(tiny_bert_dir, tmp_path):
    run = fake_run(tmp_path / "runs" / "mrpc" / "imp", tiny_bert_dir)
    record = tmp_path / "record" / "mrpc" / "imp"
    SP.pack_run(run, record)
    assert sorted(p.relative_to(record).as_posix() for p in record.rglob("*") if p.is_file()) == [
        "args.json", "checkpoint-4/mask.pt.gz", "checkpoint-4/mask_sparsity.json", "resume/state.packed"]
    packed = (state_dir(record) / SP.PACKED).stat().st_size
    assert packed * 10 < (state_dir(run) / STATE).stat().st_size
    fresh = tmp_path / "fresh"
    shutil.copytree(tmp_path / "record", fresh)
    assert "unpacked" in recipe_unpack(fresh).stdout  # what the recipes do with a record they copy in
    out = fresh / "mrpc" / "imp"
    assert same(read_state(state_dir(out) / STATE), read_state(state_dir(run) / STATE))
    assert (out / "checkpoint-4" / "mask.pt").read_bytes() == (run / "checkpoint-4" / "mask.pt").read_bytes()
    before = (state_dir(out) / STATE).read_bytes()
    assert SP.unpack_all(fresh) == []  # a state already there is never replaced (in-process: no second start-up)
    assert (state_dir(out) / STATE).read_bytes() == before


def test_pack_refusals_write_nothing(tiny_bert_dir, tmp_path):
    done = fake_run(tmp_path / "done", tiny_bert_dir, finished=True)
    with pytest.raises(UserError, match="is finished"):
        SP.pack_run(done, tmp_path / "rec")
    run = fake_run(tmp_path / "run", tiny_bert_dir)
    with pytest.raises(UserError, match="is the run folder itself"):
        SP.pack_run(run, run)
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no resumable run there"):
        SP.pack_run(tmp_path / "empty", tmp_path / "rec")
    assert not (tmp_path / "rec").exists()


def test_unpack_with_another_checkpoint_writes_no_state(tiny_bert_dir, tmp_path):
    from conftest import save_pretrained_bert

    run = fake_run(tmp_path / "run", tiny_bert_dir)
    record = tmp_path / "rec" / "imp"
    SP.pack_run(run, record)
    other = save_pretrained_bert(tmp_path / "other_bert", seed=1)
    args = json.loads((record / "args.json").read_text())
    (record / "args.json").write_text(json.dumps({**args, "model_name_or_path": str(other)}))
    with pytest.raises(UserError, match="differs from the state that was packed"):
        SP.unpack_run(record)
    assert not (state_dir(record) / STATE).exists()
