"""Inception-ResNet-v1 (FaceNet, Schroff et al. 2015) as packaged by facenet-pytorch, whose
VGGFace2 / CASIA-WebFace weights (`20180402-114759-vggface2.pt`, `20180408-102900-casia-webface.pt`)
are plain state dicts of the full `InceptionResnetV1`.

The body is facenet-pytorch's own submodules, from `conv2d_1a` through `block8` (the last conv
block before its average pool), under their own names, so a facenet state dict loads into it
without renaming; it returns the (N, 1792, h, w) map (3x3 at the native 160 px).  The embedding
layers (`last_linear`, `last_bn`) and the classifier (`logits`) are not part of the body: like
the VGG-16 body, the age head starts from the last conv map.
"""
from __future__ import annotations

import logging
from collections import OrderedDict
from pathlib import Path

import torch
from torch import nn

from cascade.models.backbones import Backbone, Preprocessing
from cascade.models.mobilefacenet import extract_state_dict, match_body, safe_load

log = logging.getLogger(__name__)

CHANNELS = 1792
#: facenet-pytorch's fixed_image_standardization: (x - 127.5) / 128 on RGB.
PREPROCESSING = Preprocessing("RGB", 1.0, (127.5, 127.5, 127.5), (128.0, 128.0, 128.0))
#: The body's submodules of InceptionResnetV1, in forward order.
BODY_LAYERS = ("conv2d_1a", "conv2d_2a", "conv2d_2b", "maxpool_3a", "conv2d_3b", "conv2d_4a",
               "conv2d_4b", "repeat_1", "mixed_6a", "repeat_2", "mixed_7a", "repeat_3", "block8")
#: Prefixes of the full network's tensors that the body does not hold (dropped on import).
HEAD_PREFIXES = ("last_linear.", "last_bn.", "logits.")


class InceptionResnetV1Body(nn.Sequential):
    """The conv part of facenet-pytorch's InceptionResnetV1: the same module objects, in the same
    order and under the same names as in the full network."""

    def __init__(self, net: nn.Module):
        super().__init__(OrderedDict((name, getattr(net, name)) for name in BODY_LAYERS))


def inception_resnet_v1() -> Backbone:
    """facenet-pytorch InceptionResnetV1 body (randomly initialised; weights are imported)."""
    from facenet_pytorch import InceptionResnetV1

    net = InceptionResnetV1(pretrained=None, classify=False)
    return Backbone(InceptionResnetV1Body(net), CHANNELS, PREPROCESSING)


_BODIES = {"inception_resnet_v1": inception_resnet_v1}


def import_facenet(path: Path, backbone: str = "inception_resnet_v1"
                   ) -> tuple[dict[str, torch.Tensor], Preprocessing]:
    """facenet-pytorch `.pt` state dict -> (body state dict, fixed_image_standardization).

    Loaded with weights_only=True.  The full network's `last_linear.*`, `last_bn.*` and
    `logits.*` tensors are dropped (logged at INFO with their names); every other tensor must
    match the body exactly."""
    if backbone not in _BODIES:
        raise ValueError(f"import_facenet: backbone {backbone!r} is not one of {list(_BODIES)}")
    tensors = extract_state_dict(safe_load(path), path)
    out, dropped = match_body(tensors, _BODIES[backbone]().body, path, drop=HEAD_PREFIXES)
    log.info("%s: kept %d body tensors, dropped %d head tensors %s", path, len(out), len(dropped),
             dropped)
    return out, PREPROCESSING
