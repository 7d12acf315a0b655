"""`train.processes=N`: an intermediate stage trained by N processes with DistributedDataParallel
(gloo on the CPU here; NCCL on GPUs).  The group takes the one-process step: the same batches and
augmentation, each rank's share of the loss scaled so DDP's average is the whole batch's mean."""
from __future__ import annotations

import json
import socket

import numpy as np
import pytest
import torch
import torch.distributed as dist
from torch import nn

from cascade import config as C
from cascade.cli import main
from cascade.models import AgeModel
from cascade.models.backbones import Backbone, Preprocessing
from cascade.stages import plan as P
from cascade.train import distributed as D
from cascade.train.rank import Rank
from cascade.train.trainer import Split, fit

from conftest import FAST

PARAMS = {"mode": "full", "lr": 0.01, "batch_size": 10, "epochs": 2, "patience": 5, "augment": True,
          "select": "best_loss", "optimizer": "adam"}
AUG = {"rotation": 10.0, "shift": 0.1, "crop": 0.1, "flip": True}


def _model() -> AgeModel:
    """A model without BatchNorm or dropout: then the group's maths is the one process's exactly
    (up to summation order)."""
    torch.manual_seed(0)
    body = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU())
    return AgeModel(Backbone(body, 4, Preprocessing()), 5, [6], dropout=0.0)


def _data():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (37, 8, 8, 3), dtype=np.uint8)
    targets = rng.integers(0, 5, 37)
    return Split(images, targets, np.arange(29), np.arange(29, 37))


def _rank(rank: int, world: int, port: int, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    torch.set_num_threads(1)
    model = _model()
    result = fit(model, _data(), PARAMS, AUG, np.arange(5.0), __import__("pathlib").Path(f"{out}.ckpt{rank}"),
                 seed=3, rank=Rank(rank, world))
    torch.save(model.state_dict(), f"{out}.{rank}.pt")
    with open(f"{out}.{rank}.json", "w") as fh:
        json.dump(result["history"], fh)
    dist.destroy_process_group()


def test_a_rank_owns_a_contiguous_share_of_every_batch():
    for n, world in ((10, 2), (7, 3), (1, 2), (64, 8)):
        shares = [Rank(r, world).share(n) for r in range(world)]
        assert np.concatenate([np.arange(n)[s] for s in shares]).tolist() == list(range(n))
        assert max(s.stop - s.start for s in shares) - min(s.stop - s.start for s in shares) <= 1


def test_two_processes_take_the_one_process_step(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    torch.multiprocessing.spawn(_rank, args=(2, port, str(tmp_path / "r")), nprocs=2, join=True)
    one = _model()
    torch.set_num_threads(1)
    history = fit(one, _data(), PARAMS, AUG, np.arange(5.0), tmp_path / "one.ckpt", seed=3)["history"]
    for r in range(2):
        state = torch.load(tmp_path / f"r.{r}.pt", weights_only=True)
        for k, v in one.state_dict().items():
            torch.testing.assert_close(state[k], v, rtol=1e-4, atol=1e-5)
        group = json.loads((tmp_path / f"r.{r}.json").read_text())
        for a, b in zip(group, history):
            assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-4)
            assert a["val_loss"] == pytest.approx(b["val_loss"], rel=1e-4)
    assert (tmp_path / "r.ckpt0").exists() and not (tmp_path / "r.ckpt1").exists()      # rank 0 writes


def test_what_trains_in_one_process_says_why():
    assert D.unsupported({"mode": "full"}) is None
    assert "cached features" in D.unsupported({"mode": "head"})
    assert "trainable_layers" in D.unsupported({"mode": "full", "trainable_layers": 3})


def test_processes_are_keyed_on_the_cpu_only(home):
    one = P.build(C.load(FAST + [f"home={home}", "stage=imdb", "target=fgnet"]))
    two = C.load(FAST + [f"home={home}", "stage=imdb", "target=fgnet", "train.processes=2"])
    assert P.distributed_settings(two, "train", gpus=0) == {"processes": 2}
    assert P.distributed_settings(two, "train", gpus=2) == {}            # SyncBatchNorm: the same maths
    assert P.distributed_settings(two, "target", gpus=0) == {}           # folds keep their own placement
    built = P.build(two)
    assert built.nodes[1].key != one.nodes[1].key and built.nodes[1].params["processes"] == 2


def test_a_stage_trains_in_two_cpu_processes(home):
    args = FAST + [f"home={home}", "stage=imdb", "target=fgnet", "stages.fgnet.protocol=hard-subjects",
                   "train.processes=2", f"run.results_dir={home}/results", "--quiet"]
    assert main(["run", *args]) == 0
    plan = P.build(C.load([a for a in args if a != "--quiet"]))
    stage = home / "stages" / plan.nodes[1].key
    log = (stage / "log.txt").read_text()
    assert "2 processes (gloo): cpu, cpu" in log and "epoch=2" in log
    assert json.loads((stage / "metrics.json").read_text())["environment"]["stage_processes"] == 2
    assert not (stage / "ckpt.pt").exists() and not list(stage.glob("ranks*"))
    assert main(["run", *args]) == 0                                     # a rerun trains nothing
    assert (stage / "log.txt").read_text() == log
