"""What a plan will cost before it runs: `cascade plan`.

Why a model and not a guess: a cascade with LOPO is thousands of fine-tunings; a user deciding
between this CPU, a GPU class or a cluster needs the number first.  The model counts images:
every stage's epochs x its training rows (forward + backward) and validation / test rows
(forward), every target fold the same on its own rows (mode a with the feature cache: one body
forward per image).  Work is priced two ways:

* FLOPs per image, counted on the real model at its input size with
  `torch.utils.flop_counter.FlopCounterMode` (forward, and forward + backward), divided by the
  FLOP/s the harness *measured* on each GPU class (`cascade/configs/gpu_rates.yaml`, refreshed by
  benchmarks/gpu_check.sh; a class without a measurement is scaled from one of comparable peak,
  and only a class with none falls back to peak x `plan.utilisation`; the output names the
  source of every class) -> GPU-hours;
* this machine's measured images/s for training (an epoch of the harness's own trainer) and a
  forward pass, at 1 thread and at all cores -> CPU hours, and how folds in parallel (`--jobs`,
  cores / jobs threads each) scale.

Dataset sizes come from the data; a dataset read from the demo suite is priced at its published
size when asked (`published=True`, what `cascade plan` does: a study is planned before its data
is here), and the output says which.  What it leaves out: decoding the image cache once, and
early stopping (which only shortens a run).

The same model gives the estimate in a line or two that a dry run prints and every run starts
with (:func:`dry_run_text`, :func:`start_line`), cheap enough for both: the full estimate times
training steps on this CPU for several seconds (about a minute for VGG-16 on 2 cores), which they
should not cost.  There GPU-hours come from FLOPs counted once on the model and each GPU class's
measured rate (:func:`estimate` with measure=False), and this CPU's hours from a few timed steps,
only for a model small enough that they take well under a second (:data:`QUICK_FLOPS`); otherwise
the line says that `cascade plan` measures them.  Only the nodes not cached yet are counted: the
estimate is of what the run still has to do.
"""
from __future__ import annotations

import dataclasses
import math
import os
import re
import shutil
import tempfile
import time
from importlib import resources
from pathlib import Path

import numpy as np
import torch
import yaml

from cascade import config as C
from cascade.data.datasets import PUBLISHED_SIZES, LabelSpace
from cascade.models import AgeModel, build_backbone
from cascade.protocols import folds as protocol_folds
from cascade.runtime import device
from cascade.stages.plan import Plan, status
from cascade.train.trainer import Split, fit


@dataclasses.dataclass
class Work:
    """Images a node pushes through the model."""

    label: str
    train_images: float = 0.0        # forward + backward
    eval_images: float = 0.0         # forward only
    folds: int = 1

    def flops(self, train_flops: float, eval_flops: float) -> float:
        return self.train_images * train_flops + self.eval_images * eval_flops

    def seconds(self, rates: tuple[float, float]) -> float:
        """Time at (training, forward) images/s."""
        return self.train_images / rates[0] + self.eval_images / rates[1]


def model_flops(model: AgeModel, size: int) -> tuple[float, float]:
    """(forward + backward, forward) FLOPs per image at `size` px."""
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.zeros(2, 3, size, size)
    model.train()
    with FlopCounterMode(display=False) as counter:
        model(x).sum().backward()
    train = counter.get_total_flops() / 2
    model.zero_grad(set_to_none=True)
    model.eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(x)
    return train, counter.get_total_flops() / 2


def measured_rates(model: AgeModel, size: int, threads: int, seconds: float = 2.0,
                   aug: dict | None = None) -> tuple[float, float]:
    """This machine's (training, forward) images/s at `threads` torch threads: Adam steps on
    random batches (small batches for large inputs, so it stays quick), timed step by step for
    about `seconds` after a warm-up step; the median step is used, so a moment of contention
    from another process does not decide the estimate.  With `aug` (the run's augmentation) the
    training rate is the harness's own: one epoch of `trainer.fit` over random images, timed
    whole (the data feed, augmentation, loss bookkeeping and the checkpoint write included), on
    as many images as the bare steps say fit in about `seconds`."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        batch = 32 if size <= 64 else 4
        x, y = torch.randn(batch, 3, size, size), torch.randint(0, model.classifier.out_features, (batch,))
        opt = torch.optim.Adam(model.parameters(), lr=1e-4)

        def train_step():
            model.train()
            opt.zero_grad(set_to_none=True)
            torch.nn.functional.cross_entropy(model(x), y).backward()
            opt.step()

        @torch.no_grad()
        def eval_step():
            model.eval()
            model(x)

        def rate(step) -> float:
            step()
            times, start = [], time.perf_counter()
            while len(times) < 3 or (time.perf_counter() - start < seconds and len(times) < 50):
                t = time.perf_counter()
                step()
                times.append(time.perf_counter() - t)
            return batch / float(np.median(times))
        bare = rate(train_step)
        forward = rate(eval_step)
        return (bare if aug is None else harness_rate(model, size, batch, bare * seconds, aug)), forward
    finally:
        torch.set_num_threads(before)


def harness_rate(model: AgeModel, size: int, batch: int, images: float, aug: dict) -> float:
    """Training images/s of one `trainer.fit` epoch over `images` random images (at least three
    batches), everything the harness does per epoch included."""
    n = max(3 * batch, int(images) // batch * batch)
    rng = np.random.default_rng(0)
    classes = model.classifier.out_features
    split = Split(rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8), rng.integers(0, classes, n),
                  np.arange(n), np.arange(0))
    params = {"mode": "full", "lr": 1e-4, "batch_size": batch, "epochs": 1, "patience": 3, "augment": True,
              "select": "last"}
    state = {k: v.clone() for k, v in model.state_dict().items()}
    with tempfile.TemporaryDirectory(prefix="cascade-rate-") as tmp:
        start = time.perf_counter()
        fit(model, split, params, aug, np.arange(classes, dtype=float), Path(tmp) / "ckpt.pt", seed=0, log=lambda m: None)
        seconds = time.perf_counter() - start
    model.load_state_dict(state)
    return n / seconds


def dataset_sizes(plan: Plan, published: bool = False) -> dict[str, tuple[int, str]]:
    """(images priced, where the count comes from) per dataset of the plan: the data's own rows,
    or with `published`, a dataset read from the demo suite at its real size."""
    out = {}
    for name, table in plan.tables.items():
        if published and table.synthetic and name in PUBLISHED_SIZES:
            n, source = PUBLISHED_SIZES[name]
            out[name] = (n, f"published size: {source}; the demo suite has {len(table):,}")
        else:
            out[name] = (len(table), "demo suite (synthetic)" if table.synthetic else f"the data at {table.root}")
    return out


def plan_work(plan: Plan, published: bool = False) -> list[Work]:
    """Images per node, from the datasets' sizes (:func:`dataset_sizes`), the stage parameters
    and the protocol folds (a dataset priced at another size than its table keeps its folds and
    scales their images)."""
    sizes = dataset_sizes(plan, published)
    out = []
    for node in plan.nodes:
        if node.kind == "root":
            continue
        p, table = node.params, plan.tables[node.stage]
        n, epochs = sizes[node.stage][0], p["epochs"]
        scale = n / len(table)
        if node.kind == "train":
            n_val = round(n * p["val_fraction"])
            out.append(Work(node.label, epochs * (n - n_val) * p.get("train_fraction", 1.0), epochs * n_val))
            continue
        labels = LabelSpace.of(table, p.get("classes"))
        targets = labels.encode(table.frame["age_lo"], table.frame["age_hi"])
        folds = protocol_folds(table.frame.assign(label=targets), node.info["protocol"], plan.cfg["split_seed"])
        cached = p["mode"] == "head" and not p["augment"] and plan.cfg["train"]["feature_cache"]
        w = Work(node.label, folds=len(folds))
        for _, train, test in folds:
            n_train, n_test = len(train) * scale, len(test) * scale
            n_val = round(n_train * p["val_fraction"])
            if cached:                   # the body once per image (shared); heads are negligible
                continue
            w.train_images += epochs * (n_train - n_val) * p.get("train_fraction", 1.0)
            w.eval_images += epochs * n_val + n_test
        if cached:
            w.eval_images = n
        out.append(w)
    return out


@dataclasses.dataclass(frozen=True)
class GpuRate:
    """Training FLOP/s one GPU of a class sustains through the harness, and why we think so."""

    flops_per_s: float
    source: str


def measured_gpus() -> dict[str, dict]:
    """The harness's measured training rates per GPU class (`cascade/configs/gpu_rates.yaml`)."""
    return yaml.safe_load(resources.files("cascade.configs").joinpath("gpu_rates.yaml").read_text()) or {}


#: How far apart two classes' peaks may be for one's measured rate to price the other: a
#: tensor-core GPU's utilisation says little about a card without tensor cores (the GTX 1080 Ti
#: of the thesis: its FP32 peak is 1/88 of an H200's 16-bit one).
SCALE_RANGE = 10.0


def gpu_rates(cfg: dict, gpus: list[str]) -> dict[str, GpuRate]:
    """The FLOP/s each GPU class of `gpus` trains at: its own measurement; else the measurement
    of the class of nearest peak within :data:`SCALE_RANGE`, scaled by the peak ratio; else peak
    x `plan.utilisation` (an assumption, said so)."""
    peak, assumed = cfg["plan"]["gpus"], cfg["plan"]["utilisation"]
    measured = {g: m for g, m in measured_gpus().items() if g in peak}
    achieved = {g: m["harness_img_s"] * m["train_gflops"] * 1e9 for g, m in measured.items()}
    out = {}
    for g in gpus:
        if g in measured:
            m = measured[g]
            out[g] = GpuRate(achieved[g], f"measured: {m['backbone']} at {m['input_size']} px, {m['harness_img_s']:,} "
                                          f"img/s through the harness = {achieved[g] / 1e12:.3g} TFLOP/s "
                                          f"({achieved[g] / (peak[g] * 1e12):.1%} of peak; {m['source']})")
            continue
        near = [r for r in measured if 1 / SCALE_RANGE <= peak[g] / peak[r] <= SCALE_RANGE]
        if near:
            ref = min(near, key=lambda r: abs(math.log(peak[g] / peak[r])))
            out[g] = GpuRate(achieved[ref] * peak[g] / peak[ref],
                             f"not measured: {ref}'s measured {achieved[ref] / 1e12:.3g} TFLOP/s x peak ratio "
                             f"{peak[g]:g}/{peak[ref]:g}")
        else:
            out[g] = GpuRate(peak[g] * 1e12 * assumed, f"not measured, no measured class of comparable peak: peak "
                                                        f"{peak[g]:g} TFLOP/s x assumed utilisation {assumed:g}")
    return out


def gpu_wall_hours(work: list[Work], train_flops: float, eval_flops: float, flops_per_s: float,
                   devices: int, processes: int = 1) -> float:
    """Wall-clock hours on `devices` GPUs of `flops_per_s` each: intermediate stages one after
    another, each on `processes` of the GPUs (`train.processes`, DDP; 1: the first GPU), a
    target's folds spread over all of them (stages/placement.py).  K folds sharing one GPU
    (`folds_per_device`) fill it better; they do not raise its rate, which was measured."""
    seconds = sum(w.flops(train_flops, eval_flops) / flops_per_s
                  / (min(devices, w.folds) if w.folds > 1 else min(devices, processes)) for w in work)
    return seconds / 3600


def timing_warnings(rates: dict[int, tuple[float, float]], cores: int) -> list[str]:
    """What makes this CPU's timings suspect: all cores slower than one thread (another process
    competing, or threads oversubscribed), or a training step faster than a forward pass."""
    out = []
    if cores > 1 and 1 in rates and cores in rates and rates[cores][0] < rates[1][0]:
        out.append(f"{cores} threads trained slower than 1 ({rates[cores][0]:.3g} vs {rates[1][0]:.3g} img/s): "
                   "is another process using this CPU? the CPU hours below are suspect")
    for threads, (train, forward) in rates.items():
        if train > forward:
            out.append(f"at {threads} thread(s) a training step ({train:.3g} img/s) timed faster than a forward pass "
                       f"({forward:.3g}): the CPU hours below are suspect")
    return out


def feed_rate(size: int, seconds: float = 0.5) -> float:
    """Images/s one feeding thread of this machine gathers at `size` px (random batches of an
    in-memory stand-in of the image cache: the warm-cache rate; benchmarks/feed_rate.py also
    measures it cold)."""
    from cascade.train.feed import delivery_rate
    images = np.random.default_rng(0).integers(0, 256, (max(256, 2**26 // (3 * size * size)), size, size, 3),
                                               dtype=np.uint8)
    return delivery_rate(images, 64, seconds)


def estimate(plan: Plan, jobs: list[int], gpus: list[str], measure: bool = True, devices: int = 1,
             published: bool = False) -> dict:
    """The cost table of a plan: per node images, TFLOPs, CPU hours; totals per GPU class, the
    wall time on `devices` GPUs of each class and the feed threads each GPU needs; the CPU wall
    time with folds run `jobs` at a time.  `published`: demo-suite datasets at their real sizes."""
    cfg = plan.cfg
    size = C.backbone_settings(cfg)["input_size"]
    target = plan.targets[0]
    classes = len(LabelSpace.of(plan.tables[target.stage], target.params.get("classes")))
    model = AgeModel(build_backbone(cfg["backbone"]), classes, cfg["head"]["hidden"], cfg["head"]["dropout"])
    train_flops, eval_flops = model_flops(model, size)
    cores = os.cpu_count() or 1
    rates = {t: measured_rates(model, size, t, aug=cfg["augment"]) for t in sorted({1, cores})} if measure else {}
    work = plan_work(plan, published)

    def rate_at(threads: int) -> tuple[float, float]:
        """Interpolated images/s at `threads` between the measured 1-thread and all-core rates."""
        if threads in rates:
            return rates[threads]
        a, b = rates[1], rates[cores]
        f = (threads - 1) / max(cores - 1, 1)
        return a[0] + f * (b[0] - a[0]), a[1] + f * (b[1] - a[1])

    rows = [{"node": w.label, "folds": w.folds, "train images": w.train_images, "eval images": w.eval_images,
             "TFLOPs": w.flops(train_flops, eval_flops) / 1e12,
             **({"CPU h (1 job)": w.seconds(rates[cores]) / 3600} if rates else {})} for w in work]
    total_flops = sum(w.flops(train_flops, eval_flops) for w in work)
    priced = gpu_rates(cfg, gpus)
    gpu_hours = {g: total_flops / priced[g].flops_per_s / 3600 for g in gpus}
    gpu_wall = {g: gpu_wall_hours(work, train_flops, eval_flops, priced[g].flops_per_s, devices,
                                  cfg["train"]["processes"]) for g in gpus}
    gpu_rate = {g: priced[g].flops_per_s / train_flops for g in gpus}          # training images/s per GPU
    feed = feed_rate(size) if measure else None
    scaling = {}
    if rates:
        for j in jobs:
            threads = max(1, cores // j)
            seconds = 0.0
            for w in work:
                if w.folds > 1 and j > 1:       # folds j at a time, cores / j threads each
                    parallel = min(j, w.folds, cores)         # more jobs than cores share them
                    seconds += w.seconds(rate_at(threads)) / parallel
                else:
                    seconds += w.seconds(rates[cores])
            scaling[j] = seconds / 3600
    return {"rows": rows, "train_flops": train_flops, "eval_flops": eval_flops, "size": size,
            "rates": rates, "gpu_hours": gpu_hours, "cpu_hours_by_jobs": scaling, "cores": cores,
            "devices": devices, "folds_per_device": cfg["folds_per_device"], "gpu_wall_hours": gpu_wall,
            "gpu_train_rate": gpu_rate, "gpu_source": {g: priced[g].source for g in gpus}, "feed_rate": feed,
            "sizes": dataset_sizes(plan, published), "warnings": timing_warnings(rates, cores)}


def plan_text(est: dict, backbone: str) -> str:
    """What `cascade plan` prints of :func:`estimate`'s result: the FLOPs per image, the sizes
    priced and this CPU's rates, a row per node, per GPU class its hours, wall time and the
    feeding threads it needs, and this CPU's wall time at each `--jobs`."""
    lines = [f"backbone {backbone} at {est['size']} px: {est['train_flops'] / 1e9:.3g} GFLOPs per training "
             f"image (forward + backward), {est['eval_flops'] / 1e9:.3g} per forward"]
    lines += [f"  {name}: {n:,} images ({source})" for name, (n, source) in est["sizes"].items()]
    if est["rates"]:
        lines.append("this CPU: " + "; ".join(f"{t} thread(s) {r[0]:.3g} train / {r[1]:.3g} eval img/s"
                                              for t, r in est["rates"].items()))
    lines += [f"warning: {warning}" for warning in est["warnings"]]
    lines.append("")
    for row in est["rows"]:
        cpu = f"  {row['CPU h (1 job)']:8.3g} CPU h" if "CPU h (1 job)" in row else ""
        lines.append(f"  {row['node']:<45} {row['folds']:>3} fold(s)  {row['train images']:>12,.0f} train + "
                     f"{row['eval images']:>10,.0f} eval images  {row['TFLOPs']:10.2f} TFLOP{cpu}")
    lines.append("")
    for g, h in est["gpu_hours"].items():
        lines.append(f"  {g:<10} {h:10.3g} GPU-hours; {est['gpu_wall_hours'][g]:.3g} h wall on {est['devices']} GPU(s), "
                     f"{est['folds_per_device']} fold(s) per GPU; {est['gpu_train_rate'][g]:,.0f} training img/s per GPU"
                     + (f", {math.ceil(est['gpu_train_rate'][g] / est['feed_rate'])} feeding thread(s) per GPU"
                        if est["feed_rate"] else ""))
        lines.append(f"  {'':<10} rate {est['gpu_source'][g]}")
    if est["feed_rate"]:
        lines.append(f"  feed: one thread here gathers {est['feed_rate']:,.0f} img/s at {est['size']} px (warm cache; "
                     "benchmarks/feed_rate.py measures it cold too); each fold worker feeds from its own thread")
    lines += [f"  this CPU, --jobs {j:<3} {h:10.3g} h wall  ({est['cores']} cores, {max(1, est['cores'] // j)} "
              f"thread(s) per job)" for j, h in est["cpu_hours_by_jobs"].items()]
    lines += ["", "Rates are the harness's own: each GPU class's measured through it, this CPU's training rate "
              "from an epoch of its trainer (forward passes bare). Decoding the image cache once is not counted; "
              "early stopping only shortens a run."]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- the quick estimate
#: Training FLOPs per image up to which this CPU is timed at a run's start (a few steps of 32
#: images at this cost take well under a second on 2 cores; the demo at 40 px is 3.3e7).
QUICK_FLOPS = 5e7


def _remaining(plan: Plan) -> Plan | None:
    """The plan cut to its nodes that are not cached (None: nothing left to run)."""
    nodes = [n for n in plan.nodes if n.kind == "root" or status(plan, n) != "cached"]
    return dataclasses.replace(plan, nodes=nodes) if len(nodes) > 1 else None


def _cpu_hours(plan: Plan, train_flops: float) -> float | None:
    """Hours on all of this CPU's cores, folds one at a time, from a few timed steps; None for a
    model too large to time quickly.  The head is built for 2 classes: its size does not move
    the rate of a step measurably, and counting the target's classes needs its labels."""
    if train_flops > QUICK_FLOPS:
        return None
    cfg = plan.cfg
    model = AgeModel(build_backbone(cfg["backbone"]), 2, cfg["head"]["hidden"], cfg["head"]["dropout"])
    rates = measured_rates(model, C.backbone_settings(cfg)["input_size"], os.cpu_count() or 1, seconds=0.2)
    return sum(w.seconds(rates) for w in plan_work(plan)) / 3600


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


def outlook(plans: list[Plan]) -> dict | None:
    """The cheap estimate of what the plans (one per seed) still have to run: TFLOPs, GPU-hours
    per class and, when quick to time, CPU hours here; None when every node is cached."""
    left = [r for p in plans if (r := _remaining(p))]
    if not left:
        return None
    gpus = list(left[0].cfg["plan"]["gpus"])
    ests = [estimate(p, [1], gpus, measure=False) for p in left]
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


def dry_run_text(plans: list[Plan]) -> str:
    """The estimate a dry run prints: CPU hours here and GPU-hours per GPU class."""
    out = outlook(plans)
    if out is None:
        return "estimate: every node is cached; the run only writes its tables"
    return (f"estimate of the nodes not cached (a lower bound; `cascade plan` for every node): {out['tflops']:.3g} TFLOP; "
            f"{_cpu_text(out)}; {_gpu_text(out)}")


def start_line(plans: list[Plan]) -> str:
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
