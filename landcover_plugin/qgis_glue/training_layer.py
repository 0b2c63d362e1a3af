"""The training areas layer: a polygon GeoPackage whose class field is a drop-down of the class schema
and whose style shows each class in its colour, plus the schema stored with it.

The schema travels with the layer three ways, so later steps find names and colours again:
a ``landcover_classes`` table (id, name, colour) in the same GeoPackage, the layer's default style
saved in the GeoPackage (ValueMap widget, categorised renderer, custom properties), and the
``landcover/classes`` custom property of the loaded layer. :func:`schema_for_layer` reads them back,
and also understands layers styled elsewhere (categorised vectors, paletted rasters, classes.json).
"""
import json

from qgis.core import (
    QgsCategorizedSymbolRenderer,
    QgsCoordinateReferenceSystem,
    QgsEditorWidgetSetup,
    QgsFeature,
    QgsField,
    QgsFieldConstraints,
    QgsFields,
    QgsFillSymbol,
    QgsProcessingException,
    QgsProcessingUtils,
    QgsRasterLayer,
    QgsRendererCategory,
    QgsVectorFileWriter,
    QgsVectorLayer,
    QgsWkbTypes,
)
from qgis.PyQt.QtCore import QVariant

from ..core.class_files import find_sidecar, read_classes_json
from ..core.errors import BadInputError
from ..core.raster_classes import embedded_classes, present_values
from ..core.schema import MAX_CLASS_ID, MIN_CLASS_ID, ClassSchema

SCHEMA_TABLE = "landcover_classes"
SCHEMA_PROPERTY = "landcover/classes"
FIELD_PROPERTY = "landcover/class_field"
FILL_ALPHA = 140


def create_training_gpkg(path: str, layer_name: str, class_field: str, crs: QgsCoordinateReferenceSystem,
                         schema: ClassSchema, transform_context) -> str:
    """Write an empty polygon layer and the ``landcover_classes`` table into a new GeoPackage; returns
    the layer's source (``path|layername=...``)."""
    fields = QgsFields()
    fields.append(QgsField(class_field, QVariant.Int))
    _write_layer(path, layer_name, fields, QgsWkbTypes.Polygon, crs, transform_context, [], overwrite_file=True)
    table_fields = QgsFields()
    for name, kind in (("id", QVariant.Int), ("name", QVariant.String), ("colour", QVariant.String)):
        table_fields.append(QgsField(name, kind))
    rows = [[c.id, c.name, c.colour] for c in schema]
    _write_layer(path, SCHEMA_TABLE, table_fields, QgsWkbTypes.NoGeometry, QgsCoordinateReferenceSystem(),
                 transform_context, rows, overwrite_file=False)
    return f"{path}|layername={layer_name}"


def _write_layer(path, layer_name, fields, geometry_type, crs, transform_context, rows, overwrite_file):
    options = QgsVectorFileWriter.SaveVectorOptions()
    options.driverName = "GPKG"
    options.layerName = layer_name
    options.fileEncoding = "UTF-8"
    if not overwrite_file:
        options.actionOnExistingFile = QgsVectorFileWriter.CreateOrOverwriteLayer
    writer = QgsVectorFileWriter.create(path, fields, geometry_type, crs, transform_context, options)
    if writer.hasError() != QgsVectorFileWriter.NoError:
        message = writer.errorMessage()
        del writer
        raise QgsProcessingException(f"Cannot create the GeoPackage {path}: {message}. Choose a folder you can "
                                     f"write to.")
    for row in rows:
        feature = QgsFeature(fields)
        feature.setAttributes(row)
        writer.addFeature(feature)
    del writer  # closes the file


def style_training_layer(layer: QgsVectorLayer, schema: ClassSchema, class_field: str) -> None:
    """Drop-down of class names on the class field, categorised style in the class colours, schema as
    custom properties. An integer class field stores the class ids; a text one (a layer that holds the class as
    its name) the names themselves, so the drop-down writes and the style reads the names there."""
    index = layer.fields().indexOf(class_field)
    if index < 0:
        raise QgsProcessingException(f"The layer '{layer.name()}' has no field '{class_field}'.")
    text = layer.fields().at(index).type() == QVariant.String
    values = {c.id: c.name if text else c.id for c in schema}
    layer.setFieldAlias(index, "Class")
    layer.setFieldConstraint(index, QgsFieldConstraints.ConstraintNotNull, QgsFieldConstraints.ConstraintStrengthSoft)
    # last: on QGIS 3.22 setting an alias afterwards drops the widget setup
    layer.setEditorWidgetSetup(index, QgsEditorWidgetSetup("ValueMap", {"map": [{c.name: values[c.id]}
                                                                                for c in schema]}))
    categories = []
    for c in schema:
        r, g, b = c.rgb
        symbol = QgsFillSymbol.createSimple({"color": f"{r},{g},{b},{FILL_ALPHA}", "outline_color": f"{r},{g},{b},255",
                                             "outline_width": "0.5"})
        categories.append(QgsRendererCategory(values[c.id], symbol, c.name))
    layer.setRenderer(QgsCategorizedSymbolRenderer(class_field, categories))
    layer.setCustomProperty(SCHEMA_PROPERTY, schema.to_json())
    layer.setCustomProperty(FIELD_PROPERTY, class_field)


def save_default_style(layer: QgsVectorLayer) -> None:
    """Store the style in the GeoPackage as its default, so it comes back whenever the layer is loaded."""
    result = layer.saveStyleToDatabase(layer.name(), "Land cover training areas: class drop-down and colours",
                                       True, "")
    message = result if isinstance(result, str) else (result[-1] if result else "")
    if message:
        raise QgsProcessingException(f"Could not save the style into the GeoPackage: {message}")


# -- reading a schema back ------------------------------------------------------------------------
def schema_for_layer(layer, class_field: str = None):
    """The class schema a layer carries, or None: our custom property, the GeoPackage's
    ``landcover_classes`` table, a categorised style on ``class_field`` (vector), or a paletted
    style / ``classes.json`` sidecar (raster)."""
    if layer is None:
        return None
    if isinstance(layer, QgsRasterLayer):
        return schema_from_raster_layer(layer)
    stored = layer.customProperty(SCHEMA_PROPERTY)
    if stored:
        return ClassSchema.from_json(stored)
    table = schema_table_of(layer.source())
    if table is not None:
        return table
    return schema_from_categorised_layer(layer, class_field)


def schema_table_of(source: str):
    """The schema in the ``landcover_classes`` table of the GeoPackage behind ``source``, or None."""
    path = source.split("|", 1)[0]
    if not path.lower().endswith(".gpkg"):
        return None
    table = QgsVectorLayer(f"{path}|layername={SCHEMA_TABLE}", SCHEMA_TABLE, "ogr")
    if not table.isValid() or not {"id", "name", "colour"} <= set(table.fields().names()):
        return None
    rows = [{"id": f["id"], "name": f["name"], "colour": f["colour"]} for f in table.getFeatures()]
    return ClassSchema.from_list(sorted(rows, key=lambda r: r["id"])) if rows else None


def schema_from_categorised_layer(layer, class_field: str = None):
    """Classes from a categorised renderer (on ``class_field`` when given): numeric category values
    are the ids; text values become names with ids 1..n in the style's order."""
    renderer = layer.renderer()
    if not isinstance(renderer, QgsCategorizedSymbolRenderer):
        return None
    if class_field and renderer.classAttribute() != class_field:
        return None
    categories = [c for c in renderer.categories() if c.value() not in (None, "") and c.symbol() is not None]
    if not categories:
        return None
    numeric = all(_as_int(c.value()) is not None for c in categories)
    items = []
    for index, category in enumerate(categories):
        colour = category.symbol().color().name()
        if numeric:
            class_id = _as_int(category.value())
            name = category.label() or f"class {class_id}"
        else:
            class_id, name = index + 1, str(category.value())
        items.append({"id": class_id, "name": name, "colour": colour})
    return _schema_or_message(items, layer.name())


def schema_from_raster_layer(layer: QgsRasterLayer):
    """Classes of a classified raster: its paletted style (value, label, colour), else a classes.json
    beside its file.

    A paletted style that QGIS made from a colour table lists every entry (256 for our rasters): only the
    classes the raster declares (our ``landcover_classes`` tag, else its category names), or else the values
    it holds, are taken, so no phantom classes reach the training layer."""
    renderer = layer.renderer()
    if renderer is not None and renderer.type() == "paletted":
        items = [{"id": int(c.value), "name": c.label or f"class {int(c.value)}", "colour": c.color.name()}
                 for c in renderer.classes() if MIN_CLASS_ID <= int(c.value) <= MAX_CLASS_ID]
        keep = _declared_or_present_ids(layer)
        if keep is not None:
            items = [item for item in items if item["id"] in keep]
        named = any(item["name"] != str(item["id"]) for item in items)
        if items and named:
            return _schema_or_message(items, layer.name())
    sidecar = find_sidecar(layer.source(), folder_level=True) if layer.providerType() == "gdal" else None
    if sidecar is not None:
        try:
            return read_classes_json(sidecar)
        except BadInputError as exc:
            raise QgsProcessingException(exc.message) from exc
    return None


def _declared_or_present_ids(layer: QgsRasterLayer):
    """The class ids a GDAL raster declares, else the values its first band holds; None if unknown."""
    if layer.providerType() != "gdal":
        return None
    path = layer.source().split("|", 1)[0]
    declared, _colours = embedded_classes(path)
    if declared is not None:
        return {c.id for c in declared}
    return present_values(path)


def _schema_or_message(items, layer_name):
    try:
        return ClassSchema.from_list(items)
    except BadInputError as exc:
        raise QgsProcessingException(f"The classes of '{layer_name}' cannot be used: {exc.message}") from exc


def _as_int(value):
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return int(number) if number.is_integer() and MIN_CLASS_ID <= number <= MAX_CLASS_ID else None


def schema_to_argument(schema) -> str:
    """The engine's ``--schema`` argument: compact JSON text, or a temporary JSON file when long (a
    Windows command line holds at most 32k characters)."""
    text = json.dumps(schema.to_list(), separators=(",", ":"))
    if len(text) < 2000:
        return text
    path = QgsProcessingUtils.generateTempFilename("classes.json")
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text)
    return path
