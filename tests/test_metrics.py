"""Every task kind's metrics against scikit-learn (and torchmetrics' own per-batch metrics for
the per-pixel kinds) on the same random predictions, fed in uneven batches, with missing
labels: a reported number means what users of those libraries expect."""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from sklearn import metrics as sk

import mtl_models as mm

TM_REL = 1e-6  # torchmetrics' classification scores are float32
F64_REL = 1e-12


def evaluate(kind: str, classes: int | None, pred: torch.Tensor, target: torch.Tensor, batch: int) -> dict[str, float]:
    spec = mm.TaskSpec("t", kind, classes)
    state = spec.kind_impl.metric_state(spec, torch.device("cpu"))
    for start in range(0, len(pred), batch):
        state.update(pred[start : start + batch], target[start : start + batch])
    return state.compute()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_classification_accuracy_and_macro_f1(seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    n, classes = 203, 7
    logits = torch.randn(n, classes, generator=g)
    logits[:, 6] = -100.0  # class 6: never predicted ...
    target = torch.randint(0, 5, (n,), generator=g)  # ... nor labelled; class 5: predicted, never labelled
    target[torch.rand(n, generator=g) < 0.2] = -1
    out = evaluate("classification", classes, logits, target, batch=50)
    valid = (target >= 0).numpy()
    y, p = target.numpy()[valid], logits.argmax(1).numpy()[valid]
    assert out["accuracy"] == pytest.approx(sk.accuracy_score(y, p), rel=TM_REL)
    assert out["f1"] == pytest.approx(sk.f1_score(y, p, average="macro", zero_division=0), rel=TM_REL)
    # the standard kept: classes labelled or predicted (0..5); all seven would count class 6 as a 0
    assert out["f1"] != pytest.approx(sk.f1_score(y, p, labels=range(classes), average="macro", zero_division=0), rel=1e-3)
    present = np.unique(y)  # the old definition: only the labelled classes 0..4
    old = sk.f1_score(y, p, labels=present, average="macro", zero_division=0)
    assert out["f1"] == pytest.approx(old * len(present) / (len(present) + 1), rel=TM_REL)  # class 5 adds a 0


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("classes, labelled", [(2, 2), (7, 5), (10, 10), (40, 13)])
def test_classification_metrics_are_torchmetrics_to_the_bit(seed: int, classes: int, labelled: int) -> None:
    """Computed without torchmetrics (its import costs each trial process a second): equal to its
    float32 results exactly, also where classes are never labelled or never predicted."""
    from torchmetrics.functional.classification import multiclass_accuracy, multiclass_f1_score

    g = torch.Generator().manual_seed(seed)
    n = 97 + 50 * seed
    target = torch.randint(0, labelled, (n,), generator=g)
    pred = torch.where(torch.rand(n, generator=g) < 0.6, target, torch.randint(0, classes, (n,), generator=g))
    pred[pred == 1] = 0  # class 1: labelled, never predicted
    out = mm.tasks.accuracy_and_macro_f1(pred, target, classes)
    options = {"num_classes": classes, "validate_args": False}
    assert out["accuracy"] == float(multiclass_accuracy(pred, target, average="micro", **options))
    assert out["f1"] == float(multiclass_f1_score(pred, target, average="macro", **options))


def test_classification_metrics_worked_by_hand() -> None:
    # labels 2 1 0 0, predictions 2 1 0 1 (4 classes, class 3 in neither): accuracy 3/4;
    # F1 per class: 0: tp 1 fn 1 -> 2/3; 1: tp 1 fp 1 -> 2/3; 2: tp 1 -> 1; class 3 left out
    out = mm.tasks.accuracy_and_macro_f1(torch.tensor([2, 1, 0, 1]), torch.tensor([2, 1, 0, 0]), 4)
    assert out["accuracy"] == 0.75
    assert out["f1"] == pytest.approx((2 / 3 + 2 / 3 + 1) / 3, rel=1e-7)


def _attribute_reference(scores: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """scikit-learn per attribute on its labelled rows, averaged over all attributes (an
    attribute without a positive label has AP 0: recall is set to 1 at every threshold)."""
    valid = ~np.isnan(labels)
    predicted = scores > 0
    f1s, aps = [], []
    for a in range(labels.shape[1]):
        v = valid[:, a]
        y = labels[v, a] > 0.5
        f1s.append(sk.f1_score(y, predicted[v, a], zero_division=0))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "No positive class found in y_true"
            aps.append(sk.average_precision_score(y, scores[v, a]))
    return {
        "accuracy": sk.accuracy_score(labels[valid] > 0.5, predicted[valid]),
        "f1": float(np.mean(f1s)),
        "map": float(np.mean(aps)),
    }


@pytest.mark.parametrize("seed", [0, 1])
def test_multilabel_accuracy_f1_and_map_with_ties(seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    n, attributes = 150, 5
    scores = (torch.randn(n, attributes, generator=g) * 2).round(decimals=1)  # many tied scores
    labels = (torch.rand(n, attributes, generator=g) < 0.4).float()
    labels[:, 3] = 0.0  # no positive label: AP 0 (it counts in the mean), F1 0 where it is predicted
    scores[:, 4] = -1.0  # never predicted ...
    labels[:, 4] = 0.0  # ... never positive: F1 0 (zero_division), still in the mean
    labels[torch.rand(n, attributes, generator=g) < 0.15] = math.nan
    out = evaluate("multilabel", attributes, scores, labels, batch=40)
    expected = _attribute_reference(scores.numpy(), labels.numpy())
    assert out == {k: pytest.approx(v, rel=TM_REL) for k, v in expected.items()}


def test_binary_accuracy_f1_and_average_precision() -> None:
    g = torch.Generator().manual_seed(3)
    n = 97
    logits = torch.randn(n, 1, generator=g).round(decimals=1)
    labels = (torch.rand(n, generator=g) < 0.3).float()
    labels[torch.rand(n, generator=g) < 0.1] = math.nan
    out = evaluate("binary", None, logits, labels, batch=32)
    expected = _attribute_reference(logits.numpy(), labels.numpy()[:, None])
    assert out == {k: pytest.approx(v, rel=TM_REL) for k, v in expected.items()}


def test_regression_mae_and_rmse_over_every_labelled_value() -> None:
    g = torch.Generator().manual_seed(4)
    pred = torch.randn(120, 3, generator=g)
    target = torch.randn(120, 3, generator=g) * 5
    target[torch.rand(120, 3, generator=g) < 0.2] = math.nan
    out = evaluate("regression", 3, pred, target, batch=25)
    valid = ~np.isnan(target.numpy())
    y, p = target.double().numpy()[valid], pred.double().numpy()[valid]
    assert out["mae"] == pytest.approx(sk.mean_absolute_error(y, p), rel=F64_REL)
    assert out["rmse"] == pytest.approx(sk.root_mean_squared_error(y, p), rel=F64_REL)


def test_segmentation_miou_and_pixel_accuracy() -> None:
    from torchmetrics.classification import MulticlassAccuracy, MulticlassJaccardIndex

    g = torch.Generator().manual_seed(5)
    n, classes = 20, 5
    logits = torch.randn(n, classes, 8, 8, generator=g)
    logits[:, 4] = -100.0  # class 4: never predicted, never labelled (no IoU: left out)
    target = torch.randint(0, 3, (n, 8, 8), generator=g)  # class 3: predicted, never labelled (IoU 0)
    target[torch.rand(n, 8, 8, generator=g) < 0.25] = -1
    out = evaluate("segmentation", classes, logits, target, batch=6)
    valid = (target >= 0).numpy()
    y, p = target.numpy()[valid], logits.argmax(1).numpy()[valid]
    assert out["miou"] == pytest.approx(sk.jaccard_score(y, p, average="macro"), rel=F64_REL)
    assert out["pixel_accuracy"] == pytest.approx(sk.accuracy_score(y, p), rel=F64_REL)
    jaccard = MulticlassJaccardIndex(num_classes=classes, average="macro", ignore_index=-1)
    accuracy = MulticlassAccuracy(num_classes=classes, average="micro", ignore_index=-1)
    for start in range(0, n, 6):  # torchmetrics' own per-batch metrics (boolean indexing, host syncs)
        jaccard.update(logits[start : start + 6], target[start : start + 6])
        accuracy.update(logits[start : start + 6], target[start : start + 6])
    assert out["miou"] == pytest.approx(float(jaccard.compute()), rel=TM_REL)
    assert out["pixel_accuracy"] == pytest.approx(float(accuracy.compute()), rel=TM_REL)


def test_dense_regression_mae_and_rmse_over_labelled_pixels() -> None:
    from torchmetrics.regression import MeanAbsoluteError, MeanSquaredError

    g = torch.Generator().manual_seed(6)
    pred = torch.randn(12, 1, 6, 6, generator=g)
    target = torch.randn(12, 6, 6, generator=g)
    target[torch.rand(12, 6, 6, generator=g) < 0.3] = math.nan
    out = evaluate("dense_regression", 1, pred, target, batch=5)
    valid = ~torch.isnan(target)
    y, p = target[valid].double(), pred[:, 0][valid].double()
    assert out["mae"] == pytest.approx(sk.mean_absolute_error(y.numpy(), p.numpy()), rel=F64_REL)
    assert out["rmse"] == pytest.approx(sk.root_mean_squared_error(y.numpy(), p.numpy()), rel=F64_REL)
    mae, rmse = MeanAbsoluteError(), MeanSquaredError(squared=False)
    mae.update(p, y)
    rmse.update(p, y)
    assert (out["mae"], out["rmse"]) == (pytest.approx(float(mae.compute()), rel=TM_REL), pytest.approx(float(rmse.compute()), rel=TM_REL))


@pytest.mark.parametrize(
    "kind,classes,pred,target,names",
    [
        ("classification", 3, torch.randn(4, 3), torch.full((4,), -1), ("accuracy", "f1")),
        ("binary", None, torch.randn(4, 1), torch.full((4,), math.nan), ("accuracy", "f1", "map")),
        ("multilabel", 2, torch.randn(4, 2), torch.full((4, 2), math.nan), ("accuracy", "f1", "map")),
        ("regression", 1, torch.randn(4, 1), torch.full((4,), math.nan), ("mae", "rmse")),
        ("segmentation", 2, torch.randn(2, 2, 3, 3), torch.full((2, 3, 3), -1), ("miou", "pixel_accuracy")),
        ("dense_regression", 1, torch.randn(2, 1, 3, 3), torch.full((2, 3, 3), math.nan), ("mae", "rmse")),
    ],
)
def test_no_labelled_entry_gives_nan_metrics_under_the_same_names(kind, classes, pred, target, names) -> None:
    out = evaluate(kind, classes, pred, target, batch=2)
    assert list(out) == list(names) and all(math.isnan(v) for v in out.values())
    spec = mm.TaskSpec("t", kind, classes)
    assert set(spec.kind_impl.metrics) == set(names)  # names and directions unchanged
