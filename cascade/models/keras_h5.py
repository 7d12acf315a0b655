"""`cascade weights import FILE --format keras-h5`: the keras-vggface 0.6 releases the thesis used.

The thesis is a Keras study; its face-recognition weights are rcmalli's keras-vggface files
(`rcmalli_vggface_tf_{vgg16,resnet50,senet50}.h5` and the `_notop_` variants: VGG-16 is VGG-Face,
Parkhi et al. 2015; ResNet-50 and SENet-50 are VGGFace2, Cao et al. 2018).  They are Keras 2
legacy HDF5 weight files, read here with h5py alone (no TensorFlow at run time):

    root attrs  layer_names [, backend, keras_version]   (a full-model file nests them under
                                                          `model_weights` and adds `model_config`)
    <layer>     attrs weight_names, e.g. "conv1/7x7_s2/bn/gamma:0"; datasets at those paths
                (names with '/' are nested groups, as h5py writes them)

Conversion, exactly Keras's conventions: conv kernels are stored HWIO (kh, kw, in, out) and
become OIHW; BatchNorm gamma / beta / moving_mean / moving_variance become weight / bias /
running_mean / running_var, with the epsilon of the file's model config when it has one, else
keras-vggface's (checked against the body's, cascade.models.vggface2.KERAS_BN_EPS); the top
(VGG-16 fc6-fc8, ResNet / SENet `classifier`) is dropped, as the thesis replaced it.  The bodies
the tensors load into compute what Keras computes (`padding='same'` with stride 2 pads the
bottom / right more; 'valid' floor max-pooling): `vgg16` (torchvision's layout, the same
arithmetic) and `resnet50_keras` / `senet50_keras`.  Preprocessing is keras-vggface's
`preprocess_input`: version 1 (VGG-Face: BGR minus (93.5940, 104.7624, 129.1863)) for VGG-16,
version 2 (VGGFace2: BGR minus (91.4953, 103.8827, 131.0912)) for ResNet-50 / SENet-50.

Equivalence with Keras itself is tested on random weights in the released layout:
tests/keras/ (fixtures made by tests/keras/make_fixtures.py with keras-vggface's own model code).
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import torch

from cascade.models.backbones import Converted, Preprocessing
from cascade.models.vggface2 import KERAS_BN_EPS, VGGFACE2_BGR

#: keras-vggface `preprocess_input(version=1)`: VGG-Face's mean, in BGR order.
VGGFACE_V1_BGR = Preprocessing("BGR", 1.0, (93.5940, 104.7624, 129.1863), (1.0, 1.0, 1.0))

#: keras-vggface VGG-16 conv layer -> index in torchvision's `vgg16().features`.
VGG16_CONVS = {name: i for name, i in zip(
    ["conv1_1", "conv1_2", "conv2_1", "conv2_2", "conv3_1", "conv3_2", "conv3_3",
     "conv4_1", "conv4_2", "conv4_3", "conv5_1", "conv5_2", "conv5_3"],
    [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28])}

#: Which body a file is, told by a layer only that model has.
MODELS = (("conv5_3_1x1_down", "senet50_keras"), ("conv5_3_1x1_increase", "resnet50_keras"),
          ("conv5_3", "vgg16"))
TOPS = {"vgg16": ("fc6", "fc7", "fc8"), "resnet50_keras": ("classifier",), "senet50_keras": ("classifier",)}
PREPROCESSING = {"vgg16": VGGFACE_V1_BGR, "resnet50_keras": VGGFACE2_BGR, "senet50_keras": VGGFACE2_BGR}

_RESNET = re.compile(r"conv([2-5])_(\d+)_(1x1_reduce|3x3|1x1_increase|1x1_proj|1x1_down|1x1_up)(/bn)?")
_BLOCK = {"1x1_reduce": ("conv1", "bn1"), "3x3": ("conv2", "bn2"), "1x1_increase": ("conv3", "bn3"),
          "1x1_proj": ("downsample.0", "downsample.1"), "1x1_down": ("conv4", None), "1x1_up": ("conv5", None)}
_BN = {"gamma": "weight", "beta": "bias", "moving_mean": "running_mean", "moving_variance": "running_var"}
_BN_ORDER = ("gamma", "beta", "moving_mean", "moving_variance")      # Keras's order in weight_names


def _text(value) -> str:
    return value.decode("utf8") if isinstance(value, bytes) else str(value)


def read(path: Path) -> tuple[dict[str, list[tuple[str, np.ndarray]]], dict]:
    """{layer name: [(weight name, array), ...]} in the file's order, and its attributes
    (backend, keras_version, the model config's BatchNorm epsilons when present)."""
    import h5py

    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise ValueError(f"{path}: not an HDF5 file ({exc})") from None
    with f:
        root = f["model_weights"] if "model_weights" in f else f
        if "layer_names" not in root.attrs:
            raise ValueError(f"{path}: not a Keras legacy HDF5 weight file (no `layer_names` attribute; "
                             f"Keras 3 `.weights.h5` files have another layout)")
        layers = {}
        for raw in root.attrs["layer_names"]:
            name = _text(raw)
            group = root[name]
            layers[name] = [(_text(w), np.asarray(group[_text(w)])) for w in group.attrs.get("weight_names", [])]
        meta = {k: _text(root.attrs[k]) for k in ("backend", "keras_version") if k in root.attrs}
        if "model_config" in f.attrs:
            config = json.loads(_text(f.attrs["model_config"]))
            meta["bn_epsilon"] = {layer["config"]["name"]: float(layer["config"]["epsilon"])
                                  for layer in config.get("config", {}).get("layers", [])
                                  if layer.get("class_name") == "BatchNormalization"}
    return layers, meta


def detect(layers: dict) -> str:
    """The body a keras-vggface file holds, from its layer names."""
    for layer, body in MODELS:
        if layer in layers:
            return body
    raise ValueError(f"not a keras-vggface VGG-16 / ResNet-50 / SENet-50 file: none of the layers "
                     f"{', '.join(m for m, _ in MODELS)} (it has {', '.join(list(layers)[:6])}, ...)")


def _kind(weight: str, position: int, count: int) -> str:
    """'kernel', 'bias', 'gamma', ... from a weight name ('conv1_1/kernel:0'), else by position."""
    leaf = weight.rsplit("/", 1)[-1].split(":")[0]
    if leaf in ("kernel", "bias", *_BN_ORDER):
        return leaf
    return (_BN_ORDER if count == 4 else ("kernel", "bias"))[position]


def _target(layer: str, body: str) -> tuple[str, bool] | None:
    """(body module name, is batch norm) of a Keras layer; None: not a body layer."""
    if body == "vgg16":
        return (f"{VGG16_CONVS[layer]}", False) if layer in VGG16_CONVS else None
    if layer == "conv1/7x7_s2":
        return "conv1", False
    if layer == "conv1/7x7_s2/bn":
        return "bn1", True
    m = _RESNET.fullmatch(layer)
    if not m:
        return None
    stage, block, part, bn = m.groups()
    conv, norm = _BLOCK[part]
    module = norm if bn else conv
    return (f"layer{int(stage) - 1}.{int(block) - 1}.{module}", bool(bn)) if module else None


def import_keras_h5(path: Path, backbone: str) -> Converted:
    layers, meta = read(Path(path))
    if meta.get("backend") == "theano":
        raise ValueError(f"{path}: a Theano-backend file (kernels flipped, channels first); keras-vggface "
                         f"released TensorFlow files (rcmalli_vggface_tf_*.h5): use one of those")
    body = detect(layers)
    if backbone != body:
        raise ValueError(f"{path} holds keras-vggface {body}'s layers: import it with --backbone {body}"
                         + (" (the Keras arithmetic of the same network)" if body.endswith("_keras") else ""))
    eps = KERAS_BN_EPS.get(body)
    tensors, dropped, unknown = {}, [], []
    for layer, weights in layers.items():
        if not weights:
            continue
        target = _target(layer, body)
        if target is None:
            (dropped if layer in TOPS[body] else unknown).append(layer)
            continue
        module, is_bn = target
        if is_bn:
            got = meta.get("bn_epsilon", {}).get(layer, eps)
            if not np.isclose(got, eps):
                raise ValueError(f"{path}: layer {layer} has BatchNorm epsilon {got:g} in its model config; "
                                 f"the {body} body uses {eps:g}")
        for i, (name, value) in enumerate(weights):
            kind = _kind(name, i, len(weights))
            if kind == "kernel":
                if value.ndim != 4:
                    raise ValueError(f"{path}: {name} has shape {value.shape}, expected a 4-D conv kernel (kh, kw, in, out)")
                value = value.transpose(3, 2, 0, 1)           # HWIO -> OIHW
            tensors[f"{module}.{_BN.get(kind, 'weight' if kind == 'kernel' else kind)}"] = \
                torch.from_numpy(np.ascontiguousarray(value, dtype=np.float32))
    if unknown:
        raise ValueError(f"{path}: layers with weights that {body} does not have: {', '.join(unknown[:8])}")
    return Converted(tensors, PREPROCESSING[body], sorted(dropped))
