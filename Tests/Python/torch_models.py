"""PyTorch models exported to ONNX the way users export them, for the ONNX importer (issue 27).
Tests only: the product never runs Python. Needs torch (Launch/setup-torch.sh), onnx and
onnxruntime (Launch/setup-python.sh).

    python3 torch_models.py export OUT [--models NAME ...] [--opsets 17 ...]
                                       [--exporters torchscript dynamo] [--batch dynamic|fixed]
                                       [--samples 16] [--seed 0] [--single-file]
    python3 torch_models.py train OUT [--epochs 3] [--subset N] [--data DIR] [--threads 1]
                                      [--opset 17] [--exporter torchscript]
    python3 torch_models.py broken OUT                    # files to refuse: missing initializer, truncated, ...
    python3 torch_models.py describe FILE.onnx ...        # the graph as text: nodes, attributes, initializers
    python3 torch_models.py list                          # the models and what the importer should do with them
    python3 torch_models.py raw FILE.npz                  # FILE.input.f32, FILE.ort.f32 (for tests in Swift)

export writes OUT/EXPORTER/opsetN/NAME.onnx (plus NAME.onnx.data when the exporter puts the
weights in an external file: the dynamo exporter does by default, even for tiny models; see
--single-file), NAME.npz and OUT/EXPORTER/opsetN/manifest.json. NAME.npz holds
  input         float32 [samples, C, H, W]: seeded random inputs (N(0,1); pixels in [0,1) for the
                models that normalise inside forward())
  ort_output    float32: onnxruntime's outputs for them (CPU provider, the exported file)
  torch_output  float32: PyTorch's outputs (eval mode)
  max_abs_diff, max_rel_diff: max|ort - torch| and max|ort - torch| / max|torch|
manifest.json lists, per model: its kind ("supported": the importer must reproduce ort_output
within 1e-4 relative; "unsupported": the importer must refuse it naming the node; "extra": graphs
that tell what PyTorch writes, no verdict asked), the requested and written opset, the IR
version, the op types, the external data files, the parameter count and the differences.

BatchNorm running statistics and affine parameters are randomised (seeded) before export, so that
a BN folded into the wrong place shows in the outputs. The exporters:
  torchscript  torch.onnx.export(..., dynamo=False): the TorchScript exporter (deprecated since
               torch 2.9, still present in 2.13); writes the requested opset.
  torchscript_nofold  the same with do_constant_folding=False: BatchNormalization nodes stay.
  dynamo       torch.onnx.export(..., dynamo=True), the default since torch 2.9 (needs
               onnxscript); implements opset >= 18 only and tries to convert down when a lower
               one is asked for, keeping 18 when the conversion fails.

train trains the CIFAR-style ResNet-20 in float on Fashion-MNIST (IDX files, pixels / 255, the
same recipe as a2q's float phase: Adam, lr 1e-3, cosine, batch 64), prints images/s and test
accuracy, and exports it like export does (OUT/resnet20_fmnist.onnx, .npz with the first
`--samples` test images, .json with the accuracy).
"""
import argparse
import gzip
import json
import math
import os
import sys
import time
import warnings

import numpy as np
import onnx
import onnxruntime
import torch
import torch.nn as nn
import torch.nn.functional as F


# ----------------------------------------------------------------------------------------------
# Models


class BasicBlock(nn.Module):
    """CIFAR-style basic block (He et al. 2016, Sec. 4.2) with option-B shortcuts: a 1×1 conv + BN
    projection when the shape changes, otherwise an empty nn.Sequential (identity)."""

    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNetCIFAR(nn.Module):
    """ResNet-6n+2 for CIFAR (resnet20: n = 3), 16/32/64 channels, the layout of a2q's built-in
    resnet20. pool: "adaptive" (F.adaptive_avg_pool2d(x, 1)), "mean" (x.mean((2, 3))) or "module"
    (nn.AdaptiveAvgPool2d(1)); flatten: "flatten" (torch.flatten(x, 1)) or "view"
    (x.view(x.size(0), -1)); with pool "mean" the result is already 2-D and nothing is flattened."""

    def __init__(self, in_channels=3, num_classes=10, blocks=3, pool="adaptive", flatten="flatten"):
        super().__init__()
        self.pool_kind, self.flatten_kind = pool, flatten
        self.conv1 = nn.Conv2d(in_channels, 16, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        cin = 16
        for index, width in enumerate([16, 32, 64]):
            layers = []
            for block in range(blocks):
                stride = 2 if index > 0 and block == 0 else 1
                layers.append(BasicBlock(cin, width, stride))
                cin = width
            setattr(self, f"layer{index + 1}", nn.Sequential(*layers))
        if pool == "module":
            self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        if self.pool_kind == "mean":
            x = x.mean((2, 3))
        else:
            x = self.avgpool(x) if self.pool_kind == "module" else F.adaptive_avg_pool2d(x, 1)
            x = x.view(x.size(0), -1) if self.flatten_kind == "view" else torch.flatten(x, 1)
        return self.fc(x)


class TVBasicBlock(nn.Module):
    """torchvision's BasicBlock (resnet18/34), written out: downsample is None or 1×1 conv + BN."""
    expansion = 1

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x):
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        return self.relu(out)


class ResNet18For32(nn.Module):
    """torchvision's resnet18 (same module names: conv1, bn1, relu, layer1..4, avgpool, fc) adapted
    to 32×32 inputs the usual way: a 3×3 stride-1 stem conv and no max pool. 11.17M parameters."""

    def __init__(self, in_channels=3, num_classes=10, layers=(2, 2, 2, 2)):
        super().__init__()
        self.inplanes = 64
        self.conv1 = nn.Conv2d(in_channels, 64, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = self._make_layer(64, layers[0])
        self.layer2 = self._make_layer(128, layers[1], stride=2)
        self.layer3 = self._make_layer(256, layers[2], stride=2)
        self.layer4 = self._make_layer(512, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def _make_layer(self, planes, blocks, stride=1):
        downsample = None
        if stride != 1 or self.inplanes != planes:
            downsample = nn.Sequential(nn.Conv2d(self.inplanes, planes, 1, stride=stride, bias=False),
                                       nn.BatchNorm2d(planes))
        layers = [TVBasicBlock(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes
        layers += [TVBasicBlock(planes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = self.avgpool(x)
        x = torch.flatten(x, 1)
        return self.fc(x)


class SmallCNN(nn.Module):
    """Conv (bias) → ReLU → MaxPool → Conv → ReLU → MaxPool → flatten → Linear → ReLU → Linear.
    pool: "max" (nn.MaxPool2d(2)) or "avg" (nn.AvgPool2d(2)); flatten: "flatten" (nn.Flatten())
    or "view" (x.view(x.size(0), -1)); fc1_bias False gives the hidden Linear no bias; pad1 is the
    first conv's padding (0: a normalisation folded into it is exact, no border)."""

    def __init__(self, in_channels=1, size=28, num_classes=10, pool="max", flatten="flatten", fc1_bias=True, pad1=1):
        super().__init__()
        self.flatten_kind = flatten
        self.conv1 = nn.Conv2d(in_channels, 16, 3, padding=pad1)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
        self.pool = nn.MaxPool2d(2) if pool == "max" else nn.AvgPool2d(2)
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(32 * (((size + 2 * pad1 - 2) // 2) // 2) ** 2, 64, bias=fc1_bias)
        self.fc2 = nn.Linear(64, num_classes)

    def forward(self, x):
        x = self.pool(F.relu(self.conv1(x)))
        x = self.pool(F.relu(self.conv2(x)))
        x = x.view(x.size(0), -1) if self.flatten_kind == "view" else self.flatten(x)
        return self.fc2(F.relu(self.fc1(x)))


class Normalized(nn.Module):
    """A leading normalisation inside forward(), then a network. kind:
    "scalar"  (x - 0.2860) / 0.3530 with Python floats (Fashion-MNIST's mean and std)
    "buffers" (x - self.mean) / self.std with per-channel [1, C, 1, 1] buffers (CIFAR-10's)
    "muladd"  x * self.scale + self.shift, the same normalisation written as a Mul and an Add."""

    def __init__(self, net, kind, channels):
        super().__init__()
        self.kind = kind
        mean = [0.2860] if channels == 1 else [0.4914, 0.4822, 0.4465]
        std = [0.3530] if channels == 1 else [0.2470, 0.2435, 0.2616]
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1))
        self.register_buffer("scale", 1 / self.std)
        self.register_buffer("shift", -self.mean / self.std)
        self.net = net

    def forward(self, x):
        if self.kind == "scalar":
            x = (x - 0.2860) / 0.3530
        elif self.kind == "buffers":
            x = (x - self.mean) / self.std
        else:
            x = x * self.scale + self.shift
        return self.net(x)


class ConcatCNN(nn.Module):
    """Unsupported: two conv branches joined by torch.cat along channels (an ONNX Concat)."""

    def __init__(self):
        super().__init__()
        self.branch_a = nn.Conv2d(1, 8, 3, padding=1)
        self.branch_b = nn.Conv2d(1, 8, 1)
        self.conv = nn.Conv2d(16, 16, 3, stride=2, padding=1)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        x = torch.cat([F.relu(self.branch_a(x)), F.relu(self.branch_b(x))], dim=1)
        x = F.relu(self.conv(x))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class ActivationCNN(nn.Module):
    """Unsupported: an op a2q does not have between two convs: "sigmoid" (Sigmoid) or "softmax"
    (a channel softmax in the middle of the network, not at the end)."""

    def __init__(self, kind):
        super().__init__()
        self.kind = kind
        self.conv1 = nn.Conv2d(1, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 16, 3, stride=2, padding=1)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        x = self.conv1(x)
        x = torch.sigmoid(x) if self.kind == "sigmoid" else torch.softmax(x, dim=1)
        x = F.relu(self.conv2(x))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class GroupedCNN(nn.Module):
    """Extra: a grouped (groups=4) and a depthwise (groups=C) conv, and a dilated conv."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.grouped = nn.Conv2d(16, 32, 3, padding=1, groups=4, bias=False)
        self.bn2 = nn.BatchNorm2d(32)
        self.depthwise = nn.Conv2d(32, 32, 3, stride=2, padding=1, groups=32, bias=False)
        self.dilated = nn.Conv2d(32, 32, 3, padding=2, dilation=2)
        self.fc = nn.Linear(32, 10)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.grouped(x)))
        x = F.relu(self.dilated(F.relu(self.depthwise(x))))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class MobileNetBlock(nn.Module):
    """A MobileNet-style network (grouped convolution): a stem conv (groups `stem_groups`, padding
    `pad1`), a depthwise-separable block (3x3 depthwise, groups = C, and a 1x1 pointwise conv, each
    with BatchNorm and ReLU), a strided depthwise conv with a channel multiplier of 2 (groups = C,
    2C outputs), a grouped 3x3 conv with a bias (groups = 4), the global average pool and a
    classifier."""

    def __init__(self, in_channels=3, stem_groups=1, pad1=1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 12, 3, padding=pad1, groups=stem_groups, bias=False)
        self.bn1 = nn.BatchNorm2d(12)
        self.dw1 = nn.Conv2d(12, 12, 3, padding=1, groups=12, bias=False)
        self.bn_dw1 = nn.BatchNorm2d(12)
        self.pw1 = nn.Conv2d(12, 32, 1, bias=False)
        self.bn_pw1 = nn.BatchNorm2d(32)
        self.dw2 = nn.Conv2d(32, 64, 3, stride=2, padding=1, groups=32, bias=False)
        self.bn_dw2 = nn.BatchNorm2d(64)
        self.grouped = nn.Conv2d(64, 64, 3, padding=1, groups=4)
        self.fc = nn.Linear(64, 10)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn_dw1(self.dw1(x)))
        x = F.relu(self.bn_pw1(self.pw1(x)))
        x = F.relu(self.bn_dw2(self.dw2(x)))
        x = F.relu(self.grouped(x))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class AvgPoolNet(nn.Module):
    """Average pooling over windows (nn.AvgPool2d) where PyTorch models use it: a 3x3 stride-2 pool with
    padding 1 after the stem (the padding counted in the divisor: count_include_pad=True, PyTorch's
    default), a ResNet-D downsampling block whose shortcut is nn.AvgPool2d(2) then a 1x1 conv and
    BatchNorm, and a 2x2 pool before the classifier. 1x28x28: 28 -> 14 -> 7 -> 3."""

    def __init__(self, in_channels=1, num_classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 16, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.pool1 = nn.AvgPool2d(3, stride=2, padding=1)
        self.conv2 = nn.Conv2d(16, 32, 3, stride=2, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(32)
        self.conv3 = nn.Conv2d(32, 32, 3, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(32)
        self.shortcut = nn.Sequential(nn.AvgPool2d(2), nn.Conv2d(16, 32, 1, bias=False), nn.BatchNorm2d(32))
        self.pool2 = nn.AvgPool2d(2)
        self.fc = nn.Linear(32 * 3 * 3, num_classes)

    def forward(self, x):
        x = self.pool1(F.relu(self.bn1(self.conv1(x))))
        out = self.bn3(self.conv3(F.relu(self.bn2(self.conv2(x)))))
        x = F.relu(out + self.shortcut(x))
        return self.fc(torch.flatten(self.pool2(x), 1))


class AvgPoolVariant(nn.Module):
    """Unsupported: an nn.AvgPool2d(**options) a2q does not compute (count_include_pad=False with
    padding: border windows divide by the pixels they cover; ceil_mode=True; a non-square kernel)."""

    def __init__(self, **options):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, padding=1)
        self.pool = nn.AvgPool2d(**options)
        self.fc = nn.Linear(8, 10)

    def forward(self, x):
        x = self.pool(F.relu(self.conv1(x)))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


# name: (constructor, input shape [C, H, W], kind, what it is, dynamic H/W)
MODELS = {
    "resnet20_fmnist": (lambda: ResNetCIFAR(1), (1, 28, 28), "supported",
                        "CIFAR ResNet-20, option-B shortcuts, F.adaptive_avg_pool2d + torch.flatten", False),
    "resnet20_cifar": (lambda: ResNetCIFAR(3), (3, 32, 32), "supported", "CIFAR ResNet-20 on 3x32x32", False),
    "resnet20_mean_pool": (lambda: ResNetCIFAR(1, pool="mean"), (1, 28, 28), "supported",
                           "ResNet-20 with x.mean((2, 3)) as the global pool", False),
    "resnet20_view": (lambda: ResNetCIFAR(1, pool="module", flatten="view"), (1, 28, 28), "supported",
                      "ResNet-20 with nn.AdaptiveAvgPool2d(1) and x.view(x.size(0), -1)", False),
    "resnet18_32": (lambda: ResNet18For32(3), (3, 32, 32), "supported",
                    "torchvision-style ResNet-18, 3x3 stride-1 stem, no max pool (11.17M parameters)", False),
    "small_cnn": (lambda: SmallCNN(1, 28), (1, 28, 28), "supported",
                  "Conv+bias, MaxPool, nn.Flatten, Linear", False),
    "small_cnn_view_avg": (lambda: SmallCNN(1, 28, pool="avg", flatten="view", fc1_bias=False), (1, 28, 28),
                           "supported", "AvgPool2d(2), x.view(x.size(0), -1), Linear without bias", False),
    "avgpool_net": (AvgPoolNet, (1, 28, 28), "supported",
                    "AvgPool2d(3, 2, padding=1) after the stem, an AvgPool2d(2) + 1x1 conv shortcut (ResNet-D), "
                    "AvgPool2d(2) before the classifier", False),
    "avgpool_exclude_pad": (lambda: AvgPoolVariant(kernel_size=3, stride=2, padding=1, count_include_pad=False), (1, 28, 28),
                            "unsupported", "AvgPool2d(3, 2, 1, count_include_pad=False)", False),
    "avgpool_ceil": (lambda: AvgPoolVariant(kernel_size=2, ceil_mode=True), (1, 27, 27), "unsupported",
                     "AvgPool2d(2, ceil_mode=True) on an odd size", False),
    "avgpool_rectangular": (lambda: AvgPoolVariant(kernel_size=(2, 3)), (1, 28, 28), "unsupported",
                            "AvgPool2d((2, 3)): a non-square window", False),
    "small_cnn_view": (lambda: SmallCNN(1, 28, flatten="view", fc1_bias=False), (1, 28, 28), "supported",
                       "MaxPool, x.view(x.size(0), -1), Linear without bias (TorchScript: MatMul)", False),
    "small_cnn_nopad": (lambda: SmallCNN(1, 28, pad1=0), (1, 28, 28), "supported",
                        "small_cnn whose first conv has no padding (for --input-mean/--input-std folds)", False),
    "norm_muladd_nopad_cnn": (lambda: Normalized(SmallCNN(3, 32, pad1=0), "muladd", 3), (3, 32, 32), "supported",
                              "x * scale + shift, then a small_cnn whose first conv has no padding (the fold is exact)",
                              False),
    "norm_scalar_cnn": (lambda: Normalized(SmallCNN(1, 28), "scalar", 1), (1, 28, 28), "supported",
                        "(x - 0.2860) / 0.3530 in forward(), then small_cnn", False),
    "norm_buffers_resnet20": (lambda: Normalized(ResNetCIFAR(3), "buffers", 3), (3, 32, 32), "supported",
                              "(x - mean) / std with per-channel buffers, then ResNet-20", False),
    "norm_muladd_cnn": (lambda: Normalized(SmallCNN(3, 32), "muladd", 3), (3, 32, 32), "supported",
                        "x * scale + shift with per-channel buffers, then small_cnn", False),
    "concat_cnn": (ConcatCNN, (1, 28, 28), "unsupported", "torch.cat of two conv branches (Concat)", False),
    "sigmoid_cnn": (lambda: ActivationCNN("sigmoid"), (1, 28, 28), "unsupported", "Sigmoid between convs", False),
    "softmax_mid_cnn": (lambda: ActivationCNN("softmax"), (1, 28, 28), "unsupported",
                        "channel Softmax between convs", False),
    "dynamic_hw_resnet20": (lambda: ResNetCIFAR(1), (1, 28, 28), "unsupported",
                            "ResNet-20 exported with dynamic height and width", True),
    "grouped_cnn": (GroupedCNN, (3, 32, 32), "extra", "grouped, depthwise and dilated convs", False),
    "mobilenet_block": (MobileNetBlock, (3, 32, 32), "supported",
                        "depthwise (groups = C, channel multipliers 1 and 2), pointwise and grouped (groups = 4) convs", False),
    "norm_muladd_mobilenet": (lambda: Normalized(MobileNetBlock(3, stem_groups=3, pad1=0), "muladd", 3), (3, 32, 32),
                              "supported", "x * scale + shift, then mobilenet_block with a depthwise, unpadded stem "
                              "(groups = 3: the fold into a grouped conv)", False),
}

NORMALIZED = {"norm_scalar_cnn", "norm_buffers_resnet20", "norm_muladd_cnn", "norm_muladd_nopad_cnn", "norm_muladd_mobilenet"}


def randomize_batchnorm(model, generator):
    """Non-trivial BN statistics and affine parameters (a fresh BN is the identity in eval mode)."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=generator) * 0.2)
                m.running_var.copy_(torch.rand(n, generator=generator) * 1.5 + 0.5)
                m.weight.copy_(torch.rand(n, generator=generator) + 0.5)
                m.bias.copy_(torch.randn(n, generator=generator) * 0.1)
    return model


def build(name, seed):
    torch.manual_seed(seed)
    model = MODELS[name][0]()
    return randomize_batchnorm(model, torch.Generator().manual_seed(seed + 1)).eval()


def sample_inputs(name, count, seed):
    shape = (count,) + tuple(MODELS[name][1])
    rng = np.random.default_rng(seed)
    if name in NORMALIZED:
        return rng.random(shape, dtype=np.float32)
    return rng.standard_normal(shape, dtype=np.float32)


# ----------------------------------------------------------------------------------------------
# Export


def export(model, example, path, exporter, opset, batch="dynamic", dynamic_hw=False, single_file=False):
    """torch.onnx.export(model.eval(), ...) as a user writes it; returns the messages it warned."""
    model = model.eval()
    names = dict(input_names=["input"], output_names=["output"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if exporter in ("torchscript", "torchscript_nofold"):
            axes = None
            if batch == "dynamic" or dynamic_hw:
                axes = {"input": {0: "batch"}, "output": {0: "batch"}}
                if dynamic_hw:
                    axes["input"].update({2: "height", 3: "width"})
            torch.onnx.export(model, (example,), path, dynamo=False, opset_version=opset,
                              dynamic_axes=axes, do_constant_folding=exporter == "torchscript", **names)
        else:
            shapes = None
            if batch == "dynamic" or dynamic_hw:
                dims = {0: torch.export.Dim("batch", min=1, max=4096)}
                if dynamic_hw:
                    dims.update({2: torch.export.Dim.DYNAMIC, 3: torch.export.Dim.DYNAMIC})
                shapes = ({k: v for k, v in dims.items()},)
            extra = {"external_data": False} if single_file else {}
            torch.onnx.export(model, (example,), path, dynamo=True, opset_version=opset,
                              dynamic_shapes=shapes, verbose=False, **extra, **names)
    return sorted({str(w.message).splitlines()[0][:200] for w in caught})


def run_ort(path, inputs):
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    session = onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: inputs})[0]


def summarize(path):
    mp = onnx.load(path, load_external_data=False)
    external = sorted({entry.value for t in mp.graph.initializer for entry in t.external_data
                       if entry.key == "location"})
    ops = {}
    for n in mp.graph.node:
        ops[n.op_type] = ops.get(n.op_type, 0) + 1
    return {
        "ir_version": mp.ir_version,
        "opset": {o.domain or "ai.onnx": o.version for o in mp.opset_import},
        "producer": f"{mp.producer_name} {mp.producer_version}",
        "ops": ops,
        "nodes": len(mp.graph.node),
        "initializers": len(mp.graph.initializer),
        "value_info": len(mp.graph.value_info),
        "external_data": external,
        "bytes": os.path.getsize(path) + sum(os.path.getsize(os.path.join(os.path.dirname(path), e)) for e in external),
    }


def export_and_check(model, name, folder, exporter, opset, inputs, batch, dynamic_hw=False, single_file=False):
    path = os.path.join(folder, f"{name}.onnx")
    for stale in (path, path + ".data"):
        if os.path.exists(stale):
            os.remove(stale)
    example = torch.from_numpy(inputs if batch == "fixed" else inputs[:2])
    start = time.time()
    messages = export(model, example, path, exporter, opset, batch, dynamic_hw, single_file)
    seconds = time.time() - start
    with torch.no_grad():
        expected = model(torch.from_numpy(inputs)).numpy()
    got = run_ort(path, inputs)
    abs_diff = float(np.max(np.abs(got - expected)))
    rel_diff = abs_diff / max(float(np.max(np.abs(expected))), 1e-30)
    np.savez(os.path.join(folder, f"{name}.npz"), input=inputs, ort_output=got, torch_output=expected,
             max_abs_diff=abs_diff, max_rel_diff=rel_diff)
    entry = summarize(path)
    entry.update(file=f"{name}.onnx", export_seconds=round(seconds, 2), max_abs_diff=abs_diff,
                 max_rel_diff=rel_diff, warnings=messages,
                 parameters=sum(p.numel() for p in model.parameters()))
    return entry


def command_export(args):
    names = args.models or list(MODELS)
    for exporter in args.exporters:
        for opset in args.opsets:
            folder = os.path.join(args.out, exporter, f"opset{opset}")
            os.makedirs(folder, exist_ok=True)
            manifest = {"torch": torch.__version__, "onnx": onnx.__version__,
                        "onnxruntime": onnxruntime.__version__, "exporter": exporter,
                        "requested_opset": opset, "batch": args.batch, "models": {}}
            for name in names:
                _, shape, kind, what, dynamic_hw = MODELS[name]
                entry = {"kind": kind, "what": what, "input_shape": list(shape), "dynamic_hw": dynamic_hw}
                try:
                    model = build(name, args.seed)
                    inputs = sample_inputs(name, args.samples, args.seed)
                    entry.update(export_and_check(model, name, folder, exporter, opset, inputs, args.batch,
                                                  dynamic_hw, args.single_file))
                    status = f"ok  opset {entry['opset'].get('ai.onnx')}  rel {entry['max_rel_diff']:.2e}"
                except Exception as error:  # noqa: BLE001 - recorded, the other models go on
                    entry["error"] = f"{type(error).__name__}: {str(error).splitlines()[0][:300] if str(error) else ''}"
                    status = "FAILED " + entry["error"]
                manifest["models"][name] = entry
                print(f"{exporter:11s} opset {opset:2d}  {name:24s} {status}", flush=True)
            with open(os.path.join(folder, "manifest.json"), "w") as f:
                json.dump(manifest, f, indent=1)
    return 0


def command_broken(args):
    """Files the importer must refuse, made from small_cnn (TorchScript exporter, opset 17) and its
    dynamo export with external data: a missing initializer, a truncated file, a file that is not
    ONNX, an external-data file that is missing; and two Conv+BN models: BatchNorm in training form,
    BatchNorm after a ReLU. Each with what the refusal should name."""
    os.makedirs(args.out, exist_ok=True)
    model = build("small_cnn", args.seed)
    example = torch.from_numpy(sample_inputs("small_cnn", 2, args.seed))
    base = os.path.join(args.out, "base_small_cnn.onnx")
    export(model, example, base, "torchscript", 17)
    expected = {}

    mp = onnx.load(base)
    victim = next(n for n in mp.graph.node if n.op_type == "Conv" and n.name.startswith("/conv2"))
    kept = [t for t in mp.graph.initializer if t.name != victim.input[1]]
    del mp.graph.initializer[:]
    mp.graph.initializer.extend(kept)
    onnx.save(mp, os.path.join(args.out, "missing_initializer.onnx"))
    expected["missing_initializer.onnx"] = f"node {victim.name} ({victim.op_type}): input {victim.input[1]} is neither an initializer nor computed"

    raw = open(base, "rb").read()
    with open(os.path.join(args.out, "truncated.onnx"), "wb") as f:
        f.write(raw[:len(raw) // 2])
    expected["truncated.onnx"] = f"truncated protobuf ({len(raw) // 2} of {len(raw)} bytes)"

    with open(os.path.join(args.out, "not_onnx.onnx"), "w") as f:
        f.write("this is not an ONNX model\n")
    expected["not_onnx.onnx"] = "not an ONNX ModelProto"

    with open(os.path.join(args.out, "empty.onnx"), "wb"):
        pass
    expected["empty.onnx"] = "empty file"

    external = os.path.join(args.out, "missing_external_data.onnx")
    export(model, example, external, "dynamo", 18)
    os.remove(external + ".data")
    first = next(t for t in onnx.load(external, load_external_data=False).graph.initializer if t.external_data)
    expected["missing_external_data.onnx"] = f"initializer {first.name}: external data file missing_external_data.onnx.data not found"

    # BatchNorm in training form (training_mode=1, 3 outputs) and a BatchNorm after a ReLU.
    class ConvBN(nn.Module):
        def __init__(self, bn_after_relu):
            super().__init__()
            self.bn_after_relu = bn_after_relu
            self.conv = nn.Conv2d(1, 8, 3, padding=1, bias=False)
            self.bn = nn.BatchNorm2d(8)
            self.fc = nn.Linear(8, 10)

        def forward(self, x):
            x = self.bn(F.relu(self.conv(x))) if self.bn_after_relu else F.relu(self.bn(self.conv(x)))
            return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(ConvBN(False).train(), (example,), os.path.join(args.out, "bn_training_mode.onnx"), dynamo=False,
                          opset_version=17, training=torch.onnx.TrainingMode.TRAINING, do_constant_folding=False,
                          input_names=["input"], output_names=["output"])
        torch.onnx.export(ConvBN(True).eval(), (example,), os.path.join(args.out, "bn_after_relu.onnx"), dynamo=False,
                          opset_version=17, input_names=["input"], output_names=["output"])
    expected["bn_training_mode.onnx"] = "node /bn/BatchNormalization (BatchNormalization): training_mode=1"
    expected["bn_after_relu.onnx"] = "node /bn/BatchNormalization (BatchNormalization) after a Relu, not after a Conv or Gemm"

    os.remove(base)
    with open(os.path.join(args.out, "expected.json"), "w") as f:
        json.dump(expected, f, indent=1)
    for name, why in expected.items():
        print(f"{name:30s} {why}")
    return 0


# ----------------------------------------------------------------------------------------------
# Training on Fashion-MNIST


def read_idx(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        raw = f.read()
    dims = raw[3]
    shape = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def load_split(data, split):
    def find(stem):
        for candidate in (stem, stem + ".gz"):
            if os.path.exists(os.path.join(data, candidate)):
                return os.path.join(data, candidate)
        raise FileNotFoundError(f"{stem}[.gz] not in {data}")
    prefix = "train" if split == "train" else "t10k"
    images = read_idx(find(f"{prefix}-images-idx3-ubyte")).astype(np.float32) / 255.0
    labels = read_idx(find(f"{prefix}-labels-idx1-ubyte")).astype(np.int64)
    return torch.from_numpy(images[:, None]), torch.from_numpy(labels)


def evaluate(model, images, labels, batch=500):
    model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(images), batch):
            correct += (model(images[i:i + batch]).argmax(1) == labels[i:i + batch]).sum().item()
    return correct / len(images)


def command_train(args):
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    train_x, train_y = load_split(args.data, "train")
    test_x, test_y = load_split(args.data, "test")
    if args.subset:
        train_x, train_y = train_x[:args.subset], train_y[:args.subset]
    if args.test_limit:
        test_x, test_y = test_x[:args.test_limit], test_y[:args.test_limit]
    model = ResNetCIFAR(1)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    steps_per_epoch = math.ceil(len(train_x) / args.batch_size)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=args.epochs * steps_per_epoch)
    generator = torch.Generator().manual_seed(args.seed)
    log = []
    for epoch in range(args.epochs):
        model.train()
        order = torch.randperm(len(train_x), generator=generator)
        start, seen, loss_sum = time.time(), 0, 0.0
        for i in range(0, len(train_x), args.batch_size):
            index = order[i:i + args.batch_size]
            loss = F.cross_entropy(model(train_x[index]), train_y[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
            seen += len(index)
            loss_sum += loss.item() * len(index)
        seconds = time.time() - start
        accuracy = evaluate(model, test_x, test_y)
        record = {"epoch": epoch + 1, "train_images": seen, "seconds": round(seconds, 2),
                  "images_per_second": round(seen / seconds, 1), "train_loss": loss_sum / seen,
                  "test_accuracy": accuracy, "test_images": len(test_x), "threads": args.threads}
        log.append(record)
        print(json.dumps(record), flush=True)
    os.makedirs(args.out, exist_ok=True)
    model.eval()
    inputs = test_x[:args.samples].numpy()
    entry = export_and_check(model, "resnet20_fmnist", args.out, args.exporter, args.opset, inputs, "dynamic",
                             single_file=True)
    entry.update(training=log, recipe={"optimizer": "Adam", "lr": args.lr, "schedule": "cosine per step",
                                       "batch": args.batch_size, "epochs": args.epochs,
                                       "inputs": "pixels / 255", "subset": args.subset or None})
    torch.save(model.state_dict(), os.path.join(args.out, "resnet20_fmnist.pt"))
    with open(os.path.join(args.out, "resnet20_fmnist.json"), "w") as f:
        json.dump(entry, f, indent=1)
    print(f"exported {os.path.join(args.out, 'resnet20_fmnist.onnx')}: ort vs torch rel {entry['max_rel_diff']:.2e}")
    return 0


# ----------------------------------------------------------------------------------------------
# Describe


def attribute_text(a):
    value = onnx.helper.get_attribute_value(a)
    if isinstance(value, bytes):
        value = value.decode(errors="replace")
    elif isinstance(value, onnx.TensorProto):
        array = onnx.numpy_helper.to_array(value)
        value = f"tensor{list(array.shape)}{array.dtype}" + (f"={array.tolist()}" if array.size <= 8 else "")
    return f"{a.name}={value}"


def shape_text(value_info):
    t = value_info.type.tensor_type
    dims = [d.dim_param if d.HasField("dim_param") else (d.dim_value if d.HasField("dim_value") else "?")
            for d in t.shape.dim] if t.HasField("shape") else "no shape"
    return f"{value_info.name}: {onnx.TensorProto.DataType.Name(t.elem_type)} {dims}"


def describe(path, out=sys.stdout, max_nodes=None, brief=False, node_metadata=False):
    mp = onnx.load(path, load_external_data=False)
    g = mp.graph
    p = lambda *a: print(*a, file=out)  # noqa: E731
    p(f"# {path}")
    p(f"ir_version {mp.ir_version}; opset_import {[(o.domain or 'ai.onnx', o.version) for o in mp.opset_import]}; "
      f"producer {mp.producer_name} {mp.producer_version}; graph name {g.name!r}; "
      f"{len(g.node)} nodes, {len(g.initializer)} initializers, {len(g.value_info)} value_info, "
      f"functions {len(mp.functions)}, metadata_props {[(m.key, m.value[:40]) for m in mp.metadata_props]}")
    for v in g.input:
        p("input  " + shape_text(v))
    for v in g.output:
        p("output " + shape_text(v))
    inits = {t.name: t for t in g.initializer}
    for t in g.initializer:
        location = [e.value for e in t.external_data if e.key == "location"]
        if brief and np.prod(t.dims) > 8:
            continue
        small = ""
        if not location and np.prod(t.dims) <= 8:
            small = f" = {onnx.numpy_helper.to_array(t).ravel().tolist()}"
        p(f"init   {t.name}: {onnx.TensorProto.DataType.Name(t.data_type)} {list(t.dims)}"
          + (f" external {location[0]}" if location else "") + small)
    if brief:
        p(f"(brief: {sum(1 for t in g.initializer if np.prod(t.dims) > 8)} initializers of more than 8 values "
          f"not listed, {sum(1 for t in g.initializer if any(e.key == 'location' for e in t.external_data))} external)")
    for i, n in enumerate(g.node):
        if max_nodes is not None and i >= max_nodes:
            p(f"... {len(g.node) - max_nodes} more nodes")
            break
        ins = [(x + "*" if x in inits else x) for x in n.input]
        p(f"node   {n.name or '(no name)'} [{n.op_type}] ({', '.join(ins)}) -> ({', '.join(n.output)})"
          + (f" {{{'; '.join(attribute_text(a) for a in n.attribute)}}}" if n.attribute else ""))
        if node_metadata:
            for prop in n.metadata_props:
                if prop.key in ("pkg.torch.onnx.name_scopes", "pkg.onnxscript.rewriter.rule_name"):
                    p(f"         {prop.key} = {prop.value}")
    if g.value_info:
        p(f"value_info (first 3 of {len(g.value_info)}): " + "; ".join(shape_text(v) for v in g.value_info[:3]))
    p("(* = an initializer)")


def command_describe(args):
    for path in args.files:
        describe(path, max_nodes=args.max_nodes, brief=args.brief, node_metadata=args.node_metadata)
        print()
    return 0


def command_list(_):
    for name, (_, shape, kind, what, dynamic_hw) in MODELS.items():
        print(f"{name:24s} {kind:12s} {'x'.join(map(str, shape)):8s} {what}")
    return 0


def command_raw(args):
    """NAME.npz's input and ort_output as little-endian float32 files NAME.input.f32 and NAME.ort.f32;
    prints their shapes as JSON (what the Swift tests read)."""
    for path in args.files:
        data = np.load(path)
        stem = path[:-len(".npz")] if path.endswith(".npz") else path
        shapes = {}
        for key, suffix in (("input", "input"), ("ort_output", "ort")):
            array = np.ascontiguousarray(data[key], dtype="<f4")
            array.tofile(f"{stem}.{suffix}.f32")
            shapes[suffix] = list(array.shape)
        print(json.dumps({"file": path, **shapes}))
    return 0


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    e = sub.add_parser("export")
    e.add_argument("out")
    e.add_argument("--models", nargs="+", choices=list(MODELS))
    e.add_argument("--opsets", nargs="+", type=int, default=[17])
    e.add_argument("--exporters", nargs="+", choices=["torchscript", "dynamo", "torchscript_nofold"],
                   default=["torchscript", "dynamo"],
                   help="torchscript_nofold: the TorchScript exporter with do_constant_folding=False, which keeps "
                        "BatchNormalization nodes instead of folding them into the convs")
    e.add_argument("--batch", choices=["dynamic", "fixed"], default="dynamic",
                   help="dynamic: a symbolic batch dimension (exported from a batch of 2); fixed: batch = --samples")
    e.add_argument("--samples", type=int, default=16)
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--single-file", action="store_true",
                   help="dynamo: external_data=False (weights inside the .onnx, as the TorchScript exporter does)")
    t = sub.add_parser("train")
    t.add_argument("out")
    t.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    t.add_argument("--epochs", type=int, default=3)
    t.add_argument("--subset", type=int, default=0, help="train on the first N training images (0: all)")
    t.add_argument("--test-limit", type=int, default=0, help="evaluate on the first N test images (0: all)")
    t.add_argument("--batch-size", type=int, default=64)
    t.add_argument("--lr", type=float, default=1e-3)
    t.add_argument("--threads", type=int, default=1)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--samples", type=int, default=16)
    t.add_argument("--opset", type=int, default=17)
    t.add_argument("--exporter", choices=["torchscript", "dynamo"], default="torchscript")
    d = sub.add_parser("describe")
    d.add_argument("files", nargs="+")
    d.add_argument("--max-nodes", type=int)
    d.add_argument("--brief", action="store_true", help="list only the initializers of at most 8 values")
    d.add_argument("--node-metadata", action="store_true",
                   help="print each node's name_scopes and rewrite rule (dynamo exporter's metadata_props)")
    b = sub.add_parser("broken")
    b.add_argument("out")
    b.add_argument("--seed", type=int, default=0)
    sub.add_parser("list")
    r = sub.add_parser("raw")
    r.add_argument("files", nargs="+")
    args = parser.parse_args(argv)
    return {"export": command_export, "train": command_train, "describe": command_describe,
            "broken": command_broken, "list": command_list, "raw": command_raw}[args.command](args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
