"""Options of the ``train`` command: everything a training run is told, in one dataclass.

The engine's argparse, the Processing algorithm's defaults and choices, and the trainer's Python API
(``training.loop.train(TrainConfig(...))``) all come from here. Standard library only: QGIS's Python
reads the defaults; the trainer itself (torch) lives in the top-level ``training`` package.
"""
import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Optional

from ..errors import BadInputError
from ..options import DEVICES, SEED_MAX, WEEK_MINUTES, check_bounds, option
from .start_weights import check_start_weights

# auto: pixel_context for sparse labels (a few small polygons), unet for dense ones (training/loop.py)
ARCHITECTURES = ("auto", "unet", "deeplabv3plus", "pixel_context",
                 "smp_unet",  # smp_unet: only where segmentation-models-pytorch is
                 # ResNet encoders with torchvision's parameter names, for pretrained weights (training/encoders.py)
                 "unet_resnet18", "unet_resnet34", "unet_resnet50",
                 "deeplabv3plus_resnet18", "deeplabv3plus_resnet34", "deeplabv3plus_resnet50")
SCHEDULES = ("onecycle", "cosine")
# the options that name files or folders (made absolute by TrainConfig.absolute)
PATH_OPTIONS = ("dataset_dir", "output", "resume", "initial_weights", "encoder_weights", "work_dir")


@dataclass
class TrainConfig:
    dataset_dir: str = option(positional=True, metavar="dataset",
                              help="chip dataset folder (with dataset.json), as written by export-chips")
    output: str = option(help="the ONNX model file to write (.onnx)")
    architecture: str = option("auto", choices=ARCHITECTURES,
                               help="segmentation network; auto (default): pixel_context when under 30 % of the "
                                    "chips' pixels are labelled (a few small polygons), else unet")
    epochs: int = option(0, minimum=0, maximum=10_000,
                         help="passes over the training chips at most; 0 (default): automatic, 60 with dense "
                              "labels, 30 with sparse ones (under 30 % of the chips' pixels labelled)")
    batch_size: int = option(16, minimum=1, maximum=4096, help="chips per training step")
    learning_rate: float = option(1e-3, minimum=1e-07,  # any higher rate runs: a diverging run stops with the fix
                                  help="peak learning rate of AdamW")
    weight_decay: float = option(1e-4, minimum=0.0, maximum=1.0, help="AdamW weight decay")
    schedule: str = option("onecycle", choices=SCHEDULES, help="learning-rate schedule")
    device: str = option("auto", choices=DEVICES, help="where the network trains (auto: CUDA when present)")
    class_weights: bool = option(True, flag="--no-class-weights",
                                 help="do not weight the loss against class imbalance")
    augment: bool = option(True, flag="--no-augment", help="no random flips and 90 degree rotations")
    colour_augment: bool = option(False, help="also change each chip's values as another date would (a gain of "
                                               "up to +-20 %, an offset of up to +-10 % of each band's mean) and add "
                                               "noise: for maps of other dates or scenes")
    patience: int = option(10, minimum=0, maximum=10_000,
                           help="stop after this many epochs without a better validation mIoU, once "
                                "the learning rate is down to half its peak (0: never)")
    resume: Optional[str] = option(None, help="continue from a checkpoint (last.pt, or its folder)")
    initial_weights: Optional[str] = option(None, help="start from the weights in this .pt file (no download)")
    encoder_weights: Optional[str] = option(
        None, help="pretrained ResNet encoder weights (.pth: torchvision, timm, SSL4EO-S12 or SatlasPretrain "
                   "ResNet-18/34/50) for the *_resnet* architectures (auto: the U-Net on that ResNet); no download")
    freeze_encoder_epochs: int = option(2, minimum=0, maximum=10_000,
                                        help="with encoder weights: train only the decoder for this many "
                                             "first epochs")
    encoder_lr_factor: float = option(0.1, minimum=0.0001, maximum=1.0,
                                      help="with encoder weights: the encoder's learning rate as a fraction "
                                           "of the decoder's once it trains")
    scene_pretrain_minutes: float = option(
        0.0, minimum=0.0, maximum=WEEK_MINUTES,
        help="self-supervised pretraining of a ResNet encoder on the chips' source raster (masked-image "
             "reconstruction, no labels, no download) for this many minutes before training; 0: off")
    seed: int = option(0, minimum=0, maximum=SEED_MAX, help="random seed (weights, sampling, augmentation)")
    base_width: int = option(16, minimum=4, maximum=256, help="channels of the first stage; doubles per stage")
    num_workers: Optional[int] = option(None, flag="--workers",
                                        minimum=0, maximum=256,
                                        help="DataLoader workers (default: chosen for the device)")
    threads: Optional[int] = option(None, minimum=1, maximum=1024, help="torch CPU threads (default: torch's choice)")
    amp: bool = option(True, flag="--no-amp", help="no mixed precision on CUDA")
    cache_mb: int = option(2048, cli=False, help="keep image chips in RAM when they fit in this budget")
    export_tile_size: Optional[int] = option(None, minimum=8, maximum=8192,
                                             help="ONNX tile size (default: the chip size)")
    time_limit_minutes: Optional[float] = option(
        None, maximum=WEEK_MINUTES,
        help="stop training after this many minutes; the learning-rate schedule follows the clock")
    overlap: float = option(0.25, minimum=0.0, maximum=0.75, help="recommended inference overlap (fraction)")
    work_dir: Optional[str] = option(None, help="checkpoint folder (default: '<output stem>_checkpoints' beside it)")
    refit: bool = option(True, flag="--no-refit",
                         help="with polygons held out for validation: do not train again on all polygons for "
                              "the exported model (faster; the model then never sees the held-out polygons)")
    cv_folds: int = option(4, minimum=1, maximum=10,
                           help="with polygons held out and under 40 of them: estimate the map's accuracy by "
                                "this many folds of cross-validation over polygon groups before the refit "
                                "(each polygon held out once; skipped without the refit); 1: the "
                                "exporter's single held-out split")
    nproc: int = option(1, minimum=1, maximum=1024,
                        help="training processes on this machine (torch distributed: torchrun, "
                             "DistributedDataParallel; gloo on the CPU, one GPU each with NCCL); the batch size "
                             "is shared out among them; 1: one process. For several machines run the engine "
                             "under torchrun itself (see the user guide)")

    def validate(self) -> "TrainConfig":
        checks = [
            (self.epochs >= 0, f"epochs must be 0 (automatic) or more (got {self.epochs})."),
            (self.batch_size >= 1, f"batch size must be at least 1 (got {self.batch_size})."),
            (self.learning_rate > 0, f"learning rate must be positive (got {self.learning_rate})."),
            (self.weight_decay >= 0, f"weight decay must be zero or positive (got {self.weight_decay})."),
            (self.device in DEVICES, f"device must be one of {', '.join(DEVICES)} (got '{self.device}')."),
            (self.schedule in SCHEDULES, f"schedule must be one of {', '.join(SCHEDULES)} (got '{self.schedule}')."),
            (self.patience >= 0, f"patience must be 0 (off) or more epochs (got {self.patience})."),
            (self.freeze_encoder_epochs >= 0,
             f"encoder freeze epochs must be 0 or more (got {self.freeze_encoder_epochs})."),
            (0 < self.encoder_lr_factor <= 1,
             f"encoder learning-rate factor is a fraction in (0, 1] (got {self.encoder_lr_factor})."),
            (self.scene_pretrain_minutes >= 0,
             f"scene pretraining minutes must be 0 (off) or more (got {self.scene_pretrain_minutes})."),
            (not (self.scene_pretrain_minutes and self.encoder_weights),
             "give either encoder weights or scene pretraining minutes, not both."),
            (self.cv_folds >= 1, f"cross-validation folds must be at least 1 (got {self.cv_folds})."),
            (self.nproc >= 1, f"training processes (--nproc) must be at least 1 (got {self.nproc})."),
            (self.batch_size >= self.nproc,
             f"the batch size ({self.batch_size}) is shared out among the training processes: it must be at "
             f"least their number (--nproc {self.nproc}). Raise the batch size or use fewer processes."),
            (self.base_width >= 4, f"base width must be at least 4 channels (got {self.base_width})."),
            (self.time_limit_minutes is None or self.time_limit_minutes > 0,
             f"time limit must be positive minutes (got {self.time_limit_minutes})."),
            (0.0 <= self.overlap < 1.0, f"overlap is a fraction in [0, 1) (got {self.overlap})."),
            (self.export_tile_size is None or self.export_tile_size >= 8,
             f"export tile size must be at least 8 pixels (got {self.export_tile_size})."),
            (str(self.output).lower().endswith(".onnx"),
             f"The output model must be a .onnx file (got '{self.output}')."),
        ]
        for ok, message in checks:
            if not ok:
                raise BadInputError(f"Training setting: {message}")
        check_bounds(self)  # every other number, in the range the dialog allows
        for path, what in ((self.resume, "resume checkpoint"), (self.initial_weights, "initial weights file"),
                           (self.encoder_weights, "encoder weights file")):
            if path and not Path(path).exists():
                raise BadInputError(f"The {what} '{path}' does not exist. Choose an existing file or leave it empty.")
        check_start_weights(self)
        return self

    def absolute(self) -> "TrainConfig":
        """The same run with every path absolute, read in the current folder (the engine's is the caller's: see
        engine.py). A run returns the model, curves and checkpoint paths it was given or made from them: relative
        ones were valid only in the folder it started from, so QGIS, a graphical model or a script chaining
        Classify from another folder got a wrong path; and a run it starts (torchrun's ranks) needs none."""
        return replace(self, **{name: _absolute(getattr(self, name)) for name in PATH_OPTIONS})

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


def _absolute(path):
    return os.path.abspath(os.path.expanduser(os.fspath(path))) if path else path


def duration_text(minutes: float) -> str:
    """A time budget for the log and the report: seconds under 3 minutes ('0.01875 min' read as nothing), else
    minutes."""
    if minutes < 3:
        return f"{minutes * 60:.3g} s"
    return f"{minutes:g} min"
