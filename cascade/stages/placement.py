"""Where fold jobs train: which devices, how many folds at once on each, and the CPU threads each gets.

Why a rule of its own: "one fold per CPU core" is right on a CPU and wrong on a GPU box.  On 16
cores and one GPU it puts 16 VGG-16 folds on one card (out of memory); on 8 GPUs it leaves seven
idle.  So a run names its devices (`devices=auto|cpu|0,1,3`: auto = every visible GPU, else the
CPU) and how many folds share one GPU (`folds_per_device`, default 1).  Folds run devices x K at
a time unless `jobs` says otherwise.  Worker w trains on device w mod D, and every worker gets
cores / workers CPU threads for its data feed and host-side work.

The rule is plain arithmetic on (settings, visible GPUs, cores), so the tests check it with a
faked device count; `workers.py` pins each worker process to its device before CUDA starts there.
"""
from __future__ import annotations

import dataclasses
import os


@dataclasses.dataclass(frozen=True)
class Placement:
    """The devices of a run and how its parallel fold workers share them."""

    devices: tuple[str, ...]       # ("cpu",) or CUDA device ordinals as this process sees them: ("cuda:0", "cuda:2")
    workers: int                   # folds training at once
    threads: int                   # torch intra-op threads each worker gets

    @property
    def gpu(self) -> bool:
        return self.devices[0] != "cpu"

    def device_of(self, worker: int) -> str:
        """The device worker number `worker` (0-based) trains on: round robin over the devices, so
        K workers per device with workers = devices x K."""
        return self.devices[worker % len(self.devices)]

    def ordinal(self, worker: int) -> str:
        """The physical GPU index of `worker` (what CUDA_VISIBLE_DEVICES takes), or "" on the CPU."""
        dev = self.device_of(worker)
        return dev.split(":")[1] if dev.startswith("cuda:") else ""


#: The device this process was pinned to (a fold worker, see workers.py); None elsewhere.
_PINNED: str | None = None


def pin(device: str | None) -> None:
    """Make `device` this process's training device, whatever `devices=` says: a fold worker
    sees only its own GPU (CUDA_VISIBLE_DEVICES), which it then calls cuda:0."""
    global _PINNED
    _PINNED = device


def pinned() -> str | None:
    return _PINNED


def gpu_count() -> int:
    """GPUs this process can see.  torch.cuda.device_count() asks the driver without creating a
    CUDA context (torch.cuda.is_initialized() stays False), so forking afterwards stays safe."""
    import torch
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def resolve_devices(spec: str, gpus: int) -> tuple[str, ...]:
    """`devices=` as device names: `auto` every visible GPU (else the CPU), `cpu`, `cuda` every
    visible GPU (an error without one), or a comma list of GPU ordinals such as `0,1,3`."""
    spec = str(spec).strip()
    if spec == "cpu":
        return ("cpu",)
    if spec in ("auto", "cuda"):
        if gpus:
            return tuple(f"cuda:{i}" for i in range(gpus))
        if spec == "auto":
            return ("cpu",)
        raise ValueError("devices=cuda: no CUDA device is visible (torch.cuda.is_available() is False); "
                         "use devices=auto or devices=cpu")
    try:
        ordinals = [int(part) for part in spec.split(",")]
    except ValueError:
        raise ValueError(f"devices={spec!r}: expected auto, cpu, cuda or GPU ordinals like 0,1,3") from None
    bad = [i for i in ordinals if not 0 <= i < gpus]
    if bad or len(set(ordinals)) != len(ordinals):
        seen = f"{gpus} visible GPU(s): ordinals 0-{gpus - 1}" if gpus else "no visible GPU"
        raise ValueError(f"devices={spec}: {', '.join(map(str, bad)) or 'a repeated ordinal'} not usable; "
                         f"this process sees {seen} (CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')})")
    return tuple(f"cuda:{i}" for i in ordinals)


def threads_per_job(cfg: dict, jobs: int, cores: int | None = None) -> int:
    """torch intra-op threads each of `jobs` parallel folds gets (`train.threads`, or the cores
    shared out)."""
    cores = (os.cpu_count() or 1) if cores is None else cores
    return cfg["train"]["threads"] or max(1, cores // max(jobs, 1))


def placement(cfg: dict, n_folds: int, gpus: int | None = None, cores: int | None = None) -> Placement:
    """How `n_folds` fold jobs of a run are placed.  `gpus` / `cores` default to what this machine
    has (tests pass their own).  On the CPU `jobs=0` means one fold per core, as before; on GPUs it
    means devices x `folds_per_device`.  An explicit `jobs` wins either way, and no more workers
    start than there are folds."""
    gpus = gpu_count() if gpus is None else gpus
    cores = (os.cpu_count() or 1) if cores is None else cores
    devices = resolve_devices(cfg["devices"], gpus)
    default = len(devices) * (cfg["folds_per_device"] or 1) if devices[0] != "cpu" else cores
    workers = max(1, min(cfg["jobs"] or default, n_folds))
    return Placement(devices, workers, threads_per_job(cfg, workers, cores))


def cpu_placement(cfg: dict, n_folds: int) -> Placement:
    """The placement of CPU-only fold work (the scikit-learn regressors): one fold per core
    (or `jobs`), whatever GPUs the run trains on."""
    return placement({**cfg, "devices": "cpu"}, n_folds, gpus=0)
