"""Task metrics as the paper reports them: accuracy; MRPC accuracy (and F1); CoLA Matthews; STS-B Pearson. And the
no-skill levels a run must beat: the majority class's score, the best constant answer's training loss."""

from __future__ import annotations

import numpy as np


def accuracy(pred, gold) -> float:
    return float(np.mean(np.asarray(pred) == np.asarray(gold)))


def f1(pred, gold) -> float:
    pred, gold = np.asarray(pred), np.asarray(gold)
    tp = np.sum((pred == 1) & (gold == 1))
    precision = tp / max(np.sum(pred == 1), 1)
    recall = tp / max(np.sum(gold == 1), 1)
    return float(0.0 if tp == 0 else 2 * precision * recall / (precision + recall))


def matthews(pred, gold) -> float:
    pred, gold = np.asarray(pred), np.asarray(gold)
    tp, tn = np.sum((pred == 1) & (gold == 1)), np.sum((pred == 0) & (gold == 0))
    fp, fn = np.sum((pred == 1) & (gold == 0)), np.sum((pred == 0) & (gold == 1))
    denom = np.sqrt(float((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn)))
    return float(0.0 if denom == 0 else (tp * tn - fp * fn) / denom)


def _ranks(x: np.ndarray) -> np.ndarray:
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x))
    ranks[order] = np.arange(len(x))
    sorted_x = x[order]
    i = 0
    while i < len(x):  # average ranks over ties
        j = i
        while j + 1 < len(x) and sorted_x[j + 1] == sorted_x[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2
        i = j + 1
    return ranks


def pearson(pred, gold) -> float:
    pred, gold = np.asarray(pred, dtype=float), np.asarray(gold, dtype=float)
    if pred.std() == 0 or gold.std() == 0:
        return 0.0
    return float(np.corrcoef(pred, gold)[0, 1])


def spearman(pred, gold) -> float:
    return pearson(_ranks(np.asarray(pred, dtype=float)), _ranks(np.asarray(gold, dtype=float)))


# metric name -> function; the first entry of each task's list is its headline metric
METRICS = {"accuracy": accuracy, "f1": f1, "matthews": matthews, "pearson": pearson, "spearman": spearman}


def compute(names: list[str], pred, gold) -> dict[str, float]:
    return {name: METRICS[name](pred, gold) for name in names}


def majority_class(eval_labels: dict) -> dict:
    """Per scored split, its most frequent label and that label's share: the best score any constant answer gets,
    the level a classifier must beat to have learned anything (MRPC's dev split is 68% paraphrases)."""
    found = {name: np.unique(np.asarray(labels), return_counts=True) for name, labels in eval_labels.items()}
    return {"label": {name: int(values[counts.argmax()]) for name, (values, counts) in found.items()},
            "accuracy": {name: round(float(counts.max() / counts.sum()), 6) for name, (_, counts) in found.items()}}


def constant_loss(labels, num_labels: int) -> float:
    """The training loss of the best constant answer (the label frequencies' entropy for cross-entropy, the labels'
    variance for squared error): a run whose final training loss is not below it has learned nothing of the inputs."""
    labels = np.asarray(labels, dtype=float if num_labels == 1 else int)
    if num_labels == 1:
        return round(float(labels.var()), 6)
    shares = np.bincount(labels, minlength=num_labels) / len(labels)
    return round(float(-(shares[shares > 0] * np.log(shares[shares > 0])).sum()), 6)
