"""oneshot.py and pertub_weight.py end to end on a tiny checkpoint (and MiniLM when present)."""
import json

import pytest
import torch

import oneshot
import pertub_weight
from utils import pruning as P
from utils.models import load_model, load_weight_file


def test_oneshot_pre_writes_mask_weights_and_report(tiny_bert_dir, tmp_path):
    out = tmp_path / "omp"
    report = oneshot.main(["--weight", "pre", "--model", "glue", "--rate", "0.5",
                           "--model_name_or_path", str(tiny_bert_dir), "--output_dir", str(out)])
    masks = torch.load(out / "mask.pt", weights_only=True)
    assert len(masks) == 13 and all(k.endswith(".weight_mask") for k in masks)
    total = sum(m.numel() for m in masks.values())
    assert sum(int((~m).sum()) for m in masks.values()) == round(total / 2)
    assert report["prunable"]["sparsity"] == pytest.approx(50.0, abs=1e-9)
    assert json.loads((out / "mask_sparsity.json").read_text())["prunable"]["pruned"] == round(total / 2)
    weights = torch.load(out / "weight.pt", weights_only=True)
    assert "classifier.weight" in weights and not any(k.endswith("_mask") for k in weights)
    # OMP prunes the smallest pre-trained magnitudes: every kept |w| >= every pruned |w|
    model = load_model("glue", str(tiny_bert_dir))
    kept, gone = [], []
    for name, module in P.prunable_modules(model).items():
        m = masks[P.mask_key(name)]
        kept.append(module.weight[m].abs())
        gone.append(module.weight[~m].abs())
    assert torch.cat(kept).min() >= torch.cat(gone).max()


def test_oneshot_same_mask_for_every_head_and_random_is_uniform(tiny_bert_dir, tmp_path):
    masks = {}
    for head in ("glue", "squad", "pretrain"):
        oneshot.main(["--model", head, "--rate", "0.3", "--model_name_or_path", str(tiny_bert_dir),
                      "--output_dir", str(tmp_path / head)])
        masks[head] = torch.load(tmp_path / head / "mask.pt", weights_only=True)
    assert all(torch.equal(masks["glue"][k], masks[h][k]) for h in ("squad", "pretrain") for k in masks["glue"])
    oneshot.main(["--weight", "rand", "--rate", "0.5", "--seed", "1", "--model_name_or_path",
                  str(tiny_bert_dir), "--output_dir", str(tmp_path / "rand")])
    rand = torch.load(tmp_path / "rand" / "mask.pt", weights_only=True)
    per = [100.0 * (~m).sum().item() / m.numel() for m in rand.values()]
    assert all(40 < s < 60 for s in per)  # random pruning: about the same in every matrix
    assert not torch.equal(rand["bert.pooler.dense.weight_mask"], masks["glue"]["bert.pooler.dense.weight_mask"])


def test_oneshot_default_output_dirs(tiny_bert_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    oneshot.main(["--weight", "rand", "--model_name_or_path", str(tiny_bert_dir)])
    assert (tmp_path / "random_prun" / "mask.pt").is_file()
    report = json.loads((tmp_path / "random_prun" / "mask_sparsity.json").read_text())
    assert report["prunable"]["sparsity"] == pytest.approx(20.0, abs=0.01)  # the original's default rate


def test_oneshot_missing_model_exits_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        oneshot.run_cli(oneshot.main, ["--model_name_or_path", str(tmp_path / "nope"), "--output_dir", str(tmp_path)])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --model_name_or_path") and err.count("\n") == 1


def test_pertub_weight_default_path_and_loading(tiny_bert_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    perm = pertub_weight.main(["--model_name_or_path", str(tiny_bert_dir), "--seed", "0"])
    path = tmp_path / "tmp" / "shuffle_weight.pt"
    weights = torch.load(path, weights_only=True)
    assert len(weights) == 13 and sorted(perm) == [0, 1]
    model = load_model("squad", str(tiny_bert_dir))  # the pooler key loads into QA models too
    original = load_model("glue", str(tiny_bert_dir))
    assert load_weight_file(model, path) == 13
    for i, j in enumerate(perm):
        assert torch.equal(model.bert.encoder.layer[i].intermediate.dense.weight,
                           original.bert.encoder.layer[j].intermediate.dense.weight)
        assert torch.equal(model.bert.encoder.layer[i].intermediate.dense.bias,
                           original.bert.encoder.layer[i].intermediate.dense.bias)


@pytest.mark.integration
def test_oneshot_minilm_37_matrices_half_pruned(shared_data, tmp_path):
    report = oneshot.main(["--weight", "pre", "--model", "glue", "--rate", "0.5", "--model_name_or_path",
                           str(shared_data / "models" / "all-MiniLM-L6-v2"), "--output_dir", str(tmp_path)])
    assert report["matrices"] == 37
    assert report["prunable"]["total"] == 10_764_288
    assert report["prunable"]["pruned"] == 5_382_144
