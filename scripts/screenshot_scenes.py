"""Run inside a real QGIS window (``qgis --code``) by scripts/screenshots.py; not imported elsewhere.

Takes the README's screenshots from `make demo`'s outputs: the Processing toolbox with the provider, a training
layer being digitised with its class drop-down, the classified maps with their legends, the report, a reference
sample being labelled, the area estimates of the labelled sample (NLCD labels each point, as an interpreter), a
short training run's Log in the algorithm dialog and its training report.
Paths come from the environment: LANDCOVER_DEMO (demo_output) and LANDCOVER_SHOTS (where PNGs go);
LANDCOVER_SCENES (comma-separated names) takes only those scenes.
"""
import os
import traceback
from pathlib import Path

from qgis.core import (
    QgsApplication,
    QgsContrastEnhancement,
    QgsFeature,
    QgsProject,
    QgsRasterLayer,
    QgsRasterMinMaxOrigin,
    QgsVectorLayer,
)
from qgis.PyQt.QtCore import QTimer, QUrl
from qgis.PyQt.QtGui import QGuiApplication
from qgis.utils import iface, plugins

DEMO = Path(os.environ["LANDCOVER_DEMO"])
SHOTS = Path(os.environ["LANDCOVER_SHOTS"])
SHOTS.mkdir(parents=True, exist_ok=True)
_keep = []  # widgets that must outlive their scene


def screen(name: str, widget=None) -> None:
    image = widget.grab() if widget is not None else QGuiApplication.primaryScreen().grabWindow(0)
    image.save(str(SHOTS / f"{name}.png"))
    print(f"screenshot {SHOTS / name}.png", flush=True)


def clear() -> None:
    QgsProject.instance().removeAllMapLayers()
    for widget in _keep:
        widget.close()
    _keep.clear()


def show_raster(path: Path, name: str):
    """Add a raster and frame it, with the project in the raster's CRS."""
    layer = iface.addRasterLayer(str(path), name)
    QgsProject.instance().setCrs(layer.crs())
    iface.mapCanvas().setExtent(layer.extent())
    iface.mapCanvas().refresh()
    return layer


def toolbox() -> None:
    clear()
    iface.mainWindow().setGeometry(0, 0, 1600, 1000)  # no window manager under Xvfb to maximise it
    raster = show_raster(DEMO / "data/rstoolbox/landsat5_1988_7band.tif", "Landsat 5 (1988)")
    _true_colour(raster, 3, 2, 1)
    box = plugins["processing"].toolbox
    box.setVisible(True)
    box.raise_()
    box.searchBox.setText("landcover:")


def digitising() -> None:
    import processing

    clear()
    plugins["processing"].toolbox.searchBox.setText("")
    _layer_panel()
    raster = show_raster(DEMO / "data/rstoolbox/landsat5_1988_7band.tif", "Landsat 5 (1988)")
    _true_colour(raster, 3, 2, 1)
    target = DEMO / "screenshots_training_areas.gpkg"
    target.unlink(missing_ok=True)
    processing.runAndLoadResults("landcover:create_training_layer", {
        "CRS": raster.crs(), "CLASSES": ["1", "forest", "", "2", "water", "", "3", "cleared", "",
                                         "4", "fallen_dry", ""],
        "LAYER_NAME": "training_areas", "OUTPUT": str(target)})
    layer = QgsProject.instance().mapLayersByName("training_areas")[0]
    source = QgsVectorLayer(str(DEMO / "data/rstoolbox/training_polygons.gpkg"), "polygons", "ogr")
    names = {"forest": 1, "water": 2, "cleared": 3, "fallen_dry": 4}
    field = layer.fields().indexOf("class_id")
    layer.startEditing()
    for polygon in source.getFeatures():
        feature = QgsFeature(layer.fields())
        feature.setGeometry(polygon.geometry())
        feature.setAttribute(field, names[polygon["class"]])
        layer.addFeature(feature)
    iface.setActiveLayer(layer)
    new = QgsFeature(layer.fields())
    new.setAttribute(field, 2)
    form = iface.getFeatureForm(layer, new)
    form.setWindowTitle("training_areas - Feature Attributes")
    form.move(900, 350)
    form.show()
    _keep.append(form)


def classified(scene: str) -> None:
    clear()
    _layer_panel()
    show_raster(DEMO / scene / "landcover.tif", f"{scene} land cover")
    iface.layerTreeView().expandAll()


def report() -> None:
    clear()
    from qgis.PyQt.QtWebKitWidgets import QWebView

    view = QWebView()
    view.setGeometry(0, 0, 1100, 1000)
    view.load(QUrl.fromLocalFile(str(DEMO / "zion" / "accuracy_report.html")))
    view.show()
    _keep.append(view)


def reference_sample() -> None:
    """The Zion map with a reference sample half labelled, and a point's form: the class drop-down."""
    import processing

    clear()
    _layer_panel()
    show_raster(DEMO / "zion" / "landcover.tif", "zion land cover")
    target = DEMO / "screenshots_reference_sample.gpkg"
    target.unlink(missing_ok=True)
    processing.runAndLoadResults("landcover:create_reference_sample", {
        "INPUT": str(DEMO / "zion" / "landcover.tif"), "TARGET_SE": 0.02, "SEED": 1, "OUTPUT": str(target)})
    layer = QgsProject.instance().mapLayersByName("reference_sample")[0]
    unlabelled = _label_from_nlcd(layer, every=2)
    layer.startEditing()  # as the interpreter works: the drop-down is live
    iface.layerTreeView().expandAll()
    iface.setActiveLayer(layer)
    form = iface.getFeatureForm(layer, unlabelled)
    form.setWindowTitle("reference_sample - Feature Attributes")
    form.move(900, 350)
    form.show()
    _keep.append(form)


def area_estimates() -> None:
    """Assess accuracy with the labelled sample; the report's area section."""
    import processing

    layer = QgsProject.instance().mapLayersByName("reference_sample")[0]
    layer.rollBack()
    _label_from_nlcd(layer, every=1)
    html = DEMO / "screenshots_sample_report" / "accuracy_report.html"
    processing.run("landcover:assess_accuracy", {
        "CLASSIFIED": str(DEMO / "zion" / "landcover.tif"), "REFERENCE_VECTOR": layer,
        "CLASS_FIELD": "reference_class", "OUTPUT_HTML": str(html), "OUTPUT_TABLE": str(html.with_suffix(".csv"))})
    clear()
    from qgis.PyQt.QtWebKitWidgets import QWebView

    view = QWebView()
    view.setGeometry(0, 0, 1250, 1000)
    url = QUrl.fromLocalFile(str(html))
    url.setFragment("area-estimates")
    view.load(url)
    view.show()
    _keep.append(view)


def _label_from_nlcd(layer, every: int):
    """The stand-in interpreter: every ``every``-th point gets NLCD's class; returns an unlabelled feature."""
    nlcd = QgsRasterLayer(str(DEMO / "data/zion/nlcd2011_8class.tif"), "nlcd")
    index = layer.fields().indexOf("reference_class")
    layer.startEditing()
    left = None
    for number, feature in enumerate(layer.getFeatures()):
        value, found = nlcd.dataProvider().sample(feature.geometry().asPoint(), 1)
        if number % every == 0 and found and 1 <= value <= 254:
            layer.changeAttributeValue(feature.id(), index, int(value))
        elif left is None:
            left = feature
    layer.commitChanges()
    layer.triggerRepaint()
    return left


def training_report() -> None:
    clear()
    from qgis.PyQt.QtWebKitWidgets import QWebView

    view = QWebView()
    view.setGeometry(0, 0, 1100, 1000)
    view.load(QUrl.fromLocalFile(str(DEMO / "screenshot_model_report.html")))  # the training_log scene's
    view.show()
    _keep.append(view)


def training_log() -> None:
    """The Train dialog running a short training on the demo's rstoolbox chips, its Log tab showing."""
    clear()
    import processing

    dialog = processing.createAlgorithmDialog("landcover:train_segmentation_model", {
        "DATASET": str(DEMO / "rstoolbox" / "chips"), "EPOCHS": 4, "BATCH_SIZE": 8, "BASE_WIDTH": 16,
        "PATIENCE": 0, "OUTPUT": str(DEMO / "screenshot_model.onnx"),
        "OUTPUT_REPORT": str(DEMO / "screenshot_model_report.html")})
    dialog.setGeometry(0, 0, 1250, 760)
    dialog.show()
    dialog.runAlgorithm()
    _keep.append(dialog)
    BEFORE_GRAB["training_log"] = lambda: _scroll_log_to(dialog, "Epoch 1:")


def _scroll_log_to(dialog, text: str) -> None:
    """Scroll the dialog's Log so the line holding ``text`` is near the top."""
    from qgis.PyQt.QtWidgets import QTextEdit

    log = dialog.findChild(QTextEdit, "txtLog")
    if log is None:
        return
    cursor = log.document().find(text)
    if cursor.isNull():
        return
    cursor.clearSelection()
    log.setTextCursor(cursor)
    bar = log.verticalScrollBar()
    bar.setValue(bar.value() + log.cursorRect().top() - 40)


def _layer_panel() -> None:
    plugins["processing"].toolbox.setVisible(False)


def _true_colour(layer: QgsRasterLayer, red: int, green: int, blue: int) -> None:
    renderer = layer.renderer()
    renderer.setRedBand(red)
    renderer.setGreenBand(green)
    renderer.setBlueBand(blue)
    layer.setContrastEnhancement(QgsContrastEnhancement.StretchToMinimumMaximum, QgsRasterMinMaxOrigin.CumulativeCut)
    layer.triggerRepaint()


SCENES = [
    (toolbox, "toolbox"),
    (digitising, "digitising"),
    (lambda: classified("rstoolbox"), "classified_rstoolbox"),
    (lambda: classified("zion"), "classified_zion"),
    (report, "report"),
    (reference_sample, "reference_sample"),
    (area_estimates, "area_estimates"),
    (training_log, "training_log"),
    (training_report, "training_report"),
]
if os.environ.get("LANDCOVER_SCENES"):
    SCENES = [scene for scene in SCENES if scene[1] in os.environ["LANDCOVER_SCENES"].split(",")]
WIDGET_SCENES = {"report", "area_estimates", "training_log", "training_report"}  # grabbed as the widget alone
BEFORE_GRAB = {}  # name -> what to do just before the grab
DELAYS = {"training_log": 180000}  # ms before the grab: the training runs to its end first


def run_scene(index: int = 0) -> None:
    if index == len(SCENES):
        QgsApplication.exit(0)
        return
    action, name = SCENES[index]
    try:
        action()
    except Exception:  # noqa: BLE001 - report and go on with the other scenes
        traceback.print_exc()
    widget = _keep[-1] if name in WIDGET_SCENES and _keep else None
    QTimer.singleShot(DELAYS.get(name, 5000), lambda: (BEFORE_GRAB.get(name, lambda: None)(), screen(name, widget),
                                                       run_scene(index + 1)))


QTimer.singleShot(4000, run_scene)
