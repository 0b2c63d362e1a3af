"""Segmentation networks in plain torch, by name: any band count in, one logit map per class out.

``unet``: a U-Net (conv-BN-ReLU pairs, max-pool down, transposed-conv up, skip connections).
``deeplabv3plus``: a DeepLabV3+-like net: a small residual encoder with dilated convolutions at
output stride 8, atrous spatial pyramid pooling, and a decoder that fuses stride-4 features.
Both add a per-pixel branch (1x1 convolutions of the pixel's own bands) beside the spatial context before
their last layer: with sparse polygon labels a net otherwise leans on context and misses what the bands
alone say (measured on rstoolbox polygon cross-validation: 129 -> 86 wrong of 4410 held-out pixels; on
Zion 20 epochs: val mIoU 0.239 -> 0.251, overall accuracy 0.764 -> 0.769).
``pixel_context`` (pixel_nets.py): a per-pixel MLP whose class probabilities are averaged over 5x5 px
inside the net; for a few small training polygons, where a U-Net learns the polygons rather than the classes.
``unet_resnet18|34|50`` and ``deeplabv3plus_resnet18|34|50`` (encoders.py): the same two designs on ResNet
encoders whose parameter names are torchvision's, for pretrained encoder weights (encoder_weights.py).
``smp_unet`` appears only when segmentation-models-pytorch is importable (never required; no weights
are downloaded). Inputs of any size work: they are padded to the stride the net needs and cropped back.
"""
import torch
import torch.nn.functional as F
from torch import nn

from landcover_plugin.core.errors import BadInputError

from .pixel_nets import PixelContext


def conv_bn_relu(cin: int, cout: int, kernel: int = 3, stride: int = 1, dilation: int = 1,
                 padding_mode: str = "zeros") -> nn.Sequential:
    padding = dilation * (kernel // 2)
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, stride, padding, dilation=dilation, bias=False,
                                   padding_mode=padding_mode if padding else "zeros"),
                         nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


def _pad_to(x: torch.Tensor, multiple: int):
    height, width = int(x.shape[-2]), int(x.shape[-1])
    pad_h, pad_w = (-height) % multiple, (-width) % multiple
    if not pad_h and not pad_w and torch.onnx.is_in_onnx_export():
        # No pad and no crop in the graph: the exported model takes tiles of any multiple of ``multiple``
        # (a traced crop to the export size would be a constant and cut bigger tiles).
        return x, None, None
    if pad_h or pad_w:
        x = F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")
    return x, height, width


class UNet(nn.Module):
    """The U-Net. Its convolutions at 1/4 resolution and below pad by repeating the edge pixels
    (``edge_padding_from``: the first level that does; 0 = all, None = none) instead of zeros. With zero padding,
    a U-Net trained on 64 px chips saw the tile's zero border in its deepest features at every pixel, so its
    labels changed when it ran bigger tiles (Zion, 64 px chips, 3 min: 98.5 % of the labels kept at 128 px
    tiles, under the 99 % the classifier asks). Padded with edge pixels, the same net keeps 99.2 % up to 512 px
    (reflection: the same), so the classifier runs it at the bigger tile (core/classify/tile_size.py). Only
    the deep, small feature maps are padded so: reflection at every level kept 99.4 % but made the exported
    model 22-28 % slower on the CPU (a Pad before every convolution), the deep levels alone 4-6 %; the zero
    border of the full-resolution levels reaches a few pixels only, inside the blended overlap. Map quality on
    Zion's dense labels is unchanged: mIoU 0.2527 with edge padding against 0.2526 with zeros at the same seed
    (0.2517-0.2555 over seeds and runs). Edge rather than reflection padding because it works on 1 px maps too
    (8 px chips)."""

    def __init__(self, in_channels: int, num_classes: int, base_width: int = 16, depth: int = 4,
                 pixel_branch: bool = True, edge_padding_from: int = 2):
        super().__init__()
        widths = [base_width * 2 ** i for i in range(depth + 1)]
        self.multiple = 2 ** depth

        def pad(level: int) -> str:
            return "replicate" if edge_padding_from is not None and level >= edge_padding_from else "zeros"

        self.stem = nn.Sequential(conv_bn_relu(in_channels, widths[0], padding_mode=pad(0)),
                                  conv_bn_relu(widths[0], widths[0], padding_mode=pad(0)))
        self.downs = nn.ModuleList(
            nn.Sequential(nn.MaxPool2d(2), conv_bn_relu(widths[i], widths[i + 1], padding_mode=pad(i + 1)),
                          conv_bn_relu(widths[i + 1], widths[i + 1], padding_mode=pad(i + 1)))
            for i in range(depth))
        self.ups = nn.ModuleList(nn.ConvTranspose2d(widths[i + 1], widths[i], 2, stride=2)
                                 for i in reversed(range(depth)))
        self.fuse = nn.ModuleList(
            nn.Sequential(conv_bn_relu(2 * widths[i], widths[i], padding_mode=pad(i)),
                          conv_bn_relu(widths[i], widths[i], padding_mode=pad(i)))
            for i in reversed(range(depth)))
        self.pixel = _pixel_branch(in_channels, widths[0]) if pixel_branch else None
        self.head = nn.Conv2d(widths[0] * (2 if pixel_branch else 1), num_classes, 1)

    def forward(self, x):
        x, height, width = _pad_to(x, self.multiple)
        skips = [self.stem(x)]
        pixel = self.pixel(x) if self.pixel is not None else None
        for down in self.downs:
            skips.append(down(skips[-1]))
        y = skips.pop()
        for up, fuse in zip(self.ups, self.fuse):
            y = fuse(torch.cat([up(y), skips.pop()], dim=1))
        if pixel is not None:
            y = torch.cat([y, pixel], dim=1)
        return self.head(y)[..., :height, :width]


def _pixel_branch(cin: int, width: int) -> nn.Sequential:
    """Per-pixel features (1x1 convolutions only): the band values of the pixel itself, beside the context."""
    return nn.Sequential(conv_bn_relu(cin, width, kernel=1), conv_bn_relu(width, width, kernel=1))


class _Residual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int = 1, dilation: int = 1):
        super().__init__()
        self.body = nn.Sequential(
            conv_bn_relu(cin, cout, stride=stride, dilation=dilation),
            nn.Conv2d(cout, cout, 3, 1, dilation, dilation=dilation, bias=False), nn.BatchNorm2d(cout))
        self.skip = (nn.Identity() if stride == 1 and cin == cout else
                     nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)))

    def forward(self, x):
        return F.relu(self.body(x) + self.skip(x))


class _ASPP(nn.Module):
    def __init__(self, cin: int, cout: int, rates=(3, 6, 9)):
        super().__init__()
        self.branches = nn.ModuleList([conv_bn_relu(cin, cout, kernel=1)] +
                                      [conv_bn_relu(cin, cout, dilation=r) for r in rates])
        # No batch norm on the pooled branch: it sees one value per channel and image.
        self.pooled = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(cin, cout, 1), nn.ReLU(inplace=True))
        self.project = conv_bn_relu(cout * (len(rates) + 2), cout, kernel=1)

    def forward(self, x):
        pooled = self.pooled(x).expand(-1, -1, x.shape[-2], x.shape[-1])
        return self.project(torch.cat([b(x) for b in self.branches] + [pooled], dim=1))


class DeepLabV3Plus(nn.Module):
    def __init__(self, in_channels: int, num_classes: int, base_width: int = 16, pixel_branch: bool = True):
        super().__init__()
        w = base_width
        self.multiple = 8
        self.stem = conv_bn_relu(in_channels, w)
        self.layer1 = nn.Sequential(_Residual(w, w, stride=2), _Residual(w, w))                  # 1/2
        self.layer2 = nn.Sequential(_Residual(w, 2 * w, stride=2), _Residual(2 * w, 2 * w))      # 1/4
        self.layer3 = nn.Sequential(_Residual(2 * w, 4 * w, stride=2), _Residual(4 * w, 4 * w))  # 1/8
        self.layer4 = nn.Sequential(_Residual(4 * w, 8 * w, dilation=2), _Residual(8 * w, 8 * w, dilation=4))
        self.aspp = _ASPP(8 * w, 4 * w)
        self.low = conv_bn_relu(2 * w, w, kernel=1)
        self.decoder = nn.Sequential(conv_bn_relu(5 * w, 4 * w), conv_bn_relu(4 * w, 4 * w))
        self.pixel = _pixel_branch(in_channels, w) if pixel_branch else None
        self.head = nn.Conv2d(4 * w + (w if pixel_branch else 0), num_classes, 1)

    def forward(self, x):
        x, height, width = _pad_to(x, self.multiple)
        low = self.layer2(self.layer1(self.stem(x)))
        deep = self.aspp(self.layer4(self.layer3(low)))
        deep = F.interpolate(deep, size=low.shape[-2:], mode="bilinear", align_corners=False)
        features = self.decoder(torch.cat([deep, self.low(low)], dim=1))
        if self.pixel is None:
            logits = F.interpolate(self.head(features), size=x.shape[-2:], mode="bilinear", align_corners=False)
        else:
            features = F.interpolate(features, size=x.shape[-2:], mode="bilinear", align_corners=False)
            logits = self.head(torch.cat([features, self.pixel(x)], dim=1))
        return logits[..., :height, :width]


def _smp_unet(in_channels: int, num_classes: int, base_width: int = 16):
    import segmentation_models_pytorch as smp  # optional extra, only listed when importable
    return smp.Unet(encoder_name="resnet34", encoder_weights=None, in_channels=in_channels, classes=num_classes)


ARCHITECTURES = {"unet": UNet, "deeplabv3plus": DeepLabV3Plus, "pixel_context": PixelContext}


def _architectures() -> dict:
    """The built-in nets and the ResNet-encoder ones (encoders.py builds on the blocks above)."""
    from .encoders import ENCODER_NETWORKS
    return {**ARCHITECTURES, **ENCODER_NETWORKS}


def available_architectures() -> list:
    names = list(_architectures())
    try:
        import segmentation_models_pytorch  # noqa: F401
    except Exception:  # noqa: BLE001 - absent or broken: the built-in nets are enough
        return names
    return names + ["smp_unet"]


def build_network(name: str, in_channels: int, num_classes: int, base_width: int = 16) -> nn.Module:
    if name == "smp_unet" and "smp_unet" in available_architectures():
        return _smp_unet(in_channels, num_classes, base_width)
    known = _architectures()
    if name not in known:
        raise BadInputError(f"Unknown architecture '{name}'. Choose one of: {', '.join(available_architectures())}.")
    return known[name](in_channels, num_classes, base_width=base_width)


UNSEEN_LOGIT = -1e4  # added to the logits of a class without training pixels: softmax gives it 0 (also in float16)


def leave_out_classes(model: nn.Module, num_classes: int, absent) -> nn.Module:
    """Make ``model`` (``num_classes`` logits) never predict the classes ``absent`` (output channels without a
    training pixel): their logits get :data:`UNSEEN_LOGIT`, in training, validation and the exported graph (an Add
    before the softmax). Untrained, their logits otherwise put them on the map (eo-learn: 'artificial' on 15 % of
    it from 0 training pixels). A non-persistent buffer and a forward hook: checkpoints keep their keys, so resume
    and initial weights work as before."""
    absent = [int(k) for k in absent]
    if not absent:
        return model
    offset = torch.zeros(num_classes)
    offset[absent] = UNSEEN_LOGIT
    model.register_buffer("unseen_offset", offset, persistent=False)
    model.register_forward_hook(_add_unseen_offset)
    return model


def left_out_channels(model: nn.Module) -> list:
    """The output channels :func:`leave_out_classes` shut on ``model`` (0-based; [] when none)."""
    offset = getattr(model, "unseen_offset", None)
    return [] if offset is None else [int(k) for k in torch.nonzero(offset < 0).flatten()]


def _add_unseen_offset(module, inputs, output):
    return output + module.unseen_offset.to(output.dtype).view(1, -1, 1, 1)
