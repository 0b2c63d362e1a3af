"""Step 3 of the pipeline: chip dataset -> trained network -> ONNX model.

Only the command's options live here (light to import, read by the QGIS side for defaults and choices);
the trainer itself is the top-level ``training`` package (torch), run by the engine's ``train`` command.
"""
