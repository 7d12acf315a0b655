"""ResNet-50 and SE-ResNet-50 as trained on VGGFace2 (Cao et al. 2018), Caffe-style.

The architecture and every module/parameter name follow the public PyTorch conversion of the
authors' Caffe models, cydonia999/VGGFace2-pytorch (`models/resnet.py`, `models/senet.py`), so the
tensors of its `resnet50_ft_weight.pkl` / `senet50_ft_weight.pkl` map 1:1 onto the body's state
dict (minus `fc.*`, the 8631-identity classifier, which a body has not got).

How it differs from torchvision's ResNet-50 (which has the same parameter names and shapes, so
only these details tell the two apart):
  * the stride 2 of a downsampling bottleneck is on its FIRST 1x1 conv (`conv1`), not on the 3x3;
  * the stem max-pool is 3x3 / stride 2 / padding 0 with `ceil_mode=True` (Caffe's rounding):
    224 px -> 112 -> 56 as in torchvision (padding 1, floor), but the two differ when conv1's map
    is odd-sized, e.g. 66 px -> 33 -> 16 here, 17 in torchvision (and 15 with padding 0, floor);
  * BatchNorm eps 1e-5 (the PyTorch default, as in that repository).

Names inside the body (state-dict keys):
    conv1.weight, bn1.{weight,bias,running_mean,running_var,num_batches_tracked}
    layer{1..4}.{i}.conv1 / bn1      1x1 reduce (stride 2 in block 0 of layers 2-4)
    layer{1..4}.{i}.conv2 / bn2      3x3, stride 1, padding 1
    layer{1..4}.{i}.conv3 / bn3      1x1 increase (x4 channels)
    layer{1..4}.0.downsample.0 / .1  1x1 projection conv (stride as conv1) + its BatchNorm
  SE-ResNet-50 only (cydonia999's senet.py names the SE convs of a bottleneck conv4/conv5):
    layer{1..4}.{i}.conv4.{weight,bias}   1x1 squeeze, C -> C/16, with bias
    layer{1..4}.{i}.conv5.{weight,bias}   1x1 excite,  C/16 -> C, with bias
  Squeeze-excitation: global average pool of bn3's output -> conv4 -> ReLU -> conv5 -> sigmoid,
  which scales bn3's output before the residual is added (the same order as that repository).
  Its unused `SEModule` (`se_block.*`) is not part of the model and not in its weights.

The body returns the layer4 feature map (N, 2048, h, w); pooling and the head are the age model's.
Preprocessing of these weights: BGR pixels in 0..255 minus the BGR mean (91.4953, 103.8827,
131.0912) from the authors' `resnet50_ft.prototxt`, no scaling.

The Keras variants (`resnet50_keras`, `senet50_keras`: the keras-vggface 0.6 models whose `.h5`
releases the thesis used, see cascade.models.keras_h5) have the same names and shapes but compute
what Keras computes: the 7x7 / stride-2 stem conv with `padding='same'` pads TensorFlow's way
(total max((ceil(n/2) - 1) * 2 + 7 - n, 0), the odd pixel at the bottom / right: 2 and 3 at
224 px, where a symmetric padding of 3 would shift every map by half a pixel); the stem max-pool
is Keras's 'valid' 3x3 / 2 with floor rounding (224 px -> 112 -> 55, not 56); BatchNorm eps is
Keras's 1e-3 for ResNet-50 and keras-vggface's 1e-4 for SENet-50.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cascade.models.backbones import Backbone, Preprocessing

#: The VGGFace2 Caffe models' input: BGR, 0..255, mean subtracted (BGR order), std 1.
VGGFACE2_BGR = Preprocessing("BGR", 1.0, (91.4953, 103.8827, 131.0912), (1.0, 1.0, 1.0))

#: Bottlenecks per stage of a 50-layer ResNet.
LAYERS = (3, 4, 6, 3)
SE_REDUCTION = 16


def tf_same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """(before, after) padding of TensorFlow / Keras `padding='same'` along one axis: the output
    has ceil(size / stride) positions and an odd total goes to the end (bottom / right)."""
    total = max((-(-size // stride) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class SamePadConv2d(nn.Conv2d):
    """A Conv2d that pads as Keras `padding='same'` does (asymmetric when the total is odd),
    computed from each input's size; parameters named and shaped as a plain Conv2d's."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        top, bottom = tf_same_padding(x.shape[-2], self.kernel_size[0], self.stride[0])
        left, right = tf_same_padding(x.shape[-1], self.kernel_size[1], self.stride[1])
        return super().forward(F.pad(x, (left, right, top, bottom)))


class Bottleneck(nn.Module):
    """Caffe-style bottleneck: stride on the first 1x1 conv; optional squeeze-excitation."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1,
                 downsample: nn.Module | None = None, se: bool = False, eps: float = 1e-5):
        super().__init__()
        out = planes * self.expansion
        self.conv1 = nn.Conv2d(inplanes, planes, kernel_size=1, stride=stride, bias=False)
        self.bn1 = nn.BatchNorm2d(planes, eps=eps)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes, eps=eps)
        self.conv3 = nn.Conv2d(planes, out, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm2d(out, eps=eps)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride
        self.se = se
        if se:
            self.conv4 = nn.Conv2d(out, out // SE_REDUCTION, kernel_size=1, bias=True)
            self.conv5 = nn.Conv2d(out // SE_REDUCTION, out, kernel_size=1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.se:
            # cydonia999 pools with kernel_size=out.size(2), i.e. globally for square maps;
            # adaptive pooling is the same there and stays global for non-square inputs.
            w = F.adaptive_avg_pool2d(out, 1)
            w = torch.sigmoid(self.conv5(F.relu(self.conv4(w))))
            out = out * w
        return self.relu(out + residual)


class VGGFace2ResNet(nn.Module):
    """The convolutional body of the VGGFace2 ResNet-50 / SE-ResNet-50 (no avgpool, no fc);
    `keras=True`: the keras-vggface arithmetic (module docstring), `eps` its BatchNorm epsilon."""

    def __init__(self, se: bool = False, layers: tuple[int, ...] = LAYERS, keras: bool = False,
                 eps: float = 1e-5):
        super().__init__()
        self.inplanes = 64
        self.se = se
        self.eps = eps
        self.conv1 = (SamePadConv2d(3, 64, kernel_size=7, stride=2, bias=False) if keras
                      else nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False))
        self.bn1 = nn.BatchNorm2d(64, eps=eps)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=0, ceil_mode=not keras)
        self.layer1 = self._make_layer(64, layers[0], 1)
        self.layer2 = self._make_layer(128, layers[1], 2)
        self.layer3 = self._make_layer(256, layers[2], 2)
        self.layer4 = self._make_layer(512, layers[3], 2)
        for m in self.modules():   # the reference's initialisation (He normal, fan-out)
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def _make_layer(self, planes: int, blocks: int, stride: int) -> nn.Sequential:
        out = planes * Bottleneck.expansion
        downsample = None
        if stride != 1 or self.inplanes != out:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, out, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(out, eps=self.eps))
        layers = [Bottleneck(self.inplanes, planes, stride, downsample, self.se, self.eps)]
        self.inplanes = out
        layers += [Bottleneck(out, planes, se=self.se, eps=self.eps) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        return self.maxpool(self.relu(self.bn1(self.conv1(x))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        return self.layer4(x)


def resnet50_vggface2() -> Backbone:
    """ResNet-50 (VGGFace2, Caffe layout): 23.5M body parameters, 2048 output channels."""
    return Backbone(VGGFace2ResNet(se=False), 2048, VGGFACE2_BGR)


def senet50_vggface2() -> Backbone:
    """SE-ResNet-50 (VGGFace2, Caffe layout, SE reduction 16): 26.0M body parameters."""
    return Backbone(VGGFace2ResNet(se=True), 2048, VGGFACE2_BGR)


#: keras-vggface's BatchNorm epsilon per model: Keras's default for ResNet-50, 1e-4 for SENet-50.
KERAS_BN_EPS = {"resnet50_keras": 1e-3, "senet50_keras": 1e-4}


def resnet50_keras() -> Backbone:
    """ResNet-50 of keras-vggface 0.6 (VGGFace2 weights `rcmalli_vggface_tf_resnet50.h5`): the
    Caffe layout's names with Keras's arithmetic; input as keras-vggface `preprocess_input`
    version 2 (BGR minus the VGGFace2 mean)."""
    return Backbone(VGGFace2ResNet(se=False, keras=True, eps=KERAS_BN_EPS["resnet50_keras"]), 2048, VGGFACE2_BGR)


def senet50_keras() -> Backbone:
    """SE-ResNet-50 of keras-vggface 0.6 (`rcmalli_vggface_tf_senet50.h5`), as `resnet50_keras`."""
    return Backbone(VGGFace2ResNet(se=True, keras=True, eps=KERAS_BN_EPS["senet50_keras"]), 2048, VGGFACE2_BGR)
