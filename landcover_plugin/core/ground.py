"""A pixel's size on the ground, for comparing a raster's resolution with a model's.

A projected CRS's units are metres on the ground only where its scale factor is 1. Web Mercator (EPSG:3857)
stretches them by 1/cos(latitude): a 30 m Landsat pixel at 37 deg N is 37.8 EPSG:3857 units wide. A model
learnt objects at a size on the ground, so the classifier compares (and resamples to) ground metres.

The ground size is measured at a point: the distance on the CRS's ellipsoid between neighbouring pixel centres,
along each side of the pixel. Neighbouring centres are so close that the ellipsoid's local radii of curvature
give that distance exactly (to ~1e-10 of it). The pixel's ground size is the side of the square of the same area
(the geometric mean of its two sides), so an equal-area projection (e.g. CONUS Albers, EPSG:5070) keeps its
nominal size. A ground size within :data:`GROUND_TOLERANCE` of the nominal one is taken to be the nominal one:
UTM (scale factor 0.9996 to ~1.001 in its zone) and other low-distortion projections are read as they say.

A geographic CRS (EPSG:4326, as Google Earth Engine exports by default) has no metres at all: a pixel of
0.0003 degrees is 26.6 m east-west by 33.3 m north-south at 37 deg N. Its sides are measured on the ellipsoid the
same way (:func:`geographic_sides`), so a raster in degrees is compared with a model's metres, resampled to them
(to a pixel square on the ground at its centre, so not square in degrees), and a model trained on it records its
resolution in metres, not in degrees read as metres (a 30 m model once said 0.0003 m, and Deepness's
``resolution`` 0.03 cm).

GDAL's ``osr`` only (no pyproj: it is not among the engine's requirements); QGIS-free.
"""
import math
from dataclasses import dataclass

GROUND_TOLERANCE = 0.01  # ground and nominal sizes closer than 1 % are the same: the CRS's units are metres


@dataclass(frozen=True)
class PixelSize:
    """A raster's pixel size: ``nominal`` as its CRS's units say (metres, or ``unit`` "degrees" for a geographic
    CRS), ``ground`` in metres on the ground at a point (equal to ``nominal`` within :data:`GROUND_TOLERANCE`, or
    when it cannot be measured); for a geographic CRS, ``sides``: the ground metres of the pixel's x and y sides,
    and ``degrees``: the same sides in degrees."""
    nominal: float
    ground: float
    crs_name: str = ""
    unit: str = "m"
    sides: tuple = None
    degrees: tuple = None

    @property
    def scale(self) -> float:
        """Ground metres per nominal metre."""
        return self.ground / self.nominal

    @property
    def stretched(self) -> bool:
        return self.ground != self.nominal

    def note(self) -> str:
        """E.g. '37.8 m per pixel in EPSG:3857 units, 30.0 m on the ground at the raster's centre'."""
        if self.sides:
            shown = " x ".join(f"{v:.3g}" for v in dict.fromkeys(self.degrees))  # one figure when square
            return (f"{shown} {self.unit} per pixel in {self.crs_name or 'the CRS'}, {self.ground:.1f} m "
                    f"on the ground at the raster's centre ({self.sides[0]:.1f} m east-west by {self.sides[1]:.1f} m "
                    f"north-south)")
        return (f"{self.nominal:.1f} m per pixel in {self.crs_name or 'the CRS'} units, {self.ground:.1f} m on "
                f"the ground at the raster's centre")

    def steps_for(self, metres: float, transform) -> tuple:
        """The (x, y) pixel steps in CRS units of a grid at ``metres`` on the ground at the raster's centre, for a
        raster of this pixel size on ``transform``: square in metres, so not in degrees."""
        if self.sides:
            return (metres * math.hypot(transform.a, transform.d) / self.sides[0],
                    metres * math.hypot(transform.b, transform.e) / self.sides[1])
        step = metres * math.hypot(transform.a, transform.d) / self.ground  # CRS units per pixel, square
        return step, step


def ground_scale(crs_wkt: str, x: float, y: float, dx=(1.0, 0.0), dy=(0.0, 1.0)) -> float:
    """Ground metres per metre of the CRS's (linear) units at ``x``, ``y`` (CRS coordinates), measured along the
    steps ``dx`` and ``dy`` (CRS units: a pixel's two sides); 1.0 within :data:`GROUND_TOLERANCE`, and for a CRS
    that is not projected or a point it cannot place on the ellipsoid."""
    measured = _measure(crs_wkt, x, y, dx, dy)
    if measured is None or not math.isfinite(measured) or measured <= 0 or abs(measured - 1) <= GROUND_TOLERANCE:
        return 1.0
    return measured


def units_for_ground_metres(crs_wkt: str, x: float, y: float, metres: float) -> float:
    """How many units of a projected CRS in metres make ``metres`` on the ground at ``x``, ``y``: the pixel size
    to fetch a layer at for a model's resolution (e.g. 37.8 Web Mercator units for 30 m at 37 deg N)."""
    return metres / ground_scale(crs_wkt, x, y, (metres, 0.0), (0.0, -metres))


def steps_for_ground_metres(crs_wkt: str, x: float, y: float, metres: float) -> tuple:
    """The (x, y) pixel steps in a CRS's units that make ``metres`` on the ground at ``x``, ``y``: square for a
    projected CRS in metres (:func:`units_for_ground_metres`), per axis for a geographic one (30 m at 37.3 N:
    0.000338 x 0.000270 degrees)."""
    sides = geographic_sides(crs_wkt, x, y, (1e-4, 0.0), (0.0, 1e-4))
    if sides is not None:
        return metres * 1e-4 / sides[0], metres * 1e-4 / sides[1]
    step = units_for_ground_metres(crs_wkt, x, y, metres)
    return step, step


def raster_pixel_size(crs, transform, width: int, height: int, crs_name: str = "") -> PixelSize:
    """The pixel size of a raster (rasterio ``crs`` and affine ``transform``) at its centre, in metres.
    ``crs`` is projected (linear units) or geographic (degrees; None when its sides cannot be measured);
    ``crs_name`` names it in :meth:`PixelSize.note`."""
    centre = transform * (width / 2.0, height / 2.0)
    if crs.is_geographic:
        sides = geographic_sides(crs.to_wkt(), centre[0], centre[1], (transform.a, transform.d),
                                 (transform.b, transform.e))
        if sides is None:
            return None
        degrees = (math.hypot(transform.a, transform.d), math.hypot(transform.b, transform.e))
        return PixelSize(math.sqrt(degrees[0] * degrees[1]), math.sqrt(sides[0] * sides[1]), crs_name, "degrees",
                         sides, degrees)
    nominal = math.hypot(transform.a, transform.d) * crs.linear_units_factor[1]
    if _inside_a_utm_zone(crs, centre[0]):  # the common case, without GDAL's first transformation (3 ms a run)
        return PixelSize(nominal, nominal, crs_name)
    scale = ground_scale(crs.to_wkt(), centre[0], centre[1], (transform.a, transform.d), (transform.b, transform.e))
    return PixelSize(nominal, nominal * scale, crs_name)


UTM_ZONES = (range(32601, 32661), range(32701, 32761), range(26901, 26924), range(25828, 25839))  # WGS 84,
# NAD83, ETRS89
UTM_SAFE_EASTING_M = 800_000  # from the central meridian (false easting 500 km): scale within 0.9996..1.008


def _inside_a_utm_zone(crs, easting: float) -> bool:
    """A UTM CRS (by EPSG code) at an easting where its scale factor is within :data:`GROUND_TOLERANCE` of 1."""
    code = crs.to_epsg()
    return any(code in zones for zones in UTM_ZONES) and abs(easting - 500_000) < UTM_SAFE_EASTING_M


def ground_resolution(dataset):
    """[x, y] metres per pixel on the ground at the centre of ``dataset`` (an open rasterio dataset): what a model
    trained on it records as its resolution; None for a raster with no CRS (or one neither projected nor
    geographic)."""
    crs = dataset.crs
    if crs is not None and crs.is_geographic:
        size = raster_pixel_size(crs, dataset.transform, dataset.width, dataset.height)
        return list(size.sides) if size else None
    if crs is None or not crs.is_projected:
        return None
    size = raster_pixel_size(crs, dataset.transform, dataset.width, dataset.height)
    factor = crs.linear_units_factor[1]
    return [abs(dataset.res[0]) * factor * size.scale, abs(dataset.res[1]) * factor * size.scale]


def _on_srs(crs_wkt: str, measure):
    """``measure(srs)`` on GDAL's ``osr.SpatialReference`` of ``crs_wkt``, with osr's exceptions on (and left as
    they were after); None when the CRS cannot be read or measured."""
    from osgeo import osr  # noqa: PLC0415 - GDAL's bindings, only when a CRS is measured

    previous = osr.GetUseExceptions()
    osr.UseExceptions()
    try:
        srs = osr.SpatialReference()
        srs.ImportFromWkt(crs_wkt)
        return measure(srs)
    except (RuntimeError, TypeError, ValueError, ZeroDivisionError):
        return None
    finally:
        if not previous:
            osr.DontUseExceptions()


def _measure(crs_wkt: str, x: float, y: float, dx, dy):
    def scale(projected):
        from osgeo import osr  # noqa: PLC0415 - GDAL's bindings, only when a CRS is measured

        if not projected.IsProjected():
            return None
        geographic = projected.CloneGeogCS()
        for srs in (projected, geographic):
            srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
        to_lonlat = osr.CoordinateTransformation(projected, geographic)
        a, inverse_flattening = projected.GetSemiMajor(), projected.GetInvFlattening()
        units = projected.GetLinearUnits()  # metres per CRS unit
        centre = to_lonlat.TransformPoint(x, y)[:2]
        areas = []
        for step in (dx, dy):
            other = to_lonlat.TransformPoint(x + step[0], y + step[1])[:2]
            nominal = math.hypot(*step) * units
            areas.append(_distance(centre, other, a, inverse_flattening) / nominal)
        return math.sqrt(areas[0] * areas[1])

    return _on_srs(crs_wkt, scale)


def geographic_sides(crs_wkt: str, x: float, y: float, dx, dy):
    """Ground metres of the steps ``dx`` and ``dy`` (a pixel's two sides, in the CRS's angular units, x = longitude)
    at ``x``, ``y`` in a geographic CRS: ``(x side, y side)``; None when the CRS cannot be read as one."""
    def sides_of(srs):
        if not srs.IsGeographic():
            return None
        a, inverse_flattening = srs.GetSemiMajor(), srs.GetInvFlattening()
        degrees = math.degrees(srs.GetAngularUnits())  # degrees per unit of the CRS (1 for degrees)
        centre = (x * degrees, y * degrees)
        sides = tuple(_distance(centre, ((x + step[0]) * degrees, (y + step[1]) * degrees), a, inverse_flattening)
                      for step in (dx, dy))
        return sides if all(math.isfinite(v) and v > 0 for v in sides) else None

    return _on_srs(crs_wkt, sides_of)


def _distance(p, q, a: float, inverse_flattening: float) -> float:
    """Metres between two nearby points (lon, lat in degrees) on the ellipsoid (semi-major axis ``a``; a sphere
    when ``inverse_flattening`` is 0): the local radii of curvature at their mid-latitude."""
    e2 = 0.0 if not inverse_flattening else (2 - 1 / inverse_flattening) / inverse_flattening
    lat = math.radians((p[1] + q[1]) / 2)
    w = math.sqrt(1 - e2 * math.sin(lat) ** 2)
    meridian, prime_vertical = a * (1 - e2) / w ** 3, a / w
    dlon = math.radians((q[0] - p[0] + 180) % 360 - 180)
    return math.hypot(prime_vertical * math.cos(lat) * dlon, meridian * math.radians(q[1] - p[1]))
