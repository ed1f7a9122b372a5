"""Evaluation metrics, computed locally (the transformers 2.x metric helpers are gone in 5.x).

GLUE keys follow the original (``mcc``, ``acc``, ``f1``, ``acc_and_f1``, ``pearson``,
``spearmanr``, ``corr``; fractions in 0..1). SQuAD v1.1 follows the official evaluation script:
exact match and F1 in percent, each the maximum over the gold answers.

>>> glue_metrics("mrpc", [1, 0, 1], [1, 1, 1])["acc"]
0.6666666666666666
>>> squad_scores({"q": "the Eiffel Tower"}, {"q": ["Eiffel tower", "a tower"]})["exact"]
100.0
"""
import collections
import re
import string

import numpy as np
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import f1_score, matthews_corrcoef


def _acc(preds, labels):
    return float((np.asarray(preds) == np.asarray(labels)).mean())


def glue_metrics(task_name, preds, labels):
    """Metrics of one GLUE task on predictions (class ids, or floats for STS-B) and gold labels."""
    task = task_name.lower()
    preds, labels = np.asarray(preds), np.asarray(labels)
    if len(preds) != len(labels):
        raise ValueError(f"{len(preds)} predictions for {len(labels)} labels")
    if task == "cola":
        return {"mcc": float(matthews_corrcoef(labels, preds))}
    if task in ("sst-2", "mnli", "mnli-mm", "qnli", "rte", "wnli"):
        return {"acc": _acc(preds, labels)}
    if task in ("mrpc", "qqp"):
        acc = _acc(preds, labels)
        f1 = float(f1_score(y_true=labels, y_pred=preds))
        return {"acc": acc, "f1": f1, "acc_and_f1": (acc + f1) / 2}
    if task == "sts-b":
        pearson = float(pearsonr(preds, labels)[0])
        spearman = float(spearmanr(preds, labels)[0])
        return {"pearson": pearson, "spearmanr": spearman, "corr": (pearson + spearman) / 2}
    raise KeyError(task_name)


# --- SQuAD v1.1 (official normalisation) -------------------------------------------------

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCT = set(string.punctuation)


def normalize_answer(text):
    """Lower-case, drop punctuation and the articles a/an/the, collapse whitespace."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCT)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def exact_match(prediction, gold):
    return float(normalize_answer(prediction) == normalize_answer(gold))


def f1_tokens(prediction, gold):
    """Token-overlap F1 between two answers after normalisation."""
    pred_toks = normalize_answer(prediction).split()
    gold_toks = normalize_answer(gold).split()
    common = collections.Counter(pred_toks) & collections.Counter(gold_toks)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision = same / len(pred_toks)
    recall = same / len(gold_toks)
    return 2 * precision * recall / (precision + recall)


def squad_scores(predictions, gold_answers):
    """Official v1.1 scores.

    predictions: {question id: predicted text}; gold_answers: {question id: [gold texts]}.
    Every gold question counts; a question without a prediction scores 0. Returns percentages
    ``exact`` and ``f1`` and the question count ``total``.
    """
    em = f1 = 0.0
    for qid, golds in gold_answers.items():
        pred = predictions.get(qid, "")
        em += max(exact_match(pred, g) for g in golds)
        f1 += max(f1_tokens(pred, g) for g in golds)
    total = len(gold_answers)
    return {"exact": 100.0 * em / max(total, 1), "f1": 100.0 * f1 / max(total, 1), "total": total}


# --- headline metrics and trivial baselines ----------------------------------------------

# One named headline metric per task (the paper's Table 2 columns); GLUE metrics are
# fractions and are reported in percent, SQuAD and MLM already are.
HEADLINE = {
    "cola": "mcc", "sst-2": "acc", "mrpc": "acc", "sts-b": "pearson", "qqp": "acc",
    "mnli": "acc", "mnli-mm": "acc", "qnli": "acc", "rte": "acc", "wnli": "acc",
    "squad": "f1", "mlm": "acc",
}
HEADLINE_NAME = {"mcc": "Matthews corr.", "acc": "accuracy", "pearson": "Pearson",
                 "f1": "F1", }
_PERCENT_ALREADY = {"squad", "mlm"}


def headline_metric(task):
    """Name of ``task``'s headline metric (``sts-b`` -> ``pearson``)."""
    key = str(task).lower()
    if key not in HEADLINE:
        raise KeyError(f"no headline metric for task {task!r}")
    return HEADLINE[key]


def headline(task, metrics):
    """``{"metric", "value"}`` with the value in percent, or None when the metric is missing."""
    name = headline_metric(task)
    value = metrics.get(name) if metrics else None
    if value is None:
        return None
    scale = 1.0 if str(task).lower() in _PERCENT_ALREADY else 100.0
    return {"metric": name, "value": float(value) * scale}


def glue_baseline(task_name, labels):
    """The trivial baseline on a dev set, headline metric in percent.

    Classification: always answer the most frequent label (ties: the smallest id) -> its
    accuracy (Matthews 0 for CoLA). Regression (STS-B): a constant prediction, whose Pearson
    correlation is undefined and counted as 0.
    """
    task = str(task_name).lower()
    metric = headline_metric(task)
    labels = np.asarray(labels)
    if task == "sts-b":
        return {"metric": metric, "value": 0.0, "what": "constant prediction (Pearson undefined, counted 0)"}
    values, counts = np.unique(labels, return_counts=True)
    major = values[int(np.argmax(counts))]
    scores = glue_metrics(task, np.full(len(labels), major), labels)
    return {"metric": metric, "value": 100.0 * scores[metric],
            "what": f"majority class (label {int(major)}, {int(counts.max())} of {len(labels)})"}
