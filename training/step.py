"""One optimizer step of the trainer: forward under autocast (mixed precision when enabled), class-weighted loss
in float32, backward through the gradient scaler, AdamW step. The loop (:mod:`.loop`) and the GPU check
(``bench/gpu_check.py``) run this same function; it imports torch and the loss only (no rasterio)."""
import torch

from .objective import weighted_loss


def train_step(model, optimizer, scaler, images, labels, pixel_weight, amp: bool, amp_dtype,
               on_diverged=None) -> torch.Tensor:
    """Run one step on a batch already on the model's device; returns the (detached-able) loss tensor.

    ``on_diverged(loss_value)`` is called before the backward pass when the loss is not finite (it should
    raise: the weights would be ruined)."""
    with torch.autocast(images.device.type, dtype=amp_dtype, enabled=amp):
        logits = model(images)
    loss = weighted_loss(logits.float(), labels, pixel_weight)
    if on_diverged is not None and not bool(torch.isfinite(loss)):
        on_diverged(float(loss.detach()))
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
    return loss
