"""The trainer: chip dataset -> segmentation network (plain torch) -> self-describing ONNX model.

Runs in the engine's Python (torch, onnx, onnxruntime, rasterio), never inside QGIS.
Library entry point: ``training.loop.train(TrainConfig(...), events) -> dict``;
engine command: ``python -m landcover_plugin.core.engine train ...`` (``training.cli``).
"""
