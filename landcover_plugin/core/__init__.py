"""QGIS-free engine code: tiling, chips, inference, metrics, class schema, model card.

Nothing in this package may import qgis or PyQt (tests/unit/test_no_qgis_imports.py enforces it).
Its command line is the engine: ``python -m landcover_plugin.core.engine <command> ...``.
"""
