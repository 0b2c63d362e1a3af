"""U-Net and DeepLabV3+ on ResNet-18/34/50 encoders (torchvision parameter names), by architecture name.

``unet_resnet18|34|50``: the ResNet's five feature maps (strides 2..32) feed a U-Net decoder (upsample x2,
concatenate the skip, two conv-BN-ReLU) as in segmentation-models-pytorch's Unet; decoder widths 16x, 8x,
4x, 2x, 1x the base width (256..16 at the default 16). ``deeplabv3plus_resnet18|34|50``: the ResNet at output
stride 16 (last stage dilated), atrous spatial pyramid pooling (rates 6, 12, 18), the stride-4 features
projected and fused, then upsampled to the input. Both keep the trainer's per-pixel branch (1x1 convolutions
of the pixel's own bands) beside the context before the last layer, as the built-in nets do (networks.py).

The encoder lives under ``encoder.``: ``model.encoder.state_dict()`` is a torchvision ResNet state dict less
``fc``, which is what ``encoder_weights.load_encoder_weights`` fills. Inputs of any size: padded to the stride
the net needs and cropped back. The ONNX export is the same as for every net: image in, probabilities out.
"""
import torch
import torch.nn.functional as F
from torch import nn

from .networks import _pad_to, _pixel_branch, conv_bn_relu
from .resnet import DEPTHS, ResNetEncoder


class _DecoderBlock(nn.Module):
    def __init__(self, cin: int, skip: int, cout: int):
        super().__init__()
        self.body = nn.Sequential(conv_bn_relu(cin + skip, cout), conv_bn_relu(cout, cout))

    def forward(self, x, skip=None):
        x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        return self.body(x if skip is None else torch.cat([x, skip], dim=1))


class EncoderNet(nn.Module):
    """What every encoder-decoder shares: ``encoder`` (a ResNetEncoder) and the per-pixel branch."""

    encoder: ResNetEncoder

    def encoder_parameters(self) -> list:
        return list(self.encoder.parameters())

    def decoder_parameters(self) -> list:
        own = {id(p) for p in self.encoder.parameters()}
        return [p for p in self.parameters() if id(p) not in own]


class UNetResNet(EncoderNet):
    def __init__(self, in_channels: int, num_classes: int, base_width: int = 16, encoder: str = "resnet34",
                 pixel_branch: bool = True):
        super().__init__()
        self.encoder = ResNetEncoder(encoder, in_channels)
        self.multiple = 32
        skips = self.encoder.channels[::-1][1:] + [0]          # stride 16, 8, 4, 2, then none at stride 1
        widths = [base_width * m for m in (16, 8, 4, 2, 1)]
        cins = [self.encoder.channels[-1]] + widths[:-1]
        self.blocks = nn.ModuleList(_DecoderBlock(c, s, w) for c, s, w in zip(cins, skips, widths))
        self.pixel = _pixel_branch(in_channels, base_width) if pixel_branch else None
        self.head = nn.Conv2d(base_width * (2 if pixel_branch else 1), num_classes, 1)

    def forward(self, x):
        x, height, width = _pad_to(x, self.multiple)
        features = self.encoder(x)
        y, skips = features[-1], features[:-1][::-1] + [None]
        for block, skip in zip(self.blocks, skips):
            y = block(y, skip)
        if self.pixel is not None:
            y = torch.cat([y, self.pixel(x)], dim=1)
        return self.head(y)[..., :height, :width]


class _ASPP(nn.Module):
    def __init__(self, cin: int, cout: int, rates=(6, 12, 18)):
        super().__init__()
        self.branches = nn.ModuleList([conv_bn_relu(cin, cout, kernel=1)] +
                                      [conv_bn_relu(cin, cout, dilation=r) for r in rates])
        # No batch norm on the pooled branch: it sees one value per channel and image.
        self.pooled = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(cin, cout, 1), nn.ReLU(inplace=True))
        self.project = nn.Sequential(conv_bn_relu(cout * (len(rates) + 2), cout, kernel=1), nn.Dropout(0.1))

    def forward(self, x):
        pooled = self.pooled(x).expand(-1, -1, x.shape[-2], x.shape[-1])
        return self.project(torch.cat([b(x) for b in self.branches] + [pooled], dim=1))


class DeepLabV3PlusResNet(EncoderNet):
    def __init__(self, in_channels: int, num_classes: int, base_width: int = 16, encoder: str = "resnet50",
                 pixel_branch: bool = True):
        super().__init__()
        self.encoder = ResNetEncoder(encoder, in_channels, dilate_last=True)
        self.multiple = 16
        width, low = 16 * base_width, 3 * base_width            # 256 and 48 at the default base width
        self.aspp = _ASPP(self.encoder.channels[-1], width)
        self.low = conv_bn_relu(self.encoder.channels[1], low, kernel=1)
        self.decoder = nn.Sequential(conv_bn_relu(width + low, width), conv_bn_relu(width, width))
        self.pixel = _pixel_branch(in_channels, base_width) if pixel_branch else None
        self.head = nn.Conv2d(width + (base_width if pixel_branch else 0), num_classes, 1)

    def forward(self, x):
        x, height, width = _pad_to(x, self.multiple)
        features = self.encoder(x)
        low, deep = features[1], self.aspp(features[-1])
        deep = F.interpolate(deep, size=low.shape[-2:], mode="bilinear", align_corners=False)
        y = self.decoder(torch.cat([deep, self.low(low)], dim=1))
        y = F.interpolate(y, size=x.shape[-2:], mode="bilinear", align_corners=False)
        if self.pixel is not None:
            y = torch.cat([y, self.pixel(x)], dim=1)
        return self.head(y)[..., :height, :width]


def _factory(cls, encoder):
    def build(in_channels: int, num_classes: int, base_width: int = 16):
        return cls(in_channels, num_classes, base_width=base_width, encoder=encoder)
    build.__name__ = f"{cls.__name__}_{encoder}"
    return build


ENCODER_NETWORKS = {f"{prefix}_{encoder}": _factory(cls, encoder)
                    for prefix, cls in (("unet", UNetResNet), ("deeplabv3plus", DeepLabV3PlusResNet))
                    for encoder in DEPTHS}
