"""keras-vggface's .h5 releases (the thesis's weights) import into bodies that compute what Keras
computes: for VGG-16, ResNet-50 and SENet-50, with and without the top, a file in the released
legacy layout with random weights is imported with `cascade weights import --format keras-h5` and
the body's output is compared with Keras's own (keras-vggface's model code run by Keras on the
same file: tests/keras_equivalence/make_fixtures.py) to 1e-4."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from cascade.cli import main
from cascade.models import build_backbone
from cascade.models import weights as W
from cascade.models.vggface2 import tf_same_padding

HERE = Path(__file__).resolve().parent / "keras_equivalence"
sys.path.insert(0, str(HERE))
from h5_layout import load_layout, write  # noqa: E402

BODY = {"vgg16": "vgg16", "resnet50": "resnet50_keras", "senet50": "senet50_keras"}
CASES = [(m, top) for m in BODY for top in (True, False)]


def _keras_file(tmp_path: Path, model: str, top: bool) -> tuple[Path, dict]:
    tag = f"{model}_{'top' if top else 'notop'}"
    ref = dict(np.load(HERE / "fixtures" / f"{tag}.npz"))
    name = f"rcmalli_vggface_tf_{'' if top else 'notop_'}{model}.h5"
    return write(tmp_path / name, load_layout(HERE / "fixtures" / f"{tag}.layout.json"), int(ref["seed"])), ref


@pytest.mark.parametrize("model,top", CASES)
def test_import_computes_what_keras_computes(model, top, tmp_path, monkeypatch):
    path, ref = _keras_file(tmp_path, model, top)
    home = tmp_path / "home"
    monkeypatch.setenv("CASCADE_HOME", str(home))
    assert main(["weights", "import", str(path), "--format", "keras-h5", "--name", f"{model}_k"]) == 0
    # (no --backbone: it is read off the file's layers)
    target = home / "weights" / f"{model}_k.safetensors"
    side = json.loads(target.with_suffix(".json").read_text())
    assert side["backbone"] == BODY[model]
    assert side["dropped"] == (sorted({"vgg16": ["fc6", "fc7", "fc8"]}.get(model, ["classifier"])) if top else [])
    bb = build_backbone(BODY[model])
    W.load_body(bb.body, target)
    h, w = (int(v) for v in ref["input_hw"])
    x = np.random.default_rng(7).uniform(-1, 1, (1, h, w, 3))
    for dtype in (torch.float64, torch.float32):        # Keras computed in float64; the harness trains in float32
        with torch.no_grad():
            y = bb.body.to(dtype).eval()(torch.from_numpy(x).to(dtype).permute(0, 3, 1, 2))[0]
        y = y.permute(1, 2, 0).double().numpy()
        assert y.shape == tuple(ref["shape"])                        # Keras's map size (floor pooling)
        for got, want in ((y[..., :ref["full"].shape[-1]], ref["full"]), (y.mean((0, 1)), ref["mean"]),
                          (y.max((0, 1)), ref["max"])):
            assert np.abs(got - want).max() < 1e-4, (dtype, np.abs(got - want).max())


@pytest.mark.parametrize("model", ["resnet50", "senet50"])
def test_keras_preprocessing_is_recorded(model, tmp_path, monkeypatch):
    """keras-vggface preprocess_input: version 1 (VGG-Face mean) for VGG-16, 2 for the others."""
    path, _ = _keras_file(tmp_path, model, False)
    home = tmp_path / "home"
    monkeypatch.setenv("CASCADE_HOME", str(home))
    assert main(["weights", "import", str(path), "--format", "keras-h5", "--name", "k"]) == 0
    pre = json.loads((home / "weights" / "k.json").read_text())["preprocessing"]
    assert pre["channels"] == "BGR" and pre["mean"] == [91.4953, 103.8827, 131.0912] and pre["scale"] == 1.0


def test_symmetric_padding_would_be_caught():
    """The stem pads as TensorFlow: the odd pixel at the end; a Caffe-style body on the same
    tensors gives other outputs (what the equivalence test would catch)."""
    assert tf_same_padding(224, 7, 2) == (2, 3) and tf_same_padding(225, 7, 2) == (3, 3)
    assert tf_same_padding(224, 3, 1) == (1, 1)
    keras_body, caffe_body = build_backbone("resnet50_keras").body.eval(), build_backbone("resnet50").body.eval()
    caffe_body.load_state_dict(keras_body.state_dict())
    for m in caffe_body.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.eps = 1e-3
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert keras_body(x).shape != caffe_body(x).shape or not torch.allclose(keras_body(x), caffe_body(x))


def test_wrong_files_are_named(tmp_path):
    from cascade.models.keras_h5 import import_keras_h5

    path, _ = _keras_file(tmp_path, "vgg16", False)
    with pytest.raises(ValueError, match="--backbone vgg16"):
        import_keras_h5(path, "resnet50_keras")
    bad = tmp_path / "not.h5"
    bad.write_bytes(b"not hdf5")
    with pytest.raises(ValueError, match="not an HDF5 file"):
        import_keras_h5(bad, "vgg16")


def test_a_full_model_file_is_read_and_its_batchnorm_epsilon_checked(tmp_path):
    """`model.save()` files nest the weights under `model_weights` beside a `model_config`: the
    import reads them there and checks each BatchNorm's epsilon against the body's."""
    import h5py

    from cascade.models.keras_h5 import import_keras_h5

    weights, _ = _keras_file(tmp_path, "resnet50", False)

    def full_model(eps: float) -> Path:
        path = tmp_path / f"model-{eps}.h5"
        with h5py.File(weights, "r") as src, h5py.File(path, "w") as dst:
            group = dst.create_group("model_weights")
            for key, value in src.attrs.items():
                group.attrs[key] = value
            for key in src:
                src.copy(src[key], group, name=key)
            layers = [{"class_name": "BatchNormalization", "config": {"name": "conv1/7x7_s2/bn", "epsilon": eps}}]
            dst.attrs["model_config"] = json.dumps({"class_name": "Model", "config": {"layers": layers}})
        return path

    plain = import_keras_h5(weights, "resnet50_keras").tensors
    nested = import_keras_h5(full_model(1e-3), "resnet50_keras").tensors
    assert plain.keys() == nested.keys() and all(torch.equal(plain[k], nested[k]) for k in plain)
    with pytest.raises(ValueError, match="epsilon 1e-05"):
        import_keras_h5(full_model(1e-5), "resnet50_keras")

