"""``python -m bench.gpu_steps``: where a training step's time goes on a GPU, for the trainer's default network
(U-Net base width 16, 4 bands, 8 classes), through the trainer's own step (``training.step.train_step``).

Prints ms a step and chips/s for variants (mixed precision or not, the per-step loss check, fused AdamW,
channels-last, larger batches and chips, a wider network) and the forward, backward and optimizer parts. Torch only;
about a minute. What it found on an H200 is in bench/gpu_check.json's notes (bench/RESULTS.md, "GPU check")."""
import sys
import time

import torch
import torch.nn.functional as F

from training.networks import build_network
from training.step import train_step

BANDS, CLASSES = 4, 8


def step_time(device, batch=16, chip=64, amp=True, fused=False, channels_last=False, check=True, width=16,
              steps=60) -> float:
    """Seconds a step of the trainer's step function, after 8 warm-up steps."""
    net = build_network("unet", BANDS, CLASSES, base_width=width).to(device).train()
    memory = torch.channels_last if channels_last else torch.contiguous_format
    net = net.to(memory_format=memory)
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=1e-4, fused=fused or None)
    scaler = torch.amp.GradScaler("cuda", enabled=False)
    weight = torch.ones(256, device=device)
    images = torch.randn(batch, BANDS, chip, chip, device=device).to(memory_format=memory)
    labels = torch.randint(0, CLASSES, (batch, chip, chip), device=device)
    on_diverged = (lambda value: None) if check else None  # the check waits for the GPU, whatever it does

    def step():
        train_step(net, optimizer, scaler, images, labels, weight, amp, torch.bfloat16, on_diverged=on_diverged)

    return mean_seconds(step, steps, warmup=8)


def mean_seconds(work, repeats: int, warmup: int = 1) -> float:
    """Seconds a call of ``work`` takes on the GPU, over ``repeats`` calls after ``warmup``."""
    for _ in range(warmup):
        work()
    torch.cuda.synchronize()
    tick = time.perf_counter()
    for _ in range(repeats):
        work()
    torch.cuda.synchronize()
    return (time.perf_counter() - tick) / repeats


def part_times(device, batch=16, chip=64) -> dict:
    """Milliseconds of the forward pass alone, forward and backward, and one AdamW step (float32)."""
    net = build_network("unet", BANDS, CLASSES, base_width=16).to(device).train()
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-3)
    images = torch.randn(batch, BANDS, chip, chip, device=device)
    labels = torch.randint(0, CLASSES, (batch, chip, chip), device=device)

    def timed(work):
        return round(mean_seconds(work, 30) * 1000, 2)

    with torch.no_grad():
        forward = timed(lambda: net(images))
    return {"forward": forward, "forward and backward": timed(lambda: F.cross_entropy(net(images), labels).backward()),
            "AdamW step": timed(optimizer.step)}


VARIANTS = {
    "trainer step, bfloat16, loss checked each step": {},
    "trainer step, bfloat16, loss not checked each step": {"check": False},
    "trainer step, float32": {"amp": False},
    "trainer step, bfloat16, fused AdamW": {"fused": True},
    "trainer step, bfloat16, channels-last": {"channels_last": True},
    "trainer step, bfloat16, batch 64": {"batch": 64},
    "trainer step, bfloat16, batch 256": {"batch": 256},
    "trainer step, bfloat16, 256 px chips": {"chip": 256},
    "trainer step, bfloat16, base width 32": {"width": 32},
}


def main() -> int:
    if not torch.cuda.is_available():
        print(f"torch {torch.__version__} sees no CUDA GPU: run this on a machine with an NVIDIA GPU.", file=sys.stderr)
        return 2
    device = torch.device("cuda")
    torch.backends.cudnn.benchmark = True  # as the trainer
    print(f"{torch.cuda.get_device_name(device)}, torch {torch.__version__}; U-Net base width 16, 64 px chips, "
          f"batch 16 unless said")
    for name, change in VARIANTS.items():
        seconds = step_time(device, **change)
        print(f"| {name} | {seconds * 1000:.2f} ms a step | {change.get('batch', 16) / seconds:,.0f} chips/s |")
    for name, ms in part_times(device).items():
        print(f"| {name} | {ms} ms |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
