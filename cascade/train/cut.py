"""Partial fine-tuning with the frozen part of the body computed once (`train.cut_cache=true`).

Why: a fold that trains only the top K layers of a body (`train.trainable_layers=K`) still runs
the whole body forward at every step of every epoch, though the layers below the top K never
change; on a CPU that forward is nearly all of the cost.  When the body is a sequence of steps
(a ``sequence()`` method, or an ``nn.Sequential``), the steps below the first one holding a
trainable layer (the cut) run once per image of the target, and every fold reads their output
from one memory-mapped file (like mode a's features); a fold runs and trains the steps above the
cut.  The layers a fold trains, their optimiser and every frozen layer's weights and statistics
are those of the uncached path.

Augmentation, honestly: the cached activations are those of the crop and of its mirror image, so
a training image is shown mirrored or not (with `augment.flip`), never rotated, shifted or
zoomed.  That is another recipe than the uncached one, so `train.cut_cache` is keyed when set and
the table header says it.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from cascade.train.schedule import layers as body_layers

#: Views of every image in the cache: the crop (0) and its mirror image (1).
VIEWS = 2


def body_sequence(body: nn.Module) -> list[nn.Module] | None:
    """The body as steps applied in order, or None where its forward is not such a chain."""
    if hasattr(body, "sequence"):
        return list(body.sequence())
    if isinstance(body, nn.Sequential):
        return list(body)
    return None


def cut_index(body: nn.Module, trainable: int) -> int:
    """The first step of the body's sequence that a fine-tuning of its top `trainable` layers
    trains: every step from it on runs in each epoch, every step before it once."""
    steps = body_sequence(body)
    if steps is None:
        raise ValueError(f"train.cut_cache=true needs a body that is a chain of steps (the demo CNN, "
                         f"mobilefacenet); {type(body).__name__}'s is not: set train.cut_cache=false")
    top = {id(m) for m in body_layers(body)[-trainable:]}
    for i in range(len(steps) - 1, -1, -1):
        if top <= {id(m) for step in steps[i:] for m in step.modules()}:
            return i
    return 0


def fixed_top_problem(settings: dict) -> str | None:
    """Why `settings` (train.* or a stage's params) cannot cut: a cut needs a fixed set of
    trainable layers, the top K, the same in every epoch (None: it can)."""
    if not settings.get("trainable_layers") or settings.get("freeze_epochs") or settings.get("unfreeze"):
        return ("train.cut_cache=true needs train.trainable_layers=K (the top K layers of the body train) and "
                "neither train.freeze_epochs nor train.unfreeze (the trainable set must stay the same in every "
                "epoch)")
    return None


def check(params: dict) -> None:
    """A stage's params that cannot cut are an error (the settings' check, for callers of fit)."""
    if params["mode"] == "head":
        raise ValueError("train.cut_cache=true trains the top layers of the body; in mode a (head only) the "
                         "shared features already do what it does (train.feature_cache)")
    if problem := fixed_top_problem(params):
        raise ValueError(problem)


@torch.no_grad()
def prefix_activations(model: nn.Module, batches, cut: int) -> np.ndarray:
    """(N, VIEWS, C, H, W) float32: the steps below the cut applied to each normalised batch of
    `batches` and to its mirror image, in eval mode (the frozen BatchNorm statistics)."""
    model.eval()
    steps = body_sequence(model.body)[:cut]
    out = []
    for x in batches:
        views = []
        for v in (x, x.flip(-1)):
            for step in steps:
                v = step(v)
            views.append(v.float().cpu())
        out.append(torch.stack(views, 1))
    return torch.cat(out).numpy() if out else np.zeros((0, VIEWS), np.float32)


def suffix_logits(model: nn.Module, cut: int, acts: torch.Tensor) -> torch.Tensor:
    """Logits from activations at the cut: the steps above it, the pooling, the head."""
    for step in body_sequence(model.body)[cut:]:
        acts = step(acts)
    return model.head(model.pool(acts).flatten(1))


def gather(features: np.ndarray, rows: np.ndarray, views: np.ndarray, device) -> torch.Tensor:
    """The cached activations of `rows`, each in its view (0: the crop, 1: its mirror image)."""
    return torch.from_numpy(np.asarray(features[rows, views])).to(device)
