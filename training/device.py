"""Where training runs: device choice (logged), mixed-precision settings, and out-of-memory messages."""
import os
from contextlib import contextmanager

import torch

from landcover_plugin.core.errors import BadInputError, OutOfMemoryError
from landcover_plugin.core.gpu import training_gpu_unused


def select_device(choice: str, events, threads: int = None) -> torch.device:
    """``auto`` = CUDA when torch sees a GPU, else CPU. The choice and the GPU's name are logged."""
    cuda = torch.cuda.is_available()
    if choice == "cuda" and not cuda:
        raise BadInputError("Device 'cuda' was chosen but this engine's torch sees no CUDA GPU "
                            f"(torch {torch.__version__}). Choose device 'auto' or 'cpu', or install a CUDA "
                            "build of torch with 'Set up engine environment' on a machine with an NVIDIA GPU.")
    if threads:
        torch.set_num_threads(int(threads))
    if choice == "cuda" or (choice == "auto" and cuda):
        device = torch.device("cuda")
        props = torch.cuda.get_device_properties(device)
        torch.backends.cudnn.benchmark = True
        events.info(f"Training on GPU: {props.name} ({props.total_memory / 2 ** 30:.1f} GiB), "
                    f"torch {torch.__version__}, CUDA {torch.version.cuda}.")
        return device
    reason = "as chosen" if choice == "cpu" else "no CUDA GPU found"
    events.info(f"Training on CPU ({reason}): {torch.get_num_threads()} threads of {os.cpu_count()} cores, "
                f"torch {torch.__version__}.")
    unused = training_gpu_unused("cpu", torch.__version__) if choice == "auto" else ""
    if unused:  # an NVIDIA GPU that this torch cannot use: not silently
        events.warning(unused)
    return torch.device("cpu")


def amp_settings(device: torch.device, wanted: bool) -> tuple:
    """(enabled, dtype, use_grad_scaler): bfloat16 where the GPU supports it, else float16 with scaling."""
    if device.type != "cuda" or not wanted:
        return False, torch.float32, False
    if torch.cuda.is_bf16_supported():
        return True, torch.bfloat16, False
    return True, torch.float16, True


def gpu_memory_note(device: torch.device, batch_size: int) -> str:
    """The GPU memory the training has used at most, against the card's: room for a larger batch, or none."""
    peak = torch.cuda.max_memory_allocated(device) / 2 ** 20
    total = torch.cuda.get_device_properties(device).total_memory / 2 ** 20
    return (f"GPU memory: at most {peak:,.0f} MiB in use by the training (batch size {batch_size}), "
            f"{100 * peak / total:.1f}% of the GPU's {total / 1024:.0f} GiB.")


def default_workers(device: torch.device, cached: bool) -> int:
    cores = os.cpu_count() or 1
    if device.type == "cuda":
        return max(0, min(4, cores - 1))
    return 0 if cached else max(0, min(2, cores - 1))


@contextmanager
def memory_errors(device: torch.device, batch_size: int, chip_size: int):
    """Turn GPU/CPU out-of-memory failures into an :class:`OutOfMemoryError` with the fix in it."""
    try:
        yield
    except MemoryError as exc:
        raise OutOfMemoryError(_advice("RAM", batch_size, chip_size)) from exc
    except RuntimeError as exc:  # torch.cuda.OutOfMemoryError is a RuntimeError too
        text = str(exc).lower()
        if isinstance(exc, torch.cuda.OutOfMemoryError) or "out of memory" in text \
                or "can't allocate memory" in text:
            if device.type == "cuda":
                torch.cuda.empty_cache()
            where = "GPU memory" if device.type == "cuda" else "RAM"
            raise OutOfMemoryError(_advice(where, batch_size, chip_size)) from exc
        raise


def _advice(where: str, batch_size: int, chip_size: int) -> str:
    smaller = max(1, batch_size // 2)
    return (f"Training ran out of {where} with batch size {batch_size} and {chip_size}x{chip_size} px chips. "
            f"Use a smaller batch size (e.g. {smaller}), a smaller base width, or export smaller chips"
            + (", or train on the CPU." if where == "GPU memory" else "."))
