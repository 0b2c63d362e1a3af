"""Where to digitise next: places where the model is unsure, spread over the map (QGIS-free).

``options`` (the ``suggest-areas`` command's options, light to import), ``suggest`` (the command).
"""
