"""Land cover QGIS plugin. QGIS calls :func:`classFactory`; nothing here needs QGIS at import time,
so the engine (``landcover_plugin.core``) imports this package without QGIS."""


def classFactory(iface):
    from .plugin import LandcoverPlugin

    return LandcoverPlugin(iface)
