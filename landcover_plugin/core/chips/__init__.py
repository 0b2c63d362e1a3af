"""Step 2 of the pipeline: raster + training polygons (or a classified raster) -> a chip dataset.

``options`` (the command's options, light to import), ``export`` (the exporter and engine command),
``split`` (the spatial train/validation split), ``label_sources`` (polygons as labels, and what both label
sources share), ``raster_labels`` (a classified raster as labels), ``dataset`` (the ``dataset.json`` contract:
writing and the one reader), ``band_stats``.
"""
