"""SQuAD v1.1 data: legacy windows, labels, max-context flags, post-processing, caching, errors."""
import json
import math

import numpy as np
import pytest
import torch

from conftest import tiny_config
from utils.errors import UserError
from utils.metrics import normalize_answer, squad_scores
from utils.squad import SquadCollator, build_eval_features, build_train_features, load_squad, read_squad_examples
from utils.squad_eval import evaluate_squad, postprocess_predictions

# 40 context tokens, one word each for the tiny tokenizer (index: word).
WORDS = ("the cat sat on the mat and the dog sat in the city . a man and a woman sat in paris , "
         "the capital of france . the river is very good . it was the first year .").split()
CONTEXT = " ".join(WORDS)
# The question has 8 tokens; max_query_length 6 keeps "where was the woman in the".
QUESTION = "where was the woman in the city ?"
SMALL = dict(max_seq_length=32, doc_stride=8, max_query_length=6)
UNICODE_CONTEXT = "Él sat in Zürich's CITY."


def char_start(word_index):
    """Character offset of context word ``word_index``."""
    return len(" ".join(WORDS[:word_index])) + (1 if word_index else 0)


def qa(qid, answer, start, question=QUESTION):
    return {"id": qid, "question": question, "answers": [{"text": answer, "answer_start": start}]}


def write_squad(path, paragraphs):
    data = {"version": "1.1", "data": [{"title": "Tiny", "paragraphs": paragraphs}]}
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


@pytest.fixture
def squad_file(tmp_path):
    """Two questions on the long context (a one-word and a four-word answer) and a unicode one."""
    assert len(WORDS) == 40 and WORDS[21] == "paris" and WORDS[23:27] == ["the", "capital", "of",
                                                                           "france"]
    paragraphs = [
        {"context": CONTEXT, "qas": [qa("q-paris", "paris", char_start(21)),
                                     qa("q-capital", "the capital of france", char_start(23))]},
        {"context": UNICODE_CONTEXT,
         "qas": [qa("q-zurich", "Zürich's CITY", 10, "who sat in the city ?")]},
    ]
    return write_squad(tmp_path / "tiny.json", paragraphs)


# --- reading -------------------------------------------------------------------------------------


def test_read_examples(squad_file):
    examples, skipped = read_squad_examples(squad_file, is_training=True)
    assert skipped == 0
    assert [e["id"] for e in examples] == ["q-paris", "q-capital", "q-zurich"]
    assert examples[0] == {"id": "q-paris", "title": "Tiny", "context": CONTEXT,
                           "question": QUESTION,
                           "answers": [{"text": "paris", "answer_start": 78}]}
    assert CONTEXT[78:83] == "paris"


def test_bad_answer_offset_is_skipped_in_training_only(tmp_path, capsys):
    path = write_squad(tmp_path / "bad.json", [{"context": CONTEXT, "qas": [
        qa("q-good", "paris", char_start(21)), qa("q-shifted", "paris", char_start(21) + 1)]}])
    examples, skipped = read_squad_examples(path, is_training=True)
    assert [e["id"] for e in examples] == ["q-good"] and skipped == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "q-shifted" in lines[0] and "bad.json" in lines[0]
    examples, skipped = read_squad_examples(path, is_training=False)
    assert [e["id"] for e in examples] == ["q-good", "q-shifted"] and skipped == 0
    assert capsys.readouterr().err == ""


def test_errors_name_the_file(tmp_path):
    not_squad = tmp_path / "not_squad.json"
    not_squad.write_text('{"version": "1.1"}')
    with pytest.raises(UserError, match=r"not_squad\.json is not SQuAD v1\.1: 'data' missing"):
        read_squad_examples(not_squad, True)
    no_question = write_squad(tmp_path / "noq.json", [{"context": "a", "qas": [{"id": "x"}]}])
    with pytest.raises(UserError, match=r"noq\.json .*paragraphs\[0\]\.qas\[0\]: 'question' missing"):
        read_squad_examples(no_question, False)
    bad_start = write_squad(tmp_path / "start.json", [{"context": "a", "qas": [
        {"id": "x", "question": "q", "answers": [{"text": "a", "answer_start": "0"}]}]}])
    with pytest.raises(UserError, match=r"start\.json .*answers\[0\]: 'answer_start' is not a int"):
        read_squad_examples(bad_start, False)
    no_answer = write_squad(tmp_path / "empty.json", [{"context": "a", "qas": [
        {"id": "x9", "question": "q", "answers": []}]}])
    with pytest.raises(UserError, match=r"empty\.json .*question x9 has no answers"):
        read_squad_examples(no_answer, False)
    broken = tmp_path / "broken.json"
    broken.write_text('{"data": [')
    with pytest.raises(UserError, match=r"broken\.json is not valid JSON: line 1"):
        read_squad_examples(broken, False)
    with pytest.raises(UserError, match=r"missing\.json does not exist"):
        read_squad_examples(tmp_path / "missing.json", False)
    with pytest.raises(UserError, match="--doc_stride"):
        build_train_features([], None, doc_stride=0)


# --- legacy windows and labels -------------------------------------------------------------------


def test_train_windows_and_labels(squad_file, tokenizer):
    examples, _ = read_squad_examples(squad_file, True)
    feats = build_train_features(examples[:2], tokenizer, **SMALL)
    # 40 tokens, 23 per window (32 - 6 - 3), advance 8: starts 0, 8, 16, 24 (last one is 16 long).
    assert len(feats["input_ids"]) == 8
    query = tokenizer.convert_tokens_to_ids("where was the woman in the".split())
    for f, (start, length) in enumerate([(0, 23), (8, 23), (16, 23), (24, 16)]):
        ids = feats["input_ids"][f]
        assert ids == ([tokenizer.cls_token_id] + query + [tokenizer.sep_token_id]
                       + tokenizer.convert_tokens_to_ids(WORDS[start:start + length])
                       + [tokenizer.sep_token_id])
        assert tokenizer.convert_ids_to_tokens(ids[8]) == ["the", "dog", "and", "capital"][f]
        assert feats["token_type_ids"][f] == [0] * 8 + [1] * (length + 1)
        assert feats["attention_mask"][f] == [1] * (length + 9)
    # "paris" (token 21) lies in windows 0-2 at 21 - start + 8; window 3 labels it at [CLS].
    assert feats["start_positions"][:4] == [29, 21, 13, 0]
    assert feats["end_positions"][:4] == [29, 21, 13, 0]
    # "the capital of france" (tokens 23-26) is cut by windows 0 and 3.
    assert feats["start_positions"][4:] == [0, 23, 15, 0]
    assert feats["end_positions"][4:] == [0, 26, 18, 0]
    # The labels point at the answer tokens.
    ids = feats["input_ids"][5]
    assert tokenizer.decode(ids[23:27]) == "the capital of france"


def test_subword_answer_labels(squad_file, tokenizer):
    examples, _ = read_squad_examples(squad_file, True)
    feats = build_train_features(examples[2:], tokenizer, **SMALL)
    assert len(feats["input_ids"]) == 1
    s, e = feats["start_positions"][0], feats["end_positions"][0]
    assert tokenizer.decode(feats["input_ids"][0][s:e + 1]).replace(" ", "") == "zurich'scity"


def test_eval_offsets_and_max_context(squad_file, tokenizer):
    examples, _ = read_squad_examples(squad_file, False)
    feats = build_eval_features(examples, tokenizer, **SMALL)
    assert feats["example_index"] == [0, 0, 0, 0, 1, 1, 1, 1, 2]
    assert "start_positions" not in feats
    offsets, flags = feats["offset_mapping"], feats["token_is_max_context"]
    assert offsets[1][:8] == [None] * 8 and offsets[1][-1] is None
    assert offsets[1][8 + 13] == [78, 83]  # token 21, "paris", in window 1
    assert flags[0][:8] == [False] * 8 and flags[0][-1] is False
    # Token 20 sits in windows 0, 1, 2 with (left, right) = (20, 2), (12, 10), (4, 18): window 1.
    assert [flags[0][28], flags[1][20], flags[2][12]] == [False, True, False]
    # Token 15: (15, 7) in window 0 and (7, 15) in window 1 tie; the first window wins.
    assert [flags[0][23], flags[1][15]] == [True, False]
    # Token 30: window 2 (14, 8) beats window 1 (22, 0) and window 3 (6, 9, shorter window).
    assert [flags[1][30], flags[2][22], flags[3][14]] == [False, True, False]
    # Every context token is max-context in exactly one window.
    counts = np.zeros(40, dtype=int)
    for f, start in enumerate([0, 8, 16, 24]):
        for pos in range(8, len(flags[f]) - 1):  # context tokens only
            counts[start + pos - 8] += flags[f][pos]
    assert counts.tolist() == [1] * 40


# --- post-processing -----------------------------------------------------------------------------


def hand_features():
    """One feature of "one two three four": [CLS] one two three four [SEP], "four" not max-context."""
    return {"example_index": [0],
            "offset_mapping": [[None, [0, 3], [4, 7], [8, 13], [14, 18], None]],
            "token_is_max_context": [[False, True, True, True, False, False]]}


HAND_EXAMPLE = [{"id": "h", "context": "one two three four"}]
HAND_START = np.array([[9.0, 1.0, 2.0, 0.0, 5.0, 0.0]])
HAND_END = np.array([[9.0, 0.0, 1.5, 3.0, 2.0, 8.0]])


def test_postprocess_rules():
    # Valid spans: start in {one, two, three} (four is not max-context), end >= start.
    preds, nbest = postprocess_predictions(HAND_EXAMPLE, hand_features(), HAND_START, HAND_END)
    assert preds == {"h": "two three"}  # 2 + 3 beats every other pair
    texts = [x["text"] for x in nbest["h"]]
    assert texts[:5] == ["two three", "two three four", "one two three", "two", "one two three four"]
    assert len(texts) == 9
    assert nbest["h"][0]["start_logit"] == 2.0 and nbest["h"][0]["end_logit"] == 3.0
    scores = np.array([x["start_logit"] + x["end_logit"] for x in nbest["h"]])
    assert np.allclose([x["probability"] for x in nbest["h"]], np.exp(scores) / np.exp(scores).sum())
    # max_answer_length 1: single tokens only; "two" (2 + 1.5) beats "three" (0 + 3).
    preds, _ = postprocess_predictions(HAND_EXAMPLE, hand_features(), HAND_START, HAND_END,
                                       max_answer_length=1)
    assert preds == {"h": "two"}
    # n_best_size 4: starts {CLS, four, two, one} and ends {CLS, SEP, three, four} are searched.
    preds, nbest = postprocess_predictions(HAND_EXAMPLE, hand_features(), HAND_START, HAND_END,
                                           n_best_size=4)
    assert [x["text"] for x in nbest["h"]] == ["two three", "two three four", "one two three",
                                                "one two three four"]
    probs = [x["probability"] for x in nbest["h"]]
    z = math.exp(5) + 2 * math.exp(4) + math.exp(3)
    assert probs == pytest.approx([math.exp(5) / z, math.exp(4) / z, math.exp(4) / z,
                                   math.exp(3) / z])
    # n_best_size 2: only [CLS] and "four" as starts, neither allowed: empty answer.
    preds, nbest = postprocess_predictions(HAND_EXAMPLE, hand_features(), HAND_START, HAND_END,
                                           n_best_size=2)
    assert preds == {"h": ""} and nbest["h"] == [{"text": "", "probability": 1.0,
                                                  "start_logit": 0.0, "end_logit": 0.0}]


def test_postprocess_drops_repeated_texts():
    example = [{"id": "d", "context": "the cat the"}]
    feats = {"example_index": [0], "offset_mapping": [[None, [0, 3], [4, 7], [8, 11], None]],
             "token_is_max_context": [[False, True, True, True, False]]}
    start = np.array([[0.0, 3.0, 0.0, 2.0, 0.0]])
    end = np.array([[0.0, 3.0, 0.0, 2.0, 0.0]])
    _, nbest = postprocess_predictions(example, feats, start, end, n_best_size=3)
    # "the" from token 3 (score 4) repeats the best text and is dropped.
    assert [x["text"] for x in nbest["d"]] == ["the", "the cat the"]


def test_postprocess_across_windows_is_exact_substring(squad_file, tokenizer):
    examples, _ = read_squad_examples(squad_file, False)
    feats = build_eval_features(examples, tokenizer, **SMALL)
    lengths = [len(ids) for ids in feats["input_ids"]]
    start = [np.zeros(n) for n in lengths]
    end = [np.zeros(n) for n in lengths]
    # "paris" is max-context in window 1 only; the higher pair in window 2 may not start there.
    start[1][8 + 13], end[1][8 + 13] = 5.0, 5.0
    start[2][8 + 5], end[2][8 + 5] = 10.0, 10.0
    # Example 1: "the capital of france" in window 1 (tokens 23..26 at 23..26).
    start[5][23], end[5][26] = 4.0, 4.0
    # Example 2: the unicode span, found through the offsets.
    offs = feats["offset_mapping"][8]
    s = next(i for i, o in enumerate(offs) if o and o[0] == 10)
    e = next(i for i, o in enumerate(offs) if o and o[1] == 23)
    start[8][s], end[8][e] = 7.0, 7.0
    end[8][e + 1] = 6.9  # "Zürich's CITY." is second best
    preds, nbest = postprocess_predictions(examples, feats, start, end)
    assert preds == {"q-paris": "paris", "q-capital": "the capital of france",
                     "q-zurich": "Zürich's CITY"}
    assert nbest["q-zurich"][1]["text"] == "Zürich's CITY."
    for ex in examples:
        assert all(x["text"] in ex["context"] for x in nbest[ex["id"]])


# --- collator, caching, evaluation ---------------------------------------------------------------


def test_collator_pads_and_drops_eval_columns(squad_file, tokenizer):
    examples, _ = read_squad_examples(squad_file, False)
    feats = build_eval_features(examples, tokenizer, **SMALL)
    rows = [{k: v[i] for k, v in feats.items()} for i in (3, 8)]
    batch = SquadCollator(tokenizer)(rows)
    assert sorted(batch) == ["attention_mask", "input_ids", "token_type_ids"]
    assert batch["input_ids"].shape == (2, 25)
    assert batch["attention_mask"].sum(1).tolist() == [25, len(rows[1]["input_ids"])]
    assert batch["input_ids"][1, len(rows[1]["input_ids"]):].eq(tokenizer.pad_token_id).all()
    train = build_train_features(examples[:1], tokenizer, **SMALL)
    rows = [{k: v[i] for k, v in train.items()} for i in (2, 3)]
    batch = SquadCollator(tokenizer, pad_to_max_length=32)(rows)
    assert batch["input_ids"].shape == (2, 32)
    assert batch["start_positions"].tolist() == [13, 0]
    assert batch["token_type_ids"][1].tolist() == [0] * 8 + [1] * 17 + [0] * 7


def test_load_squad_caches(squad_file, tokenizer, tmp_path, monkeypatch, capsys):
    cache = tmp_path / "cache"
    examples, feats = load_squad(squad_file, tokenizer, True, cache_dir=cache, **SMALL)
    assert capsys.readouterr().out.strip().endswith(": 3 examples, 9 features, 0 skipped questions")
    # The last feature: "Zürich's CITY" is z ##u ##r ##i ##c ##h ' s city, context tokens 4..12.
    assert feats["start_positions"] == [29, 21, 13, 0, 0, 23, 15, 0, 12]
    assert feats["end_positions"] == [29, 21, 13, 0, 0, 26, 18, 0, 20]
    assert len(list(cache.iterdir())) == 1

    def fail(*args, **kwargs):
        raise AssertionError("rebuilt")

    monkeypatch.setattr("utils.squad.build_train_features", fail)
    _, again = load_squad(squad_file, tokenizer, True, cache_dir=cache, **SMALL)
    assert again["input_ids"] == feats["input_ids"]
    with pytest.raises(AssertionError, match="rebuilt"):
        load_squad(squad_file, tokenizer, True, cache_dir=cache, overwrite_cache=True, **SMALL)
    with pytest.raises(AssertionError, match="rebuilt"):  # another parameter, another cache
        load_squad(squad_file, tokenizer, True, cache_dir=cache, max_seq_length=30,
                   doc_stride=8, max_query_length=6)
    # Eval features get their own cache, by default in .cache/ next to the file.
    examples, feats = load_squad(squad_file, tokenizer, False, **SMALL)
    assert feats["example_index"] == [0, 0, 0, 0, 1, 1, 1, 1, 2]
    assert feats["offset_mapping"][1][8 + 13] == [78, 83]
    assert len(list((squad_file.parent / ".cache").iterdir())) == 1
    _, reloaded = load_squad(squad_file, tokenizer, False, **SMALL)  # None offsets survive Arrow
    assert reloaded[:] == feats[:] and reloaded["offset_mapping"][0][:9] == [None] * 8 + [[0, 3]]
    assert not any(p.name.count(".tmp") for p in cache.iterdir())


def test_evaluate_squad_matches_written_predictions(squad_file, tokenizer, tmp_path):
    from transformers import BertForQuestionAnswering

    examples, feats = load_squad(squad_file, tokenizer, False, cache_dir=tmp_path / "c", **SMALL)
    torch.manual_seed(0)
    model = BertForQuestionAnswering(tiny_config())
    model.train()
    out = tmp_path / "out"
    result = evaluate_squad(model, examples, feats, SquadCollator(tokenizer), 3,
                            torch.device("cpu"), output_dir=out)
    assert model.training
    preds = json.loads((out / "predictions.json").read_text(encoding="utf-8"))
    nbest = json.loads((out / "nbest_predictions.json").read_text(encoding="utf-8"))
    assert sorted(preds) == sorted(nbest) == ["q-capital", "q-paris", "q-zurich"]
    assert all(preds[ex["id"]] in ex["context"] and preds[ex["id"]] for ex in examples)
    assert all(nbest[k][0]["text"] == preds[k] for k in preds)
    gold = {ex["id"]: [a["text"] for a in ex["answers"]] for ex in examples}
    assert result == squad_scores(preds, gold)
    assert result["total"] == 3 and type(result["exact"]) is float and type(result["f1"]) is float
    assert not list(out.glob("*.tmp"))


# --- real data -----------------------------------------------------------------------------------


def strip_spaces_accents(text):
    import unicodedata

    text = unicodedata.normalize("NFD", normalize_answer(text))
    return "".join(c for c in text if not c.isspace() and unicodedata.category(c) != "Mn")


@pytest.mark.integration
def test_real_squad_eval_split(shared_data, tmp_path):
    from transformers import AutoTokenizer

    path = shared_data / "squad" / "eval-split-of-dev-v1.1.json"
    tok = AutoTokenizer.from_pretrained(shared_data / "models" / "all-MiniLM-L6-v2")
    examples, feats = load_squad(path, tok, False, cache_dir=tmp_path)
    assert len(examples) == 1988 and len(feats) >= len(examples)
    assert max(len(ids) for ids in feats["input_ids"]) <= 384
    train, skipped = read_squad_examples(path, True)
    checked = 0
    for example in train[:200]:
        f = build_train_features([example], tok, 384, 128, 64)
        for ids, s, e in zip(f["input_ids"], f["start_positions"], f["end_positions"]):
            if s:
                # decode() puts spaces around punctuation ("co - chair"): compare without spaces
                assert strip_spaces_accents(tok.decode(ids[s:e + 1])) == strip_spaces_accents(
                    example["answers"][0]["text"]), example["id"]
                checked += 1
    assert checked >= 200
