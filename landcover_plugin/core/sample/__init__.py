"""Reference samples for accuracy and area estimation (Olofsson et al. 2014), QGIS-free.

``options`` (the ``create-sample`` command's options, light to import), ``design`` (sample size from a
target standard error, allocation to strata), ``draw`` (stratified random points from a classified raster,
written to a GeoPackage with the design stored beside them).
"""
