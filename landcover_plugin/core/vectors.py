"""Reading labelled polygons (or any geometries) with their class values, in the raster's CRS.

Used by chip export and by accuracy assessment. GDAL's ``osgeo.ogr``/``osr`` are imported lazily so
that importing this module is free. Coordinates stay in the traditional GIS order (x = easting or
longitude, y = northing or latitude) whatever the CRS's official axis order says, which is what
rasterio's transforms expect.

Main entry point::

    read_labelled_geometries(path, class_field, target_crs_wkt, layer=None, fids=None)
        -> [(geometry, value), ...]

``geometry`` is a GeoJSON-like dict (``{"type": "Polygon", "coordinates": ...}``) in the target CRS,
ready for ``rasterio.features.rasterize``; ``value`` is the raw attribute value (int, float or str).
Features with an empty geometry or a null class value are skipped (and counted in a warning when an
``events`` object is given).
"""
import json
import os

from .errors import BadInputError


def _ogr():
    from osgeo import ogr, osr  # noqa: PLC0415 - lazy: GDAL's bindings are only needed here
    ogr.UseExceptions()
    osr.UseExceptions()
    return ogr, osr


def open_layer(path, layer=None):
    """Open a vector file and return ``(datasource, ogr_layer)``; keep the datasource alive.

    ``layer`` is a layer name or index; None takes the first layer. A QGIS-style source
    ``file.gpkg|layername=name`` is understood too.
    """
    ogr, _ = _ogr()
    path = str(path)
    if layer is None and "|layername=" in path:
        path, layer = path.split("|layername=", 1)
        layer = layer.split("|", 1)[0]
    if not os.path.exists(path):
        raise BadInputError(f"The labels file {path} does not exist. Choose an existing vector file.")
    try:
        source = ogr.Open(path, 0)
    except RuntimeError as exc:
        raise BadInputError(f"Cannot open {path} as a vector file ({exc}). Use a GeoPackage, "
                            f"Shapefile or another format GDAL reads.") from exc
    if source is None or source.GetLayerCount() == 0:
        raise BadInputError(f"{path} holds no vector layer. Choose a file with polygon features.")
    if layer is None:
        found = source.GetLayer(0)
    elif isinstance(layer, int) or str(layer).isdigit():
        found = source.GetLayer(int(layer)) if int(layer) < source.GetLayerCount() else None
    else:
        found = source.GetLayerByName(str(layer))
    if found is None:
        names = [source.GetLayer(i).GetName() for i in range(source.GetLayerCount())]
        raise BadInputError(f"{path} has no layer {layer!r}; its layers are: {', '.join(names)}.")
    return source, found


def field_names(ogr_layer) -> list:
    definition = ogr_layer.GetLayerDefn()
    return [definition.GetFieldDefn(i).GetName() for i in range(definition.GetFieldCount())]


NAME_HINTS = ("name", "class", "label", "info", "desc")  # fields looked at first for class names


def class_names_field(path, class_field, layer=None) -> tuple:
    """``(field, {class value as text: name})`` from the first text field that names the classes of
    ``class_field``: one name for every feature of a class (empty ones aside), a different name for every
    class (a numeric ``class_id`` beside a ``class`` name, SCP's ``MC_ID`` beside ``MC_info``). Fields whose
    name suggests names are tried first. ``(None, {})`` when no field does."""
    ogr, _ = _ogr()
    source, lyr = open_layer(path, layer)  # noqa: F841 - the datasource must outlive the layer
    definition = lyr.GetLayerDefn()
    text = [definition.GetFieldDefn(i).GetName() for i in range(definition.GetFieldCount())
            if definition.GetFieldDefn(i).GetType() == ogr.OFTString]
    text = [f for f in text if f != class_field]
    text.sort(key=lambda f: not any(hint in f.lower() for hint in NAME_HINTS))  # stable: layer order otherwise
    names, broken = {f: {} for f in text}, set()
    # a second pass over the features (read_labelled_features made the first): attributes only
    lyr.SetIgnoredFields(["OGR_GEOMETRY", "OGR_STYLE"] + [f for f in field_names(lyr) if f not in text
                                                           and f != class_field])
    lyr.ResetReading()
    for feature in lyr:
        value = feature.GetField(class_field)
        if value is None:
            continue
        key = str(value).strip()
        for field in text:
            name = feature.GetField(field)
            name = name.strip() if isinstance(name, str) else ""
            if name and field not in broken and names[field].setdefault(key, name) != name:
                broken.add(field)
    for field in text:
        if field not in broken and names[field] and len(set(names[field].values())) == len(names[field]):
            return field, names[field]
    return None, {}


def crs_name(crs_text) -> str:
    """A short, readable name of a CRS given as WKT, 'EPSG:n' or anything osr understands."""
    _, osr = _ogr()
    srs = osr.SpatialReference()
    try:
        srs.SetFromUserInput(str(crs_text))
    except RuntimeError:
        return str(crs_text)[:80]
    code = srs.GetAuthorityCode(None)
    return f"{srs.GetName()}" + (f" ({srs.GetAuthorityName(None)}:{code})" if code else "")


def make_transform(source_wkt, target_crs_wkt, what: str = "The labels"):
    """An osr CoordinateTransformation from ``source_wkt`` to ``target_crs_wkt`` in traditional GIS
    axis order, or None when either CRS is unknown or both are the same."""
    _, osr = _ogr()
    if not source_wkt or not target_crs_wkt:
        return None
    source, target = osr.SpatialReference(), osr.SpatialReference()
    try:
        source.SetFromUserInput(str(source_wkt))
        target.SetFromUserInput(str(target_crs_wkt))
    except RuntimeError as exc:
        raise BadInputError(f"{what} or the raster has a CRS GDAL cannot read ({exc}). "
                            f"Assign a valid CRS to the layer and the raster.") from exc
    for srs in (source, target):
        srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    if source.IsSame(target):
        return None
    try:
        return osr.CoordinateTransformation(source, target)
    except (RuntimeError, TypeError) as exc:
        raise BadInputError(f"{what} are in CRS '{source.GetName()}', which cannot be transformed into "
                            f"the raster's CRS '{target.GetName()}' ({exc}). Reproject the layer into the "
                            f"raster's CRS, or fix the CRS assigned to one of them.") from exc


def read_labelled_geometries(path, class_field, target_crs_wkt, layer=None, fids=None, events=None) -> list:
    """``(geometry, value)`` of each labelled feature (see :func:`read_labelled_features`)."""
    return [(geometry, value) for geometry, value, _ in
            read_labelled_features(path, class_field, target_crs_wkt, layer, fids, events)]


def read_labelled_features(path, class_field, target_crs_wkt, layer=None, fids=None, events=None) -> list:
    """Geometries, class values and feature ids of a vector layer, reprojected into ``target_crs_wkt``.

    :param path: a vector file GDAL reads (GeoPackage, Shapefile, GeoJSON, ...).
    :param class_field: the attribute that holds the class (numeric id or text name).
    :param target_crs_wkt: the raster's CRS (WKT or anything ``SetFromUserInput`` takes); None means
        "no reprojection" (the layer is assumed to be in the raster's coordinates).
    :param layer: layer name or index; None is the first layer.
    :param fids: optional iterable of feature ids to read (e.g. the selected features); None reads all.
    :param events: optional :class:`Events`; skipped features are reported as a warning.
    :returns: list of ``(geojson_like_geometry, value, fid)`` in the target CRS, traditional x/y order.
    :raises BadInputError: missing file, layer or field, unknown fids, or a CRS that cannot be transformed.
    """
    ogr, _ = _ogr()
    source, lyr = open_layer(path, layer)
    fields = field_names(lyr)
    if class_field not in fields:
        raise BadInputError(f"The labels layer {lyr.GetName()!r} has no field {class_field!r}; its fields are: "
                            f"{', '.join(fields) or '(none)'}. Choose the field that holds the class.")
    layer_srs = lyr.GetSpatialRef()
    if layer_srs is None and target_crs_wkt and events is not None:
        events.warning(f"The labels layer {lyr.GetName()!r} has no CRS: assumed it is the raster's CRS.")
    transform = make_transform(layer_srs.ExportToWkt() if layer_srs is not None else None, target_crs_wkt)

    if fids is None:
        lyr.ResetReading()
        features = iter(lyr)
    else:
        features = (_feature_by_id(lyr, fid, path) for fid in fids)

    result, skipped_geometry, skipped_value = [], 0, 0
    for feature in features:
        geometry = feature.GetGeometryRef()
        if geometry is None or geometry.IsEmpty():
            skipped_geometry += 1
            continue
        value = feature.GetField(class_field)
        if value is None or (isinstance(value, str) and not value.strip()):
            skipped_value += 1
            continue
        geometry = geometry.Clone()
        if geometry.HasCurveGeometry():
            geometry = geometry.GetLinearGeometry()
        if transform is not None:
            try:
                geometry.Transform(transform)
            except RuntimeError as exc:
                raise BadInputError(f"Feature {feature.GetFID()} of {lyr.GetName()!r} cannot be transformed "
                                    f"into the raster's CRS ({exc}). Check that the layer's CRS is right.") from exc
        result.append((json.loads(geometry.ExportToJson()), value, feature.GetFID()))
    if (skipped_geometry or skipped_value) and events is not None:
        events.warning(f"Skipped {skipped_geometry} feature(s) without geometry and {skipped_value} without a "
                       f"value in {class_field!r}.")
    del source  # the datasource must outlive the layer's use
    return result


def _feature_by_id(lyr, fid, path):
    try:
        feature = lyr.GetFeature(int(fid))
    except RuntimeError:
        feature = None
    if feature is None:
        raise BadInputError(f"Feature id {fid} is not in {path}. Select features of this layer only.")
    return feature


def geometry_bounds(geometry: dict) -> tuple:
    """(minx, miny, maxx, maxy) of a GeoJSON-like geometry."""
    xs, ys = [], []

    def walk(coords):
        if coords and isinstance(coords[0], (int, float)):
            xs.append(coords[0])
            ys.append(coords[1])
        else:
            for item in coords:
                walk(item)

    if geometry["type"] == "GeometryCollection":
        boxes = [geometry_bounds(g) for g in geometry["geometries"]]
        return (min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes))
    walk(geometry["coordinates"])
    return min(xs), min(ys), max(xs), max(ys)


def read_schema_table(path, table: str = "landcover_classes"):
    """The class schema list stored in a GeoPackage's ``landcover_classes`` table (columns id, name,
    colour), as written by the "Create training areas layer" algorithm; None when there is none."""
    ogr, _ = _ogr()
    path = str(path).split("|", 1)[0]
    try:
        source = ogr.Open(path, 0)
    except RuntimeError:
        return None
    if source is None:
        return None
    lyr = source.GetLayerByName(table)
    if lyr is None or not {"id", "name", "colour"} <= set(field_names(lyr)):
        return None
    rows = [{"id": f.GetField("id"), "name": f.GetField("name"), "colour": f.GetField("colour")} for f in lyr]
    del source
    return sorted(rows, key=lambda r: r["id"]) or None


LINE_TYPES = ("LineString", "MultiLineString", "LinearRing")


def geometry_parts(geometry: dict) -> tuple:
    """``(areas, points, others)`` of a GeoJSON-like geometry, one single-part geometry per part: each polygon
    of a (multi)polygon, each point of a (multi)point, the members of a geometry collection sorted the same way;
    ``others`` lists the type names of the parts that are neither (lines)."""
    kind = geometry["type"]
    if kind == "Polygon":
        return [geometry], [], []
    if kind == "MultiPolygon":
        return [{"type": "Polygon", "coordinates": rings} for rings in geometry["coordinates"]], [], []
    if kind == "Point":
        return [], [geometry], []
    if kind == "MultiPoint":
        return [], [{"type": "Point", "coordinates": point} for point in geometry["coordinates"]], []
    if kind == "GeometryCollection":
        areas, points, others = [], [], []
        for member in geometry["geometries"]:
            found = geometry_parts(member)
            areas += found[0]
            points += found[1]
            others += found[2]
        return areas, points, others
    return [], [], [kind]
