"""QGIS-side glue without widgets: layers to files, engine runs to feedback, styling, settings."""
