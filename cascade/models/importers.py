"""`cascade weights import`: convert a released weight file, once, into a body safetensors file.

    import_weights(FILE, fmt, name, backbone, home)
        -> $CASCADE_HOME/weights/<name>.safetensors   the body's state dict, keys exactly as the
                                                      registered backbone's body
           $CASCADE_HOME/weights/<name>.json          sidecar: source path and sha256, format,
                                                      backbone, preprocessing, dropped keys, ...
    Both are byte-identical for the same source file (path) in every home and process.

Why a separate, explicit step: training only ever reads safetensors (cascade.models.weights);
the pickled releases below are unpickled here and nowhere else, and the pickle reader admits
nothing but numpy arrays.

Formats (`IMPORTERS`):
  vggface2-pkl  cydonia999/VGGFace2-pytorch `resnet50_ft_weight.pkl` / `senet50_ft_weight.pkl`:
                a pickled {name: numpy array} whose names are the body's (cascade.models.vggface2);
                `fc.*` (the 8631-identity classifier) is dropped.  Caffe input: BGR, mean
                (91.4953, 103.8827, 131.0912) in BGR order.
  dag-pth       albanie's MatConvNet->PyTorch conversions, state dicts saved by torch.save:
                `resnet50_ft_dag.pth` / `senet50_ft_dag.pth` (backbone resnet50 / senet50; RGB,
                mean (131.0912, 103.8827, 91.4953)) and `vgg_face_dag.pth` (backbone vgg16:
                VGG-Face, Parkhi et al. 2015; RGB, mean (129.1863, 104.7624, 93.5940)).  Names are
                mapped (see `dag_resnet_name`, `DAG_VGG16`); `classifier.*` / `fc6-8.*` dropped.
  torchvision,  a state dict (`.pth`/`.pt` read with weights_only=True, or `.safetensors`) of a
  timm          torchvision/timm model: `module.` and, where the body lacks it, `features.` are
                stripped, timm bodies' `m.` added; classifier keys are dropped.  ImageNet input
                (RGB, /255, mean .485 .456 .406, std .229 .224 .225).
  safetensors   a body state dict as is; preprocessing from the `<file>.json` sidecar written by
                this module if present, else it must be given.

  mobilefacenet-ckpt, facenet-pt   cascade.models.mobilefacenet / .facenet's importers.
  keras-h5      keras-vggface 0.6's `rcmalli_vggface_tf_[notop_]{vgg16,resnet50,senet50}.h5` (the
                thesis's), into vgg16 / resnet50_keras / senet50_keras: cascade.models.keras_h5.

An importer is `(path, backbone) -> (tensors, preprocessing)` — the body state dict and the
source's preprocessing (None: unknown) — or `Converted(tensors, preprocessing, dropped)`, which
also names the source keys deliberately left out (recorded in the sidecar).
"""
from __future__ import annotations

import dataclasses
import functools
import importlib
import json
import pickle
import re
from pathlib import Path
from typing import Callable

import torch

from cascade.models import keras_h5
from cascade.models.backbones import Backbone, Converted, Preprocessing, build_backbone
from cascade.models.vggface2 import VGGFACE2_BGR   # cydonia999's pickles: the Caffe models' BGR input
from cascade.store import atomic_write_bytes, atomic_write_json, file_sha256

IMAGENET = Preprocessing("RGB", 1.0 / 255.0, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
#: albanie's `resnet50_ft_dag` / `senet50_ft_dag` meta: RGB mean of VGGFace2, std 1.
VGGFACE2_RGB = Preprocessing("RGB", 1.0, (131.0912, 103.8827, 91.4953), (1.0, 1.0, 1.0))
#: albanie's `vgg_face_dag` meta (VGG-Face; in BGR order: 93.5940, 104.7624, 129.1863).
VGGFACE_RGB = Preprocessing("RGB", 1.0, (129.186279296875, 104.76238250732422, 93.59396362304688),
                            (1.0, 1.0, 1.0))

SIDECAR_VERSION = 1


Importer = Callable[[Path, str], "Converted | tuple[dict[str, torch.Tensor], Preprocessing | None]"]


# ---------------------------------------------------------------------------------------------
# A pickle reader that reconstructs numpy arrays and nothing else
# ---------------------------------------------------------------------------------------------

class UnsafePickleError(pickle.UnpicklingError):
    """The pickle asked for something other than numpy arrays in a dict."""


def _numpy_reconstruct():
    import numpy as np
    try:
        from numpy._core.multiarray import _reconstruct, scalar   # numpy >= 2
    except ImportError:                                             # pragma: no cover - numpy 1.x
        from numpy.core.multiarray import _reconstruct, scalar
    return np, _reconstruct, scalar


class NumpyOnlyUnpickler(pickle.Unpickler):
    """Resolves only the globals a pickled {name: numpy array} needs; anything else (os.system,
    builtins.eval, subprocess..., any class) raises before it could be called."""

    def find_class(self, module: str, name: str):
        np, _reconstruct, scalar = _numpy_reconstruct()
        allowed = {
            ("numpy.core.multiarray", "_reconstruct"): _reconstruct,   # Python 2 / numpy 1 pickles
            ("numpy._core.multiarray", "_reconstruct"): _reconstruct,  # numpy 2 pickles
            ("numpy.core.multiarray", "scalar"): scalar,
            ("numpy._core.multiarray", "scalar"): scalar,
            ("numpy", "ndarray"): np.ndarray,
            ("numpy", "dtype"): np.dtype,
            ("collections", "OrderedDict"): __import__("collections").OrderedDict,
            ("_codecs", "encode"): __import__("_codecs").encode,      # bytes in protocol-2 pickles
        }
        if (module, name) not in allowed:
            raise UnsafePickleError(
                f"refusing to unpickle {module}.{name}: this reader only reconstructs numpy arrays "
                f"(a weight pickle needs nothing else); the file is not a plain weight dict")
        return allowed[(module, name)]


def read_numpy_pickle(path: Path) -> dict[str, torch.Tensor]:
    """A pickled {name: numpy array} (Python 2 pickles too: encoding latin1) as tensors."""
    import numpy as np

    with open(path, "rb") as fh:
        obj = NumpyOnlyUnpickler(fh, encoding="latin1").load()
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: expected a pickled dict of numpy arrays, got {type(obj).__name__}")
    out: dict[str, torch.Tensor] = {}
    for key, value in obj.items():
        if not isinstance(value, np.ndarray) or value.dtype.kind not in "fiub":
            raise ValueError(f"{path}: entry {key!r} is not a numeric numpy array "
                             f"({type(value).__name__} {getattr(value, 'dtype', '')})")
        out[str(key)] = torch.from_numpy(np.ascontiguousarray(value))
    return out


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from `.safetensors`, or from torch.save with weights_only=True (no code)."""
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file
        return dict(load_file(path))
    obj = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]        # a training checkpoint {"state_dict": ..., "epoch": ...}
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError(f"{path}: expected a state dict (name -> tensor), got {type(obj).__name__}")
    return dict(obj)


# ---------------------------------------------------------------------------------------------
# Importers
# ---------------------------------------------------------------------------------------------

def import_vggface2_pkl(path: Path, backbone: str) -> Converted:
    """cydonia999's pickles: names already the body's; `fc.*` is the identity classifier."""
    src = read_numpy_pickle(path)
    dropped = sorted(k for k in src if k.startswith("fc."))
    tensors = {k: v for k, v in src.items() if not k.startswith("fc.")}
    return Converted(tensors, VGGFACE2_BGR, dropped)


#: vgg_face_dag conv names -> index in torchvision's `vgg16().features`.
DAG_VGG16 = {"conv1_1": 0, "conv1_2": 2, "conv2_1": 5, "conv2_2": 7, "conv3_1": 10, "conv3_2": 12,
             "conv3_3": 14, "conv4_1": 17, "conv4_2": 19, "conv4_3": 21, "conv5_1": 24,
             "conv5_2": 26, "conv5_3": 28}

#: albanie's bottleneck layer suffixes -> module inside a cascade.models.vggface2 Bottleneck.
_DAG_BLOCK = {"1x1_reduce": "conv1", "1x1_reduce_bn": "bn1", "3x3": "conv2", "3x3_bn": "bn2",
              "1x1_increase": "conv3", "1x1_increase_bn": "bn3", "1x1_proj": "downsample.0",
              "1x1_proj_bn": "downsample.1", "1x1_down": "conv4", "1x1_up": "conv5"}
_DAG_RE = re.compile(r"conv([2-5])_(\d+)_(" + "|".join(sorted(_DAG_BLOCK, key=len, reverse=True))
                     + r")\.(\w+)")


def dag_resnet_name(key: str) -> str | None:
    """albanie's `resnet50_ft_dag` / `senet50_ft_dag` name -> body name; None = classifier
    (dropped); an unrecognised name is returned unchanged (and then reported as unexpected).

    conv1_7x7_s2 -> conv1, conv1_7x7_s2_bn -> bn1; conv{s}_{b}_<part> -> layer{s-1}.{b-1}.<module>
    with <part> 1x1_reduce(_bn) -> conv1/bn1, 3x3(_bn) -> conv2/bn2, 1x1_increase(_bn) -> conv3/bn3,
    1x1_proj(_bn) -> downsample.0/.1, SE 1x1_down / 1x1_up -> conv4 / conv5."""
    if key.startswith("classifier."):
        return None
    module, _, param = key.rpartition(".")
    if module == "conv1_7x7_s2":
        return f"conv1.{param}"
    if module == "conv1_7x7_s2_bn":
        return f"bn1.{param}"
    m = _DAG_RE.fullmatch(key)
    if m:
        stage, block, part, param = m.groups()
        return f"layer{int(stage) - 1}.{int(block) - 1}.{_DAG_BLOCK[part]}.{param}"
    return key


def dag_vgg16_name(key: str) -> str | None:
    """vgg_face_dag name -> torchvision `features` index; fc6/fc7/fc8 -> None (dropped)."""
    module, _, param = key.rpartition(".")
    if module in ("fc6", "fc7", "fc8"):
        return None
    if module in DAG_VGG16:
        return f"{DAG_VGG16[module]}.{param}"
    return key


def import_dag_pth(path: Path, backbone: str) -> Converted:
    src = _read_state_dict(path)
    if backbone == "vgg16":
        rename, pre = dag_vgg16_name, VGGFACE_RGB
    elif backbone in ("resnet50", "senet50"):
        rename, pre = dag_resnet_name, VGGFACE2_RGB
    else:
        raise ValueError(f"dag-pth: no name mapping for backbone {backbone!r} "
                         f"(vgg16: vgg_face_dag.pth; resnet50/senet50: *_ft_dag.pth)")
    tensors, dropped = {}, []
    for key, value in src.items():
        new = rename(key)
        if new is None:
            dropped.append(key)
        else:
            tensors[new] = value
    return Converted(tensors, pre, sorted(dropped))


_CLASSIFIER_PREFIXES = ("fc.", "classifier.", "head.fc.", "last_linear.", "head.")


@functools.lru_cache(maxsize=8)
def _body_keys(backbone: str) -> frozenset[str]:
    return frozenset(build_backbone(backbone).body.state_dict())


def import_torchvision(path: Path, backbone: str) -> Converted:
    """torchvision / timm state dicts, keys matched to the body."""
    if backbone in ("resnet50", "senet50"):
        raise ValueError(f"torchvision/timm weights do not fit backbone {backbone!r}: it is the "
                         f"Caffe-style VGGFace2 network (stride on the first 1x1 conv, ceil-mode "
                         f"pool) — same tensor names, different computation.  Use backbone "
                         f"timm:resnet50 for ImageNet ResNet-50 weights")
    own = _body_keys(backbone)
    tensors, dropped = {}, []
    for key, value in _read_state_dict(path).items():
        k = key[len("module."):] if key.startswith("module.") else key
        candidates = [k, f"m.{k}"]
        if k.startswith("features."):
            candidates.append(k[len("features."):])
        hit = next((c for c in candidates if c in own), None)
        if hit is not None:
            tensors[hit] = value
        elif k.startswith(_CLASSIFIER_PREFIXES):
            dropped.append(key)
        else:
            tensors[k] = value         # reported as unexpected by the check
    return Converted(tensors, IMAGENET, sorted(dropped))


def import_safetensors(path: Path, backbone: str) -> Converted:
    from safetensors.torch import load_file

    return Converted(dict(load_file(path)), load_preprocessing(path), [])


def _lazy(module: str, name: str) -> Importer:
    """An importer defined in a backbone module, imported on first use."""
    def run(path: Path, backbone: str):
        return getattr(importlib.import_module(module), name)(path, backbone)
    run.__name__ = name
    return run


IMPORTERS: dict[str, Importer] = {
    "vggface2-pkl": import_vggface2_pkl,
    "dag-pth": import_dag_pth,
    "torchvision": import_torchvision,
    "timm": import_torchvision,
    "safetensors": import_safetensors,
    "mobilefacenet-ckpt": _lazy("cascade.models.mobilefacenet", "import_mobilefacenet"),
    "facenet-pt": _lazy("cascade.models.facenet", "import_facenet"),
    "keras-h5": keras_h5.import_keras_h5,
}


# ---------------------------------------------------------------------------------------------
# Sidecar, checks, the import command
# ---------------------------------------------------------------------------------------------

def sidecar_path(weights_path: Path) -> Path:
    return Path(weights_path).with_suffix(".json")


def preprocessing_from_dict(d: dict) -> Preprocessing:
    return Preprocessing(str(d["channels"]), float(d["scale"]), tuple(float(v) for v in d["mean"]),
                         tuple(float(v) for v in d["std"]))


def load_preprocessing(weights_path: Path) -> Preprocessing | None:
    """The preprocessing recorded next to a weights file (`<name>.json`), or None if none is."""
    side = sidecar_path(weights_path)
    if not side.exists():
        return None
    meta = json.loads(side.read_text())
    return preprocessing_from_dict(meta["preprocessing"]) if meta.get("preprocessing") else None


def parse_preprocessing(spec: str, backbone: str) -> Preprocessing:
    """A command-line preprocessing: `backbone` (the registered backbone's default), `imagenet`,
    `vggface2-bgr`, `vggface2-rgb`, `vggface-rgb`, or JSON {channels, scale, mean, std}."""
    named = {"imagenet": IMAGENET, "vggface2-bgr": VGGFACE2_BGR, "vggface2-rgb": VGGFACE2_RGB,
             "vggface-rgb": VGGFACE_RGB}
    if spec == "backbone":
        return build_backbone(backbone).preprocessing
    if spec in named:
        return named[spec]
    try:
        return preprocessing_from_dict(json.loads(spec))
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"preprocessing {spec!r}: expected backbone, {', '.join(named)} or JSON "
                         f"with channels, scale, mean, std ({exc})") from None


def check_tensors(tensors: dict[str, torch.Tensor], body: torch.nn.Module, source: str = "") -> None:
    """Exact key and shape match with the body (cascade.models.weights.load_body's rule)."""
    own = body.state_dict()
    missing = sorted(set(own) - set(tensors))
    unexpected = sorted(set(tensors) - set(own))
    shape = sorted(f"{k} {tuple(tensors[k].shape)} != {tuple(own[k].shape)}"
                   for k in set(own) & set(tensors) if own[k].shape != tensors[k].shape)
    if missing or unexpected or shape:
        def show(names):
            return f"{len(names)} {names[:12]}{' ...' if len(names) > 12 else ''}"
        raise ValueError(f"{source}: tensors do not match the backbone — missing {show(missing)}, "
                         f"unexpected {show(unexpected)}, wrong shape {show(shape)}")


def fill_batch_counters(tensors: dict[str, torch.Tensor], body: torch.nn.Module) -> list[str]:
    """BatchNorm `num_batches_tracked` counters the source does not carry (Caffe conversions
    never do) are set to 0; they only matter for momentum=None BatchNorm.  Returns their names."""
    filled = []
    for key, value in body.state_dict().items():
        if key.endswith("num_batches_tracked") and key not in tensors:
            tensors[key] = torch.zeros_like(value)
            filled.append(key)
    return filled


def _guess_backbone(file: Path, name: str) -> str:
    text = f"{name} {Path(file).name}".lower()
    for needle, bb in (("senet50", "senet50"), ("se_resnet50", "senet50"), ("resnet50", "resnet50"),
                       ("mobilefacenet", "mobilefacenet"), ("inception_resnet", "inception_resnet_v1"),
                       ("facenet", "inception_resnet_v1"), ("vgg", "vgg16")):
        if needle in text:
            return bb
    raise ValueError(f"cannot tell the backbone of {file} from its name; pass --backbone "
                     f"(e.g. vgg16, resnet50, senet50, timm:<name>)")


def _as_json(pre: Preprocessing) -> dict:
    return json.loads(json.dumps(dataclasses.asdict(pre)))


_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def import_weights(file: Path, fmt: str, name: str, backbone: str | None, home: Path, *,
                   force: bool = False, preprocessing: Preprocessing | None = None) -> Path:
    """Convert `file` once to `home/weights/<name>.safetensors` (+ `<name>.json` sidecar).

    backbone None: guessed from name / file name.  preprocessing: overrides the source's (needed
    for a `safetensors` source without a sidecar).  An existing `<name>` converted from a
    different source (sha256) is kept unless force=True; the same source is not converted again.

    Deterministic: the same source file (same path) gives the same bytes in any home and any
    process — the `.safetensors` carries no `__metadata__` (see below) and the sidecar no
    timestamp.  Stage keys hash the tensors anyway (cascade.models.weights.identity).
    """
    if fmt not in IMPORTERS:
        raise ValueError(f"unknown weight format {fmt!r}; valid: {', '.join(IMPORTERS)}")
    file = Path(file).expanduser()
    if not file.is_file():
        raise FileNotFoundError(f"{file}: no such weight file")
    if not _NAME.fullmatch(name) or name.endswith(".safetensors") or name in ("none", "default"):
        raise ValueError(f"weights name {name!r}: use letters, digits, '.', '_', '-' (it becomes "
                         f"<home>/weights/<name>.safetensors)")
    if backbone is None and fmt == "keras-h5":          # the file's layers say which network it is
        backbone = keras_h5.detect(keras_h5.read(file)[0])
    backbone = backbone or _guess_backbone(file, name)
    bb: Backbone = build_backbone(backbone)
    target = Path(home).expanduser() / "weights" / f"{name}.safetensors"
    side = sidecar_path(target)
    sha = file_sha256(file)

    if target.exists() or side.exists():
        old = json.loads(side.read_text()) if side.exists() else {}
        same = (old.get("source_sha256") == sha and old.get("format") == fmt
                and old.get("backbone") == backbone and target.exists()
                and old.get("sha256") == file_sha256(target))
        if same and (preprocessing is None or old.get("preprocessing") == _as_json(preprocessing)):
            return target                                      # already converted from this file
        if not force:
            what = (f"from {old.get('source')} (sha256 {old.get('source_sha256')}, "
                    f"format {old.get('format')}, backbone {old.get('backbone')})"
                    if old else "without a sidecar (unknown source)")
            raise FileExistsError(f"{target} exists, converted {what}; pass force=True (--force) "
                                  f"to replace it, or choose another --name")

    conv = IMPORTERS[fmt](file, backbone)
    if not isinstance(conv, Converted):                         # a plain (tensors, preprocessing)
        conv = Converted(dict(conv[0]), conv[1], [])
    pre = preprocessing or conv.preprocessing
    if pre is None:
        raise ValueError(f"{file}: the source records no preprocessing (no {sidecar_path(file).name} "
                         f"next to it); pass one (e.g. --preprocessing backbone|imagenet|JSON)")
    own = bb.body.state_dict()
    tensors = dict(conv.tensors)
    filled = fill_batch_counters(tensors, bb.body)
    check_tensors(tensors, bb.body, f"{file} ({fmt} -> {backbone})")
    # the body's dtypes (float64 numpy arrays -> float32), contiguous, unshared: safetensors' rules
    tensors = {k: v.detach().to(own[k].dtype).contiguous().clone() for k, v in tensors.items()}

    from safetensors.torch import load, save

    # No `__metadata__`: safetensors keeps it in a Rust hash map and writes its entries in an
    # order that changes from process to process (even call to call: 3 entries, 50 calls of
    # save() in one process gave 6 different files), so the same checkpoint imported twice gave
    # different bytes.  Without metadata, save() is a function of the tensors alone: the header
    # and data are laid out by (dtype alignment, name), whatever the dict's insertion order —
    # tests/test_weight_identity.py checks both, across processes.  What the metadata held
    # (format, backbone, source sha256) is in the sidecar.
    data = save(tensors)
    written = load(data)                        # what training will read (load_body's rule) ...
    check_tensors(written, bb.body, f"{file} ({fmt} -> {backbone}, as written)")
    bb.body.load_state_dict(written, strict=True)           # ... must load, before anything is written
    if side.exists():
        side.unlink()             # replacing (force): no moment where a sidecar describes other weights
    atomic_write_bytes(target, data)
    atomic_write_json(side, {
        "version": SIDECAR_VERSION,
        "source": str(file.resolve()),
        "source_sha256": sha,
        "format": fmt,
        "backbone": backbone,
        "preprocessing": _as_json(pre),
        "preprocessing_from": "given" if preprocessing else "source",
        "dropped": conv.dropped,
        "filled": filled,
        "tensors": len(tensors),
        "sha256": file_sha256(target),
    })            # no timestamp: byte-identical for the same source path (the file's mtime tells when)
    return target
