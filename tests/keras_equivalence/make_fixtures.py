"""Make the Keras side of tests/test_keras_h5.py: keras-vggface 0.6's own model code, run by Keras.

For each model (VGG-16, ResNet-50, SENet-50) with and without its top: build the model with
keras-vggface's code (real layer names), record its weight layout, write random weights in the
released files' legacy .h5 layout (h5_layout.py), have Keras load that file the way keras-vggface
loads its releases (`model.load_weights`), and record Keras's output of the body (VGG-16: pool5;
ResNet / SENet: the last block's output, before avg_pool) on a seeded input.  Committed: the
layouts and small summaries of the outputs, not weights.  Keras computes in float64 and the
input is in [-1, 1]; the random weights keep each residual block near the identity
(h5_layout.weights_for), so float round-off is not amplified block after block and the test
compares the conversion, in float64 and in the harness's float32.

Not run by CI (Keras is not a dependency of the harness).  To regenerate:

    pip install --target /tmp/kdeps --no-deps keras==3.15.1 keras-vggface==0.6 keras-applications==1.0.8 \\
        absl-py namex optree ml-dtypes rich markdown-it-py mdurl
    KERAS_BACKEND=torch PYTHONPATH=/tmp/kdeps .venv/bin/python tests/keras_equivalence/make_fixtures.py

keras-vggface 0.6 was written for Keras 2; the few Keras 2 module paths it imports are mapped to
their Keras 3 homes below, and the '/' Keras 3 refuses in layer names ('conv1/7x7_s2', 'fc6/relu')
is carried as SLASH while Keras runs and restored in the layout (nothing of its model code is
changed; Keras's legacy loader matches layers by order, as keras-vggface's ResNet loading does).
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
import types
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from h5_layout import write  # noqa: E402

SEED = 0
#: (model, top, input H, W): the top variants at keras-vggface's 224 px; the notop ones at a
#: non-square size whose stem pads differently in H and W (TensorFlow 'same': 2/3 vs 3/3).
CASES = [("vgg16", True, 224, 224), ("vgg16", False, 200, 232), ("resnet50", True, 224, 224),
         ("resnet50", False, 200, 233), ("senet50", True, 224, 224), ("senet50", False, 200, 233)]
#: Channels of the body's output kept in full (the rest as per-channel mean and max over space).
FULL_CHANNELS = 4
#: Stands for '/' in a layer name while Keras 3 holds it.
SLASH = "__slash__"


def keras_vggface_models():
    """keras_vggface.models under Keras 3 (its Keras 2 import paths mapped)."""
    import keras
    from keras.src.ops import operation

    plain_init = operation.Operation.__init__

    def init(self, name=None):
        plain_init(self, name=name.replace("/", SLASH) if isinstance(name, str) else name)
    operation.Operation.__init__ = init

    topology = types.ModuleType("keras.engine.topology")
    topology.get_source_inputs = keras.utils.get_source_inputs
    engine = types.ModuleType("keras.engine")
    engine.topology = topology
    data_utils = types.ModuleType("keras.utils.data_utils")
    data_utils.get_file = keras.utils.get_file
    layer_utils = types.ModuleType("keras.utils.layer_utils")
    sys.modules.update({"keras.engine": engine, "keras.engine.topology": topology,
                        "keras.utils.data_utils": data_utils, "keras.utils.layer_utils": layer_utils})
    keras.utils.data_utils, keras.utils.layer_utils = data_utils, layer_utils
    from keras_vggface import models
    return models


def body_output_layer(model, name: str):
    """VGG-16: pool5; ResNet / SENet: the layer feeding avg_pool (the last block's ReLU)."""
    if name == "vgg16":
        return model.get_layer("pool5")
    names = [layer.name for layer in model.layers]
    return model.layers[names.index("avg_pool") - 1]


def main() -> None:
    assert os.environ.get("KERAS_BACKEND") == "torch", "run with KERAS_BACKEND=torch (see the docstring)"
    import keras

    keras.config.set_floatx("float64")
    models = keras_vggface_models()
    build = {"vgg16": models.VGG16, "resnet50": models.RESNET50, "senet50": models.SENET50}
    out_dir = HERE / "fixtures"
    out_dir.mkdir(exist_ok=True)
    for name, top, h, w in CASES:
        model = build[name](include_top=top, weights=None, input_shape=None if top else (h, w, 3))
        layout = []
        for layer in model.layers:
            original = layer.name.replace(SLASH, "/")          # the name keras-vggface gave it
            layout.append([original, [[f"{original}/{v.name}:0", list(v.shape)] for v in layer.weights]])
        tag = f"{name}_{'top' if top else 'notop'}"
        with tempfile.TemporaryDirectory() as tmp:
            path = write(Path(tmp) / f"{tag}.h5", layout, SEED)
            model.load_weights(str(path))                   # Keras's legacy loader, as keras-vggface
            probe = keras.Model(model.inputs, body_output_layer(model, name).output)
            x = np.random.default_rng(7).uniform(-1, 1, (1, h, w, 3))
            y = np.asarray(keras.ops.convert_to_numpy(probe(x, training=False)))[0]     # (h', w', C)
        (out_dir / f"{tag}.layout.json").write_text(json.dumps(layout))
        np.savez_compressed(out_dir / f"{tag}.npz", input_hw=np.array([h, w]), seed=SEED,
                            shape=np.array(y.shape), mean=y.mean((0, 1)), max=y.max((0, 1)),
                            full=y[..., :FULL_CHANNELS], keras=keras.__version__)
        print(f"{tag}: {len(layout)} layers, body output {y.shape}, |y| mean {np.abs(y).mean():.4g}")


if __name__ == "__main__":
    main()
