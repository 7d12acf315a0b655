"""Harness overhead per training epoch: `cascade.train.trainer.fit` (memory-mapped cache reads,
augmentation, validation, logging, atomic checkpoint) against a bare PyTorch loop doing the
same arithmetic (same model, data, batches, augmentation, validation pass) on in-memory tensors.

    python benchmarks/train_overhead.py [--backbone demo] [--size 40] [--n 2048] [--repeats 3]
        [--device cuda --batch 128]

Both run in this process, alternately, `--repeats` times; prints each time and the median
ratio harness / bare (the harness must stay within 1.10).  With `--device cuda` both train on the
GPU with the GPU defaults (bfloat16 autocast, channels_last, cuDNN autotuning) and the bare loop
holds every image on the GPU already: the ratio then says how much the harness's data feed
(memory map -> pinned batch -> non-blocking copy, in a background thread) stalls the step.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from cascade import config as C
from cascade.models import AgeModel, build_backbone
from cascade.stages.estimate import model_flops, this_gpu_class
from cascade.train.augment import random_affine
from cascade.store import atomic_torch_save, safe_torch_load
from cascade.train.trainer import Split, epoch_seed, fit

AUG = {"rotation": 10.0, "shift": 0.1, "crop": 0.1, "flip": True}


def _model(backbone: str, classes: int) -> AgeModel:
    torch.manual_seed(0)
    return AgeModel(build_backbone(backbone), classes, [512, 256])


def bare_epoch(model: AgeModel, images: torch.Tensor, split: Split, params: dict, values: torch.Tensor) -> None:
    """One epoch with every image already in `images` (on the training device), no feed."""
    dev = images.device
    model.to(dev, memory_format=torch.channels_last if params.get("channels_last") else torch.contiguous_format)
    opt = torch.optim.Adam(model.parameters(), lr=params["lr"])
    targets, values = torch.from_numpy(split.targets).to(dev), values.to(dev)
    gen = torch.Generator().manual_seed(epoch_seed(0, 0))
    amp = torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bool(params.get("amp")))
    model.train()
    order = torch.randperm(len(split.train), generator=gen).numpy()
    for i in range(0, len(order), params["batch_size"]):
        rows = torch.from_numpy(split.train[order[i:i + params["batch_size"]]]).to(dev)
        with amp:
            x = random_affine(model.preprocessing.apply(images[rows]), gen, **AUG)
            loss = F.cross_entropy(model(x).float(), targets[rows])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad(), amp:
        for i in range(0, len(split.val), 256):
            rows = torch.from_numpy(split.val[i:i + 256]).to(dev)
            logits = model(model.preprocessing.apply(images[rows])).float()
            F.cross_entropy(logits, targets[rows], reduction="sum")
            (F.softmax(logits, 1) @ values - values[targets[rows]]).abs().sum()
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backbone", default="demo")
    ap.add_argument("--size", type=int, default=40)
    ap.add_argument("--n", type=int, default=2048)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--epochs", type=int, default=1,
                    help="epochs per timed fit (>1: the steady state, where a GPU run's checkpoint is written "
                         "in the background while the next epoch trains); times are per epoch")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    gpu = args.device.startswith("cuda")
    torch.backends.cudnn.benchmark = gpu
    rng = np.random.default_rng(0)
    classes = 80
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "images.npy"                              # the harness reads a memmap, as in a run
        np.save(path, rng.integers(0, 256, (args.n, args.size, args.size, 3), dtype=np.uint8))
        images = np.load(path, mmap_mode="r")
        targets = rng.integers(0, classes, args.n)
        idx = np.arange(args.n)
        split = Split(images, targets, idx[: args.n * 4 // 5], idx[args.n * 4 // 5:])
        params = {"lr": 1e-3, "batch_size": args.batch, "epochs": args.epochs, "patience": 3, "lr_factor": 0.5,
                  "mode": "full", "augment": True, "select": "last",
                  **({"amp": "bfloat16", "channels_last": True} if gpu else {})}
        values = torch.arange(classes, dtype=torch.float32)
        memory = torch.from_numpy(np.array(images)).to(args.device)  # the bare loop's copy, on its device
        bare_epoch(_model(args.backbone, classes), memory, split, params, values)   # warm-up, not timed
        harness, bare = [], []
        for r in range(args.repeats):
            model = _model(args.backbone, classes)
            t = time.perf_counter()
            for _ in range(args.epochs):
                bare_epoch(model, memory, split, params, values)
            bare.append((time.perf_counter() - t) / args.epochs)
            model = _model(args.backbone, classes)
            ckpt = Path(tmp) / f"ckpt{r}.pt"
            t = time.perf_counter()
            fit(model, split, params, AUG, values.numpy(), ckpt, seed=0, device=args.device, log=lambda m: None)
            harness.append((time.perf_counter() - t) / args.epochs)
        saved = safe_torch_load(ckpt)                                # what fit writes after every epoch
        t = time.perf_counter()
        atomic_torch_save(saved, Path(tmp) / "again.pt")
        ckpt_seconds = time.perf_counter() - t
    n_train = len(split.train)
    print(f"{args.backbone} at {args.size} px, {args.n} images, batch {args.batch}, {args.epochs} epoch(s) per fit, "
          f"{args.threads} threads, "
          f"{args.device}{' (bfloat16, channels_last)' if gpu else ''}; training img/s: bare "
          f"{n_train / statistics.median(bare):,.0f}, harness {n_train / statistics.median(harness):,.0f}")
    print("  bare PyTorch epoch  " + "  ".join(f"{t:6.2f}s" for t in bare))
    print("  harness epoch       " + "  ".join(f"{t:6.2f}s" for t in harness))
    flops = model_flops(_model(args.backbone, classes), args.size)[0]          # forward + backward per image
    achieved = {name: n_train * flops / statistics.median(t) / 1e12 for name, t in (("bare", bare), ("harness", harness))}
    card = this_gpu_class(C.load([f"devices={args.device}"])) if gpu else None
    peak = C.load([])["plan"]["gpus"][card[1]] if card else None
    print(f"  {flops / 1e9:.3g} GFLOPs per training image: bare {achieved['bare']:.3g}, harness "
          f"{achieved['harness']:.3g} TFLOP/s" + (f" = {achieved['bare'] / peak:.1%} / {achieved['harness'] / peak:.1%} "
                                                 f"of the {card[0]}'s {peak:g} TFLOP/s 16-bit peak" if peak else ""))
    print(f"harness / bare (median of {args.repeats}): {statistics.median(harness) / statistics.median(bare):.3f}; "
          f"a checkpoint write takes {ckpt_seconds:.2f}s ({'in the background on a GPU' if gpu else 'in line on the CPU'})")


if __name__ == "__main__":
    main()
