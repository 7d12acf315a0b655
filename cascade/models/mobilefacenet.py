"""MobileFaceNet (Chen et al. 2018): a ~1M-parameter face-recognition CNN with a 128-d embedding.

The module tree reproduces, name for name and shape for shape, the widely shared ArcFace-trained
PyTorch checkpoint (Xiaoccer/MobileFaceNet_Pytorch `model/best/068.ckpt`, CASIA-WebFace, 112x96
RGB input scaled as (x - 127.5) / 128), so `import_mobilefacenet` can convert that file into a body
state dict without renaming anything.

What the body returns, and why the embedding: MobileFaceNet has no global average pooling.  Its
`linear7` is a *global depthwise convolution* (a learned 7x6 spatial weighting per channel, the
paper's replacement for average pooling, because the centre and the corners of an aligned face
are not equally informative), followed by `linear1`, a linear 1x1 conv to the 128-d embedding.
Stopping at the last 7x6 map (`conv2`) and letting the age head average-pool it would throw away
those trained weights (about 9% of the network) and feed the head a pooling the network never
saw.  So the body returns the face-recognition embedding as a (N, 128, 1, 1) map, the feature the
checkpoint was trained to produce; the age model's global pooling is then the identity and its
FC 512 -> FC 256 head sits on the embedding.  `channels` is 128.

Input size: the global depthwise conv needs the last map to be exactly 7x6, i.e. a 112x96 input
(height x width).  The harness caches square images, so a 112x112 input (`input_size: 112`) is
centre-cropped to its middle 96 columns inside the body (the aspect ratio is kept; nothing is
squashed).  Any other size is an error that says so.
"""
from __future__ import annotations

import logging
import pickle
from collections import OrderedDict
from pathlib import Path

import torch
from torch import nn

from cascade.models.backbones import Backbone, Preprocessing

log = logging.getLogger(__name__)

#: (H, W) the weights were trained on; the global depthwise conv fixes it.
INPUT_HW = (112, 96)
EMBEDDING = 128
#: (expansion t, output channels c, repeats n, first stride s), the paper's Table 1.
BOTTLENECKS = ((2, 64, 5, 2), (4, 128, 1, 2), (2, 128, 6, 1), (4, 128, 1, 2), (2, 128, 2, 1))
#: (x - 127.5) / 128 on RGB, as the checkpoint's LFW loader does.
PREPROCESSING = Preprocessing("RGB", 1.0, (127.5, 127.5, 127.5), (128.0, 128.0, 128.0))


class ConvBN(nn.Module):
    """conv -> BN (-> PReLU unless linear); state-dict names `conv`, `bn`, `prelu`."""

    def __init__(self, cin: int, cout: int, kernel, stride: int = 1, padding: int = 0,
                 depthwise: bool = False, linear: bool = False):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride, padding, groups=cin if depthwise else 1,
                              bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.prelu = None if linear else nn.PReLU(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn(self.conv(x))
        return x if self.prelu is None else self.prelu(x)


class Bottleneck(nn.Module):
    """MobileNetV2 inverted residual with PReLU: 1x1 expand, 3x3 depthwise, 1x1 linear project.
    The eight layers sit in one Sequential `conv` (indices 0-7, as in the checkpoint)."""

    def __init__(self, cin: int, cout: int, stride: int, expansion: int):
        super().__init__()
        mid = cin * expansion
        self.residual = stride == 1 and cin == cout
        self.conv = nn.Sequential(
            nn.Conv2d(cin, mid, 1, bias=False), nn.BatchNorm2d(mid), nn.PReLU(mid),
            nn.Conv2d(mid, mid, 3, stride, 1, groups=mid, bias=False), nn.BatchNorm2d(mid),
            nn.PReLU(mid),
            nn.Conv2d(mid, cout, 1, bias=False), nn.BatchNorm2d(cout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.residual else self.conv(x)


class MobileFaceNet(nn.Module):
    """Image (N, 3, 112, 96) -> 128-d embedding map (N, 128, 1, 1); see the module docstring.

    A (N, 3, 112, W > 96) input is centre-cropped to 96 columns first."""

    def __init__(self):
        super().__init__()
        self.conv1 = ConvBN(3, 64, 3, 2, 1)
        self.dw_conv1 = ConvBN(64, 64, 3, 1, 1, depthwise=True)
        blocks, cin = [], 64
        for t, c, n, s in BOTTLENECKS:
            for i in range(n):
                blocks.append(Bottleneck(cin, c, s if i == 0 else 1, t))
                cin = c
        self.blocks = nn.Sequential(*blocks)
        self.conv2 = ConvBN(cin, 512, 1)
        self.linear7 = ConvBN(512, 512, (7, 6), depthwise=True, linear=True)
        self.linear1 = ConvBN(512, EMBEDDING, 1, linear=True)
        for m in self.modules():        # the reference implementation's initialisation
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for step in self.sequence():
            x = step(x)
        return x

    def sequence(self) -> list[nn.Module]:
        """The body as steps applied in order (its forward), so that a partial fine-tuning can
        compute the frozen steps once (cascade.train.cut)."""
        return [_CentreCrop(), self.conv1, self.dw_conv1, *self.blocks, self.conv2, self.linear7, self.linear1]


class _CentreCrop(nn.Module):
    """A 112-px-high face wider than 96 px cut to its middle 96 columns; other sizes refused."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        if (h, w) == INPUT_HW:
            return x
        if h != INPUT_HW[0] or w < INPUT_HW[1]:
            raise ValueError(f"MobileFaceNet takes 112x96 (HxW) faces, or 112-px-high wider "
                             f"ones that it centre-crops; got {h}x{w} (set input_size: 112)")
        left = (w - INPUT_HW[1]) // 2
        return x[..., left:left + INPUT_HW[1]]


def mobilefacenet() -> Backbone:
    """MobileFaceNet body (embedding output, 128 channels), RGB (x - 127.5) / 128."""
    return Backbone(MobileFaceNet(), EMBEDDING, PREPROCESSING)


# ---------------------------------------------------------------- safe checkpoint import


def safe_load(path: Path):
    """`torch.load` restricted to tensors and plain containers (weights_only=True).

    Works for both the zip format and the legacy (pre-1.6) format; PyTorch's restricted
    unpickler also covers legacy storage classes such as `torch.cuda.FloatStorage` and maps them
    to the CPU.  Anything else (a pickled class, a `__reduce__` payload) is refused, never
    executed; there is no fallback to unrestricted unpickling."""
    try:
        return torch.load(Path(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise ValueError(f"{path}: refused — the file holds objects other than tensors and plain "
                         f"containers, and pickled third-party code is never executed here "
                         f"({str(e).splitlines()[0]})") from e


def extract_state_dict(obj, path: Path) -> dict[str, torch.Tensor]:
    """The tensor dict of a loaded checkpoint: under 'net_state_dict' / 'state_dict' / 'model',
    or the object itself; a DataParallel 'module.' prefix is stripped."""
    if isinstance(obj, dict):
        for key in ("net_state_dict", "state_dict", "model"):
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not obj:
        raise ValueError(f"{path}: no state dict found (got {type(obj).__name__})")
    bad = [k for k, v in obj.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise ValueError(f"{path}: not a state dict — non-tensor entries {bad[:10]}")
    if all(k.startswith("module.") for k in obj):
        obj = {k[len("module."):]: v for k, v in obj.items()}
    return dict(obj)


def match_body(tensors: dict[str, torch.Tensor], body: nn.Module, path: Path,
               drop: tuple[str, ...] = ()) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Keep exactly the body's tensors.  Names starting with a `drop` prefix are discarded
    (returned as the second value); any other difference — missing, unexpected or wrong-shape
    tensors — is an error listing every name."""
    dropped = sorted(k for k in tensors if k.startswith(drop)) if drop else []
    tensors = {k: v for k, v in tensors.items() if not (drop and k.startswith(drop))}
    own = body.state_dict()
    missing = [k for k in own if k not in tensors]
    unexpected = sorted(set(tensors) - set(own))
    shape = [f"{k} {list(tensors[k].shape)} != {list(own[k].shape)}"
             for k in own if k in tensors and tensors[k].shape != own[k].shape]
    if missing or unexpected or shape:
        raise ValueError(f"{path}: tensors do not match the body — missing {missing}, "
                         f"unexpected {unexpected}, wrong shape {shape}")
    # clone: independent, contiguous tensors (safetensors refuses shared storage)
    out = OrderedDict((k, tensors[k].detach().clone().contiguous()) for k in own)
    return out, dropped


_BODIES = {"mobilefacenet": mobilefacenet}


def import_mobilefacenet(path: Path, backbone: str = "mobilefacenet"
                         ) -> tuple[dict[str, torch.Tensor], Preprocessing]:
    """MobileFaceNet checkpoint (e.g. `068.ckpt`: a legacy torch.save of {'epoch', 'net_state_dict'})
    -> (body state dict, the source's preprocessing).  Loaded with weights_only=True."""
    if backbone not in _BODIES:
        raise ValueError(f"import_mobilefacenet: backbone {backbone!r} is not one of {list(_BODIES)}")
    tensors = extract_state_dict(safe_load(path), path)
    out, _ = match_body(tensors, _BODIES[backbone]().body, path)
    log.info("%s: %d MobileFaceNet tensors", path, len(out))
    return out, PREPROCESSING
