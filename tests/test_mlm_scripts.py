"""LT_pretrain.py and pretrain_trans.py end to end on a tiny checkpoint (masked-language
modelling): IMP masks from step 0, rewinding, masks into the other tasks, seeded evaluation,
block counts, bad input, and a small MiniLM run when present."""
import dataclasses
import json
import math
import random

import pytest
import torch
from conftest import WORDS, make_tokenizer

import LT_pretrain
import glue_trans
import pretrain_trans
import squad_trans
from utils import pruning as P
from utils.errors import run_cli
from utils.lottery import run_imp, start_run
from utils.models import load_model
from utils.text import load_text_dataset, mlm_experiment

# Tiny model: 2 layers x (4 x 32x32 + 2 x 32x64) + the 32x32 pooler = 17,408 prunable weights.
N_PRUNABLE = 17_408
S = 2  # --save_steps / --logging_steps of the short runs
BLOCK = 16


def imp_counts(events, total=N_PRUNABLE):
    """Pruned entries after each IMP event: round(1/(10-k) of what remains), cumulated."""
    counts, pruned = [], 0
    for k in range(events):
        pruned += round((total - pruned) / (10 - k))
        counts.append(pruned)
    return counts


def make_text(n_lines=12, words_per_line=30, seed=0):
    """Lines of words from the tiny vocabulary (one token each) ending with ' .'."""
    rng = random.Random(seed)
    return "".join(" ".join(rng.choice(WORDS) for _ in range(words_per_line)) + " .\n"
                   for _ in range(n_lines))


def n_pruned(mask):
    return sum(int((~m).sum()) for m in mask.values())


def load_mask(path):
    return torch.load(path, weights_only=True)


@pytest.fixture(scope="module")
def text_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("text")
    (d / "train.txt").write_text(make_text(seed=0), encoding="utf-8")
    (d / "eval.txt").write_text(make_text(n_lines=4, seed=1), encoding="utf-8")
    return {"train": d / "train.txt", "eval": d / "eval.txt", "cache": d / "cache"}


def mlm_argv(model_dir, files, out, extra=()):
    """Flags of a short MLM run on the tiny text files."""
    return ["--mlm", "--model_name_or_path", str(model_dir), "--train_data_file", str(files["train"]),
            "--eval_data_file", str(files["eval"]), "--output_dir", str(out),
            "--cache_dir", str(files["cache"]), "--overwrite_output_dir", "--block_size", str(BLOCK),
            "--per_gpu_train_batch_size", "4", "--per_gpu_eval_batch_size", "4", "--seed", "7", *extra]


@pytest.fixture(scope="module")
def imp_run(tiny_bert_dir, text_files, tmp_path_factory):
    """One LT_pretrain.py run of 3 rounds (4 pruning events) shared by several tests."""
    out = tmp_path_factory.mktemp("imp_mlm")
    results = LT_pretrain.main(mlm_argv(tiny_bert_dir, text_files, out, [
        "--do_train", "--evaluate_during_training", "--save_steps", str(S), "--logging_steps", str(S),
        "--max_steps", str(3 * S), "--learning_rate", "1e-3"]))
    return out, results


# --- LT_pretrain.py: IMP ------------------------------------------------------------------------


def test_lt_pretrain_masks_from_step_0(imp_run, tiny_bert_dir):
    out, results = imp_run
    steps = [0, S, 2 * S, 3 * S]
    counts = imp_counts(4)
    assert counts == [1741, 3482, 5223, 6964]
    keys = list(P.prunable_shapes(load_model("glue", str(tiny_bert_dir))))
    masks = [load_mask(out / f"checkpoint-{s}" / "mask.pt") for s in steps]
    for mask, count, step in zip(masks, counts, steps):
        assert list(mask) == keys and len(keys) == 13
        assert n_pruned(mask) == count
        report = json.loads((out / f"checkpoint-{step}" / "mask_sparsity.json").read_text())
        assert report["prunable"] == {"total": N_PRUNABLE, "pruned": count,
                                      "sparsity": pytest.approx(100.0 * count / N_PRUNABLE)}
    for before, after in zip(masks, masks[1:]):  # nested: once pruned, always pruned
        assert all(not bool((~before[k] & after[k]).any()) for k in before)
    assert [(m["step"], m["pruning_event"]) for m in results["masks"]] == [(s, i + 1) for i, s in enumerate(steps)]
    assert [m["sparsity"] for m in results["masks"]] == pytest.approx([10.0, 20.0, 30.0, 40.0], abs=0.01)
    assert results["rewind"] == "none" and results["task"] == "mlm"
    assert not (out / "checkpoint-0" / "model.safetensors").exists()  # nothing trained before step 0
    assert (out / f"checkpoint-{S}" / "model.safetensors").is_file()


def test_lt_pretrain_evaluations(imp_run):
    out, _ = imp_run
    results = json.loads((out / "results.json").read_text())
    evals = results["evaluations"]
    assert results["global_step"] == 3 * S
    assert [e["step"] for e in evals] == [S, 2 * S, 3 * S]
    # each evaluation comes before the pruning event of its step: 10 %, 20 %, 30 %
    assert [e["sparsity"] for e in evals] == pytest.approx([100.0 * c / N_PRUNABLE for c in imp_counts(3)])
    for e in evals:
        assert math.isfinite(e["perplexity"]) and e["perplexity"] > 1.0
        assert e["perplexity"] == pytest.approx(math.exp(e["eval_loss"]))
        assert 0.0 <= e["acc"] <= 100.0
    assert torch.load(out / "result.pt", weights_only=True) == [
        {k: e[k] for k in ("perplexity", "acc", "eval_loss")} for e in evals]


@pytest.mark.parametrize("rewind", ["pretrained", "none"])
def test_rewind_pretrained_vs_none(tiny_bert_dir, text_files, tmp_path, rewind):
    # Through run_imp itself: the model it leaves behind has just gone through the last pruning
    # event (max_steps is a multiple of save_steps), so with --rewind pretrained its backbone is
    # exactly the pre-trained snapshot x the final mask, while with --rewind none (the default,
    # the original's no-op rewind) the backbone keeps its trained values. The saved
    # checkpoint-*/model.safetensors would not show this: they hold each round's weights *before*
    # its pruning and rewind.
    args = LT_pretrain.parse_args(mlm_argv(tiny_bert_dir, text_files, tmp_path / "out", [
        "--do_train", "--save_steps", str(S), "--max_steps", str(2 * S), "--learning_rate", "1e-2",
        "--rewind", rewind]))
    tokenizer, runtime = start_run(args, "test")
    model = load_model("pretrain", args.model_name_or_path)
    experiment = mlm_experiment(args, runtime, tokenizer, model)
    experiment = dataclasses.replace(experiment, evaluate=None)  # no evaluation: the weights are what is checked
    snapshot = P.snapshot_state(model)
    trainer = run_imp(args, runtime, model, experiment, "test", prune_first=True)
    assert trainer.global_step == 2 * S and n_pruned(P.current_masks(model)) == imp_counts(3)[-1]
    masks = {k[: -len("_mask")]: m for k, m in P.current_masks(model).items()}
    state = P.effective_state_dict(model)
    backbone = [k for k in snapshot if k.startswith("bert.")]
    assert len(backbone) > 13
    expected = {k: snapshot[k] * masks[k] if k in masks else snapshot[k] for k in backbone}
    equal = {k: torch.equal(state[k], expected[k]) for k in backbone}
    if rewind == "pretrained":
        assert all(equal.values()), [k for k, v in equal.items() if not v]
    else:
        # every encoder matrix trained on; the pooler gets no gradient in MLM (unused there)
        assert [k for k in masks if equal[k]] == ["bert.pooler.dense.weight"]
        assert all(bool((state[k][~masks[k]] == 0).all()) for k in masks)  # pruned stay zero
    # the MLM head is never rewound (no --rewind_head): it keeps its trained values
    assert not torch.equal(state["cls.predictions.transform.dense.weight"],
                           snapshot["cls.predictions.transform.dense.weight"])


# --- the MLM mask in the other tasks --------------------------------------------------------------


def mrpc_dir(path):
    """A tiny MRPC folder in the GLUE layout (header with a UTF-8 BOM)."""
    path.mkdir()
    head = "\ufeffQuality\t#1 ID\t#2 ID\t#1 String\t#2 String\n"
    rows = "1\t1\t2\tthe cat sat on the mat .\ta cat sat on a mat .\n0\t3\t4\tparis is a city .\tit was bad .\n"
    (path / "train.tsv").write_text(head + rows, encoding="utf-8")
    (path / "dev.tsv").write_text(head + rows, encoding="utf-8")
    return path


def squad_file(path):
    context = "paris is the capital of france . the cat sat on the mat ."
    qas = [{"id": "q1", "question": "what is paris ?",
            "answers": [{"text": "the capital of france", "answer_start": context.index("the capital")}]},
           {"id": "q2", "question": "where sat the cat ?",
            "answers": [{"text": "on the mat", "answer_start": context.index("on the mat")}]}]
    data = {"version": "1.1", "data": [{"title": "t", "paragraphs": [{"context": context, "qas": qas}]}]}
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def test_mlm_mask_loads_into_glue_and_squad(imp_run, tiny_bert_dir, tmp_path):
    mask = imp_run[0] / f"checkpoint-{2 * S}" / "mask.pt"
    sparsity = json.loads((mask.parent / "mask_sparsity.json").read_text())["prunable"]["sparsity"]
    assert sparsity == pytest.approx(100.0 * imp_counts(3)[-1] / N_PRUNABLE)
    common = ["--model_name_or_path", str(tiny_bert_dir), "--cache_dir", str(tmp_path / "cache"),
              "--mask_dir", str(mask), "--do_train", "--max_steps", "1", "--save_steps", "0",
              "--per_gpu_train_batch_size", "2"]
    glue_trans.main(common + ["--task_name", "MRPC", "--data_dir", str(mrpc_dir(tmp_path / "MRPC")),
                              "--max_seq_length", "32", "--output_dir", str(tmp_path / "glue")])
    squad = squad_file(tmp_path / "squad.json")
    squad_trans.main(common + ["--train_file", str(squad), "--predict_file", str(squad),
                               "--max_seq_length", "48", "--doc_stride", "16", "--max_query_length", "16",
                               "--output_dir", str(tmp_path / "squad")])
    for name, metric in (("glue", "acc"), ("squad", "f1")):
        results = json.loads((tmp_path / name / "results.json").read_text())
        assert results["initial_sparsity"] == pytest.approx(sparsity)
        assert results["final"]["sparsity"] == pytest.approx(sparsity)  # the mask stayed fixed
        assert metric in results["final"]


# --- pretrain_trans.py ------------------------------------------------------------------------------


@pytest.mark.parametrize("masking", ["fixed", "random"])
def test_seeded_evaluation(tiny_bert_dir, text_files, tmp_path, masking):
    out = tmp_path / "out"
    pretrain_trans.main(mlm_argv(tiny_bert_dir, text_files, out, [
        "--do_train", "--evaluate_during_training", "--learning_rate", "0", "--max_steps", "3",
        "--logging_steps", "1", "--save_steps", "0", "--eval_masking", masking]))
    record = torch.load(out / "result.pt", weights_only=True)
    assert record[0] == 0.0 and len(record) == 5  # sparsity, 3 evaluations, the final one
    evals = [{k: r[k] for k in ("perplexity", "acc")} for r in record[1:]]
    results = json.loads((out / "results.json").read_text())
    assert [e["step"] for e in results["evaluations"]] == [1, 2, 3, 3]
    assert results["final"]["tag"] == "final" and results["final"]["step"] == 3
    done = json.loads((out / "complete.json").read_text())
    assert done["headline"]["metric"] == "acc" and done["headline"]["source"] == "final"
    assert done["headline"]["value"] == results["final"]["acc"]  # MLM accuracy is already in percent
    if masking == "fixed":  # learning rate 0: same weights, same seeded masks, same numbers
        assert evals[0] == evals[1] == evals[2] == evals[3]
    else:
        assert not evals[0] == evals[1] == evals[2]


def test_block_count_and_mlm_head_note(tiny_bert_dir, text_files, tmp_path, capsys):
    text = text_files["train"].read_text(encoding="utf-8")
    n_tokens = len(make_tokenizer()(text, add_special_tokens=False)["input_ids"])
    assert n_tokens == 12 * 31  # 30 one-token words and "." per line
    n_blocks = n_tokens // (BLOCK - 2)
    assert n_blocks == 26
    ds = load_text_dataset(text_files["train"], make_tokenizer(), BLOCK, cache_dir=tmp_path / "c")
    assert len(ds) == n_blocks and all(len(r) == BLOCK for r in ds["input_ids"])
    capsys.readouterr()
    out = tmp_path / "out"
    pretrain_trans.main(mlm_argv(tiny_bert_dir, text_files, out, [
        "--do_train", "--num_train_epochs", "1", "--per_gpu_train_batch_size", "3",
        "--save_steps", "0", "--logging_steps", "0"]))
    # one epoch of batches of 3: ceil(26 / 3) = 9 updates
    assert json.loads((out / "results.json").read_text())["global_step"] == math.ceil(n_blocks / 3) == 9
    notes = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("note:")]
    assert len(notes) == 1 and "no MLM head" in notes[0] and "random" in notes[0]


# --- bad input ----------------------------------------------------------------------------------------


def exit_2(capsys, main, argv):
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        run_cli(main, argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    return err


def test_missing_mlm_flag_exit_2(tiny_bert_dir, text_files, tmp_path, capsys):
    argv = mlm_argv(tiny_bert_dir, text_files, tmp_path / "o", ["--do_train"])
    argv.remove("--mlm")
    for main in (LT_pretrain.main, pretrain_trans.main):
        err = exit_2(capsys, main, argv)
        assert err == "error: BERT is a masked language model: pass --mlm (as the original required)\n"


def test_bad_text_files_exit_2(tiny_bert_dir, text_files, tmp_path, capsys):
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    binary = tmp_path / "data.bin"
    binary.write_bytes(b"the cat\x00\x01\x02 sat")
    cases = [("train", tmp_path / "missing.txt", "text file not found"),
             ("train", empty, "file is empty"),
             ("eval", binary, "not a text file (contains NUL bytes)")]
    for i, (which, path, message) in enumerate(cases):
        files = dict(text_files, **{which: path})
        main = (LT_pretrain.main, pretrain_trans.main)[i % 2]
        err = exit_2(capsys, main, mlm_argv(tiny_bert_dir, files, tmp_path / f"o{i}",
                                            ["--do_train", "--evaluate_during_training"]))
        assert err == f"error: {path}: {message}\n"


def test_block_size_above_model_maximum_exit_2(tiny_bert_dir, text_files, tmp_path, capsys):
    argv = mlm_argv(tiny_bert_dir, text_files, tmp_path / "o", ["--do_train"])
    argv[argv.index("--block_size") + 1] = "200"
    err = exit_2(capsys, LT_pretrain.main, argv)
    assert err == "error: --block_size 200 is above the model's maximum of 128\n"


# --- MiniLM on WikiText-2 -------------------------------------------------------------------------------


@pytest.mark.integration
def test_minilm_wikitext_imp(shared_data, tmp_path, capsys):
    out = tmp_path / "imp"
    LT_pretrain.main(["--mlm", "--model_name_or_path", str(shared_data / "models" / "all-MiniLM-L6-v2"),
                      "--train_data_file", str(shared_data / "wikitext-2" / "test.txt"),
                      "--eval_data_file", str(shared_data / "wikitext-2" / "valid.txt"),
                      "--cache_dir", str(tmp_path / "cache"), "--output_dir", str(out), "--do_train",
                      "--evaluate_during_training", "--block_size", "64", "--max_train_samples", "32",
                      "--max_eval_samples", "8", "--max_steps", "4", "--save_steps", "2",
                      "--logging_steps", "2", "--per_gpu_train_batch_size", "4",
                      "--per_gpu_eval_batch_size", "4", "--seed", "57"])
    assert "no MLM head" in capsys.readouterr().out
    total = 10_764_288  # MiniLM-L6's prunable set (37 matrices)
    for step, count in zip((0, 2, 4), imp_counts(3, total)):
        mask = load_mask(out / f"checkpoint-{step}" / "mask.pt")
        assert len(mask) == 37 and sum(m.numel() for m in mask.values()) == total
        assert n_pruned(mask) == count
    results = json.loads((out / "results.json").read_text())
    assert [m["sparsity"] for m in results["masks"]] == pytest.approx([10.0, 20.0, 30.0], abs=0.001)
    assert [e["step"] for e in results["evaluations"]] == [2, 4]
    for e in results["evaluations"]:
        assert math.isfinite(e["perplexity"]) and e["perplexity"] > 1.0
        assert 0.0 <= e["acc"] <= 100.0


def test_without_eval_file_the_run_says_it_ends_unscored(tiny_bert_dir, text_files, tmp_path, capsys):
    """pretrain_trans.py without --eval_data_file trains, says at the start that it will end
    without a score, and the report lists it as finished without a score, in no table."""
    import report

    out = tmp_path / "runs" / "noeval"
    argv = [a for a in mlm_argv(tiny_bert_dir, text_files, out, ["--do_train", "--max_steps", "2",
                                                                  "--logging_steps", "0", "--save_steps", "0"])]
    i = argv.index("--eval_data_file")
    del argv[i:i + 2]
    pretrain_trans.main(argv)
    assert "this run ends without a score" in capsys.readouterr().out
    done = json.loads((out / "complete.json").read_text())
    assert not done.get("headline")
    text = report.main([str(tmp_path / "runs"), "--out", str(tmp_path / "rep"), "--no_figures"])
    assert "## Finished without a score (in no table)\n\n- noeval" in text
