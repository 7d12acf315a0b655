"""The VGGFace2 ResNet-50 / SE-ResNet-50 bodies: shapes, Caffe-style strides and pooling, names,
parameter counts, and equality with an independent reference (torchvision's ResNet-50 patched
to the Caffe layout)."""
import pytest
import torch
from torch import nn
from torchvision.models import resnet50 as tv_resnet50

from cascade.models.vggface2 import resnet50_vggface2, senet50_vggface2


@pytest.fixture(scope="module")
def resnet():
    torch.manual_seed(0)
    return resnet50_vggface2()


@pytest.fixture(scope="module")
def senet():
    torch.manual_seed(0)
    return senet50_vggface2()


def _conv1_size(n: int) -> int:                      # 7x7, stride 2, padding 3
    return (n + 2 * 3 - 7) // 2 + 1


def _caffe_pool_size(n: int) -> int:                 # 3x3, stride 2, padding 0, ceil
    return -(-(n - 3) // 2) + 1


@pytest.mark.parametrize("which", ["resnet", "senet"])
def test_forward_backward_shape(which, request):
    bb = request.getfixturevalue(which)
    assert bb.channels == 2048
    x = torch.randn(1, 3, 64, 64, requires_grad=True)
    y = bb.body(x)
    # 64 -> conv1 32 -> ceil pool 16 -> layer2 8 -> layer3 4 -> layer4 2
    assert _caffe_pool_size(_conv1_size(64)) == 16
    assert y.shape == (1, 2048, 2, 2)
    y.square().mean().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    assert bb.body.conv1.weight.grad is not None
    bb.body.zero_grad(set_to_none=True)


def test_stem_pool_is_caffe_ceil_mode(resnet):
    pool = resnet.body.maxpool
    assert pool.ceil_mode is True and pool.padding == 0 and pool.kernel_size == 3 and pool.stride == 2
    # 66 px -> conv1 33 (odd): Caffe's ceil pool gives 16; torchvision's padded floor pool 17
    with torch.no_grad():
        out = resnet.body.stem(torch.randn(1, 3, 66, 66))
    assert _conv1_size(66) == 33 and _caffe_pool_size(33) == 16
    assert out.shape[-2:] == (16, 16)
    assert nn.MaxPool2d(3, 2, padding=1)(torch.zeros(1, 1, 33, 33)).shape[-1] == 17


def test_downsampling_stride_on_first_1x1(resnet):
    for name in ("layer2", "layer3", "layer4"):
        block = getattr(resnet.body, name)[0]
        assert block.conv1.kernel_size == (1, 1) and block.conv1.stride == (2, 2)
        assert block.conv2.kernel_size == (3, 3) and block.conv2.stride == (1, 1)
        assert block.downsample[0].stride == (2, 2)
        for later in getattr(resnet.body, name)[1:]:
            assert later.conv1.stride == (1, 1) and later.downsample is None
    first = resnet.body.layer1[0]
    assert first.conv1.stride == (1, 1) and first.downsample[0].stride == (1, 1)


def test_parameter_counts_and_names(resnet, senet):
    n_res = sum(p.numel() for p in resnet.body.parameters())
    n_se = sum(p.numel() for p in senet.body.parameters())
    assert 23.4e6 < n_res < 23.6e6
    tv = tv_resnet50(weights=None)
    tv_body = sum(p.numel() for n, p in tv.named_parameters() if not n.startswith("fc."))
    assert n_res == tv_body                          # same tensors, only strides/pool differ
    # the names of the public conversion (= torchvision's naming, minus the classifier)
    assert set(resnet.body.state_dict()) == {k for k in tv.state_dict() if not k.startswith("fc.")}
    se_params = sum(2 * c * (c // 16) + c // 16 + c
                    for c, n in ((256, 3), (512, 4), (1024, 6), (2048, 3)) for _ in range(n))
    assert n_se == n_res + se_params
    assert 25.9e6 < n_se < 26.2e6


def test_se_only_in_senet(resnet, senet):
    res_keys, se_keys = set(resnet.body.state_dict()), set(senet.body.state_dict())
    assert not any(".conv4." in k or ".conv5." in k for k in res_keys)
    extra = se_keys - res_keys
    assert extra and all(".conv4." in k or ".conv5." in k for k in extra)
    assert len(extra) == 16 * 4                      # 16 blocks x conv4/conv5 x weight/bias
    assert senet.body.layer1[0].conv4.weight.shape == (16, 256, 1, 1)
    assert senet.body.layer4[2].conv5.weight.shape == (2048, 128, 1, 1)
    assert senet.body.layer4[2].conv5.bias is not None


def _caffe_reference(state: dict) -> nn.Module:
    """torchvision's ResNet-50 patched to the Caffe layout, loaded with `state`."""
    tv = tv_resnet50(weights=None)
    tv.maxpool = nn.MaxPool2d(3, 2, padding=0, ceil_mode=True)
    for name in ("layer2", "layer3", "layer4"):
        block = getattr(tv, name)[0]
        block.conv1.stride, block.conv2.stride = (2, 2), (1, 1)
    tv.fc = nn.Identity()
    tv.load_state_dict(state, strict=False)
    return nn.Sequential(tv.conv1, tv.bn1, tv.relu, tv.maxpool, tv.layer1, tv.layer2, tv.layer3,
                         tv.layer4).eval()


def _randomise_bn(module: nn.Module) -> None:
    g = torch.Generator().manual_seed(1)
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            c = m.num_features
            m.weight.data = torch.rand(c, generator=g) * 0.5 + 0.5
            m.bias.data = torch.randn(c, generator=g) * 0.1
            m.running_mean = torch.randn(c, generator=g) * 0.1
            m.running_var = torch.rand(c, generator=g) + 0.5


def test_resnet_matches_patched_torchvision(resnet):
    _randomise_bn(resnet.body)
    ref = _caffe_reference(resnet.body.state_dict())
    resnet.body.eval()
    x = torch.randn(2, 3, 66, 66)
    with torch.no_grad():
        ours, theirs = resnet.body(x), ref(x)
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-4)
    resnet.body.train()


def test_se_gate_open_equals_resnet(resnet, senet):
    """With the excitation forced to 1 (zero SE weights, large up-bias), SE-ResNet == ResNet."""
    state = resnet.body.state_dict()
    senet.body.load_state_dict(state, strict=False)
    for m in senet.body.modules():
        if hasattr(m, "conv4"):
            nn.init.zeros_(m.conv4.weight)
            nn.init.zeros_(m.conv5.weight)
            nn.init.constant_(m.conv5.bias, 40.0)
    x = torch.randn(1, 3, 64, 64)
    resnet.body.eval(), senet.body.eval()
    with torch.no_grad():
        torch.testing.assert_close(senet.body(x), resnet.body(x), rtol=1e-5, atol=1e-5)
        for m in senet.body.modules():              # gate closed: the block's main path vanishes
            if hasattr(m, "conv4"):
                nn.init.constant_(m.conv5.bias, -40.0)
        assert not torch.allclose(senet.body(x), resnet.body(x), atol=1e-3)
    resnet.body.train(), senet.body.train()


def test_preprocessing_is_caffe_bgr(resnet):
    pre = resnet.preprocessing
    assert pre.channels == "BGR" and pre.scale == 1.0 and pre.std == (1.0, 1.0, 1.0)
    assert pre.mean == (91.4953, 103.8827, 131.0912)
    px = torch.tensor([[[[10, 20, 200]]]], dtype=torch.uint8)            # one RGB pixel
    out = pre.apply(px).flatten()
    torch.testing.assert_close(out, torch.tensor([200 - 91.4953, 20 - 103.8827, 10 - 131.0912]))
