"""The GPU paths on a real GPU: folds placed and pinned, the GPU defaults keyed and
used, a real out-of-memory error retried, the feed copying to the device, mixed precision that
learns.  Skipped where no CUDA device is visible (CI and this project's CPU machines); run on a
GPU machine with `python -m pytest tests/test_gpu.py`."""
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from cascade import config as C
from cascade.cli import main
from cascade.runtime import device
from cascade.stages import plan as P
from cascade.stages import workers as W
from cascade.stages.placement import Placement

from conftest import FAST

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def test_a_lopo_run_trains_on_the_gpu_with_its_defaults_keyed(home):
    words = [*FAST, f"home={home}", f"run.results_dir={home}/results", "stage=imdb", "target=fgnet",
             "stages.fgnet.protocol=lopo", "data.max_images=40", "train.mode=full", "folds_per_device=2"]
    assert main(["run", *words, "--quiet"]) == 0
    plan = P.build(C.load(words))
    bf16 = torch.cuda.get_device_capability(0) >= (8, 0)
    for node in plan.nodes[1:]:
        assert node.params["amp"] == ("bfloat16" if bf16 else "float16"), node.label
        assert node.params["channels_last"] and node.params["cudnn_benchmark"], node.label
    target = home / "stages" / plan.targets[0].key
    preds = pd.read_csv(target / "predictions.csv")
    assert len(preds) == len(plan.tables["fgnet"]) and np.isfinite(preds["pred_expected"]).all()
    cpu = P.build(C.load(words + ["devices=cpu"]))
    assert cpu.targets[0].key != plan.targets[0].key and "amp" not in cpu.targets[0].params


class Seen:
    """A stand-in fold that uses its GPU and records what it sees."""

    def __init__(self, name: str, folder: str, cfg: dict):
        self.name, self.folder, self.cfg = name, folder, cfg

    def run(self, jobs: int) -> None:
        x = torch.ones(1024, 1024, device=device(self.cfg))
        Path(self.folder, self.name).write_text(" ".join(map(str, (
            os.getpid(), os.environ.get("CUDA_VISIBLE_DEVICES"), torch.cuda.device_count(), x.device,
            float((x @ x).sum()), torch.get_num_threads()))))


def test_spawned_workers_each_see_only_their_own_gpu(tmp_path):
    cfg = C.load(FAST)
    where = Placement(("cuda:0",), workers=2, threads=3)
    assert W.run_folds([Seen(str(i), str(tmp_path), cfg) for i in range(4)], cfg, False, "t", where) == {}
    seen = [p.read_text().split() for p in tmp_path.iterdir()]
    assert len(seen) == 4 and len({s[0] for s in seen}) <= 2
    assert all(s[1:] == ["0", "1", "cuda:0", str(1024.0 ** 3), "3"] for s in seen)


class Greedy:
    """A stand-in fold that asks for more GPU memory than the card has unless it accumulates."""

    def __init__(self, folder: str):
        self.name, self.folder = "greedy", folder

    def run(self, jobs: int, accumulate: int = 1) -> None:
        Path(self.folder, f"try-{accumulate}").touch()
        total = torch.cuda.get_device_properties(0).total_memory
        x = torch.empty(int(total * 1.2) // accumulate, dtype=torch.uint8, device="cuda")
        del x


def test_a_real_out_of_memory_is_retried_with_half_the_batch(tmp_path):
    before = torch.cuda.memory_allocated()
    assert W._attempt(Greedy(str(tmp_path)), 1) is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["try-1", "try-2"]
    assert torch.cuda.memory_allocated() == before and torch.cuda.memory_reserved() < 2**30   # cache emptied


def test_the_feed_copies_batches_to_the_gpu():
    from cascade.train.feed import Feed
    images = np.random.default_rng(0).integers(0, 255, (64, 16, 16, 3), dtype=np.uint8)
    batches = [np.array([5, 2, 9]), np.array([63, 0])]
    got = list(Feed(images, batches, "cuda"))
    assert all(g.is_cuda and torch.equal(g.cpu(), torch.from_numpy(images[b])) for g, b in zip(got, batches))


@pytest.mark.parametrize("amp", ["bfloat16", "float16"])
def test_mixed_precision_on_the_gpu_learns_and_resumes_to_the_same_history(tmp_path, amp):
    from cascade.runtime import deterministic
    from cascade.train.trainer import fit, predict_proba
    from test_trainer import AUG, PARAMS, _data, _model

    deterministic(True)
    try:
        split, values = _data(n=160), np.arange(4.0)
        params = {**PARAMS, "epochs": 6, "amp": amp, "channels_last": True}
        model = _model().to("cuda")
        before = predict_proba(model, split.images, split.val, "cuda")
        h_full = fit(model, split, params, AUG, values, tmp_path / "a.pt", seed=0, device="cuda", log=lambda m: None)
        mae = lambda p: np.abs(p @ values - split.targets[split.val]).mean()
        assert mae(predict_proba(model, split.images, split.val, "cuda")) < 0.5 * mae(before)
        fit(_model(), split, {**params, "epochs": 3}, AUG, values, tmp_path / "b.pt", seed=0, device="cuda",
            log=lambda m: None)
        resumed = _model(seed=5)
        h_res = fit(resumed, split, params, AUG, values, tmp_path / "b.pt", seed=0, device="cuda", log=lambda m: None)
        assert h_res["history"] == h_full["history"]
    finally:
        deterministic(False)


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two GPUs")
def test_an_intermediate_stage_trains_on_two_gpus_under_the_one_gpu_key(home):
    """train.processes=2 on two GPUs (NCCL, SyncBatchNorm): the same stage key as on one GPU, and
    a stage that learns."""
    words = [*FAST, f"home={home}", f"run.results_dir={home}/results", "stage=imdb", "target=fgnet",
             "stages.fgnet.protocol=hard-subjects", "train.processes=2", "devices=0,1"]
    assert main(["run", *words, "--quiet"]) == 0
    two = P.build(C.load(words))
    assert two.nodes[1].key == P.build(C.load(words[:-2])).nodes[1].key
    stage = home / "stages" / two.nodes[1].key
    assert "2 processes (nccl): cuda:0, cuda:1" in (stage / "log.txt").read_text()
