"""ResNet-18/34/50 encoders in plain torch whose parameter names are torchvision's.

``ResNetEncoder("resnet50", in_channels).state_dict()`` has the keys of ``torchvision.models.resnet50()``
without ``fc.*`` (``conv1.weight``, ``bn1.running_mean``, ``layer3.5.conv2.weight``, ``layer2.0.downsample.1.bias``
...), with the same shapes apart from ``conv1.weight``'s input channels, so published weight files (torchvision,
timm, SSL4EO-S12 and SatlasPretrain ResNets once their prefix is stripped: see encoder_weights.py) load as they
are. torchvision is never imported. ``dilate_last`` replaces the last stage's stride by a dilation (output stride
16, as DeepLabV3+ uses), as torchvision's ``replace_stride_with_dilation=[False, False, True]`` does.
"""
from torch import nn

# name: (block, blocks per stage)
DEPTHS = {"resnet18": ("basic", (2, 2, 2, 2)), "resnet34": ("basic", (3, 4, 6, 3)),
          "resnet50": ("bottleneck", (3, 4, 6, 3))}


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin: int, width: int, stride: int = 1, downsample=None, dilation: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, width, 3, stride, padding=dilation, dilation=dilation, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(width, width, 3, 1, padding=dilation, dilation=dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.downsample = downsample

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + identity)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin: int, width: int, stride: int = 1, downsample=None, dilation: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, padding=dilation, dilation=dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, width * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(width * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.relu(self.bn3(self.conv3(out)) + identity)


class ResNetEncoder(nn.Module):
    """Features at strides 2, 4, 8, 16 and 32 (16 with ``dilate_last``): ``forward(x) -> [f1, ..., f5]``."""

    def __init__(self, name: str, in_channels: int, dilate_last: bool = False):
        super().__init__()
        kind, counts = DEPTHS[name]
        block = BasicBlock if kind == "basic" else Bottleneck
        self.name = name
        self.conv1 = nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.cin, self.dilation = 64, 1
        self.layer1 = self._stage(block, 64, counts[0], 1)
        self.layer2 = self._stage(block, 128, counts[1], 2)
        self.layer3 = self._stage(block, 256, counts[2], 2)
        self.layer4 = self._stage(block, 512, counts[3], 2, dilate=dilate_last)
        self.channels = [64, 64 * block.expansion, 128 * block.expansion, 256 * block.expansion,
                         512 * block.expansion]
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        for module in self.modules():  # torchvision's zero_init_residual=False: the last BN keeps weight 1
            if isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def _stage(self, block, width: int, count: int, stride: int, dilate: bool = False) -> nn.Sequential:
        previous = self.dilation
        if dilate:
            self.dilation *= stride
            stride = 1
        downsample = None
        if stride != 1 or self.cin != width * block.expansion:
            downsample = nn.Sequential(nn.Conv2d(self.cin, width * block.expansion, 1, stride, bias=False),
                                       nn.BatchNorm2d(width * block.expansion))
        layers = [block(self.cin, width, stride, downsample, dilation=previous)]
        self.cin = width * block.expansion
        layers += [block(self.cin, width, dilation=self.dilation) for _ in range(1, count)]
        return nn.Sequential(*layers)

    def forward(self, x):
        f1 = self.relu(self.bn1(self.conv1(x)))
        f2 = self.layer1(self.maxpool(f1))
        f3 = self.layer2(f2)
        f4 = self.layer3(f3)
        return [f1, f2, f3, f4, self.layer4(f4)]
