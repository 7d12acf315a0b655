"""Weight sources of the pretrained root: none (random init), a named default under
`$CASCADE_HOME/weights/`, or a `.safetensors` path.

Why only safetensors here: training never unpickles a third-party file.  Pickled releases
(VGGFace2 `.pkl`, `*_dag.pth`, facenet `.pt`) are converted once by `cascade weights import`,
which records the source's sha256 and preprocessing next to the converted file.
"""
from __future__ import annotations

from pathlib import Path

from torch import nn

from cascade.store import file_sha256

SOURCES = {
    "vgg16_vggface2": "VGG-16 trained on VGGFace2 (e.g. the Caffe conversion `vgg16_vggface2.pkl`"
                      " or `vgg_face_dag.pth`), converted with `cascade weights import`",
    "resnet50_vggface2": "ResNet-50 VGGFace2 (`resnet50_ft_weight.pkl`, Cao et al. 2018), converted"
                         " with `cascade weights import`",
    "senet50_vggface2": "SENet-50 VGGFace2 (`senet50_ft_weight.pkl`), converted with `cascade weights import`",
    "mobilefacenet_casia": "MobileFaceNet (Xiaoccer/MobileFaceNet_Pytorch `model/best/068.ckpt`), converted"
                           " with `cascade weights import`",
    "inception_resnet_v1_vggface2": "facenet-pytorch Inception-ResNet-v1 (`20180402-114759-vggface2.pt`),"
                                    " converted with `cascade weights import`",
}


def resolve(spec: str, default: str, home: Path) -> Path | None:
    """The weight file a `weights=` value refers to (None = random init)."""
    name = default if spec == "default" else spec
    if name == "none":
        return None
    path = Path(name).expanduser()
    if path.suffix != ".safetensors":
        path = Path(home) / "weights" / f"{name}.safetensors"
    if not path.exists():
        origin = SOURCES.get(name, "a .safetensors file written by `cascade weights import`")
        raise FileNotFoundError(f"weights {name!r}: expected {path} — {origin}. "
                                f"Put the file there, pass weights=/path/file.safetensors, "
                                f"or weights=none for random initialisation.")
    return path


def identity(path: Path | None) -> str:
    """What a stage key records about its root weights."""
    return "none" if path is None else f"sha256:{file_sha256(path)}"


def load_body(body: nn.Module, path: Path) -> None:
    """Load a body state dict from safetensors; any missing or unexpected tensor is an error
    that lists the mismatch (a silently half-loaded network is the worst outcome)."""
    from safetensors.torch import load_file

    try:
        tensors = load_file(path)
    except Exception as exc:      # safetensors parses no code; anything else is simply not weights
        raise ValueError(f"{path}: not a readable safetensors file ({type(exc).__name__}: {exc}); "
                         f"weights are read from safetensors only — convert a .pth/.pkl/.ckpt once "
                         f"with `cascade weights import`") from exc
    own = body.state_dict()
    missing = sorted(set(own) - set(tensors))
    unexpected = sorted(set(tensors) - set(own))
    shape = sorted(k for k in set(own) & set(tensors) if own[k].shape != tensors[k].shape)
    if missing or unexpected or shape:
        raise ValueError(f"{path}: tensors do not match the backbone — missing {missing[:10]}, "
                         f"unexpected {unexpected[:10]}, wrong shape {shape[:10]}")
    body.load_state_dict(tensors)


def recorded_preprocessing(path: Path | None) -> dict | None:
    """The preprocessing `cascade weights import` recorded beside a weight file (channel order,
    scale, mean, std of the source), or None: the model must be fed what its weights saw."""
    if path is None:
        return None
    from cascade.models.importers import load_preprocessing

    pre = load_preprocessing(path)
    return None if pre is None else {"channels": pre.channels, "scale": pre.scale,
                                     "mean": list(pre.mean), "std": list(pre.std)}
