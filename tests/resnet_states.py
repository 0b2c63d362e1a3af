"""ResNet state dicts in torchvision's layout (its key names and shapes; random values), made without torchvision.

The key names and shapes are written out from torchvision's rules here, independently of training/resnet.py,
and pinned by the key counts torchvision's resnet18/34/50 state dicts have.
"""
import torch

STAGES = {"resnet18": ("basic", (2, 2, 2, 2)), "resnet34": ("basic", (3, 4, 6, 3)),
          "resnet50": ("bottleneck", (3, 4, 6, 3))}
TORCHVISION_KEYS = {"resnet18": 122, "resnet34": 218, "resnet50": 320}  # len(torchvision.models.X().state_dict())


def torchvision_resnet(name: str, seed: int = 0, in_channels: int = 3) -> dict:
    """A state dict with torchvision's ResNet key names and shapes (fc for 1000 classes), random values
    of a trained net's scale (He-scaled filters, so activations stay in range through the stages)."""
    g = torch.Generator().manual_seed(seed)
    kind, counts = STAGES[name]
    state = {}

    def conv(key, cout, cin, k):
        state[key + ".weight"] = torch.randn(cout, cin, k, k, generator=g) * (2.0 / (cin * k * k)) ** 0.5

    def bn(key, c):
        state.update({key + ".weight": torch.rand(c, generator=g) + 0.5,
                      key + ".bias": torch.randn(c, generator=g) * 0.1,
                      key + ".running_mean": torch.randn(c, generator=g) * 0.1,
                      key + ".running_var": torch.rand(c, generator=g) + 0.5,
                      key + ".num_batches_tracked": torch.tensor(1000)})

    conv("conv1", 64, in_channels, 7)
    bn("bn1", 64)
    expansion = 1 if kind == "basic" else 4
    cin = 64
    for stage, (width, count) in enumerate(zip((64, 128, 256, 512), counts), start=1):
        for block in range(count):
            p = f"layer{stage}.{block}"
            if kind == "basic":
                conv(p + ".conv1", width, cin, 3), bn(p + ".bn1", width)
                conv(p + ".conv2", width, width, 3), bn(p + ".bn2", width)
            else:
                conv(p + ".conv1", width, cin, 1), bn(p + ".bn1", width)
                conv(p + ".conv2", width, width, 3), bn(p + ".bn2", width)
                conv(p + ".conv3", width * 4, width, 1), bn(p + ".bn3", width * 4)
            if block == 0 and (stage > 1 or cin != width * expansion):
                conv(p + ".downsample.0", width * expansion, cin, 1), bn(p + ".downsample.1", width * expansion)
            cin = width * expansion
    state["fc.weight"] = torch.randn(1000, cin, generator=g)
    state["fc.bias"] = torch.randn(1000, generator=g)
    return state
