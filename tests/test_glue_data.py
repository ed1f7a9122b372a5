"""utils/glue.py: the ten GLUE task names read from tiny TSV files in the original layout."""
import math
import os

import numpy as np
import pytest
import torch
from conftest import tiny_config
from transformers import BertForSequenceClassification, BertTokenizer

from utils import glue
from utils.errors import UserError
from utils.glue import (
    GLUE_TASKS,
    GlueCollator,
    eval_task_names,
    evaluate_glue,
    get_task,
    load_glue_dataset,
    read_examples,
)

# --- tiny files in the exact original layout, one writer per task ------------------------


def write_tsv(path, rows, header=None, bom=False, final_newline=True):
    lines = (["\t".join(header)] if header else []) + ["\t".join(r) for r in rows]
    text = "\n".join(lines) + ("\n" if final_newline else "")
    path.write_text(("\ufeff" if bom else "") + text, encoding="utf-8")


def cola(d):
    write_tsv(d / "train.tsv", [["gj04", "1", "", "the cat sat."], ["gj04", "0", "*", "cat the sat."]])
    write_tsv(d / "dev.tsv", [["w_80", "1", "", "a dog sat."]], final_newline=False)
    return {"train": [("the cat sat.", None, 1), ("cat the sat.", None, 0)], "dev": [("a dog sat.", None, 1)]}


def sst2(d):
    head = ["sentence", "label"]
    write_tsv(d / "train.tsv", [["a good movie ", "1"], ["a bad film ", "0"], ["very good ", "1"]], head)
    write_tsv(d / "dev.tsv", [["not good ", "0"]], head)
    return {
        "train": [("a good movie ", None, 1), ("a bad film ", None, 0), ("very good ", None, 1)],
        "dev": [("not good ", None, 0)],
    }


MRPC_HEAD = ["Quality", "#1 ID", "#2 ID", "#1 String", "#2 String"]


def mrpc(d):
    rows = [
        ["1", "11", "12", 'he said "the cat" sat.', "the cat sat."],  # quotes are plain characters
        ["0", "13", "14", "a dog.", "a cat."],
    ]
    write_tsv(d / "train.tsv", rows, MRPC_HEAD, bom=True)
    write_tsv(d / "dev.tsv", [["0", "15", "16", "one", "two"]], MRPC_HEAD, bom=True)
    return {
        "train": [('he said "the cat" sat.', "the cat sat.", 1), ("a dog.", "a cat.", 0)],
        "dev": [("one", "two", 0)],
    }


STSB_HEAD = "index genre filename year old_index source1 source2 sentence1 sentence2 score".split()


def stsb_row(i, a, b, score):
    return [str(i), "main-captions", "MSRvid", "2012test", "0000", "none", "none", a, b, score]


def stsb(d):
    rows = [stsb_row(0, "a man.", "a woman.", "3.800"), stsb_row(1, "a", "b", "0")]
    write_tsv(d / "train.tsv", rows, STSB_HEAD)
    write_tsv(d / "dev.tsv", [stsb_row(0, "a cat.", "the cat.", "5.000")], STSB_HEAD)
    return {
        "train": [("a man.", "a woman.", 3.8), ("a", "b", 0.0)],
        "dev": [("a cat.", "the cat.", 5.0)],
    }


QQP_HEAD = ["id", "qid1", "qid2", "question1", "question2", "is_duplicate"]


def qqp(d):
    rows = [
        ["0", "1", "2", "who is he?", "who is she?", "0"],
        ["1", "3", "4", "how?"],  # too short: skipped and counted
        ["2", "5", "6", "why", "why", "1"],
    ]
    write_tsv(d / "train.tsv", rows, QQP_HEAD)
    write_tsv(d / "dev.tsv", [["3", "7", "8", "what", "which", "0"]], QQP_HEAD)
    return {
        "train": [("who is he?", "who is she?", 0), ("why", "why", 1)],
        "dev": [("what", "which", 0)],
    }


MNLI_TRAIN_HEAD = (
    "index promptID pairID genre sentence1_binary_parse sentence2_binary_parse "
    "sentence1_parse sentence2_parse sentence1 sentence2 label1 gold_label"
).split()
MNLI_DEV_HEAD = MNLI_TRAIN_HEAD[:11] + "label2 label3 label4 label5 gold_label".split()


def mnli_row(a, b, label, dev=False):
    votes = [label] * (5 if dev else 1)
    return ["0", "1", "1e", "fiction", "( x )", "( y )", "(ROOT x)", "(ROOT y)", a, b] + votes + [label]


def mnli(d):
    train = [mnli_row("the man sat.", "he sat.", "entailment"), mnli_row("a cat.", "a dog.", "contradiction")]
    write_tsv(d / "train.tsv", train, MNLI_TRAIN_HEAD)
    matched = [mnli_row(a, b, lab, True) for a, b, lab in [("one", "two", "neutral"), ("a", "b", "neutral"),
                                                           ("c", "d", "entailment")]]
    write_tsv(d / "dev_matched.tsv", matched, MNLI_DEV_HEAD)
    labels = ["neutral", "entailment", "entailment", "contradiction"]
    mismatched = [mnli_row(x, "y", lab, True) for x, lab in zip("abcd", labels)]
    write_tsv(d / "dev_mismatched.tsv", mismatched, MNLI_DEV_HEAD)
    return {
        "train": [("the man sat.", "he sat.", 1), ("a cat.", "a dog.", 0)],
        "dev": [("one", "two", 2), ("a", "b", 2), ("c", "d", 1)],
        "dev-mm": [("a", "y", 2), ("b", "y", 1), ("c", "y", 1), ("d", "y", 0)],
    }


def mnli_mm(d):
    expected = mnli(d)
    return {"train": expected["train"], "dev": expected["dev-mm"]}


def nli(head, labels):
    """QNLI, RTE and WNLI: index, text_a, text_b, label."""

    def write(d):
        rows = [["0", "what is it?", "it is a cat.", labels[0]], ["1", "who sat?", "the man.", labels[1]]]
        write_tsv(d / "train.tsv", rows, head)
        write_tsv(d / "dev.tsv", [["0", "x", "y", labels[1]]], head)
        train = [("what is it?", "it is a cat.", 0), ("who sat?", "the man.", 1)]
        return {"train": train, "dev": [("x", "y", 1)]}

    return write


WRITERS = {
    "cola": cola,
    "sst-2": sst2,
    "mrpc": mrpc,
    "sts-b": stsb,
    "qqp": qqp,
    "mnli": mnli,
    "mnli-mm": mnli_mm,
    "qnli": nli(["index", "question", "sentence", "label"], ["entailment", "not_entailment"]),
    "rte": nli(["index", "sentence1", "sentence2", "label"], ["entailment", "not_entailment"]),
    "wnli": nli(["index", "sentence1", "sentence2", "label"], ["0", "1"]),
}


def make_task_dir(tmp_path, task):
    d = tmp_path / task.upper()
    d.mkdir()
    return d, WRITERS[task](d)


def as_tuples(examples):
    return [(e["text_a"], e["text_b"], e["label"]) for e in examples]


# --- reading -------------------------------------------------------------------------------


def test_every_task_has_a_writer():
    assert sorted(WRITERS) == sorted(GLUE_TASKS)
    assert len(GLUE_TASKS) == 10


@pytest.mark.parametrize("task", sorted(WRITERS))
def test_read_examples_every_task(tmp_path, task):
    d, expected = make_task_dir(tmp_path, task)
    for split in ("train", "dev"):
        got = as_tuples(read_examples(d, task, split))
        assert got == expected[split]
        # label types: int index, float for STS-B only
        assert all(type(lab) is (float if task == "sts-b" else int) for _, _, lab in got)


def test_mnli_label_order_and_dev_files(tmp_path):
    d, _ = make_task_dir(tmp_path, "mnli")
    assert get_task("mnli").labels == ("contradiction", "entailment", "neutral")
    assert [e["label"] for e in read_examples(d, "MNLI", "dev")] == [2, 2, 1]  # dev_matched.tsv
    assert [e["label"] for e in read_examples(d, "mnli-mm", "dev")] == [2, 1, 1, 0]  # dev_mismatched.tsv
    assert read_examples(d, "mnli-mm", "train") == read_examples(d, "mnli", "train")


def test_task_names_aliases_and_layout():
    assert get_task("MNLI").name == "mnli"
    assert get_task("SST-2") is get_task("sst2") is GLUE_TASKS["sst-2"]
    assert get_task("Sts-B") is get_task("stsb") is GLUE_TASKS["sts-b"]
    assert get_task("sts-b").num_labels == 1 and get_task("sts-b").output_mode == "regression"
    assert get_task("sts-b").labels is None
    assert get_task("mnli").num_labels == 3 and get_task("rte").num_labels == 2
    assert get_task("cola").has_header is False and get_task("cola").text_b_col is None
    mm = get_task("mnli-mm")
    assert (mm.train_file, mm.dev_file) == ("train.tsv", "dev_mismatched.tsv")
    assert eval_task_names("MNLI") == ["mnli", "mnli-mm"]
    assert eval_task_names("mnli-mm") == ["mnli-mm"]
    assert eval_task_names("sst2") == ["sst-2"]


def test_unknown_task():
    with pytest.raises(UserError) as err:
        get_task("xyz")
    assert str(err.value) == (
        "unknown --task_name 'xyz' "
        "(choose from cola, sst-2, mrpc, sts-b, qqp, mnli, mnli-mm, qnli, rte, wnli)"
    )


def test_qqp_short_rows_skipped_and_counted(tmp_path, capsys):
    d, _ = make_task_dir(tmp_path, "qqp")
    assert len(read_examples(d, "qqp", "train")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"warning: {d / 'train.tsv'}: skipped 1 rows with too few columns"]
    read_examples(d, "qqp", "dev")  # nothing skipped: no warning
    assert capsys.readouterr().err == ""


def test_missing_dir_and_file(tmp_path):
    with pytest.raises(UserError, match=r"^--data_dir folder not found: .*nowhere$"):
        read_examples(tmp_path / "nowhere", "rte", "train")
    d, _ = make_task_dir(tmp_path, "rte")
    os.remove(d / "dev.tsv")
    with pytest.raises(UserError) as err:
        read_examples(d, "rte", "dev")
    assert str(err.value).startswith(f"{d / 'dev.tsv'}: file not found")
    with pytest.raises(UserError, match="dev_mismatched.tsv: file not found"):
        load_glue_dataset(d, "mnli-mm", "dev", None)


def test_malformed_rows_name_file_and_line(tmp_path):
    d = tmp_path / "glue" / "RTE"
    d.mkdir(parents=True)
    rows = [[str(i), "a", "b", "entailment"] for i in range(5)] + [["5", "a", "b", "maybe"]]
    write_tsv(d / "train.tsv", rows, ["index", "sentence1", "sentence2", "label"])
    with pytest.raises(UserError) as err:
        read_examples(d, "rte", "train")
    message = "line 7: label 'maybe' is not one of entailment, not_entailment"
    assert str(err.value) == f"{d / 'train.tsv'} {message}"

    write_tsv(d / "dev.tsv", [["0", "a", "b", "entailment"], ["1", "two columns"]], ["i", "s1", "s2", "l"])
    with pytest.raises(UserError) as err:
        read_examples(d, "rte", "dev")
    assert str(err.value) == f"{d / 'dev.tsv'} line 3: expected at least 4 tab-separated columns, found 2"

    s = tmp_path / "STS-B"
    s.mkdir()
    write_tsv(s / "train.tsv", [stsb_row(0, "a", "b", "1.0"), stsb_row(1, "a", "b", "high")], STSB_HEAD)
    with pytest.raises(UserError) as err:
        read_examples(s, "sts-b", "train")
    assert str(err.value) == f"{s / 'train.tsv'} line 3: label 'high' is not a number"

    c = tmp_path / "CoLA"  # no header: the first line is line 1
    c.mkdir()
    write_tsv(c / "train.tsv", [["gj04", "2", "", "the cat."]])
    with pytest.raises(UserError, match=r"train.tsv line 1: label '2' is not one of 0, 1$"):
        read_examples(c, "cola", "train")


def test_non_utf8_file_is_an_error(tmp_path):
    d = tmp_path / "SST-2"
    d.mkdir()
    (d / "train.tsv").write_bytes(b"sentence\tlabel\ncaf\xe9\t1\n")
    with pytest.raises(UserError, match=r"train.tsv: not a readable UTF-8 TSV file"):
        read_examples(d, "sst-2", "train")


def test_empty_file_is_an_error(tmp_path):
    d = tmp_path / "SST-2"
    d.mkdir()
    write_tsv(d / "train.tsv", [], ["sentence", "label"])
    with pytest.raises(UserError) as err:
        read_examples(d, "sst-2", "train")
    assert str(err.value) == f"{d / 'train.tsv'}: no examples in file"


# --- tokenised datasets and cache ----------------------------------------------------------


def test_load_glue_dataset_columns_and_values(tmp_path, tokenizer):
    d, _ = make_task_dir(tmp_path, "mrpc")
    ds = load_glue_dataset(d, "mrpc", "train", tokenizer)
    assert len(ds) == 2
    assert sorted(ds.column_names) == ["attention_mask", "input_ids", "labels", "token_type_ids"]
    ref = tokenizer('he said "the cat" sat.', "the cat sat.")
    assert ds[0]["input_ids"] == ref["input_ids"]
    assert ds[0]["token_type_ids"] == ref["token_type_ids"]
    assert ds[0]["attention_mask"] == [1] * len(ref["input_ids"])
    assert ds["labels"] == [1, 0]
    s, _ = make_task_dir(tmp_path, "sts-b")
    assert load_glue_dataset(s, "sts-b", "train", tokenizer)["labels"] == [3.8, 0.0]
    c, _ = make_task_dir(tmp_path, "cola")  # single sentence: segment ids all 0
    row = load_glue_dataset(c, "cola", "dev", tokenizer)[0]
    assert tokenizer.convert_ids_to_tokens(row["input_ids"]) == ["[CLS]", "a", "dog", "sat", ".", "[SEP]"]
    assert row["token_type_ids"] == [0] * 6


def test_truncation_longest_first(tmp_path, tokenizer):
    d = tmp_path / "RTE"
    d.mkdir()
    long_a = " ".join(["cat"] * 20)
    rows = [["0", long_a, "a dog", "entailment"], ["1", "a", "b", "entailment"]]
    write_tsv(d / "train.tsv", rows, ["i", "a", "b", "l"])
    ds = load_glue_dataset(d, "rte", "train", tokenizer, max_seq_length=10)
    tokens = tokenizer.convert_ids_to_tokens(ds[0]["input_ids"])
    # the longer text_a loses tokens; text_b stays whole
    assert tokens == ["[CLS]"] + ["cat"] * 5 + ["[SEP]", "a", "dog", "[SEP]"]
    assert ds[0]["token_type_ids"] == [0] * 7 + [1] * 3
    assert len(ds[1]["input_ids"]) == 5  # short pairs are not padded


def test_cache_reused_and_overwritten(tmp_path, tokenizer, monkeypatch):
    d, _ = make_task_dir(tmp_path, "rte")
    calls = []
    real_read = glue.read_examples
    monkeypatch.setattr(glue, "read_examples", lambda *a: calls.append(a) or real_read(*a))

    first = load_glue_dataset(d, "rte", "train", tokenizer, max_seq_length=16)
    cached = list((d / ".cache").iterdir())
    assert len(cached) == 1 and cached[0].name.startswith("glue_train_len16_") and cached[0].is_dir()
    assert len(calls) == 1

    second = load_glue_dataset(d, "rte", "train", tokenizer, max_seq_length=16)
    assert len(calls) == 1  # loaded from the cache: the TSV was not read again
    assert second.to_dict() == first.to_dict()

    load_glue_dataset(d, "rte", "train", tokenizer, max_seq_length=16, overwrite_cache=True)
    assert len(calls) == 2
    assert list((d / ".cache").iterdir()) == cached  # rebuilt in place, no temporary folders left

    load_glue_dataset(d, "rte", "train", tokenizer, max_seq_length=8)  # other setting, other cache
    assert len(calls) == 3 and len(list((d / ".cache").iterdir())) == 2

    other = tmp_path / "elsewhere"
    load_glue_dataset(d, "rte", "train", tokenizer, max_seq_length=16, cache_dir=other)
    assert len(calls) == 4 and [p.name for p in other.iterdir()] == [cached[0].name]


def test_cache_invalidated_by_changed_file_and_tokenizer(tmp_path, tokenizer):
    d, _ = make_task_dir(tmp_path, "sst-2")
    assert load_glue_dataset(d, "sst-2", "dev", tokenizer)["labels"] == [0]
    write_tsv(d / "dev.tsv", [["not good ", "0"], ["good ", "1"]], ["sentence", "label"])
    assert load_glue_dataset(d, "sst-2", "dev", tokenizer)["labels"] == [0, 1]
    cased = BertTokenizer(vocab=tokenizer.get_vocab(), do_lower_case=False)
    load_glue_dataset(d, "sst-2", "dev", cased)
    assert len(list((d / ".cache").iterdir())) == 3


def test_mnli_and_mnli_mm_share_the_train_cache(tmp_path, tokenizer):
    d, _ = make_task_dir(tmp_path, "mnli")
    load_glue_dataset(d, "mnli", "train", tokenizer)
    load_glue_dataset(d, "mnli-mm", "train", tokenizer)
    assert len(list((d / ".cache").iterdir())) == 1
    dev_mm = load_glue_dataset(d, "mnli-mm", "dev", tokenizer)
    assert dev_mm["labels"] == [2, 1, 1, 0] and len(list((d / ".cache").iterdir())) == 2


# --- collator ------------------------------------------------------------------------------


def test_collator_pads_to_longest_or_fixed(tokenizer):
    features = [
        {"input_ids": [2, 5, 3], "token_type_ids": [0, 0, 0], "attention_mask": [1, 1, 1], "labels": 1},
        {"input_ids": [2, 5, 6, 7, 3], "token_type_ids": [0, 0, 0, 1, 1], "attention_mask": [1] * 5,
         "labels": 0},
    ]
    batch = GlueCollator(tokenizer)(features)
    pad = tokenizer.pad_token_id
    assert batch["input_ids"].tolist() == [[2, 5, 3, pad, pad], [2, 5, 6, 7, 3]]
    assert batch["token_type_ids"].tolist() == [[0, 0, 0, 0, 0], [0, 0, 0, 1, 1]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]
    assert batch["labels"].dtype == torch.long and batch["labels"].tolist() == [1, 0]
    assert all(t.dtype == torch.long for t in batch.values())

    fixed = GlueCollator(tokenizer, pad_to_max_length=8)(features)
    assert {k: tuple(v.shape) for k, v in fixed.items()} == {
        "input_ids": (2, 8), "token_type_ids": (2, 8), "attention_mask": (2, 8), "labels": (2,)
    }
    assert fixed["attention_mask"].sum().item() == 8

    floats = [dict(f, labels=float(f["labels"]) + 0.5) for f in features]
    assert GlueCollator(tokenizer)(floats)["labels"].dtype == torch.float


def test_collator_pads_with_the_tokenizer_pad_id():
    vocab = {"[UNK]": 0, "[CLS]": 1, "[SEP]": 2, "[MASK]": 3, "[PAD]": 4, "a": 5}
    tok = BertTokenizer(vocab=vocab)
    batch = GlueCollator(tok)([{"input_ids": [1, 2], "labels": 0}, {"input_ids": [1, 5, 2], "labels": 1}])
    assert batch["input_ids"].tolist() == [[1, 2, 4], [1, 5, 2]]


# --- evaluation ----------------------------------------------------------------------------


def constant_model(num_labels, bias):
    """A tiny classifier whose logits are ``bias`` for every input (classifier weight zeroed)."""
    torch.manual_seed(0)
    model = BertForSequenceClassification(tiny_config(num_labels=num_labels))
    with torch.no_grad():
        model.classifier.weight.zero_()
        model.classifier.bias.copy_(torch.tensor(bias))
    return model


def test_evaluate_glue_mnli_keeps_matched_and_mismatched(tmp_path, tokenizer):
    d, _ = make_task_dir(tmp_path, "mnli")
    sets = {name: load_glue_dataset(d, name, "dev", tokenizer) for name in eval_task_names("mnli")}
    model = constant_model(3, [0.0, 0.0, 2.0])  # always predicts "neutral" (2)
    model.train()
    result = evaluate_glue(model, "mnli", sets, GlueCollator(tokenizer), 2, torch.device("cpu"))
    assert model.training  # training mode restored
    # matched labels [2, 2, 1]; mismatched [2, 1, 1, 0]
    ce = [math.log(2 + math.exp(2)) - b for b in (2.0, 2.0, 0.0)]  # per-example loss, matched
    expected_loss = ((ce[0] + ce[1]) / 2 + ce[2]) / 2  # mean over batches of 2 and 1
    assert result.keys() == {"acc", "acc_mm", "eval_loss"}
    assert result["acc"] == pytest.approx(2 / 3)
    assert result["acc_mm"] == pytest.approx(1 / 4)
    assert result["eval_loss"] == pytest.approx(expected_loss, rel=1e-5)
    assert all(type(v) is float for v in result.values())

    with pytest.raises(ValueError, match="mnli-mm"):
        evaluate_glue(model, "mnli", {"mnli": sets["mnli"]}, GlueCollator(tokenizer), 2, "cpu")


def test_evaluate_glue_mrpc_hand_computed(tmp_path, tokenizer):
    d = tmp_path / "MRPC"
    d.mkdir()
    rows = [[lab, "1", "2", "a cat", "the cat"] for lab in ("1", "0", "1", "1")]
    write_tsv(d / "dev.tsv", rows, MRPC_HEAD, bom=True)
    sets = {"mrpc": load_glue_dataset(d, "mrpc", "dev", tokenizer)}
    model = constant_model(2, [0.0, 1.0])  # always predicts 1
    model.eval()
    result = evaluate_glue(model, "MRPC", sets, GlueCollator(tokenizer, pad_to_max_length=16), 3, "cpu")
    f1 = 2 * 0.75 * 1.0 / 1.75  # precision 3/4, recall 1
    assert result["acc"] == pytest.approx(0.75)
    assert result["f1"] == pytest.approx(f1)
    assert result["acc_and_f1"] == pytest.approx((0.75 + f1) / 2)
    assert not model.training


def test_evaluate_glue_stsb_regression_matches_unbatched_forward(tmp_path, tokenizer):
    d = tmp_path / "STS-B"
    d.mkdir()
    texts = [
        ("a cat sat.", "the cat.", "4.0"),
        ("a dog", "the river in paris", "1.0"),
        ("one", "two three", "2.5"),
        ("good movie", "bad film", "0.5"),
        ("what is it", "it", "3.0"),
    ]
    write_tsv(d / "dev.tsv", [stsb_row(i, a, b, s) for i, (a, b, s) in enumerate(texts)], STSB_HEAD)
    ds = load_glue_dataset(d, "sts-b", "dev", tokenizer)
    torch.manual_seed(1)
    # a wide init spreads the predictions, so padding noise cannot move the correlations
    model = BertForSequenceClassification(tiny_config(num_labels=1, initializer_range=1.0))
    model.eval()
    with torch.no_grad():  # reference: one example at a time, no padding
        preds = [model(**{k: torch.tensor([ds[i][k]]) for k in ("input_ids", "token_type_ids",
                 "attention_mask")}).logits.item() for i in range(len(ds))]
    gold = [4.0, 1.0, 2.5, 0.5, 3.0]
    model.train()  # evaluate_glue must switch dropout off
    result = evaluate_glue(model, "stsb", {"sts-b": ds}, GlueCollator(tokenizer), 2, torch.device("cpu"))
    pearson = float(np.corrcoef(preds, gold)[0, 1])
    rank = lambda xs: np.argsort(np.argsort(xs))  # noqa: E731  (no ties here)
    spearman = float(np.corrcoef(rank(preds), rank(gold))[0, 1])
    assert result["pearson"] == pytest.approx(pearson, abs=1e-5)
    assert result["spearmanr"] == pytest.approx(spearman, abs=1e-6)
    assert result["corr"] == pytest.approx((pearson + spearman) / 2, abs=1e-5)
    mse = [np.mean([(preds[i] - gold[i]) ** 2 for i in b]) for b in ([0, 1], [2, 3], [4])]
    assert result["eval_loss"] == pytest.approx(float(np.mean(mse)), rel=1e-4)


# --- real data -----------------------------------------------------------------------------


@pytest.mark.integration
def test_real_mrpc_and_cola(shared_data, tmp_path):
    tok = BertTokenizer(vocab=str(shared_data / "vocab" / "bert-base-uncased-vocab.txt"), do_lower_case=True)
    mrpc_dir = shared_data / "glue" / "MRPC"
    train = read_examples(mrpc_dir, "mrpc", "train")
    assert len(train) == 3668
    assert train[0] == {
        "text_a": 'Amrozi accused his brother, whom he called "the witness", '
        "of deliberately distorting his evidence.",
        "text_b": 'Referring to him as only "the witness", '
        "Amrozi accused his brother of deliberately distorting his evidence.",
        "label": 1,
    }
    dev = load_glue_dataset(mrpc_dir, "mrpc", "dev", tok, cache_dir=tmp_path)
    assert len(dev) == 408 and dev[0]["labels"] == 1
    assert tok.convert_ids_to_tokens(dev[0]["input_ids"][:10]) == [
        "[CLS]", "he", "said", "the", "foods", "##er", "##vic", "##e", "pie", "business"
    ]
    assert max(len(ids) for ids in dev["input_ids"]) <= 128

    cola_dev = read_examples(shared_data / "glue" / "CoLA", "cola", "dev")  # no header, no final newline
    assert len(cola_dev) == 1043
    first = {"text_a": "The sailors rode the breeze clear of the rocks.", "text_b": None, "label": 1}
    assert cola_dev[0] == first
    assert cola_dev[-1]["text_a"] == "John talked to Bill about himself."
