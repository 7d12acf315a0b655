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
"""
from __future__ import annotations

import dataclasses
import math
import os
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
from cascade.stages.plan import Plan
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
