"""Which parameters train in a given epoch, and with which optimizer.

The thesis trains the head only (mode a) or the whole network (modes b, c).  The related studies
(../shared/papers/001-003) also freeze the body for the first k epochs and then fine-tune all
(`train.freeze_epochs`), train only the top N layers of the body (`train.trainable_layers`, 003:
8), and use AdamW with weight decay (`train.optimizer`, `train.weight_decay`).  Why per epoch and
from settings only: a resumed run recomputes the same trainable set for the same epoch, so
resume stays exact.

A body "layer" is a module that owns parameters itself (a convolution, a batch norm, a linear
layer), counted in registration order; frozen batch-norm layers run in eval mode (their running
statistics stay those of the pretrained model, as Keras does for non-trainable layers).
"""
from __future__ import annotations

import torch
from torch import nn

OPTIMIZERS = ("adam", "adamw")


def parse_unfreeze(spec: str | None) -> tuple[int, int, float, int] | None:
    """`train.unfreeze=N:E[:F[:P]]`: 003's gradual unfreezing: every E epochs (a cycle) N more
    body layers join (starting from `trainable_layers`, or N), the learning rate is multiplied by
    F (default 0.1) per cycle, and training stops after P (default 2) cycles without improvement."""
    if not spec:
        return None
    parts = str(spec).split(":")
    try:
        n, e = int(parts[0]), int(parts[1])
        f = float(parts[2]) if len(parts) > 2 else 0.1
        p = int(parts[3]) if len(parts) > 3 else 2
    except (ValueError, IndexError):
        raise ValueError(f"train.unfreeze={spec!r}: expected N:E[:F[:P]] (e.g. 8:3:0.1:2)") from None
    if n < 1 or e < 1 or f <= 0 or p < 1 or len(parts) > 4:
        raise ValueError(f"train.unfreeze={spec!r}: N, E, P must be >= 1 and F > 0")
    return n, e, f, p


def layers(body: nn.Module) -> list[nn.Module]:
    """The body's layers: the modules that own parameters themselves, in registration order."""
    return [m for m in body.modules() if any(True for _ in m.parameters(recurse=False))]


def trainable_body_layers(body: nn.Module, params: dict, epoch: int) -> list[nn.Module]:
    """The body's layers that train in `epoch` (0-based)."""
    if params["mode"] == "head" or epoch < (params.get("freeze_epochs") or 0):
        return []
    every = layers(body)
    top = params.get("trainable_layers")
    cycles = parse_unfreeze(params.get("unfreeze"))
    if cycles:
        n, e = cycles[0], cycles[1]
        top = (top or n) + (epoch // e) * n
    return every[-top:] if top else every


def cycle_lr(params: dict, epoch: int) -> float | None:
    """The learning rate a gradual-unfreezing cycle starts with (None: not a cycle's start)."""
    cycles = parse_unfreeze(params.get("unfreeze"))
    if not cycles or epoch == 0 or epoch % cycles[1]:
        return None
    return params["lr"] * cycles[2] ** (epoch // cycles[1])


def cycles_stalled(history: list[dict], metric: str, params: dict) -> bool:
    """Whether the last P finished cycles brought no improvement of `metric` over the cycles
    before them (read from the history, so a resumed run stops where an uninterrupted one does)."""
    cycles = parse_unfreeze(params.get("unfreeze"))
    if not cycles:
        return False
    _, e, _, p = cycles
    done = len(history) // e
    if done <= p or len(history) % e:
        return False
    best = [min(h[metric] for h in history[c * e:(c + 1) * e]) for c in range(done)]
    return min(best[-p:]) >= min(best[:-p])


def set_epoch(model: nn.Module, params: dict, epoch: int) -> None:
    """requires_grad and train/eval modes of the body for `epoch`; call after `model.train()`."""
    active = {id(m) for m in trainable_body_layers(model.body, params, epoch)}
    for layer in layers(model.body):
        on = id(layer) in active
        for p in layer.parameters(recurse=False):
            p.requires_grad_(on)
        if not on and isinstance(layer, nn.modules.batchnorm._BatchNorm):
            layer.eval()


def optimizer(model: nn.Module, params: dict) -> torch.optim.Optimizer:
    """Adam (the thesis's) or AdamW over every parameter that may train: the head only in mode a,
    else all (a layer frozen in some epochs has no gradient there, and Adam / AdamW skip a
    parameter without one, so freezing schedules need no second optimizer)."""
    name = params.get("optimizer") or "adam"
    if name not in OPTIMIZERS:
        raise ValueError(f"train.optimizer={name!r}; valid: {', '.join(OPTIMIZERS)}")
    body = {id(p) for p in model.body.parameters()}
    group = [p for p in model.parameters() if params["mode"] != "head" or id(p) not in body]
    cls = torch.optim.AdamW if name == "adamw" else torch.optim.Adam
    kwargs = {"weight_decay": params["weight_decay"]} if params.get("weight_decay") is not None else {}
    scale = params.get("body_lr")
    if scale is None or params["mode"] == "head":
        return cls(group, lr=params["lr"], **kwargs)
    # `train.body_lr=F`: the body learns at F x the head's rate (discriminative fine-tuning: a
    # newly initialised head needs large steps, pretrained features small ones); `lr_scale` keeps
    # the ratio when a schedule sets the rate anew
    head = [p for p in group if id(p) not in body]
    return cls([{"params": head, "lr": params["lr"], "lr_scale": 1.0},
                {"params": [p for p in group if id(p) in body], "lr": params["lr"] * scale, "lr_scale": scale}],
               lr=params["lr"], **kwargs)
