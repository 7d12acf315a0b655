"""Weight sources of the pretrained root: none (random init), a named default under
`$CASCADE_HOME/weights/`, or a `.safetensors` path.

Why only safetensors here: training never unpickles a third-party file.  Pickled releases
(VGGFace2 `.pkl`, `*_dag.pth`, facenet `.pt`) are converted once by `cascade weights import`,
which records the source's sha256 and preprocessing next to the converted file.

A stage key records the root weights by `identity`: a hash of the tensors, not of the file.
"""
from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path

from torch import nn

#: Each default weight name: what it is, and the one command that makes it from the public file.
SOURCES = {
    "vgg16_vggface": ("VGG-Face's VGG-16 (Parkhi et al. 2015), the thesis's VGG-16",
                      "cascade weights import rcmalli_vggface_tf_notop_vgg16.h5 --format keras-h5 --name vgg16_vggface"
                      "  (or: vgg_face_dag.pth --format dag-pth --backbone vgg16)"),
    "resnet50_keras_vggface2": ("keras-vggface's ResNet-50 (VGGFace2, Cao et al. 2018), the thesis's ResNet-50",
                                "cascade weights import rcmalli_vggface_tf_notop_resnet50.h5 --format keras-h5 "
                                "--name resnet50_keras_vggface2"),
    "senet50_keras_vggface2": ("keras-vggface's SENet-50 (VGGFace2), the thesis's SENet-50",
                               "cascade weights import rcmalli_vggface_tf_notop_senet50.h5 --format keras-h5 "
                               "--name senet50_keras_vggface2"),
    "resnet50_vggface2": ("ResNet-50 VGGFace2 in the Caffe layout (cydonia999's conversion)",
                          "cascade weights import resnet50_ft_weight.pkl --format vggface2-pkl --name resnet50_vggface2"),
    "senet50_vggface2": ("SENet-50 VGGFace2 in the Caffe layout (cydonia999's conversion)",
                         "cascade weights import senet50_ft_weight.pkl --format vggface2-pkl --name senet50_vggface2"),
    "mobilefacenet_casia": ("MobileFaceNet trained on CASIA-WebFace (Xiaoccer/MobileFaceNet_Pytorch)",
                            "cascade weights import 068.ckpt --format mobilefacenet-ckpt --name mobilefacenet_casia"),
    "inception_resnet_v1_vggface2": ("facenet-pytorch's Inception-ResNet-v1 trained on VGGFace2",
                                     "cascade weights import 20180402-114759-vggface2.pt --format facenet-pt "
                                     "--name inception_resnet_v1_vggface2"),
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
        what, command = _source_of(name)
        raise FileNotFoundError(f"weights {name!r}: expected {path} — {what}. Make it once with: {command} "
                                f"(docs/backbones-and-weights.md lists every file); or pass "
                                f"weights=/path/file.safetensors, or weights=none for random initialisation.")
    return path


def _source_of(name: str) -> tuple[str, str]:
    """(what the weight file `name` is, the command that makes it): the documented one of
    `SOURCES`, else the import command's general form."""
    return SOURCES.get(name, ("a .safetensors file written by `cascade weights import`",
                              f"cascade weights import FILE --format F --name {name}"))


def import_command(path: Path, meta: dict | None) -> str:
    """The command that writes weight file `path` again, replacing what is there: from its
    sidecar `meta` (the source, format and backbone it was made from) when there is one, else
    the documented command of its name."""
    name = Path(path).stem
    if not meta or not meta.get("source"):
        return _source_of(name)[1] + " --force"
    command = (f"cascade weights import {meta['source']} --format {meta['format']} --name {name} "
               f"--backbone {meta['backbone']}")
    if meta.get("preprocessing_from") == "given":
        command += f" --preprocessing '{json.dumps(meta['preprocessing'])}'"
    return command + " --force"


def problem(path: Path | None) -> str | None:
    """What would stop a run from reading weight file `path`, found before any work (None:
    nothing): its sidecar is not JSON, its bytes differ from the sha256 the sidecar recorded at
    import (changed, truncated or copied badly since), or it is not a readable safetensors file.
    Each problem names the file and the command that makes it again.

    A file without a sidecar, or a sidecar without `sha256`, is not checked against one: that is
    not an error (weights=/path/file.safetensors may come from anywhere)."""
    if path is None:
        return None
    from cascade.models.importers import sidecar_path

    path = Path(path)
    side = sidecar_path(path)
    try:
        st = path.stat()
        side_stat = (side.stat().st_size, side.stat().st_mtime_ns) if side.exists() else None
        return _problem(str(path.resolve()), st.st_size, st.st_mtime_ns, side_stat)
    except OSError as exc:
        return f"{path}: cannot be read ({exc}); check its permissions, or make it again with: " \
               f"{import_command(path, None)}"


@functools.lru_cache(maxsize=16)
def _problem(path: str, size: int, mtime_ns: int, sidecar_stat: tuple[int, int] | None) -> str | None:
    """`problem`, memoised per process on (path, size, mtime) of the file and its sidecar.

    Why in-process only: a dry run and `cascade doctor` write nothing, so they could not store
    a verdict beside the file; and a run hashes the file once per process, about what `identity`
    costs anyway (it reads every tensor once).  The stats in the key check a replaced file, or
    a rewritten sidecar, again."""
    from safetensors import safe_open

    from cascade.models.importers import sidecar_path
    from cascade.store import file_sha256

    side = sidecar_path(Path(path))
    try:
        meta = json.loads(side.read_text()) if side.exists() else None
    except (OSError, ValueError) as exc:
        return f"{side}: the sidecar of {path} cannot be read ({exc}); make both again with: " \
               f"{import_command(Path(path), None)}"
    if meta and meta.get("sha256") and file_sha256(path) != meta["sha256"]:
        return (f"{path}: its bytes do not match the sha256 its sidecar {side.name} recorded at import "
                f"(changed or truncated since); make it again with: {import_command(Path(path), meta)}")
    try:
        with safe_open(path, framework="pt") as f:
            f.keys()
    except Exception as exc:      # safetensors parses no code; anything else is simply not weights
        return f"{_unreadable(Path(path), exc)}; make it again with: {import_command(Path(path), meta)}"
    return None


#: Prefix of `identity`.  Keys made under the old rule (`sha256:` of the file's bytes) never
#: equal a new one: the root key, and every key after it, changes once, visibly.
IDENTITY_PREFIX = "tensors-sha256:"


def _unreadable(path: Path, exc: Exception) -> ValueError:
    """The one error for a weights file that safetensors cannot read."""
    return ValueError(f"{path}: not a readable safetensors file ({type(exc).__name__}: {exc}); "
                      f"weights are read from safetensors only — convert a .pth/.pkl/.ckpt once "
                      f"with `cascade weights import`")


def identity(path: Path | None) -> str:
    """What a stage key records about its root weights: `none`, or `tensors-sha256:<hex>`, a
    sha256 of the tensors alone — for each tensor in sorted-name order its name, safetensors
    dtype (F32, BF16, ...), shape and raw little-endian bytes.

    Why the tensors and not the file's bytes: two safetensors files holding the same tensors can
    differ byte for byte (the header's `__metadata__` is a Rust hash map, written in a different
    order by each process; tensor layout and header padding belong to the writer).  Keyed on the
    file, `cascade weights import` of one checkpoint in two homes gave two root keys, and every
    stage after the root was trained again for byte-identical predictions.  The `__metadata__`
    and everything else in the header but names, dtypes and shapes is therefore left out; the
    preprocessing recorded in the sidecar is keyed separately (plan.build's root_info).

    Streams: one tensor is read (memory-mapped) and hashed at a time, so a 500 MB VGG file is
    never held twice.  Memoised per process on the file's stat (inode, size, mtime, ctime)."""
    if path is None:
        return "none"
    path = Path(path)
    st = path.stat()                 # a missing file: FileNotFoundError, as before
    return _tensor_identity(str(path.resolve()), st.st_dev, st.st_ino, st.st_size,
                            st.st_mtime_ns, st.st_ctime_ns)


@functools.lru_cache(maxsize=16)
def _tensor_identity(path: str, *stat_key: int) -> str:
    import torch
    from safetensors import safe_open

    h = hashlib.sha256(b"cascade tensor identity v1\n")
    try:
        with safe_open(path, framework="pt") as f:
            for name in sorted(f.keys()):
                sl = f.get_slice(name)
                head = json.dumps([name, sl.get_dtype(), list(sl.get_shape())],
                                  separators=(",", ":")).encode()
                h.update(len(head).to_bytes(8, "little") + head)   # bytes' length follows from it
                tensor = f.get_tensor(name)
                # uint8 view: every dtype (bfloat16 too, which numpy lacks), 0-d tensors included
                h.update(tensor.contiguous().reshape(-1).view(torch.uint8).numpy())
                del tensor
    except Exception as exc:      # safetensors parses no code; anything else is simply not weights
        raise _unreadable(Path(path), exc) from exc
    return IDENTITY_PREFIX + h.hexdigest()


def load_body(body: nn.Module, path: Path) -> None:
    """Load a body state dict from safetensors; any missing or unexpected tensor is an error
    that lists the mismatch (a silently half-loaded network is the worst outcome)."""
    from safetensors.torch import load_file

    try:
        tensors = load_file(path)
    except Exception as exc:      # safetensors parses no code; anything else is simply not weights
        raise _unreadable(path, exc) from exc
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
