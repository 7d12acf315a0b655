"""Pooled CNN features of a trained stage (thesis section 4, "Age Estimation Regression Model").

A stage's body becomes a feature extractor: the last convolutional layer's output (default) or
the first convolutional layer's, globally max-pooled per channel (the thesis's choice), average-
pooled, or flattened (the thesis's worst case, where dimensions exceed samples many times).

Why a store entry per (stage key, image cache, layer, pooling): features are extracted once and
reused by every fold and every regressor; the key changes whenever the weights, the images or
the extraction change, so a stale array is never reused.  Extraction writes into a memory-mapped
array batch by batch and records how many rows are done, so a killed extraction resumes where
it stopped (the body runs in eval mode, so a resumed array is the same as an uninterrupted one).
"""
from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from cascade import config as C
from cascade.data.cache import ImageCache
from cascade.models.age_model import AgeModel
from cascade.progress import bar as progress_bar
from cascade.store import StageDir, atomic_write_json, atomic_write_text, reserve, stable_hash
from cascade.train.feed import Feed

FEATURES_VERSION = 1
LAYERS = ("last", "first")
POOLINGS = ("max", "avg", "none")
#: Modules that count as "the activation of the first convolutional layer" (Keras's conv layers,
#: the thesis's framework, include their activation in the layer's output).
ACTIVATIONS = (nn.ReLU, nn.ReLU6, nn.PReLU, nn.LeakyReLU, nn.ELU, nn.SiLU, nn.GELU, nn.Hardswish)


@dataclasses.dataclass(frozen=True)
class Mode:
    """One feature extraction: which layer, how it is pooled."""

    layer: str
    pooling: str

    @classmethod
    def parse(cls, text: str) -> "Mode":
        layer, _, pooling = text.partition(":")
        if layer not in LAYERS or pooling not in POOLINGS:
            raise C.ConfigError(f"feature mode {text!r}: expected LAYER:POOLING with LAYER in "
                                f"{', '.join(LAYERS)} and POOLING in {', '.join(POOLINGS)} (e.g. last:max)")
        return cls(layer, pooling)

    def __str__(self) -> str:
        return f"{self.layer}:{self.pooling}"


@dataclasses.dataclass
class Features:
    """A finished feature array (memory-mapped, row-aligned with the image cache) and its index."""

    path: Path
    array: np.ndarray            # (N, D) float32
    index: pd.DataFrame          # row, path, subject, fold, age_lo, age_hi
    meta: dict


class _Captured(Exception):
    """Raised by the first-layer hook: nothing after that layer needs to run."""


def _first_layer(body: nn.Module) -> nn.Module:
    """The module whose output is "the first convolutional layer": the first Conv2d's activation
    when one follows it before the next convolution (conv -> [BN] -> ReLU), else the Conv2d."""
    modules = list(body.modules())
    convs = [i for i, m in enumerate(modules) if isinstance(m, nn.Conv2d)]
    if not convs:
        raise ValueError(f"{type(body).__name__}: no Conv2d layer, so there is no 'first convolutional layer'")
    end = convs[1] if len(convs) > 1 else len(modules)
    return next((m for m in modules[convs[0] + 1:end] if isinstance(m, ACTIVATIONS)), modules[convs[0]])


def _pool(x: torch.Tensor, pooling: str) -> torch.Tensor:
    if x.dim() != 4:
        raise ValueError(f"layer output has shape {tuple(x.shape)}; pooled features need a (N, C, H, W) map")
    if pooling == "max":
        return x.amax(dim=(2, 3))
    if pooling == "avg":
        return x.mean(dim=(2, 3))
    return x.flatten(1)


@torch.no_grad()
def extract_batch(model: AgeModel, x: torch.Tensor, mode: Mode) -> torch.Tensor:
    """Features of one normalised batch.  The first layer is read with a forward hook that pools
    at once (before an in-place activation could change the tensor) and stops the forward pass."""
    model.eval()
    if mode.layer == "last":
        return _pool(model.body(x), mode.pooling).float()
    out: list[torch.Tensor] = []

    def hook(_module, _inputs, output):
        out.append(_pool(output, mode.pooling).float())
        raise _Captured

    handle = _first_layer(model.body).register_forward_hook(hook)
    try:
        model.body(x)
    except _Captured:
        pass
    finally:
        handle.remove()
    return out[0]


def feature_dim(model: AgeModel, size: int, mode: Mode, device: str = "cpu") -> int:
    return int(extract_batch(model, torch.zeros(1, 3, size, size, device=device), mode).shape[1])


def features_key(stage_key: str, cache: ImageCache, mode: Mode, preprocessing, numerics: str = "native") -> str:
    """Portable CPU numerics (`train.numerics`) are keyed only when on: native keys stay what they were."""
    return stable_hash({"v": FEATURES_VERSION, "stage": stage_key, "cache": cache.path.name,
                        "layer": mode.layer, "pooling": mode.pooling, "preprocessing": str(preprocessing),
                        **({"numerics": numerics} if numerics == "portable" else {})})


def extract(model: AgeModel, cache: ImageCache, mode: Mode, stage_key: str, label: str, home: Path,
            device: str = "cpu", batch_size: int = 64, max_gb: float = 8.0,
            progress: bool = True, numerics: str = "native") -> Features:
    """Features of every cached image under `mode`, computed once (resumable) and reused."""

    folder = StageDir(Path(home) / "features", features_key(stage_key, cache, mode, model.preprocessing, numerics))

    def write() -> list[str]:
        model.to(device)
        n, size = len(cache.images), cache.images.shape[1]
        dim = feature_dim(model, size, mode, device)
        gb = n * dim * 4 / 2**30
        if gb > max_gb:
            raise ValueError(f"features {mode} of {label}: {n} images x {dim} values = {gb:.1f} GB "
                             f"> features.max_gb={max_gb:g}; pool the maps (pooling=max|avg) or "
                             f"raise features.max_gb")
        partial, done_file = folder.file("features.partial.npy"), folder.file("progress.json")
        done = json.loads(done_file.read_text())["rows"] if done_file.exists() and partial.exists() else 0
        array = np.lib.format.open_memmap(partial, mode="r+" if done else "w+",
                                          dtype=np.float32, shape=(n, dim))
        if not done:
            reserve(partial)                 # out of space: a clear error, not SIGBUS
        bar = progress_bar(total=n, initial=done, desc=f"features {mode} {label}", enabled=progress)
        chunks = [np.arange(start, min(start + batch_size, n)) for start in range(done, n, batch_size)]
        for rows, crops in zip(chunks, Feed(cache.images, chunks, device)):
            array[rows] = extract_batch(model, model.preprocessing.apply(crops), mode).cpu().numpy()
            array.flush()                       # rows on disk before they are counted as done
            atomic_write_json(done_file, {"rows": int(rows[-1]) + 1})
            bar.update(len(rows))
        bar.close()
        del array
        os.replace(partial, folder.file("features.npy"))
        frame = cache.table.frame
        index = pd.DataFrame({"row": np.arange(n), "path": frame["path"], "subject": frame["subject"],
                              "fold": frame["fold"], "age_lo": frame["age_lo"], "age_hi": frame["age_hi"]})
        atomic_write_text(folder.file("index.csv"), index.to_csv(index=False))
        atomic_write_json(folder.file("meta.json"), {
            "stage": label, "stage_key": stage_key, "cache": cache.path.name, "dataset": cache.table.name,
            "layer": mode.layer, "pooling": mode.pooling, "shape": [n, dim],
            "preprocessing": str(model.preprocessing), "synthetic": cache.table.synthetic})
        return ["features.npy", "index.csv", "meta.json"]

    folder.fill("feature array", write, scratch=("progress.json",))
    return Features(folder.path, np.load(folder.file("features.npy"), mmap_mode="r"),
                    pd.read_csv(folder.file("index.csv"), dtype={"subject": str}),
                    json.loads(folder.file("meta.json").read_text()))
