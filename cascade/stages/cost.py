"""The planner's estimate in a line or two, cheap enough for a dry run and for the first line of
every run.

Why not `cascade plan`'s full estimate: it times training steps on this CPU for several seconds
(about a minute for VGG-16 on 2 cores), which a dry run or a run's first line should not cost.
Here GPU-hours come from FLOPs counted once on the model and each GPU class's measured rate
(`estimate.estimate`, measure=False),
and this CPU's hours from a few timed steps, only for a model small enough that they take well
under a second (`QUICK_FLOPS`); otherwise the line says that `cascade plan` measures them.
Only the nodes not cached yet are counted: the estimate is of what the run still has to do.
"""
from __future__ import annotations

import dataclasses
import os
import re
import shutil

from cascade.runtime import device
from cascade.stages import estimate as E
from cascade.stages import plan as P

#: Training FLOPs per image up to which this CPU is timed at a run's start (a few steps of 32
#: images at this cost take well under a second on 2 cores; the demo at 40 px is 3.3e7).
QUICK_FLOPS = 5e7


def _remaining(plan: P.Plan) -> P.Plan | None:
    """The plan cut to its nodes that are not cached (None: nothing left to run)."""
    nodes = [n for n in plan.nodes if n.kind == "root" or P.status(plan, n) != "cached"]
    return dataclasses.replace(plan, nodes=nodes) if len(nodes) > 1 else None


def _cpu_hours(plan: P.Plan, train_flops: float) -> float | None:
    """Hours on all of this CPU's cores, folds one at a time, from a few timed steps; None for a
    model too large to time quickly.  The head is built for 2 classes: its size does not move
    the rate of a step measurably, and counting the target's classes needs its labels."""
    if train_flops > QUICK_FLOPS:
        return None
    from cascade import config as C
    from cascade.models import AgeModel, build_backbone

    cfg = plan.cfg
    model = AgeModel(build_backbone(cfg["backbone"]), 2, cfg["head"]["hidden"], cfg["head"]["dropout"])
    rates = E.measured_rates(model, C.backbone_settings(cfg)["input_size"], os.cpu_count() or 1, seconds=0.2)
    return sum(w.seconds(rates) for w in E.plan_work(plan)) / 3600


def _cuda_name() -> str | None:
    """The name of the first CUDA device the run sees, asked of `nvidia-smi` (None: not found).

    Why not torch.cuda.get_device_name: it creates a CUDA context in this process, and a parent
    with one cannot fork fold workers safely (workers.fork_is_safe), so a run's first line
    would change how its folds run."""
    import subprocess

    if shutil.which("nvidia-smi") is None:
        return None
    first = os.environ.get("CUDA_VISIBLE_DEVICES", "0").split(",")[0].strip() or "0"
    try:
        done = subprocess.run(["nvidia-smi", "-i", first, "--query-gpu=name", "--format=csv,noheader"],
                              capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip().splitlines()[0] if done.returncode == 0 and done.stdout.strip() else None


def this_gpu_class(cfg: dict) -> tuple[str, str] | None:
    """(this machine's CUDA device name, its `plan.gpus` class) when the run trains on a GPU of a
    known class, matched by name ("NVIDIA H200" -> h200); else None."""
    name = _cuda_name() if device(cfg).startswith("cuda") else None
    if name is None:
        return None
    flat = re.sub(r"[^a-z0-9]", "", name.lower())
    known = [g for g in cfg["plan"]["gpus"] if g in flat]
    return (name, max(known, key=len)) if known else None


def outlook(plans: list[P.Plan]) -> dict | None:
    """The cheap estimate of what the plans (one per seed) still have to run: TFLOPs, GPU-hours
    per class and, when quick to time, CPU hours here; None when every node is cached."""
    left = [r for p in plans if (r := _remaining(p))]
    if not left:
        return None
    gpus = list(left[0].cfg["plan"]["gpus"])
    ests = [E.estimate(p, [1], gpus, measure=False) for p in left]
    cpu = [_cpu_hours(p, e["train_flops"]) for p, e in zip(left, ests)]
    return {"tflops": sum(r["TFLOPs"] for e in ests for r in e["rows"]),
            "gpu_hours": {g: sum(e["gpu_hours"][g] for e in ests) for g in gpus},
            "cpu_hours": None if None in cpu else sum(cpu), "cores": os.cpu_count() or 1}


def _duration(hours: float) -> str:
    """Hours as a reader wants them: seconds, minutes or hours (2 significant digits)."""
    if hours < 1 / 60:
        return f"{hours * 3600:.2g} s"
    return f"{hours * 60:.2g} min" if hours < 1 else f"{hours:.2g} h"


def _cpu_text(out: dict) -> str:
    if out["cpu_hours"] is None:
        return "CPU time here: not timed for a model this large (`cascade plan` measures this CPU)"
    return (f"~{_duration(out['cpu_hours'])} on this CPU ({out['cores']} cores, folds one at a time; "
            f"from a few timed steps)")


def _gpu_text(out: dict) -> str:
    gpu = ", ".join(f"{g} {h:.3g}" for g, h in out["gpu_hours"].items())
    return f"GPU-hours from FLOPs at each class's measured rate (`cascade plan` names the sources): {gpu}"


def dry_run_text(plans: list[P.Plan]) -> str:
    """The estimate a dry run prints: CPU hours here and GPU-hours per GPU class."""
    out = outlook(plans)
    if out is None:
        return "estimate: every node is cached; the run only writes its tables"
    return (f"estimate of the nodes not cached (a lower bound; `cascade plan` for every node): {out['tflops']:.3g} TFLOP; "
            f"{_cpu_text(out)}; {_gpu_text(out)}")


def start_line(plans: list[P.Plan]) -> str:
    """The one line a run starts with: the estimate for this machine (its GPU class when it
    trains on a known one, every class when on another GPU, else this CPU)."""
    out = outlook(plans)
    if out is None:
        return "estimate: every node is cached; nothing to train"
    cfg = plans[0].cfg
    if gpu := this_gpu_class(cfg):
        here = f"~{out['gpu_hours'][gpu[1]]:.3g} GPU-hours on this {gpu[0]} ({gpu[1]}, from FLOPs at its class's rate)"
    else:
        here = _gpu_text(out) if device(cfg).startswith("cuda") else _cpu_text(out)
    return f"estimate for this machine: {here}; a lower bound (`cascade plan` for every node)"
