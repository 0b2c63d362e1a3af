"""Engine command ``train``: ``python -m landcover_plugin.core.engine train DATASET --output model.onnx ...``."""
from .config import DEVICES, SCHEDULES, TrainConfig
from .networks import available_architectures


def add_arguments(parser) -> None:
    defaults = TrainConfig(dataset_dir="", output="model.onnx")
    add = parser.add_argument
    add("dataset", help="chip dataset folder (with dataset.json), as written by export-chips")
    add("--output", required=True, help="the ONNX model file to write (.onnx)")
    add("--architecture", default=defaults.architecture, choices=available_architectures())
    add("--epochs", type=int, default=defaults.epochs)
    add("--batch-size", type=int, default=defaults.batch_size)
    add("--learning-rate", type=float, default=defaults.learning_rate, help="peak learning rate of AdamW")
    add("--weight-decay", type=float, default=defaults.weight_decay)
    add("--schedule", default=defaults.schedule, choices=SCHEDULES)
    add("--device", default=defaults.device, choices=DEVICES)
    add("--no-class-weights", dest="class_weights", action="store_false",
        help="do not weight the loss against class imbalance")
    add("--no-augment", dest="augment", action="store_false", help="no random flips and 90 degree rotations")
    add("--colour-augment", action="store_true", help="also jitter brightness/contrast and add noise")
    add("--patience", type=int, default=defaults.patience,
        help="stop after this many epochs without a better validation mIoU (0: never)")
    add("--resume", default=None, help="continue from a checkpoint (last.pt, or its folder)")
    add("--initial-weights", default=None, help="start from the weights in this .pt file (no download)")
    add("--seed", type=int, default=defaults.seed)
    add("--base-width", type=int, default=defaults.base_width, help="channels of the first stage")
    add("--workers", type=int, default=None, help="DataLoader workers (default: chosen for the device)")
    add("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    add("--no-amp", dest="amp", action="store_false", help="no mixed precision on CUDA")
    add("--time-limit-minutes", type=float, default=None,
        help="stop training after this many minutes; the learning-rate schedule follows the clock")
    add("--export-tile-size", type=int, default=None, help="ONNX tile size (default: the chip size)")
    add("--overlap", type=float, default=defaults.overlap, help="recommended inference overlap (fraction)")
    add("--work-dir", default=None, help="checkpoint folder (default: '<output stem>_checkpoints' beside it)")


def config_from_args(args) -> TrainConfig:
    return TrainConfig(
        dataset_dir=args.dataset, output=args.output, architecture=args.architecture, epochs=args.epochs,
        batch_size=args.batch_size, learning_rate=args.learning_rate, weight_decay=args.weight_decay,
        schedule=args.schedule, device=args.device, class_weights=args.class_weights, augment=args.augment,
        colour_augment=args.colour_augment, patience=args.patience, resume=args.resume or None,
        initial_weights=args.initial_weights or None, seed=args.seed, base_width=args.base_width,
        num_workers=args.workers, threads=args.threads, amp=args.amp, time_limit_minutes=args.time_limit_minutes,
        export_tile_size=args.export_tile_size, overlap=args.overlap, work_dir=args.work_dir or None)


def run(args, events) -> dict:
    from .loop import train  # torch is imported here, after the arguments were parsed
    return train(config_from_args(args), events)
