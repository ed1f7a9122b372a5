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
FIGURES = {"masked_step", "prune_speed", "mask_size", "glue_padding", "mixed_precision", "report_speed", "state_write"}
PRUNE_SMALL = 4 * (4 * 64 * 64 + 2 * 64 * 256) + 64 * 64  # 4 layers, hidden 64, inter 256, pooler


@pytest.fixture(scope="module")
def quick():
    """Every JSON line of one ``bench.py --quick`` run, as a subprocess (as users run it)."""
    proc = subprocess.run([sys.executable, str(BENCH), "--quick"], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    return {rec["figure"]: rec for rec in lines}, lines


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


def test_all_figures_once_each_with_machine_info(quick):
    by_figure, lines = quick
    assert [rec["figure"] for rec in lines] == [
        "masked_step", "prune_speed", "mask_size", "glue_padding", "mixed_precision", "report_speed",
        "state_write"]
    assert set(by_figure) == FIGURES
    for rec in lines:
        assert rec["quick"] is True
        assert isinstance(rec["meets_target"], bool) and isinstance(rec["target"], str)
        m = rec["machine"]
        assert m["cpu_count"] >= 1 and m["torch_threads"] == 1  # --quick runs single-threaded
        assert m["device"] in ("cpu", "cuda") and ("gpu" in m) == (m["device"] == "cuda")
        assert m["torch"].startswith("2.") and m["platform"]


def test_every_ratio_is_a_positive_finite_float(quick):
    _, lines = quick
    found = [(f"{rec['figure']}{p}", v) for rec in lines for p, v in ratios(rec)]
    cuda = lines[0]["machine"]["device"] == "cuda"
    # masked_step 4 (2 + 2 paired), prune 3, mask 2, glue 1, mixed precision 2 (3 with fp16),
    # state_write 2 (throughput and wait)
    assert len(found) == 14 + cuda
    for where, value in found:
        assert isinstance(value, float) and math.isfinite(value) and value > 0, where


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


def test_padding_to_longest_keeps_the_metrics(quick):
    rec = quick[0]["glue_padding"]
    assert rec["examples"] == 2 * 8 and rec["batch"] == 8
    assert rec["metrics_agree"] is True
    longest, fixed = rec["metrics"]["longest"], rec["metrics"]["fixed128"]
    assert longest["acc"] == fixed["acc"] and longest["f1"] == fixed["f1"]
    assert fixed and set(longest) == set(fixed) >= {"acc", "f1", "eval_loss"}
    assert rec["mean_padded_len"]["fixed128"] == 128.0
    assert 9 <= rec["mean_padded_len"]["longest"] <= 51  # pairs of 3-24 words + 3 special tokens


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
        "glue_padding, mixed_precision, report_speed, state_write)"]


def test_report_speed_reads_every_generated_run(quick):
    rec = quick[0]["report_speed"]
    assert rec["runs"] == 50 and rec["finished"] == 49  # run 5 of every 97 is left unfinished
    assert rec["figures"] >= 10 and rec["seconds"]["tables_only"] > 0 and isinstance(rec["meets_target"], bool)


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
