"""`import_weights`: each source format, written with random tensors under the source's own names,
converts to a body whose output equals a reference computed from those tensors by the source's
names (a functional ResNet written here, torchvision / timm modules, a plain conv chain)."""
import hashlib
import io
import json
import os
import pickle
import struct

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cascade.models import importers as I
from cascade.models import backbones as B
from cascade.models.backbones import build_backbone
from cascade.models.weights import load_body
from cascade.models.vggface2 import resnet50_vggface2, senet50_vggface2

STAGES = ((2, 64, 3), (3, 128, 4), (4, 256, 6), (5, 512, 3))      # dag stage, width, blocks


@pytest.fixture(autouse=True)
def vggface2_registered(monkeypatch):
    """resnet50 / senet50 as registered backbones (until the registry lists them itself)."""
    for name, ctor in (("resnet50", resnet50_vggface2), ("senet50", senet50_vggface2)):
        if name not in B.BACKBONES:
            monkeypatch.setitem(B.BACKBONES, name, ctor)


_BODIES: dict = {}


def _body(backbone):
    """One body per backbone for the module (load_body replaces every tensor of it)."""
    if backbone not in _BODIES:
        _BODIES[backbone] = build_backbone(backbone).body.eval()
    return _BODIES[backbone]


# --- a ResNet-50 described by the sources' naming, independent of cascade.models.vggface2 -----

def dag_names(s, b, part):                     # albanie: conv{stage}_{block}_<part>
    if s == 1:
        return {"conv": "conv1_7x7_s2", "bn": "conv1_7x7_s2_bn"}[part]
    return f"conv{s}_{b}_" + {"reduce": "1x1_reduce", "reduce_bn": "1x1_reduce_bn", "mid": "3x3",
                              "mid_bn": "3x3_bn", "inc": "1x1_increase", "inc_bn": "1x1_increase_bn",
                              "proj": "1x1_proj", "proj_bn": "1x1_proj_bn", "down": "1x1_down",
                              "up": "1x1_up"}[part]


def pkl_names(s, b, part):                     # cydonia999: layer{stage-1}.{block-1}.<module>
    if s == 1:
        return {"conv": "conv1", "bn": "bn1"}[part]
    return f"layer{s - 1}.{b - 1}." + {"reduce": "conv1", "reduce_bn": "bn1", "mid": "conv2",
                                       "mid_bn": "bn2", "inc": "conv3", "inc_bn": "bn3",
                                       "proj": "downsample.0", "proj_bn": "downsample.1",
                                       "down": "conv4", "up": "conv5"}[part]


def random_resnet(names, se: bool, seed: int = 0, counters: bool = False) -> dict:
    g = torch.Generator().manual_seed(seed)
    sd = {}

    def conv(name, cout, cin, k, bias=False):
        sd[name + ".weight"] = torch.randn(cout, cin, k, k, generator=g) * (2.0 / (cin * k * k)) ** 0.5
        if bias:
            sd[name + ".bias"] = torch.randn(cout, generator=g) * 0.1

    def bn(name, c):
        sd[name + ".weight"] = torch.rand(c, generator=g) * 0.5 + 0.5
        sd[name + ".bias"] = torch.randn(c, generator=g) * 0.1
        sd[name + ".running_mean"] = torch.randn(c, generator=g) * 0.1
        sd[name + ".running_var"] = torch.rand(c, generator=g) + 0.5
        if counters:
            sd[name + ".num_batches_tracked"] = torch.tensor(7)

    conv(names(1, 0, "conv"), 64, 3, 7)
    bn(names(1, 0, "bn"), 64)
    cin = 64
    for s, w, n in STAGES:
        for b in range(1, n + 1):
            conv(names(s, b, "reduce"), w, cin, 1)
            bn(names(s, b, "reduce_bn"), w)
            conv(names(s, b, "mid"), w, w, 3)
            bn(names(s, b, "mid_bn"), w)
            conv(names(s, b, "inc"), 4 * w, w, 1)
            bn(names(s, b, "inc_bn"), 4 * w)
            if se:
                conv(names(s, b, "down"), 4 * w // 16, 4 * w, 1, bias=True)
                conv(names(s, b, "up"), 4 * w, 4 * w // 16, 1, bias=True)
            if b == 1:
                conv(names(s, b, "proj"), 4 * w, cin, 1)
                bn(names(s, b, "proj_bn"), 4 * w)
            cin = 4 * w
    return sd


def reference_forward(sd, names, x, se: bool):
    """The VGGFace2 Caffe network, functionally, reading tensors by the source's names."""
    def bn(t, n):
        return F.batch_norm(t, sd[n + ".running_mean"], sd[n + ".running_var"], sd[n + ".weight"],
                            sd[n + ".bias"], False, 0.0, 1e-5)

    x = F.relu(bn(F.conv2d(x, sd[names(1, 0, "conv") + ".weight"], stride=2, padding=3), names(1, 0, "bn")))
    x = F.max_pool2d(x, 3, 2, 0, ceil_mode=True)
    for s, _, n in STAGES:
        for b in range(1, n + 1):
            stride = 2 if b == 1 and s > 2 else 1
            y = F.conv2d(x, sd[names(s, b, "reduce") + ".weight"], stride=stride)   # Caffe: stride on 1x1
            y = F.relu(bn(y, names(s, b, "reduce_bn")))
            y = F.relu(bn(F.conv2d(y, sd[names(s, b, "mid") + ".weight"], padding=1), names(s, b, "mid_bn")))
            y = bn(F.conv2d(y, sd[names(s, b, "inc") + ".weight"]), names(s, b, "inc_bn"))
            if se:
                d, u = names(s, b, "down"), names(s, b, "up")
                gate = y.mean((2, 3), keepdim=True)
                gate = F.relu(F.conv2d(gate, sd[d + ".weight"], sd[d + ".bias"]))
                y = y * torch.sigmoid(F.conv2d(gate, sd[u + ".weight"], sd[u + ".bias"]))
            short = x
            if b == 1:
                p = names(s, b, "proj")
                short = bn(F.conv2d(x, sd[p + ".weight"], stride=stride), names(s, b, "proj_bn"))
            x = F.relu(y + short)
    return x


def _body_output(weights_path, backbone, x):
    body = _body(backbone)
    load_body(body, weights_path)
    with torch.no_grad():
        return body(x)


def _sidecar(path):
    return json.loads(path.with_suffix(".json").read_text())


def _sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- vggface2-pkl ------------------------------------------------------------------------------

class _Py2Pickler(pickle._Pickler):
    """Writes bytes as Python 2 `str` (BINSTRING), as the 2018 conversion's Python 2 pickles
    hold array data (Python 3 protocol 2 would call _codecs.encode instead)."""
    dispatch = dict(pickle._Pickler.dispatch)

    def save_bytes(self, obj):
        n = len(obj)
        self.write(pickle.SHORT_BINSTRING + bytes([n]) + obj if n < 256
                   else pickle.BINSTRING + struct.pack("<I", n) + obj)
        self.memoize(obj)

    dispatch[bytes] = save_bytes


def _write_pkl(path, tensors):
    """A pickle as cydonia999's: protocol 2, Python 2 strings, numpy 1.x global names."""
    buf = io.BytesIO()
    _Py2Pickler(buf, protocol=2).dump({k: v.numpy() for k, v in tensors.items()})
    blob = buf.getvalue().replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    assert b"cnumpy.core.multiarray\n_reconstruct" in blob and b"_codecs" not in blob
    path.write_bytes(blob)


def test_vggface2_pkl(tmp_path):
    """resnet50_ft_weight.pkl (SE-ResNet naming and SE are covered by the dag test)."""
    backbone, se = "resnet50", False
    src = random_resnet(pkl_names, se, seed=1)
    src["fc.weight"], src["fc.bias"] = torch.randn(10, 2048), torch.randn(10)   # identity classifier
    pkl = tmp_path / f"{backbone}_ft_weight.pkl"
    _write_pkl(pkl, src)
    out = I.import_weights(pkl, "vggface2-pkl", f"{backbone}_vggface2", backbone, tmp_path / "home")
    assert out == tmp_path / "home" / "weights" / f"{backbone}_vggface2.safetensors"
    x = torch.randn(1, 3, 48, 48) * 50
    torch.testing.assert_close(_body_output(out, backbone, x), reference_forward(src, pkl_names, x, se),
                               rtol=1e-4, atol=1e-4)
    meta = _sidecar(out)
    assert meta["source_sha256"] == _sha(pkl) and meta["format"] == "vggface2-pkl"
    assert meta["dropped"] == ["fc.bias", "fc.weight"]
    assert meta["backbone"] == backbone and meta["sha256"] == _sha(out)
    assert meta["preprocessing"] == {"channels": "BGR", "scale": 1.0,
                                     "mean": [91.4953, 103.8827, 131.0912], "std": [1.0, 1.0, 1.0]}
    assert all(k.endswith("num_batches_tracked") for k in meta["filled"]) and meta["filled"]
    pre = I.load_preprocessing(out)
    assert pre.channels == "BGR" and pre.mean == (91.4953, 103.8827, 131.0912)


class _Evil:
    def __init__(self, cmd):
        self.cmd = cmd

    def __reduce__(self):
        return os.system, (self.cmd,)


def test_malicious_pickle_refused(tmp_path):
    marker = tmp_path / "pwned"
    pkl = tmp_path / "resnet50_ft_weight.pkl"
    pkl.write_bytes(pickle.dumps({"conv1.weight": _Evil(f"touch {marker}")}, protocol=2))
    with pytest.raises(pickle.UnpicklingError, match=r"refusing to unpickle (posix|os)\.system"):
        I.import_weights(pkl, "vggface2-pkl", "evil", "resnet50", tmp_path / "home")
    assert not marker.exists()
    assert not (tmp_path / "home" / "weights").exists() or not any((tmp_path / "home" / "weights").iterdir())
    for payload in (pickle.dumps({"a": _Evil(f"touch {marker}")}, protocol=4),
                    b"cbuiltins\neval\n(S'1+1'\ntR."):
        pkl.write_bytes(payload)
        with pytest.raises(I.UnsafePickleError):
            I.read_numpy_pickle(pkl)
    assert not marker.exists()


# --- dag-pth -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def senet_dag(tmp_path_factory):
    """senet50_ft_dag.pth in albanie's naming, with BN counters and the identity classifier."""
    src = random_resnet(dag_names, True, seed=2, counters=True)
    src["classifier.weight"] = torch.randn(10, 2048, 1, 1)
    src["classifier.bias"] = torch.randn(10)
    path = tmp_path_factory.mktemp("dag") / "senet50_ft_dag.pth"
    torch.save(src, path)
    return src, path


def test_dag_senet(tmp_path, senet_dag):
    """senet50_ft_dag.pth (the ResNet-50 rule is the same minus the SE layers; see below)."""
    backbone, se = "senet50", True
    src, path = senet_dag
    out = I.import_weights(path, "dag-pth", "w", backbone, tmp_path / "home")
    x = torch.randn(1, 3, 48, 48) * 50
    torch.testing.assert_close(_body_output(out, backbone, x), reference_forward(src, dag_names, x, se),
                               rtol=1e-4, atol=1e-4)
    meta = _sidecar(out)
    assert meta["dropped"] == ["classifier.bias", "classifier.weight"] and meta["filled"] == []
    assert meta["preprocessing"]["channels"] == "RGB"
    assert meta["preprocessing"]["mean"] == [131.0912, 103.8827, 91.4953]


def test_dag_name_rule():
    assert I.dag_resnet_name("conv1_7x7_s2.weight") == "conv1.weight"
    assert I.dag_resnet_name("conv1_7x7_s2_bn.running_var") == "bn1.running_var"
    assert I.dag_resnet_name("conv2_1_1x1_reduce_bn.running_mean") == "layer1.0.bn1.running_mean"
    assert I.dag_resnet_name("conv3_1_1x1_proj.weight") == "layer2.0.downsample.0.weight"
    assert I.dag_resnet_name("conv5_3_1x1_up.bias") == "layer4.2.conv5.bias"
    assert I.dag_resnet_name("classifier.weight") is None
    assert I.dag_resnet_name("mystery.weight") == "mystery.weight"
    assert I.dag_vgg16_name("conv5_3.bias") == "28.bias" and I.dag_vgg16_name("fc8.weight") is None


VGG_CONVS = [("conv1_1", 3, 64), ("conv1_2", 64, 64), ("conv2_1", 64, 128), ("conv2_2", 128, 128),
             ("conv3_1", 128, 256), ("conv3_2", 256, 256), ("conv3_3", 256, 256),
             ("conv4_1", 256, 512), ("conv4_2", 512, 512), ("conv4_3", 512, 512),
             ("conv5_1", 512, 512), ("conv5_2", 512, 512), ("conv5_3", 512, 512)]


def _vgg_face_dag(seed=3):
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for name, cin, cout in VGG_CONVS:
        sd[name + ".weight"] = torch.randn(cout, cin, 3, 3, generator=g) * (2.0 / (9 * cin)) ** 0.5
        sd[name + ".bias"] = torch.randn(cout, generator=g) * 0.1
    for fc in ("fc6", "fc7", "fc8"):        # real ones are 4096 x 25088 ...; any shape is dropped
        sd[fc + ".weight"], sd[fc + ".bias"] = torch.randn(4, 4), torch.randn(4)
    return sd


def test_dag_vgg_face(tmp_path):
    src = _vgg_face_dag()
    path = tmp_path / "vgg_face_dag.pth"
    torch.save(src, path)
    out = I.import_weights(path, "dag-pth", "vgg16_vggface", "vgg16", tmp_path / "home")
    body = _body("vgg16")
    load_body(body, out)
    x = torch.randn(2, 3, 32, 32) * 50
    with torch.no_grad():
        # first two convs by hand vs body[:4]
        ref = F.relu(F.conv2d(x, src["conv1_1.weight"], src["conv1_1.bias"], padding=1))
        ref = F.relu(F.conv2d(ref, src["conv1_2.weight"], src["conv1_2.bias"], padding=1))
        torch.testing.assert_close(body[:4](x), ref, rtol=1e-4, atol=1e-3)
        # the whole stack: pool after conv1_2, 2_2, 3_3, 4_3, 5_3
        ref = x
        for name, _, _ in VGG_CONVS:
            ref = F.relu(F.conv2d(ref, src[name + ".weight"], src[name + ".bias"], padding=1))
            if name in ("conv1_2", "conv2_2", "conv3_3", "conv4_3", "conv5_3"):
                ref = F.max_pool2d(ref, 2)
        torch.testing.assert_close(body(x), ref, rtol=1e-4, atol=1e-3)
    meta = _sidecar(out)
    assert meta["dropped"] == ["fc6.bias", "fc6.weight", "fc7.bias", "fc7.weight", "fc8.bias", "fc8.weight"]
    assert meta["preprocessing"]["channels"] == "RGB"
    assert [round(v, 4) for v in meta["preprocessing"]["mean"]] == [129.1863, 104.7624, 93.594]


def test_mismatch_listed(tmp_path, senet_dag):
    from safetensors.torch import save_file

    torch.manual_seed(0)
    sd = dict(build_backbone("demo").body.state_dict())
    del sd["2.0.weight"]
    sd["9.weight"] = torch.zeros(2)
    sd["0.0.weight"] = torch.zeros(16, 3, 5, 5)
    path = tmp_path / "demo.safetensors"
    save_file(sd, path)
    with pytest.raises(ValueError) as err:
        I.import_weights(path, "safetensors", "bad", "demo", tmp_path / "home",
                         preprocessing=I.IMAGENET)
    msg = str(err.value)
    assert "missing 1 ['2.0.weight']" in msg
    assert "unexpected 1 ['9.weight']" in msg
    assert "0.0.weight (16, 3, 5, 5) != (16, 3, 3, 3)" in msg
    assert not (tmp_path / "home" / "weights" / "bad.safetensors").exists()
    # a SENet file imported as a ResNet: every other tensor maps (the ResNet-50 dag rule), the 64
    # SE tensors are unexpected
    with pytest.raises(ValueError, match=r"missing 0 \[\], unexpected 64 \['layer1.0.conv4.bias'.*"
                                         r"wrong shape 0 \[\]"):
        I.import_weights(senet_dag[1], "dag-pth", "bad", "resnet50", tmp_path / "home")


# --- torchvision / timm / safetensors --------------------------------------------------------

def test_torchvision_vgg16(tmp_path):
    from torchvision.models.vgg import cfgs, make_layers

    torch.manual_seed(4)
    src = nn.Module()
    src.features = make_layers(cfgs["D"])       # torchvision's VGG-16 features: its own names
    sd = {f"module.{k}": v for k, v in src.state_dict().items()}   # as saved from DataParallel
    sd["module.classifier.6.weight"], sd["module.classifier.6.bias"] = torch.randn(3, 4), torch.randn(3)
    path = tmp_path / "vgg16.pth"
    torch.save(sd, path)
    out = I.import_weights(path, "torchvision", "vgg16_imagenet", "vgg16", tmp_path / "home")
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(_body_output(out, "vgg16", x), src.features(x))
    meta = _sidecar(out)
    assert meta["dropped"] == ["module.classifier.6.bias", "module.classifier.6.weight"]
    assert meta["preprocessing"]["scale"] == pytest.approx(1 / 255)
    with pytest.raises(ValueError, match="Caffe-style"):
        I.import_weights(path, "torchvision", "x", "resnet50", tmp_path / "home")


def test_timm_safetensors(tmp_path):
    import timm
    from safetensors.torch import save_file

    torch.manual_seed(5)
    model = timm.create_model("resnet18", pretrained=False).eval()
    path = tmp_path / "resnet18.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, path)
    out = I.import_weights(path, "timm", "r18", "timm:resnet18", tmp_path / "home")
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(_body_output(out, "timm:resnet18", x), model.forward_features(x))
    assert _sidecar(out)["dropped"] == ["fc.bias", "fc.weight"]


def _demo_file(path, seed):
    torch.manual_seed(seed)
    from safetensors.torch import save_file
    save_file({k: v.contiguous() for k, v in build_backbone("demo").body.state_dict().items()}, path)
    return path


def test_safetensors_with_and_without_sidecar(tmp_path):
    bare = _demo_file(tmp_path / "bare.safetensors", 0)
    assert I.load_preprocessing(bare) is None
    with pytest.raises(ValueError, match="records no preprocessing"):
        I.import_weights(bare, "safetensors", "b", "demo", tmp_path / "home1")
    first = I.import_weights(bare, "safetensors", "b", "demo", tmp_path / "home1",
                             preprocessing=I.parse_preprocessing("imagenet", "demo"))
    assert I.load_preprocessing(first) == I.IMAGENET
    assert _sidecar(first)["preprocessing_from"] == "given"
    # a converted file carried to another home with its sidecar: the preprocessing travels along
    second = I.import_weights(first, "safetensors", "c", "demo", tmp_path / "home2")
    assert I.load_preprocessing(second) == I.IMAGENET
    assert _sidecar(second)["source_sha256"] == _sha(first)
    assert _sidecar(second)["preprocessing_from"] == "source"
    x = torch.randn(1, 3, 16, 16)
    ref = build_backbone("demo").body.eval()
    ref.load_state_dict(__import__("safetensors.torch").torch.load_file(bare))
    with torch.no_grad():
        torch.testing.assert_close(_body_output(second, "demo", x), ref(x))
    custom = I.parse_preprocessing('{"channels": "BGR", "scale": 1, "mean": [1, 2, 3], "std": [1, 1, 1]}', "demo")
    assert custom.channels == "BGR" and custom.mean == (1.0, 2.0, 3.0)
    with pytest.raises(ValueError, match="JSON"):
        I.parse_preprocessing("nonsense", "demo")


# --- the command's rules -----------------------------------------------------------------------

def test_unknown_format_lists_valid(tmp_path):
    f = tmp_path / "x.bin"
    f.write_bytes(b"x")
    with pytest.raises(ValueError) as err:
        I.import_weights(f, "caffemodel", "x", "vgg16", tmp_path)
    for fmt in ("vggface2-pkl", "dag-pth", "torchvision", "timm", "safetensors"):
        assert fmt in str(err.value)


def test_overwrite_rules_and_sha(tmp_path):
    home = tmp_path / "home"
    pre = I.IMAGENET
    a, b = _demo_file(tmp_path / "a.safetensors", 1), _demo_file(tmp_path / "b.safetensors", 2)
    out = I.import_weights(a, "safetensors", "d", "demo", home, preprocessing=pre)
    assert _sidecar(out)["source_sha256"] == hashlib.sha256(a.read_bytes()).hexdigest()
    assert _sidecar(out)["source"] == str(a.resolve())
    stamp = out.stat().st_mtime_ns
    assert I.import_weights(a, "safetensors", "d", "demo", home, preprocessing=pre) == out  # not redone
    assert out.stat().st_mtime_ns == stamp
    with pytest.raises(FileExistsError, match="force"):
        I.import_weights(b, "safetensors", "d", "demo", home, preprocessing=pre)
    assert _sidecar(out)["source_sha256"] == _sha(a)
    I.import_weights(b, "safetensors", "d", "demo", home, preprocessing=pre, force=True)
    assert _sidecar(out)["source_sha256"] == _sha(b) and _sidecar(out)["sha256"] == _sha(out)
    assert not [p for p in (home / "weights").iterdir() if p.name.startswith(".")]   # no temp files
    with pytest.raises(ValueError, match="name"):
        I.import_weights(a, "safetensors", "../escape", "demo", home, preprocessing=pre)


def test_plain_tuple_importer_registered(tmp_path):
    """Importers returning (tensors, preprocessing) — here MobileFaceNet's — go through the same
    check, conversion and sidecar."""
    torch.manual_seed(6)
    body = build_backbone("mobilefacenet").body
    path = tmp_path / "068.ckpt"
    torch.save({"epoch": 68, "net_state_dict": body.state_dict()}, path)
    out = I.import_weights(path, "mobilefacenet-ckpt", "mfn", "mobilefacenet", tmp_path / "home")
    meta = _sidecar(out)
    assert meta["format"] == "mobilefacenet-ckpt" and meta["dropped"] == []
    assert I.load_preprocessing(out) == build_backbone("mobilefacenet").preprocessing
    fresh = build_backbone("mobilefacenet").body
    load_body(fresh, out)
    for k, v in body.state_dict().items():
        assert torch.equal(fresh.state_dict()[k], v), k


def test_backbone_guessed_from_names():
    guess = I._guess_backbone
    assert guess("resnet50_ft_weight.pkl", "x") == "resnet50"
    assert guess("senet50_ft_dag.pth", "x") == "senet50"
    assert guess("vgg_face_dag.pth", "x") == "vgg16"
    assert guess("20180402-114759-vggface2.pt", "inception_resnet_v1_vggface2") == "inception_resnet_v1"
    with pytest.raises(ValueError, match="--backbone"):
        guess("weights.bin", "mine")
