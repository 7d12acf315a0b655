"""`cascade export`: a trained stage as a TorchScript / ONNX file, loaded in a fresh process that
imports nothing of the harness, gives the harness's own probabilities and expected ages (1e-4)
on the same face crops at another batch size than it was traced with; its sidecar holds what
the crops must be and the file's sha256."""
import json
import subprocess
import sys

import numpy as np
import pytest

from cascade import config as C
from cascade import metrics as M
from cascade.cli import main
from cascade.data.cache import decode_rgb
from cascade.predict.faces import find_faces
from cascade.stages.trained import trained_stage
from cascade.store import file_sha256
from cascade.train.trainer import predict_proba

from conftest import FAST

#: Runs in a fresh interpreter: only torch / onnxruntime, the file and the crops.
LOADER = """
import sys, numpy as np
fmt, model, crops, out = sys.argv[1:]
x = np.load(crops)
if fmt == "onnx":
    import onnxruntime
    session = onnxruntime.InferenceSession(model, providers=["CPUExecutionProvider"])
    probs, expected = session.run(["probabilities", "expected_age"], {"crops": x})
else:
    import torch
    probs, expected = (t.numpy() for t in torch.jit.load(model)(torch.from_numpy(x)))
np.savez(out, probs=probs, expected=expected)
"""

#: A real architecture at a small input, random weights: one epoch on a few IMDB images.
RESNET = ["backbone=resnet50", "weights=none", "backbones.resnet50.input_size=64",
          "backbones.resnet50.stages.imdb.epochs=1", "data.max_images=24"]


def _crops(home, size: int) -> np.ndarray:
    """Five demo-suite photographs as the face crops `cascade predict --faces given` makes."""
    files = sorted(home.glob("demo/*/agedb/*.jpg"))[:5]
    faces = find_faces([decode_rgb(f) for f in files], "given", {}, size, 0.9, "central")
    return np.stack([f[0].pixels for f in faces])


@pytest.mark.parametrize("extra", [[], RESNET], ids=["demo", "resnet50"])
def test_exported_files_give_the_harness_predictions_in_a_fresh_process(home, tmp_path, extra):
    pytest.importorskip("onnxruntime")
    words = FAST + [f"home={home}", *extra]
    chain = "imdb" if extra else "imdb,agedb"
    stage = trained_stage(C.load(words), chain, progress=False)
    crops = _crops(home, stage.size)
    probs = predict_proba(stage.model, crops, np.arange(len(crops)), "cpu")
    expected = M.decisions(probs, stage.labels.values)["pred_expected"]
    np.save(tmp_path / "crops.npy", crops)
    for fmt, suffix in (("torchscript", ".pt"), ("onnx", ".onnx")):
        out = tmp_path / f"model{suffix}"
        assert main(["export", chain, *words, "--format", fmt, "--out", str(out), "--quiet"]) == 0
        meta = json.loads(out.with_suffix(".json").read_text())
        assert meta["sha256"] == file_sha256(out) and meta["stage_key"] == stage.key
        assert meta["input"]["shape"] == ["N", stage.size, stage.size, 3]
        assert meta["labels"]["values"] == stage.labels.values.tolist()
        assert meta["training_crop"] == stage.crop and meta["face_crop"]["mode"] == "box"
        subprocess.run([sys.executable, "-I", "-c", LOADER, fmt, str(out), str(tmp_path / "crops.npy"),
                        str(tmp_path / f"{fmt}.npz")], check=True, timeout=300)
        got = np.load(tmp_path / f"{fmt}.npz")
        assert got["probs"].shape == probs.shape
        np.testing.assert_allclose(got["probs"], probs, atol=1e-4, err_msg=fmt)
        np.testing.assert_allclose(got["expected"], expected, atol=1e-4, err_msg=fmt)


def test_export_refuses_what_it_cannot_make(home, tmp_path, capsys):
    words = FAST + [f"home={home}"]
    assert main(["export", "pretrained", *words, "--format", "onnx"]) == 2
    assert "no trained age head" in capsys.readouterr().err
    assert main(["export", "imdb", *words, "--format", "torchscript", "--opset", "17"]) == 2
    assert "--opset is an ONNX setting" in capsys.readouterr().err
    assert main(["export", "imdb", *words, "--format", "onnx", "--out", str(tmp_path / "m.json"), "--quiet"]) == 2
    assert "sidecar" in capsys.readouterr().err
