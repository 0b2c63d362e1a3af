"""Distances in messages, with the unit of the raster's CRS (a distance without one reads as pixels)."""


def distance_unit(crs) -> str:
    """The unit of distances in ``crs`` (a rasterio CRS or None), for messages: "m", "degrees", "ft", ..."""
    if crs is None:
        return "map units"
    if crs.is_geographic:
        return "degrees"
    name = (crs.linear_units or "").lower()
    return {"metre": "m", "meter": "m", "foot": "ft", "us survey foot": "US survey ft"}.get(name, name or "map units")


def distance_text(value: float, unit: str) -> str:
    """``4,257 m``, ``0.0123 degrees``."""
    return f"{value:,.0f} {unit}" if abs(value) >= 100 else f"{value:.3g} {unit}"
