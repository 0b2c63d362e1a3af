"""The reference sample layer, ready for blind labelling: ``reference_class`` is a drop-down of the class
names (with "not labelled yet" for NULL), ``map_class`` is hidden from the form (the interpreter must not
see what the map says), ``sample_id`` is read-only, and the points show in their reference class's
colour, unlabelled ones as hollow circles. The style is saved as the GeoPackage's default, so it comes
back whenever the layer is loaded. Suggested training areas get the training layer's style plus an
outline for the squares still to label."""
from qgis.core import (
    QgsCategorizedSymbolRenderer,
    QgsEditorWidgetSetup,
    QgsFillSymbol,
    QgsMarkerSymbol,
    QgsProcessingException,
    QgsRendererCategory,
    QgsVectorLayer,
)

from .training_layer import FIELD_PROPERTY, SCHEMA_PROPERTY, style_training_layer

REFERENCE_FIELD = "reference_class"
MAP_FIELD = "map_class"
VALUEMAP_NULL = "{2839923C-8B7D-419E-B84B-CA2FE9B80EC7}"  # QGIS's ValueMap key for NULL
NOT_LABELLED = "(not labelled yet)"


def style_sample_layer(layer: QgsVectorLayer, schema) -> None:
    """Form widgets and a categorised style for a layer written by the ``create-sample`` command."""
    fields = layer.fields()
    missing = [f for f in (REFERENCE_FIELD, MAP_FIELD, "sample_id") if fields.indexOf(f) < 0]
    if missing:
        raise QgsProcessingException(f"The layer '{layer.name()}' has no field {', '.join(missing)}: it is not a "
                                     "reference sample.")
    reference, mapped, sample_id = (fields.indexOf(f) for f in (REFERENCE_FIELD, MAP_FIELD, "sample_id"))
    layer.setFieldAlias(reference, "Reference class")
    layer.setFieldAlias(mapped, "Map class")
    form = layer.editFormConfig()
    form.setReadOnly(sample_id, True)
    form.setReadOnly(mapped, True)
    layer.setEditFormConfig(form)
    # widgets last: on QGIS 3.22 setting an alias afterwards drops the widget setup
    choices = [{NOT_LABELLED: VALUEMAP_NULL}] + [{c.name: c.id} for c in schema]
    layer.setEditorWidgetSetup(reference, QgsEditorWidgetSetup("ValueMap", {"map": choices}))
    layer.setEditorWidgetSetup(mapped, QgsEditorWidgetSetup("Hidden", {}))
    categories = []
    for c in schema:
        r, g, b = c.rgb
        symbol = QgsMarkerSymbol.createSimple({"name": "circle", "color": f"{r},{g},{b},255", "size": "3",
                                               "outline_color": "0,0,0,255", "outline_width": "0.3"})
        categories.append(QgsRendererCategory(c.id, symbol, c.name))
    unlabelled = QgsMarkerSymbol.createSimple({"name": "circle", "color": "255,255,255,0", "size": "3.5",
                                               "outline_color": "0,0,0,255", "outline_width": "0.6"})
    categories.append(QgsRendererCategory(None, unlabelled, NOT_LABELLED))
    layer.setRenderer(QgsCategorizedSymbolRenderer(REFERENCE_FIELD, categories))
    layer.setCustomProperty(SCHEMA_PROPERTY, schema.to_json())
    layer.setCustomProperty(FIELD_PROPERTY, REFERENCE_FIELD)


def save_sample_style(layer: QgsVectorLayer) -> None:
    """Store the style in the GeoPackage as its default."""
    result = layer.saveStyleToDatabase(layer.name(), "Land cover reference sample: class drop-down, map class "
                                       "hidden, colours by reference class", True, "")
    message = result if isinstance(result, str) else (result[-1] if result else "")
    if message:
        raise QgsProcessingException(f"Could not save the style into the GeoPackage: {message}")


def style_suggestions(layer: QgsVectorLayer, schema, class_field: str, save: bool = False) -> None:
    """Suggested training areas: the training layer's drop-down and colours (of class ids or, in a text class
    field, of class names), plus a dashed outline for the squares whose class is still empty; optionally saved as
    the GeoPackage's default style."""
    if schema is not None:
        style_training_layer(layer, schema, class_field)
        renderer = layer.renderer()
    else:
        renderer = QgsCategorizedSymbolRenderer(class_field, [])
        layer.setRenderer(renderer)
    empty = QgsFillSymbol.createSimple({"color": "255,255,255,0", "outline_color": "255,0,255,255",
                                        "outline_width": "0.8", "outline_style": "dash"})
    # A category without a value is QGIS's "all other values": it draws NULL and, in a text field, the empty
    # string (both unlabelled, as export-chips reads them), and a name that is no class. A [NULL, ''] list instead
    # is no such category: its filter ('IN (NULL, '')') leaves the NULL squares undrawn.
    renderer.addCategory(QgsRendererCategory(None, empty, "to label"))
    if save:
        result = layer.saveStyleToDatabase(layer.name(), "Land cover suggested training areas", True, "")
        message = result if isinstance(result, str) else (result[-1] if result else "")
        if message:
            raise QgsProcessingException(f"Could not save the style into the GeoPackage: {message}")
