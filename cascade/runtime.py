"""The process a stage or fold trains in: its device, its torch threads, deterministic mode, and
the environment fingerprint every run records.

Why one module: the numbers a stage produces depend on more than its settings.  On this
machine's CPU a demo stage trained with 1 and with 2 torch threads ends with different weights
(each bit-reproducible for its own thread count): reductions are split differently between
threads.  CPU kernels (AVX2 vs AVX-512), library versions and GPU kernels move numbers the
same way.  None of them is in a stage key — a key names what was asked for, and keying on the
thread count would stop a run resumed with another `jobs` from reusing its finished folds — so
every stage and fold records the threads it trained with, and every run.json and table header
carries this fingerprint: a reader can tell which numbers were made where.
"""
from __future__ import annotations

import functools
import importlib.metadata
import os
import platform
import subprocess
from pathlib import Path

import torch

from cascade.stages.placement import gpu_count, pinned, placement, resolve_devices, threads_per_job


def device(cfg: dict) -> str:
    """The torch device this process trains on: a fold worker's pinned device, else the first of
    `devices=` (auto: the first visible GPU, else the CPU).  Intermediate stages and mode-a
    feature extraction run here, on the first device."""
    return pinned() or resolve_devices(cfg["devices"], gpu_count())[0]


def configure(cfg: dict, jobs: int) -> int:
    """Set this process up for one of `jobs` parallel jobs: its torch threads and deterministic
    mode (`train.deterministic`).  Returns the thread count, which the caller records."""
    threads = threads_per_job(cfg, jobs)
    torch.set_num_threads(threads)
    deterministic(bool(cfg["train"]["deterministic"]))
    return threads


def deterministic(on: bool) -> None:
    """`train.deterministic=true`: PyTorch's deterministic algorithms (an op without one is an
    error, not a silent nondeterministic result), cuDNN's deterministic kernels without
    autotuning (off: cuDNN autotunes, the GPU default a user expects), and the cuBLAS workspace setting CUDA needs for deterministic matrix products
    (it must be set before the first cuBLAS call, so it is set here, before any training)."""
    if on:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(on)
    torch.backends.cudnn.deterministic = on
    torch.backends.cudnn.benchmark = not on    # autotuned kernels on a GPU (keyed as cudnn_benchmark)


def package_version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


@functools.lru_cache(maxsize=1)
def _git() -> dict:
    """The commit the harness code was loaded from, and whether its tree had changes (None
    where the package is not in a git checkout, e.g. installed from a wheel)."""
    root = Path(__file__).resolve().parent.parent

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if commit is None:
        return {"commit": None, "dirty": None}
    status = git("status", "--porcelain", "--untracked-files=no", "--", "cascade", "protocols", "pyproject.toml")
    return {"commit": commit, "dirty": bool(status)}


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def fingerprint(cfg: dict) -> dict:
    """What a run's numbers may depend on beyond its settings: the harness version and commit
    (dirty or not), the libraries, the CPU and the instruction set PyTorch dispatches to, the
    GPU, threads per fold and per intermediate stage, and deterministic mode."""
    dev = device(cfg)
    return {
        "harness": package_version("cascade-age"), **_git(),
        "python": platform.python_version(),
        **{name: package_version(name) for name in ("torch", "torchvision", "timm", "numpy", "scipy", "scikit-learn",
                                             "pandas")},
        "cpu": _cpu_model(), "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cores": os.cpu_count(),
        "device": dev,
        "gpu": torch.cuda.get_device_name(dev) if dev.startswith("cuda") and torch.cuda.is_available() else None,
        "threads_per_stage": threads_per_job(cfg, 1),
        "threads_per_fold": placement(cfg, 1 << 30).threads,
        "deterministic": bool(cfg["train"]["deterministic"]),
    }


def fingerprint_line(fp: dict) -> str:
    """The fingerprint as one table-header line (the threads are on the run table's own line,
    read from what each stage and fold recorded, not from the settings)."""
    commit = "unknown commit" if not fp["commit"] else fp["commit"][:12] + (" (dirty tree)" if fp["dirty"] else "")
    gpu = f"; GPU {fp['gpu']}" if fp["gpu"] else ""
    return (f"Environment: cascade {fp['harness']} at {commit}; torch {fp['torch']}, numpy {fp['numpy']}, "
            f"scikit-learn {fp['scikit-learn']}; CPU {fp['cpu']} ({fp['cpu_capability']}, {fp['cores']} cores){gpu}; "
            f"deterministic mode {'on' if fp['deterministic'] else 'off'}")
