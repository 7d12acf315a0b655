"""Command-line surface: help for every sub-command, inspect of a real listing, pending commands."""
import json

import pytest
import torch

from cascade.cli import main

from conftest import FAST, REFERENCE, snapshot

COMMANDS = ["run", "protocol", "data", "weights", "features", "predict", "export", "regress", "report", "html", "verify", "tune", "ensemble", "compare",
            "plan",
            "explain", "analyse", "doctor"]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_subcommand_documents_itself(command, capsys):
    with pytest.raises(SystemExit) as done:
        main([command, "--help"])
    assert done.value.code == 0 and "usage: cascade " + command in capsys.readouterr().out


def test_inspect_a_real_listing_without_images(tmp_path, capsys):
    if not (REFERENCE / "fgnet" / "FG-Net.json").exists():
        pytest.skip("../shared/reference/fgnet absent")
    assert main(["data", "inspect", "fgnet", f"data.root.fgnet={REFERENCE / 'fgnet'}", f"home={tmp_path}",
                 "--listing-only"]) == 0
    out = capsys.readouterr().out
    assert "images 1002, subjects 82" in out and "'mode': 'mtcnn'" in out
    assert "'min': 6.0" in out and "'max': 18.0" in out                 # images per subject
    assert "60-69 " in out                                              # age histogram reaches 69


def test_unknown_setting_is_a_clear_error(capsys):
    assert main(["run", "train.lrr=0.1", "--dry-run"]) == 2
    assert "train.lr" in capsys.readouterr().err                       # the "did you mean"


def test_weights_import_then_run_uses_the_recorded_preprocessing(tmp_path, capsys):
    """`cascade weights import` converts once (safetensors + sidecar with the source's sha256 and
    preprocessing); a run with those weights keys on them and feeds the recorded preprocessing."""
    from safetensors.torch import save_file

    from cascade import config as C
    from cascade.models import build_backbone
    from cascade.stages import plan as P
    from cascade.stages.execute import model_source
    from cascade.data.datasets import LabelSpace
    from cascade.models import weights as W
    from cascade.store import file_sha256

    body = build_backbone("demo").body
    src = tmp_path / "trained_demo.safetensors"
    save_file({k: v.contiguous() for k, v in body.state_dict().items()}, src)
    pre = '{"channels": "BGR", "scale": 1.0, "mean": [91.4953, 103.8827, 131.0912], "std": [1, 1, 1]}'
    home = tmp_path / "home"
    import os
    os.environ["CASCADE_HOME"] = str(home)
    try:
        assert main(["weights", "import", str(src), "--format", "safetensors", "--name", "mydemo",
                     "--backbone", "demo", "--preprocessing", pre]) == 0
    finally:
        del os.environ["CASCADE_HOME"]
    side = json.loads((home / "weights" / "mydemo.json").read_text())
    assert side["source_sha256"] == file_sha256(src) and side["format"] == "safetensors"

    cfg = C.load([f"home={home}", "weights=mydemo", "stage=", "target=fgnet", "data.synth.scale=0.05"])
    plan = P.build(cfg)
    assert plan.nodes[0].info["preprocessing"]["channels"] == "BGR"
    assert plan.nodes[0].info["weights"] == W.identity(home / "weights" / "mydemo.safetensors")
    assert plan.nodes[0].info["weights"].startswith("tensors-sha256:")
    model = model_source(plan, plan.nodes[0]).build(LabelSpace((0, 1), (0, 1)), 0)
    assert model.preprocessing.channels == "BGR" and model.preprocessing.mean[0] == 91.4953
    for k, v in body.state_dict().items():
        assert torch.equal(model.body.state_dict()[k], v), k

    missing = main(["run", f"home={home}", "weights=nothere", "--dry-run"])
    assert missing == 2 and "weights/nothere.safetensors" in capsys.readouterr().err


def test_every_problem_is_reported_before_any_work(tmp_path, capsys):
    """A bad data root, a missing weight file and a mistyped alignment template are all reported,
    each with its fix, in one error before the demo suite is generated or anything else is
    written."""
    home = tmp_path / "home"
    code = main(["run", f"home={home}", "target=fgnet", "data.root.fgnet=/nonexistent", "backbone=mobilefacenet",
                 "backbones.mobilefacenet.align_template=arcface11", "--dry-run"])
    err = capsys.readouterr().err
    assert code == 2
    assert "data.root.fgnet=/nonexistent: folder does not exist" in err
    assert "--format mobilefacenet-ckpt" in err
    assert "align_template='arcface11' is not an alignment template. Did you mean: arcface112?" in err
    assert not (home / "demo").exists() and not (home / "stages").exists()


def test_a_dry_run_writes_nothing(tmp_path, home, capsys):
    """--dry-run on a fresh home generates no demo suite (it says the keys wait for the data and
    lists what will run); on a home with data it prints the keys; either way the home is
    byte-identical before and after."""

    fresh = tmp_path / "fresh"
    assert main(["run", f"home={fresh}", "stage=imdb,agedb", "target=fgnet", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert not fresh.exists()
    assert "not generated yet" in out and "pretrained → imdb → agedb ⇒ fgnet" in out
    assert "estimate: waits for the data" in out
    before = snapshot(home)
    assert main(["run", *FAST, f"home={home}", "stage=imdb", "target=fgnet", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "will run" in out
    assert "estimate of the nodes not cached" in out and "on this CPU" in out       # the planner's, cheap path
    assert all(f" {g} " in out for g in ("gtx1080ti", "a100", "h100")) and "GPU-hours from FLOPs at each class's measured rate" in out
    assert snapshot(home) == before


def test_a_run_starts_with_its_estimate_and_ends_with_what_it_wrote(home, capsys):
    """The first line after the plan is the planner's estimate for this machine; after the table,
    the results folder and the commands that rebuild, compare and go further."""
    args = ["run", *FAST, f"home={home}", f"run.results_dir={home}/results", "stage=", "target=utkface"]
    assert main(args) == 0
    out = capsys.readouterr().out
    folder = next((home / "results").glob("utkface-*"))
    assert "estimate for this machine: ~" in out
    assert f"written to {folder}/" in out
    assert f"next: cascade report {folder}" in out and f"cascade compare {folder} " in out
    assert "cascade regress pretrained" in out and "cascade analyse subjects" in out
    assert main(args) == 0                              # everything cached: said so, nothing timed
    assert "estimate: every node is cached" in capsys.readouterr().out


def test_a_weight_file_is_checked_against_its_sidecar_before_any_work(tmp_path, capsys):
    """A converted weight file whose bytes no longer match the sha256 its sidecar recorded, or
    that safetensors cannot read, is a problem of the run, named with the command that makes it
    again; a sidecar without a sha256 is not checked."""
    import json

    from conftest import import_demo_weights

    home = tmp_path / "home"
    path = import_demo_weights(tmp_path, home)
    args = ["run", f"home={home}", "weights=mydemo", "stage=", "target=fgnet", "--dry-run"]
    assert main(args) == 0
    capsys.readouterr()
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF                                    # a flipped bit in the last tensor
    path.write_bytes(bytes(data))
    assert main(args) == 2
    err = capsys.readouterr().err
    assert f"{path}: its bytes do not match the sha256" in err
    assert "cascade weights import" in err and "--name mydemo --backbone demo" in err and "--force" in err

    side = path.with_suffix(".json")
    meta = json.loads(side.read_text())
    side.write_text(json.dumps({k: v for k, v in meta.items() if k != "sha256"}))
    assert main(args) == 0                              # not recorded: not checked
    capsys.readouterr()
    path.write_bytes(b"not a safetensors file")
    assert main(args) == 2
    assert "not a readable safetensors file" in capsys.readouterr().err


def test_a_root_without_its_listing_is_named_before_any_work(tmp_path, capsys):
    """A dataset folder that exists but lacks what its loader reads first (Adience's fold
    listings, IMDB's .mat or CSV, any image for a folder scan) is reported with the file and
    the folder, all at once, before anything is written."""
    roots = {name: tmp_path / name for name in ("imdb", "adience", "utkface")}
    for root in roots.values():
        root.mkdir()
    home = tmp_path / "home"
    code = main(["run", f"home={home}", "stage=imdb,utkface", "target=adience", "--dry-run",
                 *(f"data.root.{name}={root}" for name, root in roots.items())])
    err = capsys.readouterr().err
    assert code == 2
    assert f"data.root.imdb={roots['imdb']}: imdb: neither imdb.mat nor imdb.csv in {roots['imdb']}" in err
    assert f"data.root.adience={roots['adience']}: adience: {roots['adience']} lacks ['fold_0_data.txt'" in err
    assert f"data.root.utkface={roots['utkface']}: utkface: no image" in err
    assert not home.exists()
