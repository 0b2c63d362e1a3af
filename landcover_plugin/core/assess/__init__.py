"""Step 5 of the pipeline: classified raster + reference polygons or raster -> accuracy report.

``options`` (the command's options, light to import), ``assess`` (the assessment and engine command),
``reference`` (streaming reference data onto the map's grid), ``metrics`` (confusion matrix -> OA,
kappa, per-class scores), ``report`` (CSV, plots, HTML).
"""
