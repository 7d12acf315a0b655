"""`cascade plan`: FLOPs counted on the model, images counted from the plan, GPU-hours and CPU
hours priced from them (the estimate is checked against a measured run in
benchmarks/plan_estimate.py)."""
import pytest
from torch import nn

from cascade import config as C
from cascade.cli import main
from cascade.models import AgeModel
from cascade.models.backbones import Backbone, Preprocessing
from cascade.stages import estimate
from cascade.stages import plan as P

from conftest import FAST


def test_forward_flops_equal_the_layers_arithmetic():
    body = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, bias=False))
    model = AgeModel(Backbone(body, 4, Preprocessing()), 5, [8])
    train, forward = estimate.model_flops(model, 10)
    conv = 2 * 3 * 3 * 3 * 4 * 10 * 10                     # multiply-adds x 2 per output value
    linear = 2 * 4 * 8 + 2 * 8 * 5
    assert forward == conv + linear
    assert train > 2 * forward - conv                       # backward: weight (and input) gradients


def test_work_follows_the_plan(home):
    cfg = C.load(FAST + [f"home={home}", "stage=imdb", "target=fgnet"])
    plan = P.build(cfg)
    work = {w.label: w for w in estimate.plan_work(plan)}
    imdb = plan.nodes[1]
    n, p = len(plan.tables["imdb"]), imdb.params
    n_val = round(n * p["val_fraction"])
    assert work[imdb.label].train_images == p["epochs"] * (n - n_val)
    assert work[imdb.label].eval_images == p["epochs"] * n_val
    lopo = work["pretrained → imdb ⇒ fgnet"]
    assert lopo.folds == 82 and lopo.train_images > 0
    assert work["pretrained ⇒ fgnet"].train_images == 0                 # mode a: cached body features
    assert work["pretrained ⇒ fgnet"].eval_images == len(plan.tables["fgnet"])
    more = {w.label: w for w in estimate.plan_work(P.build(C.load(FAST + [f"home={home}", "stage=imdb",
                                                                        "target=fgnet", "train.epochs=4"])))}
    assert more[imdb.label].train_images == 2 * work[imdb.label].train_images   # FAST: 2 epochs


def test_gpu_hours_are_flops_over_priced_throughput(home):
    plan = P.build(C.load(FAST + [f"home={home}", "stage=imdb", "target=fgnet"]))
    est = estimate.estimate(plan, [1, 2], ["a100", "gtx1080ti"], measure=False)
    total = sum(r["TFLOPs"] for r in est["rows"]) * 1e12
    assert est["gpu_hours"]["a100"] == pytest.approx(total / (312e12 * plan.cfg['plan']['utilisation']) / 3600)
    assert est["gpu_hours"]["gtx1080ti"] > est["gpu_hours"]["a100"]
    assert not est["cpu_hours_by_jobs"] and est["feed_rate"] is None
    assert est["gpu_wall_hours"]["a100"] == pytest.approx(est["gpu_hours"]["a100"])      # one GPU


def test_wall_time_spreads_a_targets_folds_over_the_devices(home):
    """devices x K placement (#19): the intermediate stage runs on one GPU, the 82 LOPO folds on
    all four; four GPUs take less wall time than one but more than a quarter of it."""
    plan = P.build(C.load(FAST + [f"home={home}", "stage=imdb", "target=fgnet", "folds_per_device=2"]))
    one, four = (estimate.estimate(plan, [1], ["a100"], measure=False, devices=d) for d in (1, 4))
    work = estimate.plan_work(plan)
    flops = [w.flops(one["train_flops"], one["eval_flops"]) for w in work]
    rate = 312e12 * plan.cfg["plan"]["utilisation"]
    expected = sum(f / rate / (4 if w.folds > 1 else 1) for f, w in zip(flops, work)) / 3600
    assert four["gpu_wall_hours"]["a100"] == pytest.approx(expected)
    assert one["gpu_wall_hours"]["a100"] / 4 < four["gpu_wall_hours"]["a100"] < one["gpu_wall_hours"]["a100"]
    assert four["folds_per_device"] == 2


def test_plan_command(home, capsys):
    assert main(["plan", *FAST, f"home={home}", "stage=imdb", "--gpu", "a100", "--jobs", "1,2"]) == 0
    out = capsys.readouterr().out
    assert "GFLOPs per training image" in out and "a100" in out and "--jobs 2" in out and "img/s" in out
    assert "h wall on 1 GPU(s)" in out and "feeding thread(s) per GPU" in out and "feed: one thread here" in out
    assert main(["plan", *FAST, f"home={home}", "--gpu", "tpu9"]) == 2
    assert "unknown" in capsys.readouterr().err


@pytest.mark.parametrize("name, cls", [("NVIDIA H200", "h200"), ("NVIDIA A100-SXM4-80GB", "a100"),
                                       ("NVIDIA GeForce GTX 1080 Ti", "gtx1080ti"), ("Tesla T4", None)])
def test_a_runs_first_line_prices_this_gpu_by_its_class(monkeypatch, name, cls):
    """The start line's GPU class is read off the device name (asked of nvidia-smi, so this
    process creates no CUDA context); an unknown GPU gets no class (#22)."""
    from cascade.stages import cost

    monkeypatch.setattr(cost, "_cuda_name", lambda: name)
    monkeypatch.setattr(cost, "device", lambda cfg: "cuda")
    assert cost.this_gpu_class(C.load([])) == ((name, cls) if cls else None)
