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


def test_gpu_hours_are_flops_over_the_measured_throughput(home):
    """A measured class is priced from its measurement, a class of comparable peak from that
    measurement scaled by the peak ratio, a class of another kind by the stated assumption."""
    plan = P.build(C.load(FAST + [f"home={home}", "stage=imdb", "target=fgnet"]))
    est = estimate.estimate(plan, [1, 2], ["h200", "a100", "gtx1080ti"], measure=False)
    total = sum(r["TFLOPs"] for r in est["rows"]) * 1e12
    h200 = estimate.measured_gpus()["h200"]
    achieved = h200["harness_img_s"] * h200["train_gflops"] * 1e9
    assert est["gpu_hours"]["h200"] == pytest.approx(total / achieved / 3600)
    assert est["gpu_hours"]["a100"] == pytest.approx(total / (achieved * 312 / 989) / 3600)
    assert est["gpu_hours"]["gtx1080ti"] == pytest.approx(total / (11.3e12 * plan.cfg["plan"]["utilisation"]) / 3600)
    assert est["gpu_source"]["h200"].startswith("measured: resnet50 at 224 px, 3,205 img/s")
    assert "not measured: h200's measured" in est["gpu_source"]["a100"]
    assert "assumed utilisation" in est["gpu_source"]["gtx1080ti"]
    assert not est["cpu_hours_by_jobs"] and est["feed_rate"] is None
    assert est["gpu_wall_hours"]["a100"] == pytest.approx(est["gpu_hours"]["a100"])      # one GPU


def test_the_measured_models_flops_are_the_counters():
    """gpu_rates.yaml stores the measured model's FLOPs per image so a run's first line need not
    count them; they must be what the counter says for that model."""
    from cascade.models import build_backbone

    m = estimate.measured_gpus()["h200"]
    model = AgeModel(build_backbone(m["backbone"]), 80, [512, 256])       # benchmarks/train_overhead.py's model
    assert estimate.model_flops(model, m["input_size"])[0] / 1e9 == pytest.approx(m["train_gflops"], rel=1e-4)


def test_a_study_is_priced_at_the_published_sizes_and_says_so(home):
    plan = P.build(C.load(FAST + [f"home={home}", "stage=imdb", "target=fgnet"]))
    as_is = {w.label: w for w in estimate.plan_work(plan)}
    real = {w.label: w for w in estimate.plan_work(plan, published=True)}
    sizes = estimate.dataset_sizes(plan, published=True)
    assert sizes["imdb"][0] == 171_858 and "published size" in sizes["imdb"][1] and "demo suite has" in sizes["imdb"][1]
    imdb = plan.nodes[1].label
    factor = 171_858 / len(plan.tables["imdb"])
    assert real[imdb].train_images == pytest.approx(as_is[imdb].train_images * factor, rel=0.01)
    lopo = "pretrained → imdb ⇒ fgnet"
    assert real[lopo].folds == as_is[lopo].folds == 82
    assert real[lopo].train_images == pytest.approx(as_is[lopo].train_images * 1002 / len(plan.tables["fgnet"]), rel=0.01)


def test_inconsistent_cpu_timings_are_flagged():
    assert estimate.timing_warnings({1: (100.0, 300.0), 2: (180.0, 500.0)}, 2) == []
    slower = estimate.timing_warnings({1: (100.0, 300.0), 2: (60.0, 500.0)}, 2)
    assert len(slower) == 1 and "another process" in slower[0]
    assert "faster than a forward pass" in estimate.timing_warnings({1: (400.0, 300.0)}, 1)[0]


def test_wall_time_spreads_a_targets_folds_over_the_devices(home):
    """devices x K placement: the intermediate stage runs on one GPU, the 82 LOPO folds on
    all four; four GPUs take less wall time than one but more than a quarter of it."""
    plan = P.build(C.load(FAST + [f"home={home}", "stage=imdb", "target=fgnet", "folds_per_device=2"]))
    one, four = (estimate.estimate(plan, [1], ["a100"], measure=False, devices=d) for d in (1, 4))
    work = estimate.plan_work(plan)
    flops = [w.flops(one["train_flops"], one["eval_flops"]) for w in work]
    rate = estimate.gpu_rates(plan.cfg, ["a100"])["a100"].flops_per_s
    expected = sum(f / rate / (4 if w.folds > 1 else 1) for f, w in zip(flops, work)) / 3600
    assert four["gpu_wall_hours"]["a100"] == pytest.approx(expected)
    assert one["gpu_wall_hours"]["a100"] / 4 < four["gpu_wall_hours"]["a100"] < one["gpu_wall_hours"]["a100"]
    assert four["folds_per_device"] == 2


def test_plan_command(home, capsys):
    assert main(["plan", *FAST, f"home={home}", "stage=imdb", "--gpu", "a100", "--jobs", "1,2"]) == 0
    out = capsys.readouterr().out
    assert "GFLOPs per training image" in out and "a100" in out and "--jobs 2" in out and "img/s" in out
    assert "h wall on 1 GPU(s)" in out and "feeding thread(s) per GPU" in out and "feed: one thread here" in out
    assert "published size" in out and "rate not measured: h200's measured" in out
    assert main(["plan", *FAST, f"home={home}", "--gpu", "tpu9"]) == 2
    assert "unknown" in capsys.readouterr().err


def test_a_study_is_planned_before_its_weight_file_exists(home, capsys):
    assert main(["plan", *FAST, f"home={home}", "stage=imdb", "backbone=resnet50_keras", "--gpu", "h200",
                 "--no-measure"]) == 0
    out = capsys.readouterr().out
    assert "weights 'resnet50_keras_vggface2': expected" in out and "priced with the architecture alone" in out
    assert "backbone resnet50_keras at 224 px" in out and "GPU-hours" in out


@pytest.mark.parametrize("name, cls", [("NVIDIA H200", "h200"), ("NVIDIA A100-SXM4-80GB", "a100"),
                                       ("NVIDIA GeForce GTX 1080 Ti", "gtx1080ti"), ("Tesla T4", None)])
def test_a_runs_first_line_prices_this_gpu_by_its_class(monkeypatch, name, cls):
    """The start line's GPU class is read off the device name (asked of nvidia-smi, so this
    process creates no CUDA context); an unknown GPU gets no class."""
    monkeypatch.setattr(estimate, "_cuda_name", lambda: name)
    monkeypatch.setattr(estimate, "device", lambda cfg: "cuda")
    assert estimate.this_gpu_class(C.load([])) == ((name, cls) if cls else None)


def test_an_intermediate_stage_on_several_gpus_shortens_the_wall_time(home):
    """train.processes=N: an intermediate stage's wall time divides over min(N, devices) GPUs;
    the folds' share is unchanged."""
    words = FAST + [f"home={home}", "stage=imdb", "target=fgnet"]
    one = estimate.estimate(P.build(C.load(words)), [1], ["h200"], measure=False, devices=4)
    two = estimate.estimate(P.build(C.load(words + ["train.processes=2"])), [1], ["h200"], measure=False, devices=4)
    work = estimate.plan_work(P.build(C.load(words)))
    rate = estimate.gpu_rates(C.load(words), ["h200"])["h200"].flops_per_s
    stage = work[0].flops(one["train_flops"], one["eval_flops"]) / rate / 3600
    assert one["gpu_wall_hours"]["h200"] - two["gpu_wall_hours"]["h200"] == pytest.approx(stage / 2)
