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


def _layers(body: nn.Module) -> list[nn.Module]:
    return [m for m in body.modules() if any(True for _ in m.parameters(recurse=False))]


def trainable_body_layers(body: nn.Module, params: dict, epoch: int) -> list[nn.Module]:
    """The body's layers that train in `epoch` (0-based)."""
    if params["mode"] == "head" or epoch < (params.get("freeze_epochs") or 0):
        return []
    layers = _layers(body)
    top = params.get("trainable_layers")
    return layers[-top:] if top else layers


def set_epoch(model: nn.Module, params: dict, epoch: int) -> None:
    """requires_grad and train/eval modes of the body for `epoch`; call after `model.train()`."""
    active = {id(m) for m in trainable_body_layers(model.body, params, epoch)}
    for layer in _layers(model.body):
        on = id(layer) in active
        for p in layer.parameters(recurse=False):
            p.requires_grad_(on)
        if not on and isinstance(layer, nn.modules.batchnorm._BatchNorm):
            layer.eval()


def optimizer(model: nn.Module, params: dict) -> torch.optim.Optimizer:
    """Adam (the thesis's) or AdamW over the parameters that can train in some epoch: with
    `freeze_epochs` the body joins later, so it is in the optimizer from the start (Adam skips a
    parameter without a gradient, so the frozen epochs leave it untouched)."""
    name = params.get("optimizer") or "adam"
    if name not in OPTIMIZERS:
        raise ValueError(f"train.optimizer={name!r}; valid: {', '.join(OPTIMIZERS)}")
    last = max(params["epochs"] - 1, params.get("freeze_epochs") or 0)
    ever = {id(p) for m in trainable_body_layers(model.body, params, last) for p in m.parameters(recurse=False)}
    body = {id(p) for p in model.body.parameters()}
    group = [p for p in model.parameters() if id(p) not in body or id(p) in ever]
    cls = torch.optim.AdamW if name == "adamw" else torch.optim.Adam
    kwargs = {"weight_decay": params["weight_decay"]} if params.get("weight_decay") is not None else {}
    return cls(group, lr=params["lr"], **kwargs)
