"""Everything a training run is told, in one dataclass (the CLI and the library both build it)."""
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Optional

from landcover_plugin.core.errors import BadInputError

DEVICES = ("auto", "cpu", "cuda")
SCHEDULES = ("onecycle", "cosine")


@dataclass
class TrainConfig:
    dataset_dir: str
    output: str                                # the .onnx file to write
    architecture: str = "unet"
    epochs: int = 30
    batch_size: int = 16
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    schedule: str = "onecycle"
    device: str = "auto"
    class_weights: bool = True
    augment: bool = True                       # flips and 90 degree rotations
    colour_augment: bool = False               # brightness/contrast jitter and noise (standardised units)
    patience: int = 10                         # epochs without a better val mIoU before stopping; 0 = never
    resume: Optional[str] = None               # a checkpoint file (last.pt) or its folder
    initial_weights: Optional[str] = None      # a .pt state dict or one of our checkpoints
    seed: int = 0
    base_width: int = 16                       # channels of the first stage; doubles per stage
    num_workers: Optional[int] = None          # None = choose (0 on CPU, a few on CUDA)
    threads: Optional[int] = None              # torch CPU threads; None = torch's default
    amp: bool = True                           # mixed precision, used on CUDA only
    cache_mb: int = 2048                       # keep image chips in RAM when they fit in this budget
    export_tile_size: Optional[int] = None     # ONNX tile size; None = the chip size
    time_limit_minutes: Optional[float] = None  # stop after this budget; the schedule follows the clock
    overlap: float = 0.25                      # recommended inference overlap written to the card
    work_dir: Optional[str] = None             # checkpoints; None = "<output stem>_checkpoints" beside it

    def validate(self) -> "TrainConfig":
        checks = [
            (self.epochs >= 1, f"epochs must be at least 1 (got {self.epochs})."),
            (self.batch_size >= 1, f"batch size must be at least 1 (got {self.batch_size})."),
            (self.learning_rate > 0, f"learning rate must be positive (got {self.learning_rate})."),
            (self.weight_decay >= 0, f"weight decay must be zero or positive (got {self.weight_decay})."),
            (self.device in DEVICES, f"device must be one of {', '.join(DEVICES)} (got '{self.device}')."),
            (self.schedule in SCHEDULES, f"schedule must be one of {', '.join(SCHEDULES)} (got '{self.schedule}')."),
            (self.patience >= 0, f"patience must be 0 (off) or more epochs (got {self.patience})."),
            (self.base_width >= 4, f"base width must be at least 4 channels (got {self.base_width})."),
            (self.time_limit_minutes is None or self.time_limit_minutes > 0,
             f"time limit must be positive minutes (got {self.time_limit_minutes})."),
            (0.0 <= self.overlap < 1.0, f"overlap is a fraction in [0, 1) (got {self.overlap})."),
            (self.export_tile_size is None or self.export_tile_size >= 8,
             f"export tile size must be at least 8 pixels (got {self.export_tile_size})."),
            (str(self.output).lower().endswith(".onnx"), f"The output model must be a .onnx file (got '{self.output}')."),
        ]
        for ok, message in checks:
            if not ok:
                raise BadInputError(f"Training setting: {message}")
        for path, what in ((self.resume, "resume checkpoint"), (self.initial_weights, "initial weights file")):
            if path and not Path(path).exists():
                raise BadInputError(f"The {what} '{path}' does not exist. Choose an existing file or leave it empty.")
        return self

    @property
    def checkpoint_dir(self) -> Path:
        if self.work_dir:
            return Path(self.work_dir)
        out = Path(self.output)
        return out.with_name(out.stem + "_checkpoints")

    def curves_paths(self) -> tuple:
        out = Path(self.output)
        return out.with_name(out.stem + "_curves.csv"), out.with_name(out.stem + "_curves.png")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})
