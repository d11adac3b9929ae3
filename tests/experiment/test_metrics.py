import numpy as np
import pytest
from scipy import stats
from sklearn import metrics as sk

from veralab.experiment import metrics


@pytest.fixture
def labels():
    rng = np.random.default_rng(0)
    gold = rng.integers(0, 2, 300)
    pred = np.where(rng.random(300) < 0.7, gold, 1 - gold)
    return pred, gold


def test_classification_metrics_match_sklearn(labels):
    pred, gold = labels
    assert metrics.accuracy(pred, gold) == pytest.approx(sk.accuracy_score(gold, pred))
    assert metrics.f1(pred, gold) == pytest.approx(sk.f1_score(gold, pred))
    assert metrics.matthews(pred, gold) == pytest.approx(sk.matthews_corrcoef(gold, pred))


def test_correlations_match_scipy_including_ties():
    rng = np.random.default_rng(1)
    gold = rng.integers(0, 6, 200).astype(float)  # many ties, like STS-B's 0-5 scores
    pred = gold + rng.normal(0, 1.5, 200)
    pred[:20] = 2.0
    assert metrics.pearson(pred, gold) == pytest.approx(stats.pearsonr(pred, gold)[0])
    assert metrics.spearman(pred, gold) == pytest.approx(stats.spearmanr(pred, gold)[0])


def test_degenerate_inputs_give_zero_not_nan():
    assert metrics.matthews([1, 1, 1], [1, 0, 1]) == 0.0
    assert metrics.pearson([1, 1, 1], [1, 2, 3]) == 0.0
    assert metrics.f1([0, 0], [1, 1]) == 0.0
