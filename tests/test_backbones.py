"""Every registered backbone builds, runs forward and backward at a small input through the age
model, and the expected-value rule gives the age the class probabilities imply."""
import numpy as np
import pytest
import torch

from cascade.data.datasets import LabelSpace
from cascade.models import BACKBONES, AgeModel, build_backbone
from cascade.train.trainer import predict_proba

#: Smallest input each backbone accepts comfortably (mobilefacenet: its fixed 112x96 geometry).
SIZES = {"demo": 24, "vgg16": 32, "resnet50": 64, "senet50": 64, "resnet50_keras": 64, "senet50_keras": 64,
         "mobilefacenet": 112,
         "inception_resnet_v1": 80, "timm:resnet18": 32}


def test_every_registered_backbone_is_listed():
    assert set(BACKBONES) | {"timm:resnet18"} == set(SIZES)


@pytest.mark.parametrize("name", sorted(SIZES))
def test_forward_and_backward(name):
    torch.manual_seed(0)
    model = AgeModel(build_backbone(name), 7, [16])
    x = torch.randint(0, 256, (2, SIZES[name], SIZES[name], 3), dtype=torch.uint8)
    logits = model(model.preprocessing.apply(x))
    assert logits.shape == (2, 7) and torch.isfinite(logits).all()
    logits.sum().backward()
    grads = [p.grad for p in model.body.parameters() if p.requires_grad]
    assert grads and all(g is not None for g in grads)


def test_expected_value_age_on_hand_made_probabilities():
    """Exact ages: Σ age·p.  Age groups: Σ midpoint·p (the thesis's rule for Adience)."""
    ages = LabelSpace((20, 21, 22, 23), (20, 21, 22, 23))
    p = np.array([[0.0, 0.5, 0.5, 0.0], [0.25, 0.25, 0.25, 0.25], [0, 0, 0, 1.0]])
    assert np.allclose(p @ ages.values, [21.5, 21.5, 23.0])
    groups = LabelSpace((0, 4, 8), (2, 6, 12))
    assert np.allclose(groups.values, [1, 5, 10])
    assert np.allclose(np.array([[0.5, 0.5, 0.0]]) @ groups.values, [3.0])


def test_predictions_are_probabilities_whose_expectation_is_reported():
    torch.manual_seed(0)
    model = AgeModel(build_backbone("demo"), 5, [8])
    images = np.random.default_rng(0).integers(0, 256, (6, 24, 24, 3), dtype=np.uint8)
    p = predict_proba(model, images, np.arange(6), "cpu")
    assert p.shape == (6, 5) and np.allclose(p.sum(1), 1, atol=1e-5) and (p >= 0).all()
