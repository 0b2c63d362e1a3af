"""Accuracy metrics against a confusion matrix counted by hand, and against scikit-learn."""
import math

import numpy as np
import pytest

from landcover_plugin.core.assess.metrics import ConfusionCounter, metrics_from_confusion, to_jsonable

# Rows = reference, columns = classified. This is the matrix of the 4 x 5 case in
# test_accuracy_assess.py, counted there pixel by pixel.
HAND_CM = [[5, 1, 0],
           [1, 4, 1],
           [0, 0, 5]]


def test_metrics_of_a_hand_counted_matrix():
    m = metrics_from_confusion(HAND_CM)
    # n = 17, diagonal = 14; row totals 6, 6, 5; column totals 6, 5, 6.
    assert m["n"] == 17
    assert m["overall_accuracy"] == pytest.approx(14 / 17)
    # chance agreement = (6*6 + 6*5 + 5*6) / 17^2 = 96/289; kappa = (238 - 96) / (289 - 96) = 142/193
    assert m["expected_agreement"] == pytest.approx(96 / 289)
    assert m["kappa"] == pytest.approx(142 / 193)
    assert m["precision"] == pytest.approx([5 / 6, 4 / 5, 5 / 6])       # diagonal / column total
    assert m["recall"] == pytest.approx([5 / 6, 4 / 6, 5 / 5])          # diagonal / row total
    assert m["f1"] == pytest.approx([10 / 12, 8 / 11, 10 / 11])         # 2 d / (row + column)
    assert m["iou"] == pytest.approx([5 / 7, 4 / 7, 5 / 6])             # d / (row + column - d)
    assert m["mean_iou"] == pytest.approx((5 / 7 + 4 / 7 + 5 / 6) / 3)
    assert m["row_shares"][1] == pytest.approx([1 / 6, 4 / 6, 1 / 6])
    assert m["column_shares"][:, 1] == pytest.approx([1 / 5, 4 / 5, 0])
    assert list(m["reference_totals"]) == [6, 6, 5] and list(m["classified_totals"]) == [6, 5, 6]


def test_metrics_agree_with_scikit_learn_on_random_labels():
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(7)
    truth = rng.integers(1, 6, size=5000)
    predicted = np.where(rng.random(5000) < 0.7, truth, rng.integers(1, 6, size=5000))
    counter = ConfusionCounter()
    for chunk in range(0, 5000, 1234):  # accumulated window by window
        counter.update(truth[chunk:chunk + 1234], predicted[chunk:chunk + 1234])
    labels = [1, 2, 3, 4, 5]
    cm = counter.matrix(labels)
    assert (cm == metrics.confusion_matrix(truth, predicted, labels=labels)).all()
    m = metrics_from_confusion(cm)
    precision, recall, f1, _ = metrics.precision_recall_fscore_support(truth, predicted, labels=labels)
    assert m["overall_accuracy"] == pytest.approx(metrics.accuracy_score(truth, predicted))
    assert m["kappa"] == pytest.approx(metrics.cohen_kappa_score(truth, predicted))
    assert m["precision"] == pytest.approx(precision) and m["recall"] == pytest.approx(recall)
    assert m["f1"] == pytest.approx(f1)
    assert m["iou"] == pytest.approx(metrics.jaccard_score(truth, predicted, labels=labels, average=None))
    assert counter.present_ids() == labels


def test_undefined_metrics_are_nan_and_left_out_of_means():
    # Class 2 is never mapped (precision undefined); class 3 occurs nowhere (all undefined).
    m = metrics_from_confusion([[3, 0, 0], [2, 0, 0], [0, 0, 0]])
    assert m["overall_accuracy"] == pytest.approx(3 / 5)
    assert math.isnan(m["precision"][1]) and m["recall"][1] == 0.0 and m["iou"][1] == 0.0
    assert all(math.isnan(m[k][2]) for k in ("precision", "recall", "f1", "iou"))
    assert m["mean_iou"] == pytest.approx((3 / 5 + 0.0) / 2)
    # One class everywhere in both maps: kappa is undefined, not 1 or a division error.
    single = metrics_from_confusion([[9]])
    assert single["overall_accuracy"] == 1.0 and math.isnan(single["kappa"])
    assert to_jsonable({"k": single["kappa"], "a": np.array([1.5, np.nan])}) == {"k": None, "a": [1.5, None]}


def test_confusion_matrix_must_be_square():
    with pytest.raises(ValueError):
        metrics_from_confusion([[1, 2, 3], [4, 5, 6]])
