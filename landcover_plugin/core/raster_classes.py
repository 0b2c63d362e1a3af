"""Reading back the classes a classified raster carries: its class list (our ``landcover_classes`` tag, else
GDAL category names) with its colour table's colours (:func:`embedded_classes`), and which class ids it holds
(:func:`present_values`). They are written by :mod:`.classified_raster`.
"""
from osgeo import gdal

from .errors import BadInputError
from .schema import MAX_CLASS_ID, MIN_CLASS_ID, ClassInfo, ClassSchema, default_colour


def embedded_classes(path, events=None) -> tuple:
    """The classes a classified raster carries: ``(ClassSchema or None, {id: "#rrggbb"})``.

    Our ``landcover_classes`` tag first, else GDAL category names with colour-table colours. Read through
    ``gdal.Info``: ``Band.GetCategoryNames()`` returns None in Debian's GDAL 3.6 bindings even when the
    names are there (in the ``.aux.xml`` beside a GeoTIFF). ``events`` gets a warning when what is stored
    is not a usable class list.
    """
    gdal.UseExceptions()
    try:
        info = gdal.Info(str(path), format="json")
        stored = ((info.get("metadata") or {}).get("") or {}).get("landcover_classes")
        band = info["bands"][0]
    except (RuntimeError, KeyError, IndexError, TypeError):
        return None, {}  # an unreadable raster is reported clearly by whoever opens it next
    entries = (band.get("colorTable") or {}).get("entries") or []
    colours = {i: "#{:02x}{:02x}{:02x}".format(*entry[:3]) for i, entry in enumerate(entries)
               if MIN_CLASS_ID <= i <= MAX_CLASS_ID}
    if stored:
        try:
            return ClassSchema.from_json(stored), colours
        except (ValueError, BadInputError):
            if events is not None:
                events.warning("The raster's 'landcover_classes' tag is not a valid class list; its category "
                               "names are used instead.")
    names = band.get("categories") or []
    classes = [ClassInfo(i, n.strip(), colours.get(i) or default_colour(n.strip(), i - 1))
               for i, n in enumerate(names) if MIN_CLASS_ID <= i <= MAX_CLASS_ID and n and n.strip()]
    if not classes:
        return None, colours
    try:
        return ClassSchema(classes), colours
    except BadInputError as exc:
        if events is not None:
            events.warning(f"The raster's category names are not a usable class list ({exc.message}).")
        return None, colours


def present_values(path) -> set:
    """The class ids (1..254) that band 1 of a byte raster holds (an exact histogram); None if not byte."""
    gdal.UseExceptions()
    try:
        dataset = gdal.Open(str(path))  # kept referenced: a band outliving its dataset crashes GDAL
        band = dataset.GetRasterBand(1)
        if band.DataType != gdal.GDT_Byte:
            return None
        counts = band.GetHistogram(-0.5, 255.5, 256, include_out_of_range=False, approx_ok=False)
        dataset = None
    except RuntimeError:
        return None
    return {value for value, count in enumerate(counts) if count and MIN_CLASS_ID <= value <= MAX_CLASS_ID}
