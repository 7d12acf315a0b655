"""`cascade ensemble`'s meta-models on members' prediction frames: the average and the stacked MLP
with its `ensemble.*` settings recompute the decision rules with metrics.decisions."""
import numpy as np
import pandas as pd
import pytest

from cascade import config as C
from cascade import metrics as M
from cascade.ensemble import average, stack

LABELS = {"lo": [0, 10, 20, 30], "hi": [9, 19, 29, 39]}


def _member(seed: int, n: int = 40, folds: int = 2) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    truth = np.random.default_rng(99).integers(0, 4, n)
    probs = rng.dirichlet(np.ones(4), n) * 0.5 + np.eye(4)[truth] * 0.5
    frame = pd.DataFrame({"path": [f"img{i}.jpg" for i in range(n)], "fold": [str(i % folds) for i in range(n)],
                          "true_class": truth, **{f"p{k}": probs[:, k] for k in range(4)}})
    val_truth = np.random.default_rng(98).integers(0, 4, n)
    val_probs = rng.dirichlet(np.ones(4), n) * 0.5 + np.eye(4)[val_truth] * 0.5
    val = pd.DataFrame({"row": np.arange(n), "fold": [str(i % folds) for i in range(n)], "true_class": val_truth,
                        **{f"p{k}": val_probs[:, k] for k in range(4)}})
    return frame, val


def test_average_and_stack_recompute_every_decision_rule():
    (a, va), (b, vb) = _member(0), _member(1)
    values = (np.array(LABELS["lo"]) + np.array(LABELS["hi"])) / 2
    for out in (average([a, b], LABELS),
                stack([a, b], [va, vb], LABELS, seed=0, meta=C.defaults()["ensemble"])):
        probs = out[[f"p{k}" for k in range(4)]].to_numpy()
        assert np.allclose(probs.sum(1), 1)
        for column, decided in M.decisions(probs, values).items():
            assert np.allclose(out[column].to_numpy(), decided), column


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_the_stacked_mlp_takes_its_settings():
    (a, va), (b, vb) = _member(0), _member(1)
    small = stack([a, b], [va, vb], LABELS, seed=0, meta={"hidden": [2], "max_iter": 50})
    default = stack([a, b], [va, vb], LABELS, seed=0, meta=C.defaults()["ensemble"])
    assert not np.allclose(small[["p0", "p1", "p2", "p3"]].to_numpy(), default[["p0", "p1", "p2", "p3"]].to_numpy())
