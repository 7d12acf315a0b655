"""`cascade export STAGE --format torchscript|onnx`: a trained stage as one portable model file.

The file takes `crops`, uint8 RGB face crops (N, S, S, 3) at the stage's input size S for any
batch size N, and returns `probabilities` (N, K), the posterior over the stage's classes, and
`expected_age` (N,), Σ value·p (the harness's decision rule, `metrics.expected_value_torch`).

Why the preprocessing is inside: a model fed another channel order, scale or mean still runs and
silently gives worse ages (`models/backbones.py`); with it built in, the only contract left is
"RGB bytes of a face crop".  What a file cannot say goes into its sidecar `FILE.json`: how the
crops are cut (the stage's training crop and the crop `cascade predict` cuts from photographs),
the label space, the stage key and the sha256 of the exported file, so an exported model is
traced to the stage that made it.

TorchScript is traced (`torch.jit.trace`; torch 2.14 marks torch.jit deprecated, but it still
saves and loads: ONNX is the format to keep); ONNX goes through torch's exporter (`torch.onnx.export`,
dynamo, weights inside the one file) with a dynamic batch axis.  Both are tested in a fresh
process against the harness's own predictions (tests/test_export.py).
"""
from __future__ import annotations

import copy
import io
import tempfile
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from cascade.metrics import expected_value_torch
from cascade.models.age_model import AgeModel
from cascade.predict.faces import face_crop
from cascade.runtime import package_version
from cascade.stages.trained import TrainedStage
from cascade.store import atomic_write_bytes, atomic_write_json, file_sha256

#: Export formats and the file suffix each gets by default.
FORMATS = {"torchscript": ".pt", "onnx": ".onnx"}
#: ONNX opset written unless `--opset` says otherwise (onnxruntime >= 1.14 runs it).
DEFAULT_OPSET = 18
INPUT, OUTPUTS = "crops", ("probabilities", "expected_age")


class Packaged(nn.Module):
    """The age model with its input preprocessing and the expected-value rule built in."""

    def __init__(self, model: AgeModel, values):
        super().__init__()
        self.model = copy.deepcopy(model).eval().requires_grad_(False)     # an inference file: no autograd
        self.preprocessing = model.preprocessing
        self.register_buffer("values", torch.as_tensor(values, dtype=torch.float32))

    def forward(self, crops: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        probs = F.softmax(self.model(self.preprocessing.apply(crops)).float(), 1)
        return probs, expected_value_torch(probs, self.values)


def _example(size: int) -> torch.Tensor:
    """A batch of two crops to trace with: two, so that no size-1 batch axis gets specialised."""
    return torch.randint(0, 256, (2, size, size, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))


def _torchscript(packaged: Packaged, size: int) -> bytes:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)   # mean / std become constants: intended
        warnings.simplefilter("ignore", FutureWarning)   # torch.jit's deprecation: said once by `cascade export`
        traced = torch.jit.trace(packaged, _example(size))
        buf = io.BytesIO()
        torch.jit.save(traced, buf)
    return buf.getvalue()


def _onnx(packaged: Packaged, size: int, opset: int) -> bytes:
    try:
        import onnxscript  # noqa: F401  (the exporter's dependency: a clear message instead of its own)
    except ImportError as exc:
        raise ImportError("--format onnx needs the ONNX exporter's packages: pip install 'cascade-age[export]' "
                          "(onnx, onnxscript, onnxruntime)") from exc
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.onnx"
        torch.onnx.export(packaged, (_example(size),), path, input_names=[INPUT], output_names=list(OUTPUTS),
                          opset_version=opset, dynamic_shapes={"crops": {0: torch.export.Dim("batch")}},
                          external_data=False, verbose=False)
        return path.read_bytes()



def check_out(out: Path, fmt: str) -> None:
    """Refuse, before any training, a format or a model file name the sidecar would clash with."""
    if fmt not in FORMATS:
        raise ValueError(f"--format {fmt!r}: expected one of {', '.join(FORMATS)}")
    if out.suffix == ".json":
        raise ValueError(f"--out {out}: .json is the sidecar's suffix; give the model file a suffix such as "
                         f"{FORMATS[fmt]}")


def export(stage: TrainedStage, fmt: str, out: Path, opset: int = DEFAULT_OPSET, margin: float = 0.4) -> dict:
    """Write `stage` as `fmt` to `out` and its sidecar to `out` with suffix .json; returns the
    sidecar.  `margin`: `data.margin`, the face crop of a stage trained on ready-made crops."""
    check_out(Path(out), fmt)
    out = Path(out)
    packaged = Packaged(stage.model, stage.labels.values).eval()
    data = _onnx(packaged, stage.size, opset) if fmt == "onnx" else _torchscript(packaged, stage.size)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out, data)
    meta = {"format": fmt, "file": out.name, "sha256": file_sha256(out),
            **({"opset": opset} if fmt == "onnx" else {}),
            "input": {"name": INPUT, "dtype": "uint8", "shape": ["N", stage.size, stage.size, 3],
                      "channels": "RGB", "what": "face crops cut as face_crop says"},
            "outputs": {OUTPUTS[0]: ["N", len(stage.labels)], OUTPUTS[1]: ["N"]},
            **stage.describe(), "face_crop": face_crop(stage.crop, margin),
            "cascade": package_version("cascade-age"), "torch": torch.__version__}
    atomic_write_json(out.with_suffix(".json"), meta)
    return meta
