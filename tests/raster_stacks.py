"""Rasters stacked from bands of different kinds, as analysts build them, for tests."""
import numpy as np
import rasterio
from osgeo import gdal


def zion_ndvi_stack(shared_data, folder, cloud) -> dict:
    """Zion's red and NIR (uint16, nodata 65535) and their NDVI (float32, nodata -9999, also over the ``cloud``
    (rows, cols) slices) in a virtual raster of three bands, as QGIS's 'Build virtual raster' with 'Place each
    input file into a separate band' makes it: ``{"path", "valid" (every band has data), "ndvi", "red"}``."""
    with rasterio.open(shared_data / "zion" / "landsat8_2015_b2345.tif") as src:
        red, nir, profile = src.read(3), src.read(4), src.profile
    for name, band in (("red", red), ("nir", nir)):
        with rasterio.open(folder / f"{name}.tif", "w", **dict(profile, count=1)) as dst:
            dst.write(band, 1)
    valid = (red != 65535) & (nir != 65535)
    ndvi = np.where(valid, (nir.astype(np.float32) - red) / np.maximum(nir.astype(np.float32) + red, 1), -9999)
    ndvi[cloud] = -9999
    with rasterio.open(folder / "ndvi.tif", "w", **dict(profile, count=1, dtype="float32", nodata=-9999)) as dst:
        dst.write(ndvi.astype(np.float32), 1)
    path = folder / "stack.vrt"
    gdal.BuildVRT(str(path), [str(folder / f"{n}.tif") for n in ("red", "nir", "ndvi")], separate=True).FlushCache()
    with rasterio.open(path) as src:
        assert src.dtypes == ("uint16", "uint16", "float32") and src.nodatavals == (65535, 65535, -9999)
    return {"path": path, "valid": valid & (ndvi != -9999), "ndvi": ndvi, "red": red}
