"""The plugin object QGIS loads: registers the Processing provider (desktop and qgis_process)."""
from qgis.core import QgsApplication

from .provider import LandcoverProvider


class LandcoverPlugin:
    def __init__(self, iface):
        self.iface = iface
        self.provider = None

    def initProcessing(self):
        """Called by QGIS desktop (through initGui) and by qgis_process for headless runs."""
        if self.provider is None:
            self.provider = LandcoverProvider()
            QgsApplication.processingRegistry().addProvider(self.provider)

    def initGui(self):
        self.initProcessing()

    def unload(self):
        if self.provider is not None:
            QgsApplication.processingRegistry().removeProvider(self.provider)
            self.provider = None
