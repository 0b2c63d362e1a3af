"""Step 5 of the pipeline: classified raster + reference polygons or raster -> accuracy report.

``options`` (the command's options, light to import), ``assess`` (the assessment and engine command: its
checks and inputs), ``counting`` (the confusion counts and mapped areas, window by window), ``results`` (the
report from the counts, its files written all or none), ``reference`` (streaming reference data onto the map's
grid), ``metrics`` (confusion matrix -> OA, kappa, per-class scores), ``report`` (CSV, plots, HTML).
"""
