"""scripts/bench.py: the --quick run emits every figure with consistent, finite numbers."""
import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from utils.errors import UserError

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "scripts" / "bench.py"
FIGURES = {"masked_step", "prune_speed", "mask_size", "glue_padding", "mixed_precision", "report_speed", "state_write",
           "structured"}
PRUNE_SMALL = 4 * (4 * 64 * 64 + 2 * 64 * 256) + 64 * 64  # 4 layers, hidden 64, inter 256, pooler


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    """Every JSON line of one ``bench.py --quick`` run, as a subprocess (as users run it), and
    the same records as ``--json_out`` wrote them. ``by_figure`` keeps a figure's last record."""
    out = tmp_path_factory.mktemp("bench") / "bench.json"
    proc = subprocess.run([sys.executable, str(BENCH), "--quick", "--json_out", str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=150, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    assert json.loads(out.read_text()) == lines  # --json_out: the same records, one JSON list
    return {rec["figure"]: rec for rec in lines}, lines


def structured_records(quick):
    return {rec["sparsity_target"]: rec for rec in quick[1] if rec["figure"] == "structured"}


def load_bench():
    spec = importlib.util.spec_from_file_location("bench", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def ratios(obj, path=""):
    """Every (path, value) whose key is ``ratio`` or ends with ``_ratio``, at any depth."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            if k == "ratio" or k.endswith("_ratio"):
                yield f"{path}.{k}", v
            yield from ratios(v, f"{path}.{k}")


@pytest.mark.slow
def test_all_figures_once_each_with_machine_info(quick):
    by_figure, lines = quick
    assert [rec["figure"] for rec in lines] == [
        "masked_step", "prune_speed", "mask_size", "glue_padding", "mixed_precision", "report_speed",
        "state_write", "structured", "structured"]  # structured: one line per sparsity (50, 70 %)
    assert set(by_figure) == FIGURES
    for rec in lines:
        assert rec["quick"] is True
        if rec["figure"] == "structured":  # the target is BERT-base's at 50 % alone, not the tiny shape's
            assert rec["target"] is None and rec["meets_target"] is None
            continue
        assert isinstance(rec["meets_target"], bool) and isinstance(rec["target"], str)
        m = rec["machine"]
        assert m["cpu_count"] >= 1 and m["torch_threads"] == 1  # --quick runs single-threaded
        assert m["device"] in ("cpu", "cuda") and ("gpu" in m) == (m["device"] == "cuda")
        assert m["torch"].startswith("2.") and m["platform"]


@pytest.mark.slow  # shares the one bench --quick run (about 15 s)
def test_every_ratio_is_a_positive_finite_float(quick):
    _, lines = quick
    found = [(f"{rec['figure']}{p}", v) for rec in lines for p, v in ratios(rec)]
    cuda = lines[0]["machine"]["device"] == "cuda"
    # masked_step 4 (2 + 2 paired), prune 3, mask 2, glue 1, mixed precision 2 (3 with fp16),
    # state_write 2 (throughput and wait), structured 5 per sparsity (infer, infer1, train,
    # masked_infer, flops) x 2 sparsities
    assert len(found) == 24 + cuda
    for where, value in found:
        assert isinstance(value, float) and math.isfinite(value) and value > 0, where


@pytest.mark.slow  # shares the one bench --quick run (about 15 s)
def test_masked_step_times_three_variants(quick):
    rec = quick[0]["masked_step"]
    assert rec["model"] == {"name": "tiny", "layers": 2, "hidden": 64, "heads": 2,
                            "intermediate": 256, "vocab": 512}
    assert (rec["batch"], rec["seq"], rec["steps"], rec["warmup"]) == (4, 16, 2, 1)
    assert rec["sparsity"] == 50.0
    assert set(rec["times_s"]) == {"dense", "plain", "hooks"}
    assert all(len(v) == 2 for v in rec["times_s"].values())
    medians = rec["median_s"]  # rounded to 0.1 ms, hence the tolerance
    assert rec["ratio"] == pytest.approx(medians["plain"] / medians["dense"], rel=2e-2)


@pytest.mark.slow  # shares the one bench --quick run (about 15 s)
def test_pruning_masks_equal_torch_in_both_rounds(quick):
    rec = quick[0]["prune_speed"]
    assert rec["n_weights"] == PRUNE_SMALL == 200_704 and rec["n_matrices"] == 25
    assert rec["masks_equal"] is True
    for key, pruned in (("round1", round(0.1 * PRUNE_SMALL)), ("round2", 2 * round(0.1 * PRUNE_SMALL))):
        r = rec[key]
        assert r["masks_equal"] is True and r["mismatches"] == 0 and r["pruned_equal"] is True
        assert r["pruned"] == pruned  # 10 % of the original set per IMP round
    assert rec["round2"]["amount"] == pytest.approx(1 / 9)
    assert rec["extra_peak_limit_mb"] == round(4 * PRUNE_SMALL / 1e6, 1)
    assert rec["extra_peak_mb"] >= 0 and rec["extra_peak_round2_mb"] >= 0
    assert rec["baseline_peak_over_current_mb"] < 50  # the peak counter starts with this process


@pytest.mark.slow  # shares the one bench --quick run (about 15 s)
def test_mask_files_four_times_smaller(quick):
    rec = quick[0]["mask_size"]
    assert rec["n_entries"] == PRUNE_SMALL and rec["sparsity"] == 50.0
    # 200k entries: ~9 KB of zip/pickle framing per file keeps the file ratio near 3.87, not 4
    assert rec["ratio"] >= 3.5
    assert rec["element_ratio"] == 4.0
    assert rec["bool_bytes"] == PRUNE_SMALL + rec["framing_bytes"]
    assert rec["float_bytes"] - rec["bool_bytes"] == pytest.approx(3 * PRUNE_SMALL, abs=512)
    assert rec["loads_weights_only"] is True and rec["loads_in_torch_prune"] is True
    assert rec["torch_prune_sparsity"] == 50.0


@pytest.mark.slow  # shares the one bench --quick run (about 15 s)
def test_padding_to_longest_keeps_the_metrics(quick):
    rec = quick[0]["glue_padding"]
    assert rec["examples"] == 2 * 8 and rec["batch"] == 8
    assert rec["metrics_agree"] is True
    longest, fixed = rec["metrics"]["longest"], rec["metrics"]["fixed128"]
    assert longest["acc"] == fixed["acc"] and longest["f1"] == fixed["f1"]
    assert fixed and set(longest) == set(fixed) >= {"acc", "f1", "eval_loss"}
    assert rec["mean_padded_len"]["fixed128"] == 128.0
    assert 9 <= rec["mean_padded_len"]["longest"] <= 51  # pairs of 3-24 words + 3 special tokens


@pytest.mark.slow  # shares the one bench --quick run (about 15 s)
def test_mixed_precision_compares_bf16_to_fp32(quick):
    rec = quick[0]["mixed_precision"]
    cuda = rec["machine"]["device"] == "cuda"
    assert set(rec["median_s"]) == {"fp32", "bf16"} | ({"fp16"} if cuda else set())
    assert rec["ratio"] == rec["bf16_ratio"]


def test_glue_figure_is_skipped_without_shared_data(tmp_path, monkeypatch):
    bench = load_bench()
    monkeypatch.setattr(bench, "MINILM_DIR", tmp_path / "no-model")
    opts = bench.parse_args(["--only", "glue_padding"])  # full mode: reads ../shared/data
    (rec,) = bench.figure_glue_padding(opts)
    assert rec["figure"] == "glue_padding" and rec["skipped"] is True and rec["meets_target"] is None
    assert rec["reason"] == f"shared data absent: need {tmp_path / 'no-model'} and {bench.MRPC_DIR}"
    assert rec["quick"] is False and rec["machine"]["cpu_count"] >= 1


@pytest.mark.parametrize("argv,message", [
    (["--only", "masked_step,nope"], "--only: unknown figure 'nope'"),
    (["--steps", "0"], "--steps must be at least 1, got 0"),
    (["--device", "tpu"], "--device must be auto, cpu or cuda"),
    (["--json_out", "."], "--json_out . is a folder; give a file name"),
])
def test_bad_flags_are_user_errors(argv, message):
    bench = load_bench()
    with pytest.raises(UserError) as err:
        bench.parse_args(argv)
    assert message in str(err.value)


def test_bad_flag_exits_2_with_one_line():
    proc = subprocess.run([sys.executable, str(BENCH), "--only", "speed"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip().splitlines() == [
        "error: --only: unknown figure 'speed' (choose from masked_step, prune_speed, mask_size, "
        "glue_padding, mixed_precision, report_speed, state_write, structured, structured_masks)"]


@pytest.mark.slow  # shares the one bench --quick run (about 15 s)
def test_report_speed_reads_every_generated_run(quick):
    rec = quick[0]["report_speed"]
    assert rec["runs"] == 50 and rec["finished"] == 49  # run 5 of every 97 is left unfinished
    assert rec["figures"] >= 10 and rec["seconds"]["tables_only"] > 0 and isinstance(rec["meets_target"], bool)


@pytest.mark.slow  # shares the one bench --quick run (about 15 s)
def test_state_write_measures_three_writes(quick):
    rec = quick[0]["state_write"]
    assert rec["mb"]["state"] > rec["mb"]["weights"] > 0  # the state adds masks and AdamW's moments
    assert set(rec["seconds"]) == {"weights_only", "state_copy", "state_write", "training_waits",
                                   "weights_only_best", "state_write_best"}
    each = rec["seconds_each"]
    assert len(each["weights_only"]) == len(each["state_write"]) == rec["repeats"]
    assert rec["seconds"]["state_write_best"] == min(each["state_write"])
    # the ratio is the best repetitions' throughputs, the medians' ratio beside it
    tp = rec["mb_per_s"]
    assert rec["ratio"] == pytest.approx(tp["state_mb_s"] / tp["weights_mb_s"], rel=0.02)
    assert tp["state_mb_s"] >= tp["state_mb_s_median"] and tp["weights_mb_s"] >= tp["weights_mb_s_median"]
    assert rec["ratio_median"] > 0
    assert rec["ratio"] > 0 and rec["wait_ratio"] > 0 and isinstance(rec["meets_target"], bool)


# tiny shape: 2 layers, hidden 64, 2 heads of 32, FFN 256; --quick batch 4 x 16
TINY_HEAD = 3 * (32 * 64 + 32) + 64 * 32  # Q/K/V rows + biases, attention.output.dense columns
TINY_NEURON = 64 + 1 + 64  # intermediate row + bias, output.dense column


def tiny_flops(heads, neurons, batch=4, seq=16):
    """The encoder's matmul FLOPs by hand, per token: 4 projections of 64 x 32h, scores and
    context over 16 keys of 32 dims per head, FFN 64 x n twice; 2 FLOPs per multiply-add."""
    per_token = sum(2 * (4 * 64 * 32 * h + 2 * h * seq * 32 + 2 * 64 * n) for h, n in zip(heads, neurons))
    return batch * seq * per_token


def test_structured_flops_formula_by_hand():
    from scripts.benchmarks.structured import encoder_flops

    assert encoder_flops([2, 2], [256, 256], 64, 32, 4, 16) == tiny_flops([2, 2], [256, 256]) == 13_107_200
    assert encoder_flops([1, 2], [100, 7], 64, 32, 4, 16) == tiny_flops([1, 2], [100, 7])
    assert encoder_flops([1, 1], [0, 0], 64, 32, 1, 16) == 4 * 64 * 32 * 2 * 16 * 2 + 2 * 16 * 16 * 32 * 2 * 2
    # BERT-base at 32 x 128: 12 layers of 4 x 768^2 projections, 2 x 12 heads x 128 x 64 attention, 2 x 768 x 3072 FFN
    assert encoder_flops([12] * 12, [3072] * 12, 768, 64, 32, 128) == 2 * 32 * 128 * 12 * (
        4 * 768 * 768 + 2 * 12 * 128 * 64 + 2 * 768 * 3072)


def test_structured_target_only_on_bert_base_at_50():
    from scripts.benchmarks.structured import target_fields

    assert target_fields("bert-base", 50, 1.6)["meets_target"] is True
    assert target_fields("bert-base", 50, 1.4)["meets_target"] is False
    assert "1.5" in target_fields("bert-base", 50, 1.4)["target"] and target_fields("bert-base", 50, 1)["target_speedup"] == 1.5
    for shape, sp in (("bert-base", 70), ("minilm", 50), ("tiny", 50)):
        assert target_fields(shape, sp, 9.0) == {"target": None, "meets_target": None}


@pytest.mark.slow  # shares the one bench --quick run (about 15 s)
def test_structured_shrinks_and_times_every_variant(quick):
    recs = structured_records(quick)
    assert set(recs) == {50, 70}
    for sp, rec in recs.items():
        assert rec["model"]["name"] == "tiny" and (rec["batch"], rec["seq"], rec["batch_small"]) == (4, 16, 1)
        assert abs(rec["sparsity"] - sp) < 5  # to the nearest unit: an 8,192-weight head is 8 % of the encoder
        heads, neurons = rec["heads_per_layer"], rec["neurons_per_layer"]
        assert len(heads) == len(neurons) == 2 and all(1 <= h <= 2 for h in heads)
        assert rec["heads_kept"] == sum(heads) and rec["neurons_kept"] == sum(neurons)
        assert (rec["heads_total"], rec["neurons_total"]) == (4, 512)
        # the pruned encoder weights are the pruned heads' and neurons' (4 x 32 x 64 and 2 x 64 each)
        pruned = (4 - sum(heads)) * 4 * 32 * 64 + (512 - sum(neurons)) * 2 * 64
        assert rec["sparsity"] == pytest.approx(100 * pruned / (2 * (4 * 64 * 64 + 2 * 64 * 256)), abs=1e-3)
        p = rec["params"]
        assert p["shrunk"] < p["dense"] and p["shrunk_encoder"] < p["dense_encoder"]
        removed = (4 - sum(heads)) * TINY_HEAD + (512 - sum(neurons)) * TINY_NEURON
        assert p["dense_encoder"] - p["shrunk_encoder"] == p["dense"] - p["shrunk"] == removed
        f = rec["flops"]
        assert (f["batch"], f["seq"]) == (4, 16) and f["dense"] == tiny_flops([2, 2], [256, 256])
        assert f["shrunk"] == tiny_flops(heads, neurons)
        assert rec["flops_ratio"] == pytest.approx(f["dense"] / f["shrunk"]) and rec["flops_ratio"] > 1
        assert set(rec["median_s"]) == set(rec["times_s"]) == {"infer", "infer1", "train"}
        assert set(rec["times_s"]["infer"]) == {"dense", "shrunk", "masked"}
        assert set(rec["times_s"]["infer1"]) == set(rec["times_s"]["train"]) == {"dense", "shrunk"}
        assert all(len(v) == 2 for t in rec["times_s"].values() for v in t.values())
        med = rec["median_s"]
        for key in ("infer", "infer1", "train"):
            assert rec[f"{key}_ratio"] == pytest.approx(med[key]["dense"] / med[key]["shrunk"], rel=2e-2)
        assert rec["masked_infer_ratio"] == pytest.approx(med["infer"]["dense"] / med["infer"]["masked"], rel=2e-2)
        assert "random-init" in rec["weights"] and "Q/K/V/O" in f["counted"]
    assert recs[50]["median_s"]["infer"]["dense"] == recs[70]["median_s"]["infer"]["dense"]  # one dense run
    assert recs[70]["flops"]["shrunk"] < recs[50]["flops"]["shrunk"]


def test_structured_masks_times_the_chosen_masks_on_their_checkpoint(tiny_bert_dir, tmp_path):
    """Figure structured_masks: each mask shrinks the real checkpoint to the heads and neurons it
    keeps, and is timed against the dense model."""
    import torch

    from utils.maskfile import save_mask
    from utils.models import load_model
    from utils.structured import structured_prune

    paths = {}
    for name, rate in (("half", 0.5), ("most", 0.7)):
        model = load_model("glue", str(tiny_bert_dir))
        masks = structured_prune(model, rate, how="magnitude")
        paths[name] = tmp_path / f"{name}.pt"
        save_mask(paths[name], masks, model=model, prunable_set="no_pooler", structure="heads_ffn")
    bench = load_bench()
    records = bench.main(["--quick", "--only", "structured_masks", "--model", str(tiny_bert_dir), "--masks",
                          ",".join(f"{n}={p}" for n, p in paths.items())])
    assert [r["mask"] for r in records] == ["half", "most"]
    cfg = load_model("glue", str(tiny_bert_dir)).config
    for rec, rate in zip(records, (0.5, 0.7)):
        masks = torch.load(paths[rec["mask"]], weights_only=True)
        heads = [int(masks[f"bert.encoder.layer.{i}.attention.self.query.weight_mask"].view(
            cfg.num_attention_heads, -1).any(1).sum()) for i in range(cfg.num_hidden_layers)]
        assert rec["heads_per_layer"] == heads and len(rec["neurons_per_layer"]) == cfg.num_hidden_layers
        assert abs(rec["sparsity"] - 100 * rate) < 5
        assert rec["params"]["shrunk"] < rec["params"]["dense"] and rec["flops_ratio"] > 1
        assert math.isfinite(rec["infer_ratio"]) and rec["infer_ratio"] > 0
    assert records[1]["params"]["shrunk"] < records[0]["params"]["shrunk"]
    with pytest.raises(UserError, match="needs --masks"):
        bench.main(["--quick", "--only", "structured_masks"])
    with pytest.raises(UserError, match="'nope' is not name=MASK.pt"):
        bench.main(["--quick", "--only", "structured_masks", "--masks", "nope"])
