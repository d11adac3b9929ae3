"""Task metrics as the paper reports them: accuracy; MRPC accuracy (and F1); CoLA Matthews; STS-B Pearson."""

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
