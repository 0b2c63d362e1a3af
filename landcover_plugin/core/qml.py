"""QGIS layer styles (.qml) written without QGIS: a paletted renderer with class colours and labels.

The format is what QGIS 3.22 saves for a paletted raster layer; newer QGIS 3 versions read it. QGIS loads
``<raster name>.qml`` beside a raster as its default style, so the legend shows class names on load.
Nodata (0) has no palette entry, so it is drawn transparent.
"""
import xml.etree.ElementTree as ET

from .output_folder import replaced_in_place

QGIS_VERSION = "3.22.0-Białowieża"


def paletted_qml(classes: list, band: int = 1, opacity: float = 1.0) -> str:
    """The .qml text for ``classes`` (dicts with ``id``, ``name``, ``colour``)."""
    root = ET.Element("qgis", {"version": QGIS_VERSION, "styleCategories": "AllStyleCategories",
                               "hasScaleBasedVisibilityFlag": "0", "minScale": "1e+08", "maxScale": "0"})
    ET.SubElement(root, "flags")
    pipe = ET.SubElement(root, "pipe")
    provider = ET.SubElement(pipe, "provider")
    ET.SubElement(provider, "resampling", {"enabled": "false", "maxOversampling": "2",
                                           "zoomedInResamplingMethod": "nearestNeighbour",
                                           "zoomedOutResamplingMethod": "nearestNeighbour"})
    renderer = ET.SubElement(pipe, "rasterrenderer", {"type": "paletted", "band": str(band),
                                                      "opacity": f"{opacity:g}", "alphaBand": "-1",
                                                      "nodataColor": ""})
    ET.SubElement(renderer, "rasterTransparency")
    origin = ET.SubElement(renderer, "minMaxOrigin")
    for tag, text in (("limits", "None"), ("extent", "WholeRaster"), ("statAccuracy", "Estimated"),
                      ("cumulativeCutLower", "0.02"), ("cumulativeCutUpper", "0.98"), ("stdDevFactor", "2")):
        ET.SubElement(origin, tag).text = text
    palette = ET.SubElement(renderer, "colorPalette")
    for item in sorted(classes, key=lambda c: int(c["id"])):
        ET.SubElement(palette, "paletteEntry", {"value": str(int(item["id"])), "color": item["colour"].lower(),
                                                "alpha": "255", "label": str(item["name"])})
    ET.SubElement(renderer, "colorramp", {"type": "randomcolors", "name": "[source]"})
    ET.SubElement(pipe, "brightnesscontrast", {"brightness": "0", "contrast": "0", "gamma": "1"})
    ET.SubElement(pipe, "huesaturation", {"saturation": "0", "grayscaleMode": "0", "colorizeOn": "0",
                                          "colorizeRed": "255", "colorizeGreen": "128", "colorizeBlue": "128",
                                          "colorizeStrength": "100", "invertColors": "0"})
    ET.SubElement(pipe, "rasterresampler", {"maxOversampling": "2"})
    ET.SubElement(pipe, "resamplingStage").text = "resamplingFilter"
    ET.SubElement(root, "blendMode").text = "0"
    ET.indent(root)
    return "<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>\n" + ET.tostring(root, encoding="unicode") + "\n"


def write_paletted_qml(path: str, classes: list, **kwargs) -> str:
    """Write the paletted style beside a raster; returns the path. Written whole, then renamed."""
    with replaced_in_place(path, ".qml") as temp, open(temp, "w", encoding="utf-8") as handle:
        handle.write(paletted_qml(classes, **kwargs))
    return path
