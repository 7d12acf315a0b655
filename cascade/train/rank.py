"""A process's place in a group that trains one stage together (train/distributed.py); the
trainer reads it to forward its share of each batch."""
from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class Rank:
    """This process's rank among `world` processes."""

    rank: int
    world: int

    @property
    def leader(self) -> bool:
        return self.rank == 0

    def share(self, n: int) -> slice:
        """This rank's contiguous part of a batch of `n` (sizes differ by at most one)."""
        bounds = np.linspace(0, n, self.world + 1).round().astype(int)
        return slice(int(bounds[self.rank]), int(bounds[self.rank + 1]))
