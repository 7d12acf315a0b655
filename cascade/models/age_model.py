"""The age model: backbone body -> global pooling -> the thesis head -> class logits.

Classification over an ordered label space (integer ages, or age groups); the predicted age is
the expected value over class values (Rothe et al., the thesis's eq. 1).
"""
from __future__ import annotations

import torch
from torch import nn

from cascade.models.backbones import Backbone


def _he_linear(cin: int, cout: int) -> nn.Linear:
    """New head layers are He (Kaiming) initialised, as in the thesis."""
    layer = nn.Linear(cin, cout)
    nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
    nn.init.zeros_(layer.bias)
    return layer


class AgeModel(nn.Module):
    def __init__(self, backbone: Backbone, n_classes: int, hidden: list[int], dropout: float = 0.0,
                 pool: str = "avg"):
        super().__init__()
        self.body = backbone.body
        self.preprocessing = backbone.preprocessing
        self.pool = nn.AdaptiveAvgPool2d(1) if pool == "avg" else nn.AdaptiveMaxPool2d(1)
        layers: list[nn.Module] = []
        cin = backbone.channels
        for h in hidden:
            layers += [_he_linear(cin, h), nn.ReLU(inplace=True)]
            if dropout:
                layers.append(nn.Dropout(dropout))
            cin = h
        self.hidden = nn.Sequential(*layers)
        self.classifier = _he_linear(cin, n_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled body features of a normalised batch (what mode a's head trains on)."""
        return self.pool(self.body(x)).flatten(1)

    def head(self, feats: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.hidden(feats))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(x))

    def reset_classifier(self, n_classes: int) -> None:
        self.classifier = _he_linear(self.classifier.in_features, n_classes)
