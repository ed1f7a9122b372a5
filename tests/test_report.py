"""report.py on result folders with known numbers (written here in the layout the scripts
write): means and stds, the ticket sparsity under both rules, the transfer matrix, unfinished
runs and missing cells, figures and their data."""
import csv
import gzip
import json
import math
from pathlib import Path

import pytest

import report
from utils.errors import UserError
from utils.figures import plot_curve
from utils.report import write_report
from utils.runs import collect, settings_of
from utils.stats import mean_std
from utils.tables import curves, summarise, table2, transfer_matrices

BASELINES = {"sts-b": ("pearson", 0.0), "mrpc": ("acc", 68.4), "cola": ("mcc", 0.0)}


def write_run(folder, task, score, seed=1, mask=None, init="pre", pertub=None, finished=True,
              script="glue_trans.py", extra=None):
    """A fine-tuning run as glue_trans.py writes it: args.json (with the loaded mask's record),
    results.json and, when finished, complete.json."""
    metric, base = BASELINES[task]
    folder.mkdir(parents=True)
    provenance = {"checkpoint": {"name_or_path": "m", "config_sha256": "c", "init": init}}
    if mask is not None:
        provenance["mask"] = {"path": "somewhere/mask.pt", "sha256": mask.get("sha256", "x"), "record": mask}
    if pertub is not None:
        provenance["weight_pertub"] = {"path": "tmp/shuffle_weight.pt", "sha256": "p", "record": pertub}
    args = {"script": script, "seed": seed, "dir": init, "task_name": task, "provenance": provenance, **(extra or {})}
    value = score / (1 if task == "squad" else 100)
    final = {"step": 10, "sparsity": 0.0, metric: value, "tag": "final"}
    baseline = {"metric": metric, "value": base, "what": "test"}
    results = {"script": script, "kind": "finetune", "task": task, "evaluations": [final], "final": final,
               "baseline": baseline, "global_step": 10}
    (folder / "args.json").write_text(json.dumps(args))
    (folder / "results.json").write_text(json.dumps(results))
    if finished:
        (folder / "complete.json").write_text(json.dumps({
            "task": task, "kind": "finetune", "script": script,
            "headline": {"metric": metric, "value": score, "source": "final"}, "baseline": baseline}))


def imp_mask(task, sparsity, pset="no_pooler"):
    return {"kind": "imp", "task": task, "sparsity": sparsity, "prunable_set": pset, "sha256": f"{task}{sparsity}"}


def oneshot_mask(kind, sparsity, pset="no_pooler"):
    return {"kind": kind, "task": None, "sparsity": sparsity, "prunable_set": pset, "sha256": f"{kind}{sparsity}"}


@pytest.fixture
def runs(tmp_path):
    r = tmp_path / "runs"
    # STS-B: full 80/84/82 -> 82 ± 2; tickets 83 (50 %), 81 (60 %), 79.5 (70 %)
    for seed, s in ((1, 80.0), (2, 84.0), (3, 82.0)):
        write_run(r / f"a{seed}", "sts-b", s, seed=seed)
    for sp, s in ((50, 83.0), (60, 81.0), (70, 79.5)):
        write_run(r / f"t{sp}", "sts-b", s, mask=imp_mask("sts-b", sp + 1e-6))
    write_run(r / "r60a", "sts-b", 30.0, seed=1, mask=oneshot_mask("random", 60.0))
    write_run(r / "r60b", "sts-b", 34.0, seed=2, mask=oneshot_mask("random", 60.0))
    write_run(r / "re60", "sts-b", 10.0, init="rand", mask=imp_mask("sts-b", 60.0))
    write_run(r / "sh60", "sts-b", 40.0, mask=imp_mask("sts-b", 60.0), pertub={"kind": "shuffle"})
    write_run(r / "omp70", "sts-b", 75.0, mask=oneshot_mask("omp", 70.0))
    # MRPC: full 85/86 -> 85.5 ± 0.707; the only ticket (50 %) 80 -> none matches
    write_run(r / "m1", "mrpc", 85.0, seed=1)
    write_run(r / "m2", "mrpc", 86.0, seed=2)
    write_run(r / "m50", "mrpc", 80.0, mask=imp_mask("mrpc", 50.0))
    # CoLA: full 50/52/54 -> 52 ± 2; 49 (50 %) no, 51 (60 %) yes, 45 (70 %) no
    for seed, s in ((1, 50.0), (2, 52.0), (3, 54.0)):
        write_run(r / "c" / f"d{seed}", "cola", s, seed=seed)
    for sp, s in ((50, 49.0), (60, 51.0), (70, 45.0)):
        write_run(r / "c" / f"t{sp}", "cola", s, mask=imp_mask("cola", float(sp)))
    # transfer at 70 %: STS-B ticket on MRPC 85.0 (matching: >= 84.79), MRPC ticket on STS-B 70
    write_run(r / "x1", "mrpc", 85.0, mask=imp_mask("sts-b", 70.0))
    write_run(r / "x2", "sts-b", 70.0, mask=imp_mask("mrpc", 70.0))
    # one unfinished run
    write_run(r / "killed", "mrpc", 50.0, mask=imp_mask("mrpc", 60.0), finished=False)
    return r


def test_constant_prediction_counts_zero(tmp_path):
    r = tmp_path / "runs"
    for seed, s in ((1, 80.0), (2, 84.0)):
        write_run(r / f"d{seed}", "sts-b", s, seed=seed)
    write_run(r / "t", "sts-b", float("nan"), mask=imp_mask("sts-b", 50.0))
    finished, _ = collect(r)
    assert [x["score"] for x in finished if x["path"] == "t"] == [0.0]
    text = report.main([str(r), "--out", str(tmp_path / "o"), "--no_figures"])
    assert "1 run(s) predicted a constant on every dev row" in text and ": t." in text
    assert "| 50% | 0.0 |" in text


def test_pooled_runs_that_differ_are_named(runs, tmp_path):
    """The fixture's runs share their settings: no note. A dense run at another learning rate
    and precision, and a repeated seed, are named. The model is the weights' hash; a re-init
    run has none (its random weights are not another model)."""
    text = report.main([str(runs), "--out", str(tmp_path / "o0"), "--no_figures"])
    assert "Pooled although they differ" not in text
    write_run(runs / "lr", "cola", 60.0, seed=3, extra={"learning_rate": 2e-5, "amp_dtype": "torch.float16"})
    text = report.main([str(runs), "--out", str(tmp_path / "o1"), "--no_figures"])
    pooled = text.split("Pooled although they differ")[1].split("\n## ")[0]
    notes = [line for line in pooled.splitlines() if line.startswith("- CoLA")]
    assert notes == [
        "- CoLA: learning_rate differs: None (6: c/d1, c/d2, c/d3, …); 2e-05 (1: lr)",
        "- CoLA: amp_dtype differs: None (6: c/d1, c/d2, c/d3, …); torch.float16 (1: lr)",
        "- CoLA full model: seed 3 × 2 (c/d3, lr); its ± is not a spread over seeds"]
    pre = {"provenance": {"checkpoint": {"init": "pre", "weights_sha256": "0123456789abcdef"}},
           "per_gpu_train_batch_size": 8, "world_size": 4, "gradient_accumulation_steps": 2}
    assert settings_of(pre)["model"] == "0123456789ab" and settings_of(pre)["global_batch"] == 64
    assert settings_of({"dir": "rand", "provenance": {"checkpoint": {"init": "rand"}}})["model"] is None
    # a dev-row cap above the rows evaluated (MRPC: 500 of 408) is no cap; below them it is one
    mrpc = {"what": "majority class (label 1, 279 of 408)"}
    assert settings_of({"max_eval_samples": 500}, mrpc)["max_eval_samples"] is None
    assert settings_of({"max_eval_samples": 300}, mrpc)["max_eval_samples"] == 300
    capped = {"what": "majority class (label 1, 354 of 500)"}  # CoLA: 500 of its 1,043 rows
    assert settings_of({"max_eval_samples": 500}, capped)["max_eval_samples"] == 500


def test_wall_time_per_task(tmp_path):
    r = tmp_path / "runs"
    for name, task, wall in (("d1", "sts-b", 1800), ("d2", "sts-b", 3600), ("m", "mrpc", 900)):
        write_run(r / name, task, 80.0)
        done = r / name / "complete.json"
        done.write_text(json.dumps({**json.loads(done.read_text()), "wall_time_s": wall}))
    (r / "imp").mkdir()
    (r / "imp" / "args.json").write_text(json.dumps({"script": "LT_glue.py", "task_name": "sts-b"}))
    (r / "imp" / "complete.json").write_text(json.dumps({"task": "sts-b", "kind": "imp", "wall_time_s": 7200}))
    text = report.main([str(r), "--out", str(tmp_path / "o"), "--no_figures"])
    assert "| MRPC | 0, 0.00 h | 1, 0.25 h | 0.25 h |" in text
    assert "| STS-B | 1, 2.00 h | 2, 1.50 h | 3.50 h |" in text
    assert "| all |  |  | 3.75 h (4 runs) |" in text


def test_mean_and_sample_std():
    assert mean_std([80, 84, 82]) == (82.0, 2.0, 3)
    m, s, n = mean_std([85, 86])
    assert (m, n) == (85.5, 2) and s == pytest.approx(math.sqrt(0.5))
    assert mean_std([7.0]) == (7.0, None, 1) and mean_std([]) == (None, None, 0)


def test_table2_rules(runs):
    finished, unfinished = collect(runs)
    assert len(finished) == 22 and [u["path"] for u in unfinished] == ["killed"]
    rows = {r["task"]: r for r in table2(summarise(finished))}
    sts = rows["sts-b"]
    assert (sts["full_mean"], sts["full_std"], sts["full_n"]) == (82.0, 2.0, 3)
    assert sts["levels"] == [50, 60, 70]
    assert (sts["paper_sparsity"], sts["paper_all_lower"], sts["paper_ticket"]) == (60, True, 81.0)
    assert (sts["strict_sparsity"], sts["strict_ticket"]) == (50, 83.0)
    assert sts["random"][0] == 32.0 and sts["random"][1] == pytest.approx(math.sqrt(8)) and sts["random"][2] == 2
    assert sts["reinit"] == (10.0, None, 1) and sts["shuffled"] == (40.0, None, 1)
    assert sts["omp"] == (None, None, 0)  # OMP ran at 70 %, not at the ticket's 60 %
    assert sts["baseline"] == 0.0 and sts["metric"] == "pearson" and sts["set"] == "no_pooler"
    mrpc = rows["mrpc"]
    assert mrpc["paper_sparsity"] is None and mrpc["strict_sparsity"] is None and mrpc["paper_ticket"] is None
    assert (mrpc["shown_at"], mrpc["ticket_shown"]) == (50, 80.0)
    assert mrpc["baseline"] == 68.4
    cola = rows["cola"]
    assert (cola["paper_sparsity"], cola["paper_all_lower"], cola["strict_sparsity"]) == (60, False, None)


def test_curves_and_transfer(runs):
    finished, _ = collect(runs)
    summary = summarise(finished)
    cv = curves(summary)
    sts = cv[("sts-b", "no_pooler", "")]
    assert sts["levels"] == [50, 60, 70]
    assert sts["series"]["imp"] == {50: (83.0, None, 1), 60: (81.0, None, 1), 70: (79.5, None, 1)}
    assert sts["series"]["omp"] == {70: (75.0, None, 1)}
    matrices = transfer_matrices(summary, 70)
    assert list(matrices) == ["no_pooler"]
    sources, targets, cells = matrices["no_pooler"]
    assert targets == ["cola", "mrpc", "sts-b"] and sources == ["CoLA", "MRPC", "STS-B", "OMP"]
    assert cells[("STS-B", "mrpc")] == (85.0, None, 1, True)
    assert cells[("MRPC", "sts-b")] == (70.0, None, 1, False)
    assert cells[("STS-B", "sts-b")] == (79.5, None, 1, False)  # 79.5 < 82 - 2
    assert cells[("OMP", "sts-b")] == (75.0, None, 1, False)
    assert ("OMP", "mrpc") not in cells and ("MRPC", "mrpc") not in cells


def test_markdown_and_csv(runs, tmp_path, capsys):
    out = tmp_path / "rep"
    text = report.main([str(runs), "--out", str(out)])
    printed = capsys.readouterr().out
    assert text in printed
    assert "# Lottery-ticket report (22 finished runs, 1 unfinished)" in text
    assert "each run's final evaluation" in text
    assert ("| STS-B (Pearson) | no_pooler | — | 0.0 | 82.0 ± 2.0 (n=3) | 60% | yes (tried 50–60%) | 81.0 | "
            "32.0 ± 2.8 (n=2) | 10.0 | — | 40.0 | 50% | 83.0 |") in text
    assert ("| MRPC (accuracy) | no_pooler | — | 68.4 | 85.5 ± 0.7 (n=2) | none | — | at 50%: 80.0 | — | — | — | — | "
            "none | — |") in text
    assert "| CoLA (Matthews) | no_pooler | — | 0.0 | 52.0 ± 2.0 (n=3) | 60% | no (tried 50–60%) | 51.0 |" in text
    assert "| STS-B | missing | 85.0 * | 79.5 |" in text  # transfer row of the STS-B ticket
    assert "- transfer OMP → MRPC (set no_pooler)" in text and "- transfer MRPC → MRPC (set no_pooler)" in text
    # every method missing at a sparsity is listed, OMP and shuffled included
    assert "- STS-B no_pooler 50%: random pruning" in text and "- STS-B no_pooler 50%: OMP" in text
    assert "- MRPC no_pooler 50%: shuffled weights" in text
    assert "- killed: glue_trans.py on MRPC, no complete.json (last step 10)" in text
    with open(out / "table2.csv") as f:
        rows = {r["task"]: r for r in csv.DictReader(f)}
    assert rows["sts-b"]["matching_sparsity"] == "60" and rows["sts-b"]["full_std"] == "2.0"
    assert rows["mrpc"]["matching_sparsity"] == "" and rows["mrpc"]["scores_at"] == "50" and rows["mrpc"]["ticket"] == "80.0"
    assert (out / "report.md").read_text() == text


def test_figures_data_and_files(runs, tmp_path):
    _, _, figures = write_report(runs, tmp_path / "figs")
    names = sorted(p.name for p in figures)
    assert names == ["curve_cola_no_pooler.png", "curve_mrpc_no_pooler.png", "curve_sts-b_no_pooler.png",
                     "transfer_70_no_pooler.png"]
    for p in figures:
        data = p.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    finished, _ = collect(runs)
    summary = summarise(finished)
    entry = curves(summary)[("sts-b", "no_pooler", "")]
    series = plot_curve(summary, "sts-b", "no_pooler", entry, tmp_path / "one.png")
    assert sorted(series) == sorted(["full model", "trivial baseline", "IMP ticket", "random pruning",
                                     "random re-init", "shuffled weights", "OMP"])
    assert series["IMP ticket"] == [(50, 83.0), (60, 81.0), (70, 79.5)]
    assert series["random pruning"] == [(60, 32.0)]
    assert series["trivial baseline"] == [(50, 0.0), (60, 0.0), (70, 0.0)]


def test_refuses_empty_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no runs found"):
        collect(tmp_path / "empty")
    with pytest.raises(SystemExit) as exc:
        from utils.errors import run_cli

        run_cli(report.main, [str(tmp_path / "empty")])
    assert exc.value.code == 2


def structured_record(shape, layers, hidden, sp, ratios, target=None, meets=None, quick=False):
    """A ``structured`` record as scripts/bench.py writes it (known numbers)."""
    infer, infer1, train = ratios
    return {"figure": "structured", "model": {"name": shape, "layers": layers, "hidden": hidden, "heads": 12,
                                              "intermediate": 4 * hidden, "vocab": 30522},
            "sparsity_target": sp, "sparsity": sp - 0.04, "batch": 32, "seq": 128, "batch_small": 1, "steps": 5,
            "warmup": 1, "heads_kept": 70, "heads_total": 144, "neurons_kept": 18000, "neurons_total": 36864,
            "params": {"dense": 109_483_778, "dense_encoder": 85_054_464, "shrunk": 66_984_322,
                       "shrunk_encoder": 42_555_008},
            "flops": {"batch": 32, "seq": 128, "dense": 2_850_000_000_000, "shrunk": 1_425_000_000_000,
                      "counted": "encoder matmuls"},
            "flops_ratio": 2.0, "median_s": {"infer": {"dense": 4.0, "shrunk": 4.0 / infer, "masked": 4.1},
                                             "infer1": {"dense": 0.2, "shrunk": 0.2 / infer1},
                                             "train": {"dense": 12.0, "shrunk": 12.0 / train}},
            "infer_ratio": infer, "infer1_ratio": infer1, "train_ratio": train, "masked_infer_ratio": 4.0 / 4.1,
            "target": target, **({"target_speedup": 1.5} if target else {}), "meets_target": meets, "quick": quick,
            "machine": {"cpu": "AMD EPYC", "cpu_count": 2, "cpus_usable": 2, "loadavg_1m": 0.5, "torch": "2.13.0+cpu",
                        "torch_threads": 2, "device": "cpu"}}


def test_bench_structured_speedups_table_and_csv(runs, tmp_path, capsys):
    bench = tmp_path / "bench.json"
    records = [{"figure": "mask_size", "ratio": 4.0, "meets_target": True},  # other figures are ignored
               structured_record("bert-base", 12, 768, 50, (1.8, 1.25, 1.7), target="... >= 1.5 ...", meets=True),
               structured_record("bert-base", 12, 768, 70, (2.9, 1.5, 2.6))]
    bench.write_text(json.dumps(records))
    out = tmp_path / "rep"
    text = report.main([str(runs), "--out", str(out), "--no_figures", "--bench", str(bench)])
    printed = capsys.readouterr().out
    assert "structured_speed.csv" in printed.splitlines()[-1]
    section = text[text.index("## Structured speed-ups"):]
    assert ("| shape | encoder sparsity | heads kept | FFN neurons kept | params dense → shrunk (encoder) | "
            "FLOPs dense / shrunk | inference 32×128 | inference 1×128 | train step 32×128 | "
            "masked, inference 32×128 | target |") in section
    assert ("| bert-base (12×768) | 50.0% | 70/144 | 18000/36864 | 109.5M → 67.0M (85.1M → 42.6M) | "
            "2.00× (2850.0 GFLOP → 1425.0 GFLOP) | **1.80×** | 1.25× | 1.70× | 0.98× | ≥ 1.5×: yes |") in section
    assert "| bert-base (12×768) | 70.0% |" in section and "| **2.90×** | 1.50× | 2.60× | 0.98× | — |" in section
    assert "Machine: AMD EPYC, 2 CPUs usable, torch 2.13.0+cpu with 2 thread(s), cpu, load 0.5." in section
    assert (out / "report.md").read_text() == text
    with open(out / "structured_speed.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r["shape"], r["sparsity_target"], r["infer_ratio"], r["train_ratio"], r["meets_target"]) for r in rows] == [
        ("bert-base", "50", "1.8", "1.7", "True"), ("bert-base", "70", "2.9", "2.6", "")]
    assert rows[0]["params_shrunk"] == "66984322" and rows[0]["flops_ratio"] == "2.0"
    assert rows[1]["train_shrunk_s"] == str(round(12.0 / 2.6, 4)) and rows[0]["masked_infer_ratio"] == "0.9756"
    # bench.py's stdout (JSON lines) reads the same; no structured records: a note and an empty CSV
    lines = tmp_path / "bench.jsonl"
    lines.write_text("".join(json.dumps(r) + "\n" for r in records))
    assert write_report(runs, None, bench=lines)[1]["structured_speed"] == write_report(runs, None, bench=bench)[1]["structured_speed"]
    lines.write_text(json.dumps(records[0]) + "\n")
    text, tables, _ = write_report(runs, None, bench=lines)
    assert "(no `structured` figure in the benchmark file)" in text and tables["structured_speed"] == []


def test_bench_file_errors(runs, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("not json")
    incomplete = tmp_path / "incomplete.json"
    rec = structured_record("minilm", 6, 384, 50, (1.5, 1.2, 1.4))
    del rec["params"]
    incomplete.write_text(json.dumps([rec]))
    for path, match in ((bad, "not benchmark records"), (tmp_path / "missing.json", "cannot read it"),
                        (incomplete, "structured record 1 is incomplete .KeyError: 'params'.")):
        with pytest.raises(UserError, match=match):
            write_report(runs, None, bench=path)


def test_slim_copy_keeps_records_and_chosen_tickets_gzipped(tmp_path):

    import torch

    from utils.archive import slim_copy

    src = tmp_path / "runs"
    imp = src / "mrpc" / "imp_no_pooler"
    masks = []
    for step, sp in ((63, 10.0), (315, 50.0), (441, 70.0)):
        ck = imp / f"checkpoint-{step}"
        ck.mkdir(parents=True)
        torch.save({"bert.pooler.dense.weight_mask": torch.rand(64, 64) > 0.5}, ck / "mask.pt")
        (ck / "mask_provenance.json").write_text(json.dumps({"kind": "imp", "sparsity": sp}))
        (ck / "mask_sparsity.json").write_text("{}")
        (ck / "model.safetensors").write_bytes(b"weights")
        masks.append({"step": step, "sparsity": sp, "path": f"checkpoint-{step}/mask.pt"})
    (imp / "args.json").write_text("{}")
    (imp / "results.json").write_text(json.dumps({"kind": "imp", "masks": masks}))
    (imp / "complete.json").write_text("{}")
    (imp / "imp.log").write_text("log")
    dst = tmp_path / "slim"
    n = slim_copy(src, dst, mask_levels=["50", "70"])
    files = sorted(str(p.relative_to(dst)) for p in dst.rglob("*") if p.is_file())
    assert n == len(files) == 3 + 3 * 2 + 2  # args/results/complete, 3 x 2 sidecars, 2 tickets
    assert "mrpc/imp_no_pooler/checkpoint-315/mask.pt.gz" in files
    assert "mrpc/imp_no_pooler/checkpoint-441/mask.pt.gz" in files
    assert not any(f.endswith((".safetensors", ".log", "mask.pt")) or "checkpoint-63/mask.pt" in f for f in files)
    for step in (315, 441):
        packed = dst / "mrpc" / "imp_no_pooler" / f"checkpoint-{step}" / "mask.pt.gz"
        assert gzip.decompress(packed.read_bytes()) == (imp / f"checkpoint-{step}" / "mask.pt").read_bytes()
    again = tmp_path / "slim_again"  # the same masks pack to the same bytes (no churn in git)
    slim_copy(src, again, mask_levels=[50, 70])
    for step in (315, 441):
        rel = Path("mrpc") / "imp_no_pooler" / f"checkpoint-{step}" / "mask.pt.gz"
        assert (again / rel).read_bytes() == (dst / rel).read_bytes()
    # without levels: JSON only
    assert slim_copy(src, tmp_path / "json_only") == 9
    # a structured IMP run's masks are small: with levels, every event of it is kept
    (imp / "results.json").write_text(json.dumps({"kind": "imp", "structure": "heads_ffn", "masks": masks}))
    slim_copy(src, tmp_path / "structured", mask_levels=["70"])
    packed = sorted(str(p.relative_to(tmp_path / "structured")) for p in (tmp_path / "structured").rglob("*.gz"))
    assert packed == [f"mrpc/imp_no_pooler/checkpoint-{k}/mask.pt.gz" for k in (315, 441, 63)]
    assert slim_copy(src, tmp_path / "structured_json") == 9  # still JSON only without levels
    # the flag: levels only with --slim_copy, in percent
    for argv in (["r", "--slim_masks", "50"], ["r", "--slim_copy", "d", "--slim_masks", "half"]):
        with pytest.raises(SystemExit) as e:
            report.parse_args(argv)
        assert e.value.code == 2
