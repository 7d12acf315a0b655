"""One intermediate stage trained by several processes with torch.distributed's
DistributedDataParallel (`train.processes=N`): one process per GPU of `devices`, or N CPU
processes (gloo) on a machine without one.

Why: an intermediate stage (IMDB: 60 epochs over ~172k photographs) is the study's largest cost,
and it trained on the first GPU while the others waited; a target's folds already spread over
every device (stages/placement.py).

How the maths stays the single-process maths.  Every rank draws the same batch order and
augmentation (the epoch's generator, the same seed), augments the whole batch, and forwards its
contiguous share of it; its loss is scaled so that DDP's gradient average is the whole batch's
mean gradient, so every rank takes the single-process step.  On GPUs BatchNorm is synchronised
(SyncBatchNorm: statistics over the whole batch), so a step differs from one process's only in
summation order, and the stage key does not change with the process count.  On the CPU (gloo:
the tests, a CPU-only node) SyncBatchNorm is not available: each rank normalises its share by its
own statistics, which changes the maths, so there `processes` is keyed.  Every rank validates
all validation rows (the schedule and early stopping see the same numbers everywhere); rank 0
alone logs and writes the checkpoint, and hands its weights and history back to the caller.
The process group is the library's (`torch.multiprocessing.spawn`, a TCP rendezvous on this
host): one machine's GPUs.  Running `cascade run` itself under `torchrun` across machines is not
supported yet.
"""
from __future__ import annotations

import dataclasses
import json
import os
import socket
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from cascade import runtime
from cascade.stages import log_to
from cascade.tracking import Track
from cascade.train.rank import Rank
from cascade.train.trainer import Split, fit


def unsupported(params: dict) -> str | None:
    """Why a stage's settings cannot train in several processes (None: they can).  DDP keeps the
    set of trained parameters it was built with, so a body that freezes or unfreezes during the
    run, a head-only stage (cached features) and a cut cache train in one process."""
    if params["mode"] == "head":
        return "a head-only stage reads cached features"
    for key in ("freeze_epochs", "unfreeze", "trainable_layers"):
        if params.get(key):
            return f"{key} changes or limits the trained layers"
    return None


def backend(device: str) -> str:
    return "nccl" if device.startswith("cuda") else "gloo"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclasses.dataclass
class StageJob:
    """What each rank needs to train one stage (picklable: it crosses into spawned processes)."""

    images: str                    # the image cache's images.npy (memory-mapped by every rank)
    targets: np.ndarray
    train: np.ndarray
    val: np.ndarray
    source: object                 # stages.execute.ModelSource
    labels: object                 # data.datasets.LabelSpace
    params: dict
    aug: dict
    seed: int
    ckpt: str
    devices: tuple[str, ...]       # one per rank
    threads: int                   # torch threads per rank
    out: str                       # rank 0 writes the trained weights (state dict) and history here
    log: str | None                # the stage's log.txt (rank 0 appends)
    desc: str
    progress: bool
    numerics: str = "native"       # train.numerics, set up in every rank
    deterministic: bool = False
    track: Track = Track()         # the stage's tracked run (rank 0 logs each epoch to it)


def _rank_main(rank: int, world: int, port: int, job: StageJob) -> None:
    device = job.devices[rank]
    runtime.numerics(job.numerics)                 # before this process computes anything
    runtime.deterministic(job.deterministic)
    torch.set_num_threads(job.threads)
    if device.startswith("cuda"):
        torch.cuda.set_device(device)
    dist.init_process_group(backend(device), init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        me = Rank(rank, world)
        model = job.source.build(job.labels, job.seed)
        images = np.load(job.images, mmap_mode="r")
        log = log_to(Path(job.log)) if job.log and me.leader else (lambda message: None)
        result = fit(model, Split(images, job.targets, job.train, job.val), job.params, job.aug, job.labels.values,
                     Path(job.ckpt), job.seed, device, log, job.progress and me.leader, desc=job.desc, rank=me,
                     on_epoch=job.track.epoch if me.leader else (lambda record: None))
        if me.leader:
            out = Path(job.out)
            torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, out.with_suffix(".pt"))
            out.with_suffix(".json").write_text(json.dumps(result))
    finally:
        dist.destroy_process_group()


def train_stage(job: StageJob) -> tuple[dict, dict]:
    """Train one stage in len(job.devices) processes; (the trained state dict, fit's history)."""
    world = len(job.devices)
    torch.multiprocessing.spawn(_rank_main, args=(world, _free_port(), job), nprocs=world, join=True)
    out = Path(job.out)
    state = torch.load(out.with_suffix(".pt"), weights_only=True)
    result = json.loads(out.with_suffix(".json").read_text())
    for suffix in (".pt", ".json"):
        out.with_suffix(suffix).unlink(missing_ok=True)
    return state, result


def rank_devices(devices: tuple[str, ...], processes: int, cores: int | None = None) -> tuple[tuple[str, ...], int]:
    """The device of each of `processes` ranks and the torch threads each gets: one GPU each
    (round robin over `devices`), or the CPU with its cores shared."""
    cores = cores or os.cpu_count() or 1
    if devices[0] == "cpu":
        return ("cpu",) * processes, max(1, cores // processes)
    return tuple(devices[i % len(devices)] for i in range(processes)), max(1, cores // processes)
