"""Inputs several cases share, made during the run: Zion chip datasets, small speed models, and big rasters
mosaicked from the real Zion image (GDAL VRTs: no pixel is copied, every pixel read is real data)."""
import shutil
from pathlib import Path
from xml.sax.saxutils import escape

import rasterio

from landcover_plugin.core.chips.export import export_chips
from landcover_plugin.core.chips.options import ChipExportOptions
from landcover_plugin.core.events import RecordingEvents

from .common import ZION_IMAGE, ZION_LABELS

_MADE = set()


def zion_chips(settings, chip: int = 128, stride: int = 64) -> Path:
    """A fresh Zion chip dataset (NLCD labels, spatial split) in the work folder."""
    out = settings.work / "datasets" / f"zion_{chip}_{stride}"
    shutil.rmtree(out, ignore_errors=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    export_chips(ChipExportOptions(ZION_IMAGE, out, labels_raster=ZION_LABELS, chip_size=chip, stride=stride))
    return out


def speed_model(settings, base_width: int, tile: int = 256, epochs: int = 1, architecture: str = "unet") -> tuple:
    """A net (the U-Net of ``base_width`` unless ``architecture`` says another) trained ``epochs`` on Zion chips
    and exported by the trainer with ``tile`` px tiles. Only for timing and memory: the weights barely matter,
    the architecture does. Returns (path, description)."""
    from landcover_plugin.core.train.options import TrainConfig
    from training.loop import train

    name = f"unet{base_width}" if architecture == "unet" else architecture
    path = settings.work / "models" / f"speed_{name}_t{tile}.onnx"
    net = f"U-Net base width {base_width}" if architecture == "unet" else f"{architecture} (random start)"
    description = f"{net}, {tile} px tiles ({epochs} epoch on Zion chips; speed only)"
    if path in _MADE:  # made once per run by the current trainer and exporter, never reused from an old run
        return path, description
    dataset = settings.work / "datasets" / "zion_128_128"
    if not (dataset / "dataset.json").exists():
        dataset = zion_chips(settings, 128, 128)
    config = TrainConfig(dataset_dir=str(dataset), output=str(path), epochs=epochs, base_width=base_width,
                         architecture=architecture, export_tile_size=tile, patience=0,
                         work_dir=str(settings.work / "models" / f"ckpt_{name}_t{tile}"))
    path.unlink(missing_ok=True)
    train(config, RecordingEvents())
    _MADE.add(path)
    return path, description


def trainer_model(settings, chip: int, minutes: float) -> tuple:
    """The trainer's defaults on Zion chips of ``chip`` px (stride chip / 2) for at most ``minutes`` of CPU time,
    exported as users get it. Returns (model path, chip dataset folder, description)."""
    from landcover_plugin.core.train.options import TrainConfig
    from training.loop import train

    dataset = zion_chips(settings, chip, chip // 2)
    path = settings.work / "models" / f"trainer_zion_c{chip}.onnx"
    path.unlink(missing_ok=True)
    outputs = train(TrainConfig(dataset_dir=str(dataset), output=str(path), time_limit_minutes=minutes,
                                work_dir=str(settings.work / "models" / f"ckpt_trainer_c{chip}")), RecordingEvents())
    return path, dataset, (f"trainer's defaults ({outputs['architecture']}) on Zion {chip} px chips, "
                           f"{outputs['epochs_run']} epochs in a {minutes:g} min budget, val mIoU "
                           f"{outputs['BEST_VAL_MIOU']:.3f}")


def map_agreement(a, b) -> float:
    """Share of pixels classified (not 0) in either map on which two classified GeoTIFFs give the same class."""
    with rasterio.open(a) as src:
        first = src.read(1)
    with rasterio.open(b) as src:
        second = src.read(1)
    classified = (first > 0) | (second > 0)
    return float((first == second)[classified].mean())


def mosaic_vrt(path: Path, width: int, height: int, source: Path = ZION_IMAGE) -> Path:
    """A ``width`` x ``height`` VRT tiling copies of ``source`` side by side (cut at the right/bottom edge)."""
    with rasterio.open(source) as src:
        sw, sh, count, nodata = src.width, src.height, src.count, src.nodata
        dtype = {"uint8": "Byte", "uint16": "UInt16", "int16": "Int16", "float32": "Float32"}[src.dtypes[0]]
        t = src.transform
        crs = src.crs.to_wkt()
    lines = [f'<VRTDataset rasterXSize="{width}" rasterYSize="{height}">',
             f"  <SRS>{escape(crs)}</SRS>",
             f"  <GeoTransform>{t.c}, {t.a}, {t.b}, {t.f}, {t.d}, {t.e}</GeoTransform>"]
    src_name = escape(str(Path(source).resolve()))
    for band in range(1, count + 1):
        lines.append(f'  <VRTRasterBand dataType="{dtype}" band="{band}">')
        if nodata is not None:
            lines.append(f"    <NoDataValue>{nodata:g}</NoDataValue>")
        for row in range(0, height, sh):
            for col in range(0, width, sw):
                w, h = min(sw, width - col), min(sh, height - row)
                lines += ["    <SimpleSource>",
                          f'      <SourceFilename relativeToVRT="0">{src_name}</SourceFilename>',
                          f"      <SourceBand>{band}</SourceBand>",
                          f'      <SrcRect xOff="0" yOff="0" xSize="{w}" ySize="{h}"/>',
                          f'      <DstRect xOff="{col}" yOff="{row}" xSize="{w}" ySize="{h}"/>',
                          "    </SimpleSource>"]
        lines.append("  </VRTRasterBand>")
    lines.append("</VRTDataset>")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path
