"""Backbone registry: one name -> one constructor, like timm's `create_model`.

A backbone is a convolutional body that maps a normalised image batch to its last feature map,
plus the preprocessing its weights expect.  Why preprocessing lives here: face-recognition
weights were trained with different channel orders and means (Caffe BGR, RGB, [0,1] scaling),
and a model fed the wrong one still runs but silently underperforms.
"""
from __future__ import annotations

import dataclasses
from typing import Callable, NamedTuple

import torch
from torch import nn


@dataclasses.dataclass(frozen=True)
class Preprocessing:
    """How raw uint8 RGB pixels become the tensor the weights were trained on."""

    channels: str = "RGB"                       # RGB | BGR
    scale: float = 1.0 / 255.0                  # applied before mean/std
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.25, 0.25, 0.25)

    def apply(self, batch: torch.Tensor) -> torch.Tensor:
        """uint8 (N, H, W, 3) RGB -> float (N, 3, H, W) normalised."""
        x = batch.permute(0, 3, 1, 2).float()
        if self.channels == "BGR":
            x = x.flip(1)
        x = x * self.scale
        mean = torch.tensor(self.mean, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=x.device).view(1, 3, 1, 1)
        return (x - mean) / std


class Converted(NamedTuple):
    """What a weight importer makes of a source file (cascade.models.importers lists them).
    Here, beside Preprocessing, so that a backbone module defining its own importer (keras_h5)
    needs nothing from the registry that lists it."""

    tensors: dict[str, torch.Tensor]        # body state dict (keys as the registered backbone's)
    preprocessing: Preprocessing | None     # what the source expects; None = not known
    dropped: list[str]                      # source keys deliberately left out (classifiers)


@dataclasses.dataclass
class Backbone:
    body: nn.Module                  # image -> last conv feature map (N, C, h, w)
    channels: int                    # C
    preprocessing: Preprocessing


def _conv_block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(inplace=True))


def demo_cnn(widths: tuple[int, ...] = (16, 32, 64, 96)) -> Backbone:
    """A small VGG-style CNN (about 0.1M parameters) that trains at ~1,500 img/s at 40 px on
    2 CPU cores: the embedded demo's backbone, and the tests'."""
    layers: list[nn.Module] = []
    cin = 3
    for i, w in enumerate(widths):
        layers.append(_conv_block(cin, w))
        if i < len(widths) - 1:
            layers.append(nn.MaxPool2d(2))
        cin = w
    return Backbone(nn.Sequential(*layers), widths[-1], Preprocessing())


def vgg16() -> Backbone:
    """VGG-16 conv stack (torchvision layout, 13 conv layers; Keras's VGG-16 computes the same).
    Its face-recognition weights are VGG-Face's (Parkhi et al. 2015; VGG-16 was never released
    trained on VGGFace2), so the fallback preprocessing is VGG-Face's mean; an imported file's
    own (keras-vggface BGR, or the dag conversion's RGB) is recorded with it and wins."""
    from torchvision.models import vgg16 as tv_vgg16

    body = tv_vgg16(weights=None).features
    return Backbone(body, 512, Preprocessing("RGB", 1.0, (129.1863, 104.7624, 93.5940), (1.0, 1.0, 1.0)))


def timm_backbone(name: str) -> Backbone:
    """Any timm model, built without weights (local weights are loaded by cascade.models.weights)."""
    import timm

    model = timm.create_model(name, pretrained=False, num_classes=0, global_pool="")
    cfg = model.pretrained_cfg or {}
    pre = Preprocessing("RGB", 1.0 / 255.0, tuple(cfg.get("mean", (0.485, 0.456, 0.406))),
                        tuple(cfg.get("std", (0.229, 0.224, 0.225))))

    class Body(nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, x):
            return self.m.forward_features(x)

    return Backbone(Body(model), model.num_features, pre)


def _lazy(module: str, name: str) -> Callable[[], Backbone]:
    """A constructor imported on first use: those modules import this one (Backbone)."""
    def build() -> Backbone:
        import importlib
        return getattr(importlib.import_module(module), name)()
    build.__name__ = name
    return build


BACKBONES: dict[str, Callable[[], Backbone]] = {
    "demo": demo_cnn,
    "vgg16": vgg16,
    "resnet50": _lazy("cascade.models.vggface2", "resnet50_vggface2"),
    "senet50": _lazy("cascade.models.vggface2", "senet50_vggface2"),
    "resnet50_keras": _lazy("cascade.models.vggface2", "resnet50_keras"),
    "senet50_keras": _lazy("cascade.models.vggface2", "senet50_keras"),
    "mobilefacenet": _lazy("cascade.models.mobilefacenet", "mobilefacenet"),
    "inception_resnet_v1": _lazy("cascade.models.facenet", "inception_resnet_v1"),
}


def build_backbone(name: str) -> Backbone:
    if name.startswith("timm:"):
        return timm_backbone(name[5:])
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; valid: {', '.join(BACKBONES)}, timm:<name>")
    return BACKBONES[name]()
