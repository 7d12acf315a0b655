"""The thesis's augmentation — random rotation, shift, crop (zoom) and horizontal flip — as one
random affine warp per image, on the whole batch at once.

Why one warp: four separate PIL transforms per image would make the data path slower than a
small model's training step; a single `grid_sample` over the batch is not.  Randomness comes
from an explicit generator, so an epoch's augmentation is a function of (seed, epoch) and a
resumed run sees exactly the batches an uninterrupted one would.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def random_affine(x: torch.Tensor, gen: torch.Generator, rotation: float, shift: float,
                  crop: float, flip: bool, strength: torch.Tensor | None = None) -> torch.Tensor:
    """x: float (N, C, H, W).  Returns x warped by a random affine per image.  `strength` (N,)
    scales each image's rotation, crop and shift ranges (stronger augmentation of rare classes,
    `balance.minority_augment`); the random draws are the same with or without it."""
    n = x.shape[0]
    u = torch.rand(n, 5, generator=gen)
    angle = (u[:, 0] * 2 - 1) * math.radians(rotation)
    zoom = u[:, 1] * crop
    tx, ty = (u[:, 2] * 2 - 1) * 2 * shift, (u[:, 3] * 2 - 1) * 2 * shift
    if strength is not None:
        angle, zoom, tx, ty = (v * strength for v in (angle, zoom, tx, ty))
    zoom = 1.0 - zoom                                   # <1 samples a smaller region: a crop
    sx = torch.where(u[:, 4] < 0.5, -1.0, 1.0) if flip else torch.ones(n)
    cos, sin = torch.cos(angle) * zoom, torch.sin(angle) * zoom
    theta = torch.stack([torch.stack([cos * sx, -sin, tx], 1),
                         torch.stack([sin * sx, cos, ty], 1)], 1).to(x.dtype)
    if x.is_cuda:          # drawn on the host (the seeded generator); copied without stalling the host
        theta = theta.pin_memory().to(x.device, non_blocking=True)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
