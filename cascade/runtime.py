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
    numerics(cfg["train"]["numerics"])
    deterministic(bool(cfg["train"]["deterministic"]))
    return threads


#: MKL's conditional-numerical-reproducibility branch that runs the same code on every x86-64
#: CPU, Intel or not (mkl_service.h: MKL_CBWR_COMPATIBLE); MKL_CBWR_BRANCH asks for the branch.
_MKL_CBWR_COMPATIBLE, _MKL_CBWR_BRANCH = 3, 1


def _mkl():
    """The MKL service functions inside PyTorch's CPU library (None where torch has no MKL:
    ARM, macOS builds)."""
    import ctypes

    try:
        lib = ctypes.CDLL(str(Path(torch.__file__).parent / "lib" / "libtorch_cpu.so"))
        return lib if hasattr(lib, "mkl_serv_cbwr_set") else None
    except OSError:
        return None


def numerics(mode: str) -> None:
    """`train.numerics=portable`: CPU kernels that give the same bits on every x86-64 CPU.

    Why these three: a stage trained on an AMD EPYC and on an Intel Xeon ends with other weights
    although every library is the same, because each math library picks its code per CPU:
    PyTorch's own kernels by instruction set (ATen's AVX-512 / AVX2 builds), MKL by vendor and
    instruction set, oneDNN's convolutions by instruction set *and* cache sizes (its blocking,
    hence its summation order).  Portable mode asks ATen for its plain build
    (``ATEN_CPU_CAPABILITY=default``), MKL for its compatible branch (``MKL_CBWR=COMPATIBLE``)
    and turns oneDNN off (convolutions become im2col + MKL matrix products).  It costs about 2x
    on the CPU (`benchmarks/numerics_cost.py`) and nothing on a GPU, whose kernels it does not
    touch.  Each setting must be made before the library first computes, so a process that has
    already computed natively refuses, rather than silently mixing the two."""
    if mode != "portable":
        if os.environ.get("ATEN_CPU_CAPABILITY") == "default" and torch.backends.cpu.get_cpu_capability() == "DEFAULT":
            raise RuntimeError("train.numerics=native in a process that already computes portably "
                               "(ATEN_CPU_CAPABILITY=default is set): run it in a fresh process")
        return
    os.environ["ATEN_CPU_CAPABILITY"] = "default"     # inherited by spawned fold workers
    os.environ["MKL_CBWR"] = "COMPATIBLE"
    torch.backends.mkldnn.enabled = False
    problems = []
    if torch.backends.cpu.get_cpu_capability() != "DEFAULT":
        problems.append(f"PyTorch already dispatches to its {torch.backends.cpu.get_cpu_capability()} kernels")
    if (mkl := _mkl()) is not None and mkl.mkl_serv_cbwr_set(_MKL_CBWR_COMPATIBLE) != 0 \
            and mkl.mkl_serv_cbwr_get(_MKL_CBWR_BRANCH) != _MKL_CBWR_COMPATIBLE:
        problems.append("MKL has already computed on its native branch")
    if problems:
        raise RuntimeError("train.numerics=portable must be set before this process computes anything: "
                           + "; ".join(problems) + ".  Set it in the command or config (a fresh process), "
                           "or export ATEN_CPU_CAPABILITY=default MKL_CBWR=COMPATIBLE before starting Python")


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
    """An installed distribution's version; ``opencv`` is whichever OpenCV wheel provides cv2."""
    for name in (("opencv-python-headless", "opencv-python", "opencv-contrib-python-headless",
                  "opencv-contrib-python") if package == "opencv" else (package,)):
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
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
    status = git("status", "--porcelain", "--untracked-files=no", "--", "cascade", "pyproject.toml")
    return {"commit": commit, "dirty": bool(status)}


#: CPU features that choose a math library's kernels (MKL and oneDNN pick code paths by them).
_ISA_FLAGS = ("avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_tile",
              "amx_bf16", "asimd", "sve")


@functools.lru_cache(maxsize=1)
def _cpuinfo() -> dict[str, str]:
    """The first processor's fields of /proc/cpuinfo (empty where there is none)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return {}
    fields: dict[str, str] = {}
    for line in text.split("\n\n")[0].splitlines():
        if ":" in line:
            key, value = line.split(":", 1)
            fields.setdefault(key.strip(), value.strip())
    return fields


def _cpu_model() -> str:
    return _cpuinfo().get("model name") or platform.processor() or platform.machine()


def cpu_kind() -> str:
    """Vendor, family / model and the kernel-choosing instruction sets of this CPU.

    Why beside the model name: a virtual machine's model name ("Intel(R) Xeon(R) Processor",
    "AMD EPYC") names neither the generation nor the features, and MKL and oneDNN take other
    code paths per vendor and feature set, so a stage trained on another CPU ends with other
    weights (measured: the README's demo, made on an Intel Xeon, rebuilt on an AMD EPYC moved
    its MAEs by up to 0.31 years, inside their 95% CIs)."""
    info = _cpuinfo()
    flags = set(info.get("flags", info.get("Features", "")).split())
    isa = ",".join(f for f in _ISA_FLAGS if f in flags) or "unknown"
    vendor = info.get("vendor_id") or info.get("CPU implementer") or platform.machine()
    family = "/".join(info[k] for k in ("cpu family", "model", "CPU part") if k in info)
    return f"{vendor} {family} [{isa}]".replace("  ", " ")


#: The libraries whose versions can move a run's bytes or numbers: the image decoders and
#: encoders (Pillow and its libjpeg, OpenCV: the demo suite's JPEGs and every crop), the face
#: detector, the model zoo, the array and statistics stack.
LIBRARIES = ("torch", "torchvision", "timm", "facenet-pytorch", "numpy", "scipy", "scikit-learn", "pandas",
             "pillow", "opencv", "imagehash")

#: Fingerprint fields that can move numbers; the rest (commit, cores) say where a run was made.
#: A commit that moves numbers changes the stage keys instead.
NUMERIC_FIELDS = ("python", *LIBRARIES, "libjpeg", "blas", "cpu", "cpu_kind", "cpu_capability", "numerics", "device", "gpu",
                  "cuda", "cudnn", "threads_per_stage", "threads_per_fold", "stage_processes", "deterministic")

#: Number-moving fields added after records were first written, and the value an older record
#: (made before the setting existed) had.
FIELD_DEFAULTS = {"numerics": "native", "stage_processes": 1}

#: The fields that stop moving numbers where both runs computed with `train.numerics=portable`.
CPU_FIELDS = ("cpu", "cpu_kind")


def blas_library() -> str | None:
    """numpy's BLAS, its version and the kernel it picked for this CPU (OpenBLAS chooses per CPU
    at load time: a float32 matrix product fuses multiply-adds with the AVX-512 kernel and not
    with the Haswell one, so their last bits differ)."""
    import numpy  # noqa: F401  (loads the BLAS that threadpoolctl inspects)
    from threadpoolctl import threadpool_info

    # numpy's own copy: scipy ships another OpenBLAS, listed too once scipy is imported
    for lib in threadpool_info():
        if lib.get("user_api") == "blas" and "numpy" in Path(lib.get("filepath", "")).parent.name:
            return " ".join(str(lib[k]) for k in ("internal_api", "version", "architecture") if lib.get(k))
    return None


def libjpeg_version() -> str | None:
    from PIL import features

    return features.version("jpg")


def fingerprint(cfg: dict) -> dict:
    """What a run's numbers may depend on beyond its settings: the harness version and commit
    (dirty or not), the libraries (:data:`LIBRARIES`, Pillow's libjpeg, numpy's BLAS and its
    CPU kernel), the CPU and the instruction set PyTorch dispatches to, the GPU with CUDA and
    cuDNN, threads per fold and per intermediate stage, and deterministic mode."""
    dev = device(cfg)
    gpu = dev.startswith("cuda") and torch.cuda.is_available()
    return {
        "harness": package_version("cascade-age"), **_git(),
        "python": platform.python_version(),
        **{name: package_version(name) for name in LIBRARIES},
        "libjpeg": libjpeg_version(), "blas": blas_library(),
        "cpu": _cpu_model(), "cpu_kind": cpu_kind(), "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cores": os.cpu_count(),
        "device": dev,
        "gpu": torch.cuda.get_device_name(dev) if gpu else None,
        "cuda": torch.version.cuda if gpu else None,
        "cudnn": torch.backends.cudnn.version() if gpu else None,
        "threads_per_stage": threads_per_job(cfg, 1),
        "threads_per_fold": placement(cfg, 1 << 30).threads,
        "deterministic": bool(cfg["train"]["deterministic"]),
        "numerics": cfg["train"]["numerics"],
        "stage_processes": cfg["train"]["processes"],
    }


def numeric_environment(cfg: dict) -> dict:
    """The number-moving part of :func:`fingerprint` (:data:`NUMERIC_FIELDS`), which every
    finished stage records beside its outputs."""
    fp = fingerprint(cfg)
    return {k: fp[k] for k in NUMERIC_FIELDS}


def numeric_differences(recorded: dict, now: dict, unrecorded: bool = False) -> list[str]:
    """The number-moving fields (:data:`NUMERIC_FIELDS`) in which two fingerprints differ, as
    ``name recorded → now``.  A field the record lacks (an older record) is not compared, or,
    with `unrecorded`, is itself a difference: nothing says the numbers were made alike."""
    if recorded:          # a record from before a field existed was made at its default
        recorded = {**FIELD_DEFAULTS, **recorded}
    portable = recorded.get("numerics") == now.get("numerics") == "portable"
    out = [f"{k} {recorded[k]} → {now[k]}" for k in NUMERIC_FIELDS
           if k in recorded and k in now and recorded[k] != now[k] and not (portable and k in CPU_FIELDS)]
    missing = [k for k in NUMERIC_FIELDS if k not in recorded]
    return out + ([f"not recorded then: {', '.join(missing)}"] if unrecorded and missing else [])


def fingerprint_line(fp: dict) -> str:
    """The fingerprint as one table-header line (the threads are on the run table's own line,
    read from what each stage and fold recorded, not from the settings)."""
    commit = "unknown commit" if not fp["commit"] else fp["commit"][:12] + (" (dirty tree)" if fp["dirty"] else "")
    gpu = f"; GPU {fp['gpu']}" if fp["gpu"] else ""
    return (f"Environment: cascade {fp['harness']} at {commit}; torch {fp['torch']}, numpy {fp['numpy']}, "
            f"scikit-learn {fp['scikit-learn']}; CPU {fp['cpu']} ({fp['cpu_kind']}; {fp['cpu_capability']}, "
            f"{fp['cores']} cores){gpu}; "
            f"deterministic mode {'on' if fp['deterministic'] else 'off'}"
            + ("; portable CPU numerics (the same bits on any x86-64 CPU)" if fp.get("numerics") == "portable" else ""))
