"""MobileFaceNet and facenet Inception-ResNet-v1 backbones, and their weights_only importers.

The MobileFaceNet checks are built from an independent description of the shared checkpoint
(the paper's bottleneck table below, checked against the reference key listing when present):
a legacy-format checkpoint with random tensors is imported and the body's output is compared
with a purely functional forward pass (F.conv2d / F.batch_norm / F.prelu) over the raw tensors.
"""
import os
import zipfile
from collections import OrderedDict

import pytest
import torch
import torch.nn.functional as F

from conftest import REFERENCE

from cascade.models.age_model import AgeModel
from cascade.models.facenet import import_facenet, inception_resnet_v1
from cascade.models.mobilefacenet import import_mobilefacenet, mobilefacenet

KEYS = REFERENCE / "weights" / "mobilefacenet_keys.txt"
#: Chen et al. 2018, Table 1: (expansion, channels, repeats, first stride) of the bottlenecks.
TABLE = [(2, 64, 5, 2), (4, 128, 1, 2), (2, 128, 6, 1), (4, 128, 1, 2), (2, 128, 2, 1)]


def blocks():
    """(cin, cout, stride, expansion) of the 15 bottlenecks."""
    out, cin = [], 64
    for t, c, n, s in TABLE:
        for i in range(n):
            out.append((cin, c, s if i == 0 else 1, t))
            cin = c
    return out


def layout() -> list[tuple[str, list[int]]]:
    """Names and shapes of the checkpoint's 'net_state_dict', in order."""
    out = []

    def bn(p, c):
        out.extend([(f"{p}.weight", [c]), (f"{p}.bias", [c]), (f"{p}.running_mean", [c]),
                    (f"{p}.running_var", [c]), (f"{p}.num_batches_tracked", [])])

    def block(p, w, prelu=True):
        out.append((f"{p}.conv.weight", w))
        bn(f"{p}.bn", w[0])
        if prelu:
            out.append((f"{p}.prelu.weight", [w[0]]))

    block("conv1", [64, 3, 3, 3])
    block("dw_conv1", [64, 1, 3, 3])
    for i, (cin, cout, _, t) in enumerate(blocks()):
        p, mid = f"blocks.{i}.conv", cin * t
        out.append((f"{p}.0.weight", [mid, cin, 1, 1])); bn(f"{p}.1", mid)
        out.append((f"{p}.2.weight", [mid]))
        out.append((f"{p}.3.weight", [mid, 1, 3, 3])); bn(f"{p}.4", mid)
        out.append((f"{p}.5.weight", [mid]))
        out.append((f"{p}.6.weight", [cout, mid, 1, 1])); bn(f"{p}.7", cout)
    block("conv2", [512, 128, 1, 1])
    block("linear7", [512, 1, 7, 6], prelu=False)
    block("linear1", [128, 512, 1, 1], prelu=False)
    return out


def random_state(seed=0) -> "OrderedDict[str, torch.Tensor]":
    g = torch.Generator().manual_seed(seed)
    sd = OrderedDict()
    for name, shape in layout():
        if name.endswith("num_batches_tracked"):
            sd[name] = torch.tensor(123456)
        elif len(shape) == 4:
            sd[name] = torch.randn(shape, generator=g) * (shape[1] * shape[2] * shape[3]) ** -0.5
        elif name.endswith("running_var"):
            sd[name] = torch.rand(shape, generator=g) + 0.5
        elif name.endswith(("running_mean", "bias")):
            sd[name] = torch.randn(shape, generator=g) * 0.1
        else:                            # BN scale or PReLU slope
            sd[name] = torch.rand(shape, generator=g) * 0.8 + 0.4
    sd._metadata = OrderedDict([("", {"version": 1})])   # as a real state_dict() carries
    return sd


def reference_forward(sd, x):
    """MobileFaceNet in eval mode, written with functional ops over the raw tensors."""
    def bn(p, x):
        return F.batch_norm(x, sd[f"{p}.running_mean"], sd[f"{p}.running_var"], sd[f"{p}.weight"],
                            sd[f"{p}.bias"], False, 0.0, 1e-5)

    def cbp(p, x, stride=1, pad=0, groups=1, prelu=True):
        x = bn(f"{p}.bn", F.conv2d(x, sd[f"{p}.conv.weight"], None, stride, pad, 1, groups))
        return F.prelu(x, sd[f"{p}.prelu.weight"]) if prelu else x

    x = cbp("conv1", x, 2, 1)
    x = cbp("dw_conv1", x, 1, 1, 64)
    for i, (cin, cout, stride, t) in enumerate(blocks()):
        p, mid = f"blocks.{i}.conv", cin * t
        y = F.prelu(bn(f"{p}.1", F.conv2d(x, sd[f"{p}.0.weight"])), sd[f"{p}.2.weight"])
        y = F.prelu(bn(f"{p}.4", F.conv2d(y, sd[f"{p}.3.weight"], None, stride, 1, 1, mid)),
                    sd[f"{p}.5.weight"])
        y = bn(f"{p}.7", F.conv2d(y, sd[f"{p}.6.weight"]))
        x = x + y if stride == 1 and cin == cout else y
    x = cbp("conv2", x)
    x = cbp("linear7", x, groups=512, prelu=False)
    return cbp("linear1", x, prelu=False)


def save_legacy(obj, path, location="cuda:0"):
    """A pre-1.6 (non-zip) torch.save.  With a cuda location the storages look as in 068.ckpt,
    saved from a GPU by PyTorch 0.4: location 'cuda:0', type `torch.cuda.FloatStorage` etc."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(torch.serialization, "location_tag", lambda storage: location)
        torch.save(obj, path, _use_new_zipfile_serialization=False)
    assert not zipfile.is_zipfile(path)
    if location.startswith("cuda"):
        raw = path.read_bytes()         # GLOBAL opcodes are newline-terminated text; no offsets
        for kind in (b"FloatStorage", b"LongStorage"):
            assert raw.count(b"ctorch\n" + kind + b"\n") == 1
            raw = raw.replace(b"ctorch\n" + kind + b"\n", b"ctorch.cuda\n" + kind + b"\n")
        path.write_bytes(raw)


@pytest.fixture(scope="module")
def x112():
    return torch.randn(2, 3, 112, 96, generator=torch.Generator().manual_seed(1))


def test_layout_matches_reference_listing():
    own = [(k, list(v.shape)) for k, v in mobilefacenet().body.state_dict().items()]
    assert own == layout()
    if not KEYS.exists():
        pytest.skip("reference key listing not present")
    rows = [line.split("\t") for line in KEYS.read_text().splitlines() if line and line[0] != "#"]
    listed = [(n, [int(d) for d in s.strip("[]").split(",") if d.strip()]) for n, s in rows]
    assert len(listed) == 333 and listed == own
    assert "112 (height) x 96 (width)" in KEYS.read_text() and "(x - 127.5) / 128" in KEYS.read_text()


def test_size_preprocessing_and_training_step(x112):
    bb = mobilefacenet()
    assert 0.9e6 < sum(p.numel() for p in bb.body.parameters()) < 1.1e6
    assert bb.channels == 128
    pix = torch.randint(0, 256, (2, 112, 96, 3), dtype=torch.uint8)
    expect = (pix.permute(0, 3, 1, 2).float() - 127.5) / 128.0
    assert torch.allclose(bb.preprocessing.apply(pix), expect)
    model = AgeModel(bb, 8, [512, 256]).train()
    out = model(x112)
    assert out.shape == (2, 8)
    out.logsumexp(1).sum().backward()
    grads = [p.grad for p in bb.body.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert bb.body.conv1.conv.weight.grad.abs().sum() > 0


def test_square_input_is_centre_cropped_and_other_sizes_refused(x112):
    body = mobilefacenet().body.eval()
    wide = torch.randn(1, 3, 112, 112)
    with torch.no_grad():
        assert torch.equal(body(wide), body(wide[..., 8:104].contiguous()))
        assert body(x112).shape == (2, 128, 1, 1)
    with pytest.raises(ValueError, match="112x96"):
        body(torch.randn(1, 3, 224, 224))


def test_legacy_checkpoint_imports_and_matches_functional_reference(tmp_path, x112):
    sd = random_state()
    path = tmp_path / "068.ckpt"
    save_legacy({"epoch": 68, "net_state_dict": sd}, path)

    tensors, pre = import_mobilefacenet(path, "mobilefacenet")
    assert list(tensors) == [n for n, _ in layout()]
    assert all(torch.equal(tensors[k], sd[k]) for k in sd)
    assert (pre.channels, pre.scale, pre.mean, pre.std) == ("RGB", 1.0, (127.5,) * 3, (128.0,) * 3)

    body = mobilefacenet().body
    body.load_state_dict(tensors)
    direct = mobilefacenet().body           # second route: the file's own dict, loaded directly
    direct.load_state_dict(torch.load(path, map_location="cpu", weights_only=True)["net_state_dict"])
    body.eval(), direct.eval()
    with torch.no_grad():
        out = body(x112)
        assert out.shape == (2, 128, 1, 1)
        assert out.std() > 0.05 and not torch.allclose(out[0], out[1])   # not a degenerate check
        ref = reference_forward(sd, x112)
        torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(out, direct(x112))
        # first layer by hand: conv (stride 2, pad 1) -> BN(eval) -> PReLU
        z = F.conv2d(x112, sd["conv1.conv.weight"], stride=2, padding=1)
        z = (z - sd["conv1.bn.running_mean"].view(1, -1, 1, 1)) / torch.sqrt(
            sd["conv1.bn.running_var"].view(1, -1, 1, 1) + 1e-5)
        z = z * sd["conv1.bn.weight"].view(1, -1, 1, 1) + sd["conv1.bn.bias"].view(1, -1, 1, 1)
        z = torch.where(z >= 0, z, z * sd["conv1.prelu.weight"].view(1, -1, 1, 1))
        torch.testing.assert_close(body.conv1(x112), z, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("layout_kind", ["bare", "state_dict", "dataparallel"])
def test_other_dict_layouts(tmp_path, layout_kind):
    sd = random_state(3)
    obj = {"bare": sd, "state_dict": {"state_dict": sd, "epoch": 1},
           "dataparallel": {"net_state_dict": OrderedDict((f"module.{k}", v) for k, v in sd.items())}}
    save_legacy(obj[layout_kind], tmp_path / "c.ckpt", location="cpu")
    tensors, _ = import_mobilefacenet(tmp_path / "c.ckpt")
    assert set(tensors) == set(sd) and torch.equal(tensors["linear1.conv.weight"], sd["linear1.conv.weight"])


def test_missing_renamed_or_misshapen_tensor_is_listed(tmp_path):
    sd = random_state(4)
    sd["linear1.weight"] = sd.pop("linear1.conv.weight")          # renamed
    del sd["blocks.7.conv.4.running_var"]                         # missing
    sd["conv1.conv.weight"] = torch.zeros(64, 3, 5, 5)            # wrong shape
    save_legacy({"epoch": 1, "net_state_dict": sd}, tmp_path / "bad.ckpt")
    with pytest.raises(ValueError) as err:
        import_mobilefacenet(tmp_path / "bad.ckpt")
    msg = str(err.value)
    for name in ("linear1.conv.weight", "linear1.weight", "blocks.7.conv.4.running_var",
                 "conv1.conv.weight [64, 3, 5, 5]"):
        assert name in msg


class _Open:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


class _Shell:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch '{self.marker}'",))


@pytest.mark.parametrize("payload", [_Open, _Shell])
@pytest.mark.parametrize("legacy", [True, False])
def test_pickle_payload_is_refused_and_not_executed(tmp_path, payload, legacy):
    marker = tmp_path / "executed"
    obj = {"epoch": 1, "net_state_dict": random_state(5), "extra": payload(marker)}
    path = tmp_path / "evil.ckpt"
    if legacy:
        save_legacy(obj, path)
    else:
        torch.save(obj, path)
    with pytest.raises(ValueError, match="refused"):
        import_mobilefacenet(path)
    assert not marker.exists()


# ------------------------------------------------------------------------------ facenet


def test_inception_resnet_v1_body_forward_backward():
    from facenet_pytorch import fixed_image_standardization

    bb = inception_resnet_v1()
    assert bb.channels == 1792 and list(bb.body._modules)[-1] == "block8"
    pix = torch.randint(0, 256, (2, 80, 80, 3), dtype=torch.uint8)
    x = bb.preprocessing.apply(pix)
    torch.testing.assert_close(x, fixed_image_standardization(pix.permute(0, 3, 1, 2).float()))
    out = bb.body.train()(x)
    assert out.shape == (2, 1792, 1, 1)
    out.mean().backward()
    assert bb.body.conv2d_1a.conv.weight.grad.abs().sum() > 0


def test_facenet_state_dict_import_matches_original_network(tmp_path):
    from facenet_pytorch import InceptionResnetV1

    torch.manual_seed(0)
    net = InceptionResnetV1(pretrained=None, classify=True, num_classes=7).eval()
    with torch.no_grad():                     # non-trivial BN statistics
        for m in net.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    path = tmp_path / "20180402-114759-vggface2.pt"
    torch.save(net.state_dict(), path)

    tensors, pre = import_facenet(path, "inception_resnet_v1")
    assert not any(k.startswith(("last_linear.", "last_bn.", "logits.")) for k in tensors)
    body = inception_resnet_v1().body
    assert list(tensors) == list(body.state_dict())
    body.load_state_dict(tensors)
    assert pre.mean == (127.5,) * 3 and pre.std == (128.0,) * 3 and pre.scale == 1.0

    captured = {}
    net.block8.register_forward_hook(lambda m, i, o: captured.setdefault("block8", o))
    x = torch.randn(2, 3, 80, 80, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        net(x)                                # the original network's own forward
        out = body.eval()(x)
    assert out.shape == (2, 1792, 1, 1) and out.std() > 0
    torch.testing.assert_close(out, captured["block8"])

    sd = torch.load(path, weights_only=True)
    sd["extra.weight"] = torch.zeros(3)
    del sd["block8.conv2d.weight"]
    torch.save(sd, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match=r"block8\.conv2d\.weight.*extra\.weight"):
        import_facenet(tmp_path / "bad.pt")

