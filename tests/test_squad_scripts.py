"""LT_squad.py and squad_trans.py end to end on a tiny checkpoint (SQuAD v1.1): IMP masks,
fixed-mask fine-tuning, masks across tasks, bad input, and a small MiniLM run when present."""
import json
import math

import pytest
import torch
from conftest import save_pretrained_bert
from safetensors.torch import load_file

import LT_glue
import LT_squad
import glue_trans
import oneshot
import squad_trans
from utils import pruning as P
from utils.errors import run_cli
from utils.models import load_model

# Tiny model: 2 layers x (4 x 32x32 + 2 x 32x64) + the 32x32 pooler = 17,408 prunable weights.
N_PRUNABLE = 17_408
PRUNED_10 = round(0.1 * N_PRUNABLE)  # 1,741
PRUNED_20 = PRUNED_10 + round((N_PRUNABLE - PRUNED_10) / 9)  # 3,482
S = 2  # --save_steps / --logging_steps of the short runs

CONTEXTS = [
    "the cat sat on the mat . the dog sat in the city .",
    "paris is the capital of france . it is a very good city on the river .",
    "the first man was good . the woman was not bad . they sat on a mat in paris .",
    "this movie is a great film . that film was very bad . he sat in the first year .",
]
QAS = [  # (context, question, answer); answer_start is computed from the context
    (0, "where is the cat ?", "on the mat"),
    (0, "who sat in the city ?", "the dog"),
    (1, "what is paris ?", "the capital of france"),
    (1, "where is paris ?", "on the river"),
    (2, "who was good ?", "the first man"),
    (2, "where sat they ?", "in paris"),
    (3, "what is this ?", "a great film"),
    (3, "which film was bad ?", "that film"),
]


def squad_json(shift_id=None):
    """A SQuAD v1.1 dict of the tiny paragraphs; ``shift_id`` gets an answer_start one too far."""
    paragraphs = []
    for c, context in enumerate(CONTEXTS):
        qas = []
        for n, (ci, question, answer) in enumerate(QAS):
            if ci != c:
                continue
            qid = f"q{n}"
            start = context.index(answer) + (1 if qid == shift_id else 0)
            qas.append({"id": qid, "question": question,
                        "answers": [{"text": answer, "answer_start": start}]})
        paragraphs.append({"context": context, "qas": qas})
    return {"version": "1.1", "data": [{"title": "Tiny", "paragraphs": paragraphs}]}


def write_json(path, obj):
    path.write_text(json.dumps(obj), encoding="utf-8")
    return path


def squad_argv(model_dir, files, out, steps=2 * S, save=S, extra=()):
    """Flags of a short SQuAD run (IMP or fixed mask) on the tiny files."""
    return ["--model_name_or_path", str(model_dir), "--train_file", str(files["train"]),
            "--predict_file", str(files["eval"]), "--output_dir", str(out),
            "--cache_dir", str(files["cache"]), "--do_train", "--evaluate_during_training",
            "--overwrite_output_dir", "--per_gpu_train_batch_size", "4", "--per_gpu_eval_batch_size", "8",
            "--learning_rate", "1e-3", "--max_seq_length", "48", "--doc_stride", "16",
            "--max_query_length", "16", "--max_steps", str(steps), "--save_steps", str(save),
            "--logging_steps", str(save), "--seed", "3", *extra]


def pruned(mask):
    return sum(int((~m).sum()) for m in mask.values())


def prunable_set_size(masks):
    return sum(m.numel() for m in masks.values())


def load_mask(path):
    return torch.load(path, weights_only=True)


@pytest.fixture(scope="module")
def squad_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("squad")
    return {"train": write_json(d / "train.json", squad_json()),
            "eval": write_json(d / "eval.json", squad_json()), "cache": d / "cache", "dir": d}


@pytest.fixture(scope="module")
def imp_run(tiny_bert_dir, squad_files, tmp_path_factory):
    """One LT_squad.py IMP run of 2 rounds shared by several tests: (output dir, argv, results)."""
    out = tmp_path_factory.mktemp("imp_squad")
    argv = squad_argv(tiny_bert_dir, squad_files, out)
    results = LT_squad.main(argv)
    return out, argv, results


@pytest.fixture(scope="module")
def glue_keys(tiny_bert_dir):
    return list(P.prunable_shapes(load_model("glue", str(tiny_bert_dir))))


def mrpc_dir(path):
    """A tiny MRPC folder in the GLUE layout (header with a UTF-8 BOM)."""
    path.mkdir()
    head = "\ufeffQuality\t#1 ID\t#2 ID\t#1 String\t#2 String\n"
    pairs = [("1", "the cat sat on the mat .", "a cat sat on the mat ."),
             ("0", "paris is a city .", "the dog was bad ."),
             ("1", "it is a good film .", "this is a great movie ."),
             ("0", "the river is very good .", "who was the first man ?")]
    rows = "".join(f"{lab}\t{i}\t{i + 100}\t{a}\t{b}\n" for i, (lab, a, b) in enumerate(pairs))
    (path / "train.tsv").write_text(head + rows, encoding="utf-8")
    (path / "dev.tsv").write_text(head + rows, encoding="utf-8")
    return path


def glue_argv(model_dir, data, out, cache, extra=()):
    return ["--task_name", "MRPC", "--data_dir", str(data), "--model_name_or_path", str(model_dir),
            "--output_dir", str(out), "--cache_dir", str(cache), "--do_train", "--overwrite_output_dir",
            "--max_seq_length", "32", "--per_gpu_train_batch_size", "2", "--seed", "5", *extra]


# --- LT_squad.py: IMP ------------------------------------------------------------------------------


def test_lt_squad_writes_nested_masks_and_reports(imp_run, glue_keys):
    out, _, results = imp_run
    m10 = load_mask(out / f"checkpoint-{S}" / "mask.pt")
    m20 = load_mask(out / f"checkpoint-{2 * S}" / "mask.pt")
    assert list(m10) == glue_keys and list(m20) == glue_keys and len(glue_keys) == 13
    assert prunable_set_size(m10) == N_PRUNABLE
    assert (pruned(m10), pruned(m20)) == (PRUNED_10, PRUNED_20) == (1741, 3482)
    assert all(not bool((~m10[k] & m20[k]).any()) for k in m10)  # pruned at 10 % stays pruned
    for step, count in ((S, PRUNED_10), (2 * S, PRUNED_20)):
        report = json.loads((out / f"checkpoint-{step}" / "mask_sparsity.json").read_text())
        assert report["matrices"] == 13 and report["prunable"]["pruned"] == count
        assert report["prunable"]["sparsity"] == pytest.approx(100.0 * count / N_PRUNABLE)
        assert (out / f"checkpoint-{step}" / "model.safetensors").is_file()  # the round's weights
    assert [(m["step"], m["pruning_event"]) for m in results["masks"]] == [(S, 1), (2 * S, 2)]
    assert [m["sparsity"] for m in results["masks"]] == pytest.approx([10.0, 20.0], abs=0.01)


def test_lt_squad_results_and_predictions(imp_run, squad_files):
    out, _, _ = imp_run
    results = json.loads((out / "results.json").read_text())
    assert results["task"] == "squad" and results["global_step"] == 2 * S
    evals = results["evaluations"]
    assert [e["step"] for e in evals] == [S, 2 * S]
    # evaluation comes before the pruning event of the same step: dense, then 10 %
    assert [e["sparsity"] for e in evals] == pytest.approx([0.0, 100.0 * PRUNED_10 / N_PRUNABLE])
    for e in evals:
        assert 0.0 <= e["exact"] <= e["f1"] <= 100.0 and e["total"] == len(QAS)
        # exact is a multiple of 100/8: a count of exact matches out of 8 questions
        assert e["exact"] * len(QAS) / 100.0 == pytest.approx(round(e["exact"] * len(QAS) / 100.0))
    contexts = {f"q{n}": CONTEXTS[c] for n, (c, _, _) in enumerate(QAS)}
    predictions = json.loads((out / "predictions.json").read_text())
    nbest = json.loads((out / "nbest_predictions.json").read_text())
    assert sorted(predictions) == sorted(nbest) == sorted(contexts)
    for qid, text in predictions.items():
        assert text and text in contexts[qid]
        assert nbest[qid][0]["text"] == text
        assert all(x["text"] in contexts[qid] for x in nbest[qid])
        assert sum(x["probability"] for x in nbest[qid]) == pytest.approx(1.0)


def test_squad_trans_without_flags_runs_lt_squad(imp_run, tmp_path, capsys):
    out, argv, _ = imp_run
    capsys.readouterr()
    other = tmp_path / "via_trans"
    squad_trans.main([str(other) if a == str(out) else a for a in argv])
    lines = capsys.readouterr().out.splitlines()
    notes = [ln for ln in lines if ln.startswith("squad_trans.py: no --dir")]
    assert len(notes) == 1 and "LT_squad.py" in notes[0]
    for step in (S, 2 * S):
        a = load_mask(out / f"checkpoint-{step}" / "mask.pt")
        b = load_mask(other / f"checkpoint-{step}" / "mask.pt")
        assert list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)
    assert json.loads((other / "results.json").read_text())["script"] == "squad_trans.py (IMP)"


@pytest.mark.parametrize("impl", ["plain", "hooks"])
def test_squad_trans_fixed_mask_stays_zero(imp_run, tiny_bert_dir, squad_files, tmp_path, impl):
    mask_path = imp_run[0] / f"checkpoint-{2 * S}" / "mask.pt"
    mask = load_mask(mask_path)
    out = tmp_path / "trans"
    steps = 3
    squad_trans.main(squad_argv(tiny_bert_dir, squad_files, out, steps=steps, save=steps,
                                extra=["--dir", "pre", "--mask_dir", str(mask_path), "--mask_impl", impl]))
    weights = load_file(str(out / f"checkpoint-{steps}" / "model.safetensors"))
    assert not any(k.endswith(("_mask", "_orig")) for k in weights)
    for key, m in mask.items():
        w = weights[key[: -len("_mask")]]
        assert w.shape == m.shape
        assert bool((w[~m] == 0).all())  # pruned entries exactly zero after training
        assert int((w[m] == 0).sum()) == 0  # the kept ones trained (none happens to be zero)
    record = torch.load(out / "result.pt", weights_only=True)
    assert isinstance(record[0], float)
    assert record[0] == pytest.approx(100.0 * PRUNED_20 / N_PRUNABLE)
    results = json.loads((out / "results.json").read_text())
    assert set(record[-1]) == {"exact", "f1", "total"} and record[-1]["total"] == len(QAS)
    assert results["final"]["tag"] == "final" and results["final"]["step"] == steps
    assert {k: results["final"][k] for k in record[-1]} == record[-1]
    assert results["initial_sparsity"] == record[0] and results["mask"] == str(mask_path)
    assert len(record) == 1 + 1 + 1  # sparsity, the evaluation at step 3 (logging 3), final


# --- masks across tasks ------------------------------------------------------------------------------


def test_glue_masks_load_into_squad_trans(tiny_bert_dir, squad_files, tmp_path):
    omp = tmp_path / "omp"
    oneshot.main(["--weight", "pre", "--model", "glue", "--rate", "0.3",
                  "--model_name_or_path", str(tiny_bert_dir), "--output_dir", str(omp)])
    imp = tmp_path / "imp_mrpc"
    LT_glue.main(glue_argv(tiny_bert_dir, mrpc_dir(tmp_path / "MRPC"), imp, tmp_path / "cache",
                           ["--max_steps", "2", "--save_steps", "2", "--logging_steps", "0"]))
    glue_mask = imp / "checkpoint-2" / "mask.pt"
    assert pruned(load_mask(glue_mask)) == PRUNED_10
    for mask, count in ((omp / "mask.pt", round(0.3 * N_PRUNABLE)), (glue_mask, PRUNED_10)):
        out = tmp_path / f"squad_{mask.parent.name}"
        squad_trans.main(squad_argv(tiny_bert_dir, squad_files, out, steps=1, save=0,
                                    extra=["--mask_dir", str(mask)]))
        results = json.loads((out / "results.json").read_text())
        assert results["initial_sparsity"] == pytest.approx(100.0 * count / N_PRUNABLE)
        assert results["final"]["sparsity"] == pytest.approx(100.0 * count / N_PRUNABLE)
        assert results["final"]["total"] == len(QAS)


def test_squad_mask_loads_into_glue_trans(imp_run, tiny_bert_dir, tmp_path):
    mask_path = imp_run[0] / f"checkpoint-{2 * S}" / "mask.pt"
    report = json.loads((mask_path.parent / "mask_sparsity.json").read_text())
    out = tmp_path / "mrpc"
    glue_trans.main(glue_argv(tiny_bert_dir, mrpc_dir(tmp_path / "MRPC"), out, tmp_path / "cache",
                              ["--mask_dir", str(mask_path), "--max_steps", "1", "--save_steps", "0"]))
    results = json.loads((out / "results.json").read_text())
    assert results["initial_sparsity"] == pytest.approx(report["prunable"]["sparsity"])
    assert results["initial_sparsity"] == pytest.approx(100.0 * PRUNED_20 / N_PRUNABLE)
    assert results["final"]["sparsity"] == pytest.approx(results["initial_sparsity"])
    assert 0.0 <= results["final"]["acc"] <= 1.0


# --- bad input -----------------------------------------------------------------------------------------


def one_error_line(capsys):
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    return err


def test_bad_squad_files_exit_2(tiny_bert_dir, squad_files, tmp_path, capsys):
    cases = {
        "not_squad.json": lambda p: write_json(p, {"version": "1.1", "articles": []}),
        "invalid.json": lambda p: p.write_text('{"data": [', encoding="utf-8"),
    }
    for name, make in cases.items():
        bad = tmp_path / name
        make(bad)
        files = dict(squad_files, train=bad)
        with pytest.raises(SystemExit) as exc:
            run_cli(LT_squad.main, squad_argv(tiny_bert_dir, files, tmp_path / ("out_" + name)))
        assert exc.value.code == 2
        err = one_error_line(capsys)
        assert str(bad) in err
    # the wrong-shape message in full, through squad_trans.py this time
    files = dict(squad_files, train=tmp_path / "not_squad.json")
    with pytest.raises(SystemExit):
        run_cli(squad_trans.main, squad_argv(tiny_bert_dir, files, tmp_path / "o1", extra=["--dir", "pre"]))
    err = one_error_line(capsys)
    assert f"{tmp_path / 'not_squad.json'} is not SQuAD v1.1: 'data' missing" in err


def test_invalid_json_names_file_and_line(tiny_bert_dir, squad_files, tmp_path, capsys):
    bad = tmp_path / "broken.json"
    bad.write_text('{"version": "1.1",\n "data": [}', encoding="utf-8")
    with pytest.raises(SystemExit) as exc:
        run_cli(squad_trans.main, squad_argv(tiny_bert_dir, dict(squad_files, eval=bad), tmp_path / "o",
                                             extra=["--dir", "pre"]))
    assert exc.value.code == 2
    err = one_error_line(capsys)
    assert err.startswith(f"error: {bad} is not valid JSON: line 2")


def test_missing_train_file_exit_2(tiny_bert_dir, squad_files, tmp_path, capsys):
    missing = tmp_path / "nope.json"
    with pytest.raises(SystemExit) as exc:
        run_cli(LT_squad.main, squad_argv(tiny_bert_dir, dict(squad_files, train=missing), tmp_path / "o1"))
    assert exc.value.code == 2
    assert one_error_line(capsys) == f"error: SQuAD file {missing} does not exist\n"
    argv = squad_argv(tiny_bert_dir, squad_files, tmp_path / "o2")
    i = argv.index("--train_file")
    with pytest.raises(SystemExit) as exc:
        run_cli(LT_squad.main, argv[:i] + argv[i + 2:])  # no --train_file at all
    assert exc.value.code == 2
    assert one_error_line(capsys).startswith("error: --train_file (or --data_dir) is required")


def test_mask_of_another_model_size_exit_2(tiny_bert_dir, squad_files, tmp_path, capsys):
    big = save_pretrained_bert(tmp_path / "bert4", num_layers=4)
    oneshot.main(["--rate", "0.1", "--model_name_or_path", str(big), "--output_dir", str(tmp_path / "m4")])
    mask = tmp_path / "m4" / "mask.pt"
    assert len(load_mask(mask)) == 25
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        run_cli(squad_trans.main, squad_argv(tiny_bert_dir, squad_files, tmp_path / "o",
                                             extra=["--dir", "pre", "--mask_dir", str(mask)]))
    assert exc.value.code == 2
    err = one_error_line(capsys)
    assert err.startswith(f"error: {mask} does not fit this model (13 prunable matrices)")
    assert "12 extra key(s)" in err


def test_shifted_answer_skipped_with_warning(tiny_bert_dir, tmp_path, capsys):
    files = {"train": write_json(tmp_path / "train.json", squad_json(shift_id="q2")),
             "eval": write_json(tmp_path / "eval.json", squad_json(shift_id="q2")),
             "cache": tmp_path / "cache"}
    out = tmp_path / "out"
    squad_trans.main(squad_argv(tiny_bert_dir, files, out, steps=2, save=0, extra=["--dir", "pre"]))
    captured = capsys.readouterr()
    warnings = [ln for ln in captured.err.splitlines() if ln.startswith("warning:")]
    assert len(warnings) == 1  # training file only: evaluation keeps every question
    assert "question q2" in warnings[0] and str(files["train"]) in warnings[0]
    assert f"SQuAD {files['train']}: {len(QAS) - 1} examples" in captured.out
    assert "1 skipped questions" in captured.out
    results = json.loads((out / "results.json").read_text())
    assert results["global_step"] == 2 and results["final"]["total"] == len(QAS)
    assert "q2" in json.loads((out / "predictions.json").read_text())


# --- MiniLM on the real SQuAD split ---------------------------------------------------------------------


@pytest.mark.integration
def test_minilm_squad_finetune_and_imp(shared_data, tmp_path, capsys):
    model = shared_data / "models" / "all-MiniLM-L6-v2"
    common = ["--model_name_or_path", str(model), "--cache_dir", str(tmp_path / "cache"),
              "--train_file", str(shared_data / "squad" / "train-split-of-dev-v1.1.json"),
              "--predict_file", str(shared_data / "squad" / "eval-split-of-dev-v1.1.json"),
              "--do_train", "--evaluate_during_training", "--do_lower_case", "--overwrite_output_dir",
              "--max_seq_length", "128", "--doc_stride", "64", "--max_train_samples", "48",
              "--max_eval_samples", "20", "--max_steps", "4", "--save_steps", "2", "--logging_steps", "2",
              "--per_gpu_train_batch_size", "8", "--per_gpu_eval_batch_size", "8", "--seed", "57"]
    ft = tmp_path / "ft"
    squad_trans.main(common + ["--output_dir", str(ft), "--dir", "pre"])
    results = json.loads((ft / "results.json").read_text())
    assert [e["step"] for e in results["evaluations"]] == [2, 4, 4]  # two in training, final
    for e in results["evaluations"]:
        assert 0.0 <= e["exact"] <= 100.0 and 0.0 <= e["f1"] <= 100.0 and e["total"] == 20
        assert e["sparsity"] == 0.0
    assert len(json.loads((ft / "predictions.json").read_text())) == 20
    imp = tmp_path / "imp"
    squad_trans.main(common + ["--output_dir", str(imp)])
    assert capsys.readouterr().out.count("squad_trans.py: no --dir") == 1
    total = 10_764_288  # MiniLM-L6's prunable set (37 matrices)
    first_event = round(0.1 * total)
    for step, count in ((2, first_event), (4, first_event + round((total - first_event) / 9))):
        mask = load_mask(imp / f"checkpoint-{step}" / "mask.pt")
        assert len(mask) == 37 and prunable_set_size(mask) == total
        assert pruned(mask) == count
    assert math.isclose(json.loads((imp / "results.json").read_text())["masks"][-1]["sparsity"], 20.0,
                        abs_tol=0.01)
