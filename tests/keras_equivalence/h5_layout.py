"""Write a keras-vggface weight file in the legacy Keras 2 HDF5 layout of the released files, with
seeded random weights: what the Keras-equivalence test imports and what make_fixtures.py has Keras
itself load (so the two sides read the same bytes).

Layout (Keras 2's `save_weights_to_hdf5_group`): root attrs `layer_names` (every layer, weightless
ones too), `backend`, `keras_version`; one group per layer with attr `weight_names`
("conv1/7x7_s2/bn/gamma:0", ...) and a dataset at each of those paths ('/' nests groups).
The top's dense layers (VGG-16 fc6-fc8, 411 MB for fc6 alone; the ResNet classifier) are
written shape-only, read back as zeros: the body, which is what is compared, does not use them.
"""
from __future__ import annotations

import json
import zlib
from pathlib import Path

import numpy as np

TOP_LAYERS = ("fc6", "fc7", "fc8", "classifier")


def weights_for(name: str, shape: tuple[int, ...], seed: int) -> np.ndarray:
    """A seeded, well-scaled random tensor for weight `name` (the same on every machine)."""
    rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
    leaf = name.rsplit("/", 1)[-1].split(":")[0]
    if leaf == "kernel":
        fan_in = int(np.prod(shape[:-1]))
        return (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)
    if leaf == "gamma" and "_1x1_increase/" in name:
        # a residual branch's last scale kept small, as trained ResNets have it: each block stays
        # near the identity, so round-off is not amplified ~5x per block (random weights make a
        # deep network chaotic, and then float noise, not the conversion, decides the output)
        return rng.uniform(0.1, 0.3, shape).astype(np.float32)
    if leaf == "gamma":
        return rng.uniform(0.6, 1.4, shape).astype(np.float32)
    if leaf == "moving_variance":
        return rng.uniform(0.5, 2.0, shape).astype(np.float32)
    if leaf in ("beta", "moving_mean"):
        return (rng.standard_normal(shape) * 0.2).astype(np.float32)
    return (rng.standard_normal(shape) * 0.05).astype(np.float32)          # bias


def write(path: Path, layout: list[list], seed: int) -> Path:
    """`layout`: [[layer name, [[weight name, shape], ...]], ...] in the model's layer order."""
    import h5py

    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = [name.encode() for name, _ in layout]
        f.attrs["backend"] = b"tensorflow"
        f.attrs["keras_version"] = b"2.2.4"
        for name, weights in layout:
            group = f.create_group(name)
            group.attrs["weight_names"] = [w.encode() for w, _ in weights]
            for w, shape in weights:
                if name in TOP_LAYERS:
                    group.create_dataset(w, shape=tuple(shape), dtype="float32")
                else:
                    group.create_dataset(w, data=weights_for(w, tuple(shape), seed))
    return path


def load_layout(path: Path) -> list[list]:
    return json.loads(Path(path).read_text())
