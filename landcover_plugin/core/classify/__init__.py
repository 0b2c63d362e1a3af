"""Step 4 of the pipeline: ONNX model + raster -> classified GeoTIFF.

``options`` (the command's options, light to import), ``run`` (the pipeline and engine command),
``source`` (reading and standardising tile batches), ``tiling`` (the tile grid and probability blending).
The classified raster itself is written by :mod:`landcover_plugin.core.classified_raster`.
"""
