"""Loss registry: each loss on hand-made probabilities against its formula, and the order
information the specialised losses add."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cascade import config as C
from cascade.train.losses import LOSSES, make_loss

VALUES = torch.arange(5, dtype=torch.float32)           # ages 0..4


def test_ce_is_cross_entropy():
    logits, target = torch.randn(6, 5, generator=torch.Generator().manual_seed(0)), torch.tensor([0, 1, 2, 3, 4, 2])
    assert torch.allclose(make_loss("ce")(logits, target, VALUES), F.cross_entropy(logits, target, reduction="none"))


def test_dldl_is_kl_to_a_gaussian_label_distribution():
    logits, target = torch.zeros(1, 5), torch.tensor([2])          # uniform prediction
    q = np.exp(-0.5 * ((np.arange(5) - 2) / 1.0) ** 2)
    q /= q.sum()
    expected = float((q * (np.log(q) - math.log(1 / 5))).sum())
    assert make_loss("dldl", {"sigma": 1.0})(logits, target, VALUES).item() == pytest.approx(expected, rel=1e-5)
    # order matters: mass one class away costs less than mass four classes away
    near = torch.full((1, 5), -9.0); near[0, 3] = 9.0
    far = torch.full((1, 5), -9.0); far[0, 0] = 9.0
    loss = make_loss("dldl", {"sigma": 1.0})
    assert loss(near, torch.tensor([4]), VALUES) < loss(far, torch.tensor([4]), VALUES)


def test_mean_variance_adds_the_mean_and_variance_terms():
    p = torch.tensor([[0.1, 0.2, 0.4, 0.2, 0.1]])
    logits, target = p.log(), torch.tensor([3])
    mean, var = 2.0, float((p[0] * (VALUES - 2.0) ** 2).sum())
    ce = -math.log(0.2)
    got = make_loss("mean_variance", {"lambda_mean": 0.2, "lambda_var": 0.05})(logits, target, VALUES).item()
    assert got == pytest.approx(ce + 0.2 * 0.5 * (mean - 3) ** 2 + 0.05 * var, rel=1e-5)


def test_loss_is_a_validated_setting_that_reaches_the_stage():
    assert set(C.LOSSES) == set(LOSSES)
    params = C.stage_params(C.load(["loss=dldl", "loss_options.sigma=3"]), "imdb", "full")
    assert params["loss"] == "dldl" and params["loss_options"] == {"sigma": 3.0}
    with pytest.raises(C.ConfigError, match="Valid values: ce, dldl, mean_variance"):
        C.load(["loss=l1"])
