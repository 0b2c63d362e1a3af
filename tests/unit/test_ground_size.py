"""A pixel's size on the ground (core.ground), measured on the CRS's ellipsoid at the raster's centre."""
import math

import pytest
import rasterio
from rasterio.crs import CRS
from rasterio.warp import transform

from landcover_plugin.core.ground import GROUND_TOLERANCE, geographic_sides, ground_scale, raster_pixel_size


@pytest.fixture
def zion_centre(shared_data):
    with rasterio.open(shared_data / "zion" / "landsat8_2015_b2345.tif") as src:
        return src.crs, src.transform * (src.width / 2, src.height / 2), src.transform, src.width, src.height


def at(crs, point, epsg):
    x, y = transform(crs, CRS.from_epsg(epsg), [point[0]], [point[1]])
    return CRS.from_epsg(epsg).to_wkt(), x[0], y[0]


def test_utm_units_are_ground_metres(zion_centre):
    crs, centre, affine, width, height = zion_centre
    size = raster_pixel_size(crs, affine, width, height, "EPSG:32612")
    assert (size.nominal, size.ground, size.stretched) == (30.0, 30.0, False)


def test_web_mercator_units_shrink_by_the_cosine_of_the_latitude(zion_centre):
    crs, centre, *_ = zion_centre
    wkt, x, y = at(crs, centre, 3857)
    latitude = transform(crs, CRS.from_epsg(4326), [centre[0]], [centre[1]])[1][0]
    # Web Mercator is spherical; on the WGS 84 ellipsoid the ground size differs from cos(lat) by < 0.5 %.
    assert ground_scale(wkt, x, y, (37.8, 0), (0, -37.8)) == pytest.approx(math.cos(math.radians(latitude)),
                                                                             rel=0.005)


@pytest.mark.parametrize("epsg", [5070, 6933, 3310])  # equal-area and local projections: their units hold
def test_low_distortion_projections_are_taken_as_they_say(zion_centre, epsg):
    crs, centre, *_ = zion_centre
    assert ground_scale(*at(crs, centre, epsg), (30, 0), (0, -30)) == 1.0 and GROUND_TOLERANCE <= 0.01


def test_what_cannot_be_measured_is_taken_as_it_says():
    assert ground_scale(CRS.from_epsg(4326).to_wkt(), -113.0, 37.0) == 1.0  # geographic: not projected
    assert ground_scale("not a CRS", 0.0, 0.0) == 1.0
    assert ground_scale(CRS.from_epsg(3857).to_wkt(), 0.0, 1e9) == 1.0  # beyond the pole


@pytest.mark.parametrize("epsg", [32612, 32733, 26912, 25832])
@pytest.mark.parametrize("offset_km", [-790, -300, 0, 450, 790])
def test_the_utm_shortcut_agrees_with_the_measure(epsg, offset_km):
    """UTM zones skip the measure (GDAL's first transformation costs 3 ms a run): wherever the shortcut applies,
    the measure says the same (CRS units are ground metres)."""
    from affine import Affine
    crs = CRS.from_epsg(epsg)
    easting, northing = 500_000 + 1000 * offset_km, (4_150_000 if epsg != 32733 else 7_000_000)
    affine = Affine(30.0, 0.0, easting - 15_000, 0.0, -30.0, northing + 15_000)
    assert raster_pixel_size(crs, affine, 1000, 1000).scale == 1.0
    assert ground_scale(crs.to_wkt(), easting, northing, (30.0, 0.0), (0.0, -30.0)) == 1.0


def test_a_geographic_pixel_is_measured_on_the_ground_each_way(zion_centre):
    """0.0003 deg at Zion (37.3 N) on WGS 84, against the same steps projected to its UTM zone by PROJ (scale
    factor within 0.01 % there): 26.6 m east-west, 33.3 m north-south."""
    crs, centre, *_ = zion_centre
    wgs84 = CRS.from_epsg(4326)
    (lon,), (lat,) = transform(crs, wgs84, [centre[0]], [centre[1]])
    sides = geographic_sides(wgs84.to_wkt(), lon, lat, (0.0003, 0.0), (0.0, -0.0003))
    xs, ys = transform(wgs84, crs, [lon, lon + 0.0003, lon], [lat, lat, lat - 0.0003])
    projected = [math.hypot(xs[k] - xs[0], ys[k] - ys[0]) for k in (1, 2)]
    assert sides == pytest.approx(projected, rel=0.001)
    assert sides == pytest.approx((26.6, 33.3), abs=0.05)
    assert geographic_sides(crs.to_wkt(), centre[0], centre[1], (30, 0), (0, -30)) is None  # projected: no
