"""The epoch loop: Adam, cross-entropy, reduce-on-plateau, per-epoch atomic checkpoints.

Resume is exact on CPU because nothing random is carried in hidden state: each epoch's shuffle,
augmentation and dropout draw from generators seeded by (seed, epoch), and the checkpoint holds
model, optimiser and scheduler state, the best-so-far weights and the history.  A run killed at
any moment restarts from its last finished epoch and ends with the same weights and metrics.
"""
from __future__ import annotations

import copy
import dataclasses
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from cascade.metrics import expected_value_torch
from cascade.models.age_model import AgeModel
from cascade.progress import bar as progress_bar
from cascade.train.rank import Rank
from cascade.store import BackgroundSaver, safe_torch_load
from cascade.train import balance as B
from cascade.train import cut as K
from cascade.train import schedule as S
from cascade.train.augment import random_affine
from cascade.train.feed import Feed, to_device
from cascade.train.losses import make_loss


@dataclasses.dataclass
class Split:
    """Rows of an image array to train on and to validate on, with their class targets."""

    images: np.ndarray          # (N, H, W, 3) uint8, usually a memory map
    targets: np.ndarray         # (N,) class index
    train: np.ndarray
    val: np.ndarray


def epoch_seed(seed: int, epoch: int) -> int:
    return (seed * 1_000_003 + epoch * 7919 + 17) % (2**63)


def _batches(idx: np.ndarray, size: int):
    for i in range(0, len(idx), size):
        yield idx[i:i + size]


def train_batches(order: np.ndarray, size: int):
    """An epoch's training batches: `order` in chunks of `size`, except that a trailing chunk of
    exactly one row joins the batch before it (a batch of `size + 1`).

    Why merge rather than drop: a BatchNorm layer in training mode cannot normalise one sample
    (a real FG-NET LOPO lost 4 of 82 folds to it), and dropping the row would silently leave one
    image out of that epoch.  Merging keeps every row in every epoch, keeps the batch order a
    function of (seed, epoch) so resume stays exact, and changes nothing for any split that never
    had a trailing batch of one: their batches, and so their numbers, are as before."""
    batches = [order[i:i + size] for i in range(0, len(order), size)]
    if len(batches) > 1 and len(batches[-1]) == 1:
        batches[-2:] = [np.concatenate(batches[-2:])]
    return batches


def _check_trainable(model: AgeModel, n_train: int, head_only: bool) -> None:
    """One training image and a BatchNorm layer that trains: no batch can be normalised.  Said
    before the first step, with the way out, instead of torch's "Expected more than 1 value per
    channel" from inside the epoch loop."""
    if n_train == 1 and not head_only and any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
                                              for m in model.body.modules()):
        raise ValueError("the training split has a single image and the body has BatchNorm layers, which "
                         "cannot train on a batch of one; give the stage more data or train the head only "
                         "(stages.<name>.mode=head)")


def normalised_batches(model: AgeModel, images: np.ndarray, rows: np.ndarray, device, batch: int):
    """`rows` in batches of `batch`, normalised on the device, fed ahead by feed.Feed."""
    return (model.preprocessing.apply(x) for x in Feed(images, list(_batches(rows, batch)), device))


@torch.no_grad()
def embed(model: AgeModel, images: np.ndarray, rows: np.ndarray, device, batch: int = 256) -> torch.Tensor:
    model.eval()
    return torch.cat([model.embed(x) for x in normalised_batches(model, images, rows, device, batch)]) \
        if len(rows) else torch.zeros(0)


def cut_of(model: AgeModel, params: dict) -> int | None:
    """Where `train.cut_cache` cuts this model's body (None: the stage does not cache a cut)."""
    if not params.get("cut_cache"):
        return None
    K.check(params)
    return K.cut_index(model.body, params["trainable_layers"])


def shares_features(params: dict, feature_cache: bool = True) -> bool:
    """Whether every fold of a stage computes the same input to what it trains, so it can be
    computed once and shared: mode a without augmentation (the frozen body's features; with
    `feature_cache`, and not under test-time flips, which need the images), or a cut."""
    head = params["mode"] == "head" and not params["augment"] and feature_cache and not params.get("tta")
    return head or bool(params.get("cut_cache"))


def shared_features(model: AgeModel, images: np.ndarray, params: dict, device) -> np.ndarray:
    """For every image, what :func:`shares_features` says every fold shares: the activations
    below the cut (with their mirror images), else the frozen body's pooled features."""
    rows = np.arange(len(images))
    cut = cut_of(model, params)
    if cut is None:
        return embed(model, images, rows, device).cpu().numpy()
    return K.prefix_activations(model, normalised_batches(model, images, rows, device, 256), cut)


@torch.no_grad()
def predict_proba(model: AgeModel, images: np.ndarray, rows: np.ndarray, device,
                  batch: int = 256, features: np.ndarray | None = None, cut: int | None = None,
                  tta: str | None = None) -> np.ndarray:
    """Class probabilities of `rows`.  With `features` only the head runs (mode a: the frozen
    body's output for every image), or, with `cut`, the body's steps above the cut on the cached
    activations below it (cascade/train/cut.py).  `tta="flip"`: the mean of the probabilities of
    the crop and of its mirror image (test-time augmentation)."""
    model.eval()
    views = (0, 1) if tta == "flip" else (0,)

    def mean_over_views(logits_of) -> torch.Tensor:
        return sum(F.softmax(logits_of(v).float(), 1) for v in views).cpu() / len(views)

    if features is not None and cut is not None:
        out = [mean_over_views(lambda v: K.suffix_logits(model, cut, K.gather(features, b, np.full(len(b), v), device)))
               for b in _batches(rows, batch)]
    elif features is not None:
        if tta:
            raise ValueError("train.tta=flip needs the images (mode a's shared features hold one view); set "
                             "train.feature_cache=false")
        out = [F.softmax(model.head(torch.from_numpy(np.asarray(features[b])).to(device)).float(), 1).cpu()
               for b in _batches(rows, batch)]
    else:
        out = [mean_over_views(lambda v: model(x.flip(-1) if v else x))
               for x in normalised_batches(model, images, rows, device, batch)]
    return torch.cat(out).numpy() if out else np.zeros((0, model.classifier.out_features))


def _load_checkpoint(ckpt: Path, log: Callable[[str], None]) -> dict | None:
    """The per-epoch checkpoint, or None when there is none.  One that cannot be read (truncated
    or damaged on disk, or a pickle that weights_only refuses) is set aside and the stage trains
    from its first epoch: a checkpoint only saves time, it is never a result."""
    if not ckpt.exists():
        return None
    try:
        saved = safe_torch_load(ckpt)
        if not isinstance(saved, dict) or not {"model", "optimizer", "scheduler", "state"} <= set(saved):
            raise ValueError("not a cascade checkpoint")
        return saved
    except Exception as exc:  # torch raises RuntimeError / EOFError / UnpicklingError / zip errors
        reason = f"{type(exc).__name__}: {exc}".splitlines()[0][:200]
        log(f"checkpoint {ckpt.name} unreadable ({reason}); training from the first epoch")
        ckpt.unlink(missing_ok=True)
        return None


def fit(model: AgeModel, split: Split, params: dict, aug: dict, class_values: np.ndarray,
        ckpt: Path, seed: int, device: str = "cpu", log: Callable[[str], None] = print,
        progress: bool = False, desc: str = "", features: np.ndarray | None = None,
        accumulate: int = 1, rank: Rank | None = None,
        on_epoch: Callable[[dict], None] = lambda record: None) -> dict:
    """Train `model` in place per `params` (lr, batch_size, epochs, patience, lr_factor, mode,
    augment, select, loss, amp, channels_last, balance); leave in it the weights `select` names
    (the last epoch's, or the epoch with the best validation loss / MAE); return the history.
    `ckpt` is written after every epoch and resumed from when present.  `features`: the frozen
    body's output for every image, computed once by the caller and shared by many calls (mode a
    across the folds of a protocol).  `accumulate` > 1 (a fold retried after running out of GPU
    memory): each batch is augmented whole, then forwarded in that many parts whose gradients
    are summed before the step, so the effective batch and the augmentation stay the same; only
    BatchNorm sees the smaller parts.  Epochs trained so are marked in the history.  `rank`: this
    process's place in a group training one stage together (train/distributed.py): each rank
    forwards its share of every batch through DistributedDataParallel; rank 0 alone writes the
    checkpoint.  `on_epoch` is handed each epoch's record as it is logged (experiment tracking)."""

    balance = params.get("balance", {})               # present only when set (see stages/plan.py)
    if balance.get("cap") or balance.get("remove"):    # fixed reductions: the same rows every epoch
        split = dataclasses.replace(split, train=split.train[B.reduce_rows(
            split.targets[split.train], balance.get("cap", 0.0),
            B.parse_remove(balance.get("remove", ""), class_values), seed)])
    head_only = params["mode"] == "head"
    _check_trainable(model, len(split.train), head_only)
    model.to(device)
    S.set_epoch(model, params, 0)
    opt = S.optimizer(model, params)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="min", factor=params.get("lr_factor", 0.5),
                                                       patience=params["patience"],
                                                       min_lr=params.get("lr_min") or 0.0)
    values = torch.tensor(class_values, dtype=torch.float32).to(device)     # on the device once: no copy per step
    loss_fn = make_loss(params.get("loss", "ce"), params.get("loss_options"))
    select = params.get("select", "last")
    if select != "last" and not len(split.val):
        # a fold with one training subject has no subject-exclusive validation share
        # (protocols.validation_split): nothing to select on, so the last epoch is kept, and said
        log(f"select={select}: no validation rows in this split; keeping the last epoch")
        select = "last (no validation rows)"
    criterion = {"best_loss": "val_loss", "best_mae": "val_mae"}.get(select)
    state = {"epoch": 0, "best_val": float("inf"), "best_epoch": 0, "history": [],
             "best_state": copy.deepcopy(model.state_dict()) if criterion else None}
    # Mixed precision (`amp`, resolved by the plan: bfloat16, or float16 with loss scaling where
    # a GPU has no bfloat16); channels_last where the plan chose it (GPUs).
    device_type = torch.device(device).type
    amp = params.get("amp") or None
    scaler = torch.amp.GradScaler("cuda") if amp == "float16" and device_type == "cuda" else None
    memory_format = torch.channels_last if params.get("channels_last") else torch.contiguous_format
    model.to(memory_format=memory_format)
    net = model                        # what a training step forwards through (DDP's wrapper in a group)
    if rank is not None:
        on_gpu = device_type == "cuda"
        if on_gpu:                     # batch statistics over the whole batch (its parameters are kept)
            nn.SyncBatchNorm.convert_sync_batchnorm(model)
        net = nn.parallel.DistributedDataParallel(model, device_ids=[torch.device(device)] if on_gpu else None)

    def autocast():
        return torch.autocast(device_type, dtype=torch.float16 if amp == "float16" else torch.bfloat16,
                              enabled=bool(amp))

    saved = _load_checkpoint(ckpt, log)
    if saved is not None:
        model.load_state_dict(saved["model"])
        opt.load_state_dict(saved["optimizer"])
        sched.load_state_dict(saved["scheduler"])
        if scaler is not None and "scaler" in saved:
            scaler.load_state_dict(saved["scaler"])
        state = saved["state"]
        log(f"resumed from {ckpt.name} after epoch {state['epoch']}")

    # Mode a without augmentation: the frozen body's features are the same every epoch, so they
    # are computed once (the fast path); the body stays in eval mode (BN statistics frozen).
    # `train.cut_cache`: the activations below the cut, computed once (by the caller, shared).
    cached = None
    cut = cut_of(model, params)
    if cut is not None:
        if features is None:
            features = shared_features(model, split.images, params, device)
        mirror = params["augment"] and aug["flip"]
    elif head_only and not params["augment"]:
        if features is not None:
            cached = {k: torch.from_numpy(np.asarray(features[rows])).to(device)
                      for k, rows in (("train", split.train), ("val", split.val))}
        else:
            cached = {"train": embed(model, split.images, split.train, device),
                      "val": embed(model, split.images, split.val, device)}
    train_targets = split.targets[split.train]
    weights = B.class_weights(train_targets, len(class_values), balance.get("weights", "none"))
    weights = None if weights is None else torch.tensor(weights, dtype=torch.float32, device=device)
    strength = B.augment_strength(split.targets, train_targets, balance.get("minority_augment", 0.0))

    def inputs(which: str, positions: list[np.ndarray]):
        """Each batch's input (None when the head reads cached features): uint8 crops fed ahead
        of the step by a background thread, see feed.py."""
        if cached is not None or cut is not None:
            return (None for _ in positions)
        rows = split.train if which == "train" else split.val
        return Feed(split.images, [rows[pos] for pos in positions], device)

    def prepare(x: torch.Tensor | None, rows: np.ndarray, gen=None) -> torch.Tensor | None:
        """A batch's uint8 crops (on the device) normalised, and augmented when `gen` is given."""
        if x is None:
            return None
        x = model.preprocessing.apply(x)
        if gen is not None and params["augment"]:
            x = random_affine(x, gen, aug["rotation"], aug["shift"], aug["crop"], aug["flip"],
                              None if strength is None else strength[rows])
        return x.contiguous(memory_format=memory_format)

    def forward(x: torch.Tensor | None, which: str, pos: np.ndarray, views: np.ndarray | None = None) -> torch.Tensor:
        """Logits of a prepared batch, or of the cached features at positions `pos` (above a cut:
        in `views`, each image's cached view; none given, the crops themselves)."""
        if cached is not None:
            return model.head(cached[which][to_device(pos, cached[which].device)])
        if cut is not None:
            rows = (split.train if which == "train" else split.val)[pos]
            return K.suffix_logits(model, cut, K.gather(features, rows, np.zeros(len(rows), np.int64)
                                                        if views is None else views, device))
        return net(x) if model.training else model(x)

    saver = BackgroundSaver(background=device_type == "cuda")   # a GPU trains on while it is written
    patience_stop = params.get("early_stop")
    stop_on = criterion or "val_loss"
    stopped = _should_stop(state["history"], stop_on, patience_stop) \
        or S.cycles_stalled(state["history"], stop_on, params)             # a resumed, stopped run
    epochs = range(state["epoch"], state["epoch"] if stopped else params["epochs"])
    bar = progress_bar(epochs, desc=desc or "train", enabled=progress)
    try:
        for epoch in bar:
            gen = torch.Generator().manual_seed(epoch_seed(seed, epoch))
            torch.manual_seed(epoch_seed(seed, epoch) + 1)          # dropout
            model.train()
            if head_only:
                model.body.eval()
            S.set_epoch(model, params, epoch)
            if S.cycle_lr(params, epoch) is not None:       # a gradual-unfreezing cycle begins
                for group in opt.param_groups:
                    group["lr"] = S.cycle_lr(params, epoch) * group.get("lr_scale", 1.0)
            order = B.epoch_order(train_targets, balance.get("sampler", "none"), gen)
            # the epoch's loss is summed on the device (float64, in step order: the same number as
            # summing on the host, without a host sync every step)
            total, count = torch.zeros((), dtype=torch.float64, device=device), 0
            batches = train_batches(order, params["batch_size"])
            for pos, x in zip(batches, inputs("train", batches)):
                rows = split.train[pos]
                opt.zero_grad(set_to_none=True)
                with autocast():
                    x = prepare(x, rows, gen)
                # above a cut, the batch's mirror images drawn whole (as the affine augmentation is)
                views = (torch.rand(len(pos), generator=gen) < 0.5).numpy().astype(np.int64) \
                    if cut is not None and mirror else None
                if rank is not None:          # augmented whole, then this rank's share of the batch
                    mine = rank.share(len(pos))
                    whole, pos, rows, x = len(pos), pos[mine], rows[mine], x[mine]
                for part in _parts(len(pos), accumulate):
                    with autocast():
                        logits = forward(None if x is None else x[part], "train", pos[part],
                                         None if views is None else views[part])
                    t = to_device(split.targets[rows[part]], device)
                    loss = loss_fn(logits.float(), t, values)
                    loss = (loss if weights is None else loss * weights[t]).mean() * (len(t) / len(pos))
                    # in a group DDP averages the ranks' gradients: each rank's loss is its share's
                    # part of the whole batch's mean, times the rank count
                    step = loss if rank is None else loss * (len(pos) * rank.world / whole)
                    (step if scaler is None else scaler.scale(step)).backward()
                    total += loss.detach().double() * len(rows)
                if scaler is not None:
                    scaler.step(opt)
                    scaler.update()
                else:
                    opt.step()
                count += len(rows)
            if rank is not None:              # the epoch's loss over every rank's share
                counted = torch.tensor(float(count), dtype=torch.float64, device=device)
                dist.all_reduce(total)
                dist.all_reduce(counted)
                count = int(counted)
            with autocast():
                val_loss, val_mae = _validate(model, split, prepare, forward, inputs, values, loss_fn, device)
            if len(split.val):                 # no validation rows: the lr stays (nothing to plateau on)
                sched.step(val_loss)
            record = {"epoch": epoch + 1, "train_loss": float(total) / max(count, 1), "val_loss": val_loss,
                      "val_mae": val_mae, "lr": opt.param_groups[0]["lr"],
                      **({"accumulate": accumulate} if accumulate > 1 else {})}
            state["history"].append(record)
            if criterion and record[criterion] < state["best_val"]:
                state.update(best_val=record[criterion], best_epoch=epoch + 1,
                             best_state=copy.deepcopy(model.state_dict()))
            state["epoch"] = epoch + 1
            if rank is None or rank.leader:
                saver.save({"model": model.state_dict(), "optimizer": opt.state_dict(),
                            "scheduler": sched.state_dict(), "state": state,
                            **({"scaler": scaler.state_dict()} if scaler is not None else {})}, ckpt)
            log(" ".join(f"{k}={v:.5g}" if isinstance(v, float) else f"{k}={v}" for k, v in record.items()))
            on_epoch(record)
            bar.set_postfix(loss=f"{val_loss:.3f}", mae=f"{val_mae:.2f}")
            if _should_stop(state["history"], stop_on, patience_stop):
                log(f"early stop: {stop_on} has not improved for {patience_stop} epochs")
                break
            if S.cycles_stalled(state["history"], stop_on, params):
                log(f"early stop: the last unfreezing cycles did not improve {stop_on}")
                break
    except BaseException:
        saver.wait(raise_error=False)   # an epoch's write ends before anyone resumes or retries from the file
        raise
    saver.wait()                       # the last checkpoint is on disk (or its error raised) before we return
    if criterion:
        model.load_state_dict(state["best_state"])
    for p in model.parameters():
        p.requires_grad_(True)
    kept = state["best_epoch"] if criterion else state["epoch"]
    return {"history": state["history"], "select": select, "kept_epoch": kept}


def _should_stop(history: list[dict], metric: str, patience: int | None) -> bool:
    """Early stopping (`train.early_stop=N`): the metric the stage selects on (validation loss
    when it keeps the last epoch) has not improved for N epochs.  Read from the history, which
    the checkpoint holds, so a resumed run stops where an uninterrupted one would."""
    values = [h[metric] for h in history]
    if not patience or not history or np.isnan(values).all():      # no validation rows: never
        return False
    return len(values) - 1 - int(np.nanargmin(values)) >= patience


def _parts(n: int, k: int) -> list[slice]:
    """A batch of `n` rows in `k` contiguous parts (gradient accumulation); one part is the batch."""
    bounds = np.linspace(0, n, k + 1).round().astype(int)
    return [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]


@torch.no_grad()
def _validate(model, split, prepare, forward, inputs, values, loss_fn, device) -> tuple[float, float]:
    if not len(split.val):
        return float("nan"), float("nan")
    model.eval()
    # summed on the device in float64, chunk by chunk: the host's sums, without a sync per chunk
    loss, err = (torch.zeros((), dtype=torch.float64, device=device) for _ in range(2))
    chunks = [np.arange(start, min(start + 256, len(split.val))) for start in range(0, len(split.val), 256)]
    for pos, x in zip(chunks, inputs("val", chunks)):
        rows = split.val[pos]
        logits = forward(prepare(x, rows), "val", pos).float()
        t = to_device(split.targets[rows], device)
        loss += loss_fn(logits, t, values).sum().double()
        expected = expected_value_torch(F.softmax(logits, 1), values)
        err += (expected - values[t]).abs().sum().double()
    return float(loss) / len(split.val), float(err) / len(split.val)
