"""Read an ONNX model's ``metadata_props`` with the standard library only.

The QGIS side needs the model's resolution before the engine runs (to fetch a web layer at that
resolution) and must not import onnx or onnxruntime. An ONNX file is a protobuf ``ModelProto``:
``metadata_props`` is field 14, repeated ``StringStringEntryProto`` (key = 1, value = 2). The graph
(field 7, where the weights are) is skipped with a seek, never read.
"""
import json

_METADATA_FIELD = 14
_VARINT, _FIXED64, _LENGTH, _FIXED32 = 0, 1, 2, 5


def read_metadata_props(path) -> dict:
    """``metadata_props`` of the ONNX file at ``path`` (str -> str); ValueError if it is not protobuf."""
    props = {}
    with open(path, "rb") as handle:
        size = handle.seek(0, 2)
        handle.seek(0)
        while handle.tell() < size:
            tag = _varint(handle)
            field, wire = tag >> 3, tag & 7
            if wire == _VARINT:
                _varint(handle)
            elif wire == _FIXED64:
                handle.seek(8, 1)
            elif wire == _FIXED32:
                handle.seek(4, 1)
            elif wire == _LENGTH:
                length = _varint(handle)
                if handle.tell() + length > size:
                    raise ValueError("truncated protobuf field")
                if field == _METADATA_FIELD:
                    key, value = _entry(handle.read(length))
                    props[key] = value
                else:
                    handle.seek(length, 1)
            else:
                raise ValueError(f"not an ONNX protobuf (wire type {wire})")
    return props


def model_resolution_of(path):
    """The resolution (m/px) a model file records, or None when it records none or cannot be read."""
    try:
        return model_resolution_m(read_metadata_props(path))
    except (OSError, ValueError, IndexError, UnicodeDecodeError):
        return None


def model_resolution_m(props: dict):
    """The training resolution in metres per pixel from our card (:func:`card_resolution_m`) or, for a model
    without one, the Deepness key (cm), else None."""
    try:
        if "landcover_card" in props:
            return card_resolution_m(json.loads(props["landcover_card"]))
        if props.get("resolution"):
            return float(props["resolution"]) / 100.0
    except (ValueError, TypeError, KeyError, IndexError):
        return None
    return None


DEGREES_READ_AS_METRES = 0.01  # a geographic card's resolution under this is degrees (0.01 deg is about 1 km)


def card_resolution_m(card: dict):
    """The training resolution our model card records, in metres per pixel on the ground (the side of a square
    of the pixel's area: its x and y sides differ in a geographic CRS), or None when it records none.

    Models trained on a raster in a geographic CRS before its pixels were measured on the ground (core/ground.py)
    recorded the pixel size in degrees as if metres (0.0003 for 30 m Landsat): a resolution under
    :data:`DEGREES_READ_AS_METRES` with a geographic CRS is one of those, and is taken as none (no ground
    pixel is 1 cm)."""
    resolution = card.get("resolution")
    if not resolution:
        return None
    sides = [abs(float(v)) for v in (resolution if isinstance(resolution, (list, tuple)) else [resolution])]
    metres = (sides[0] * sides[-1]) ** 0.5
    if metres <= 0 or (metres < DEGREES_READ_AS_METRES and is_geographic_wkt(card.get("crs"))):
        return None
    return metres


def is_geographic_wkt(wkt) -> bool:
    """Whether a CRS's WKT (1 or 2) is a geographic one (degrees), read without GDAL."""
    return (wkt or "").lstrip().upper().startswith(("GEOGCS[", "GEOGCRS[", "GEOGRAPHICCRS[", "GEODCRS["))


def _entry(data: bytes) -> tuple:
    key = value = ""
    position = 0
    while position < len(data):
        tag, position = _varint_bytes(data, position)
        length, position = _varint_bytes(data, position)
        text = data[position:position + length].decode("utf-8")
        position += length
        if tag >> 3 == 1:
            key = text
        elif tag >> 3 == 2:
            value = text
    return key, value


def _varint(handle) -> int:
    result = shift = 0
    while True:
        byte = handle.read(1)
        if not byte:
            raise ValueError("truncated protobuf varint")
        result |= (byte[0] & 0x7F) << shift
        if not byte[0] & 0x80:
            return result
        shift += 7
        if shift > 63:
            raise ValueError("not an ONNX protobuf (varint too long)")


def _varint_bytes(data: bytes, position: int) -> tuple:
    result = shift = 0
    while True:
        byte = data[position]
        position += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, position
        shift += 7
