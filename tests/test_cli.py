"""Command-line surface: help for every sub-command, inspect of a real listing, pending commands."""
import pytest

from cascade.cli import main

from conftest import REFERENCE

COMMANDS = ["run", "protocol", "data", "weights", "features", "regress", "report", "tune"]


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
