"""What an export of label chips will write, told before it starts: windows, chips at most, disk size.

Standard library only: the QGIS side calls it with the raster's size before the engine runs.
"""


def window_count(length: int, chip_size: int, stride: int) -> int:
    """Windows along one axis, as the export places them: every ``stride`` px and one flush with the end."""
    if chip_size > length:
        return 0
    offsets = len(range(0, length - chip_size + 1, stride))
    last = (offsets - 1) * stride
    return offsets + (1 if last + chip_size < length else 0)


def expectation(width: int, height: int, bands: int, bytes_per_value: int, chip_size: int, stride: int = None) -> dict:
    """Windows the raster holds and the most the export can write (every window labelled enough)."""
    stride = stride or chip_size
    windows = window_count(width, chip_size, stride) * window_count(height, chip_size, stride)
    per_chip = chip_size * chip_size * (bands * bytes_per_value + 1)  # image chip + uint8 label chip
    return {"windows": windows, "bytes_per_chip": per_chip, "max_bytes": windows * per_chip}


def describe(expected: dict, chip_size: int) -> str:
    if not expected["windows"]:
        return f"The raster is smaller than one chip of {chip_size} px: no chip can be cut. Choose smaller chips."
    return (f"Expect up to {expected['windows']:,} windows of {chip_size}x{chip_size} px; the chips kept (windows "
            f"labelled enough) take at most {_size(expected['max_bytes'])} uncompressed "
            f"({_size(expected['bytes_per_chip'])} a chip, image and labels).")


def _size(nbytes: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if nbytes < 1024 or unit == "GB":
            return f"{nbytes:,.0f} {unit}" if unit == "bytes" else f"{nbytes:,.1f} {unit}"
        nbytes /= 1024.0
    return f"{nbytes:.1f} TB"
