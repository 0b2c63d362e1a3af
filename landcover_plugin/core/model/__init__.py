"""The self-describing ONNX model file (DESIGN.md, "Model").

``card`` (our card and the Deepness metadata keys, written and read), ``metadata`` (reading a model's
metadata with the standard library only, for the QGIS side), ``session`` (onnxruntime sessions).
"""
