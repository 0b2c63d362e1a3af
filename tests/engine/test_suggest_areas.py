"""``suggest-areas``: places to digitise next, checked against the rasters they come from, on Zion."""
import json
import re
import shutil
import subprocess

import numpy as np
import pytest
import rasterio
from classify_models import untrained_model
from osgeo import ogr

from landcover_plugin.core.chips.export import export_chips
from landcover_plugin.core.chips.options import ChipExportOptions
from landcover_plugin.core.classify.options import ClassifyOptions
from landcover_plugin.core.classify.run import classify_raster
from landcover_plugin.core.errors import BadInputError
from landcover_plugin.core.events import RecordingEvents
from landcover_plugin.core.suggest import suggest as suggest_module
from landcover_plugin.core.suggest.options import SuggestOptions
from landcover_plugin.core.suggest.suggest import suggest_areas

ogr.UseExceptions()


@pytest.fixture(scope="module")
def classified(model, shared_data, tmp_path_factory):
    folder = tmp_path_factory.mktemp("suggest")
    result = classify_raster(ClassifyOptions(shared_data / "zion" / "landsat8_2015_b2345.tif", model,
                                             folder / "classes.tif", confidence=folder / "confidence.tif",
                                             uncertainty=folder / "uncertainty.tif"), RecordingEvents())
    arrays = {}
    for key in ("OUTPUT", "CONFIDENCE", "UNCERTAINTY"):
        with rasterio.open(result[key]) as src:
            arrays[key] = src.read(1)
            transform = src.transform
    return result, arrays, transform


def read_places(path, layer="suggested_areas"):
    source = ogr.Open(str(path))
    lyr = source.GetLayerByName(layer)
    places = []
    for f in lyr:
        geometry = f.GetGeometryRef()
        centre = geometry.Centroid()
        places.append({**f.items(), "x": centre.GetX(), "y": centre.GetY(), "area": geometry.GetArea()})
    classes = [f.items() for f in source.GetLayerByName("landcover_classes")]
    return places, classes


def test_suggestions_are_the_most_uncertain_places_spread_apart(classified, tmp_path):
    result, arrays, transform = classified
    events = RecordingEvents()
    out = suggest_areas(SuggestOptions(tmp_path / "s.gpkg", uncertainty=result["UNCERTAINTY"],
                                       classified=result["OUTPUT"], confidence=result["CONFIDENCE"], count=15), events)
    places, classes = read_places(tmp_path / "s.gpkg")
    assert out["COUNT"] == len(places) == 15
    assert [c["name"] for c in classes] == ["water", "forest", "shrubland"]
    uncertainty = arrays["UNCERTAINTY"]
    valid = uncertainty[uncertainty != 255]
    inverse = ~transform
    for rank, place in enumerate(places, 1):
        col, row = (int(v) for v in inverse * (place["x"], place["y"]))
        assert place["rank"] == rank and place["class_id"] is None  # for the analyst to fill
        assert place["uncertainty"] == uncertainty[row, col]
        assert place["predicted_class"] == arrays["OUTPUT"][row, col]
        assert place["predicted_name"] == classes[place["predicted_class"] - 1]["name"]
        assert place["probability"] == arrays["CONFIDENCE"][row, col]
        assert place["area"] == pytest.approx(25 * 900)  # 5 x 5 pixels of 30 m
        # Among the most uncertain pixels of the map: at most 15 x 50 pixels are more uncertain.
        assert (valid > place["uncertainty"]).sum() <= 15 * 50
    assert [p["uncertainty"] for p in places] == sorted((p["uncertainty"] for p in places), reverse=True)
    xy = np.array([(p["x"], p["y"]) for p in places])
    distances = np.sqrt(((xy[:, None] - xy[None]) ** 2).sum(axis=2)) + np.eye(15) * 1e9
    assert distances.min() >= out["MIN_DISTANCE"] > 1000  # spread, not one cluster of uncertain pixels


def test_from_a_model_and_a_raster_through_the_engine(model, shared_data, tmp_path, engine_python, repo_root):
    proc = subprocess.run([engine_python, "-m", "landcover_plugin.core.engine", "suggest-areas", "--raster",
                           str(shared_data / "zion" / "landsat8_2015_b2345.tif"), "--model", str(model),
                           "--output", str(tmp_path / "m.gpkg"), "--count", "8", "--min-distance", "3000",
                           "--measure", "margin", "--size", "3"],
                          cwd=repo_root, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = [json.loads(line) for line in proc.stdout.splitlines() if '"result"' in line][0]["outputs"]
    places, _ = read_places(tmp_path / "m.gpkg")
    assert result["COUNT"] == 8 and result["MIN_DISTANCE"] == 3000
    assert all(p["area"] == pytest.approx(9 * 900) and 0 < p["probability"] <= 100 for p in places)
    assert not [p.name for p in tmp_path.iterdir() if "partial" in p.name]


def test_bad_inputs_name_the_fix(classified, tmp_path, shared_data):
    result = classified[0]
    with pytest.raises(BadInputError, match="uncertainty raster"):
        suggest_areas(SuggestOptions(tmp_path / "a.gpkg"), RecordingEvents())
    with pytest.raises(BadInputError, match="uint8 uncertainty raster"):
        suggest_areas(SuggestOptions(tmp_path / "a.gpkg", uncertainty=shared_data / "zion" / "landsat8_2015_b2345.tif"),
                      RecordingEvents())
    with pytest.raises(BadInputError, match="grid"):
        other_grid = shared_data / "rstoolbox" / "landsat5_1988_7band.tif"
        suggest_areas(SuggestOptions(tmp_path / "a.gpkg", uncertainty=result["UNCERTAINTY"], classified=other_grid),
                      RecordingEvents())
    # the classifier's rasters swapped: the map as the uncertainty reads as "8 % uncertain" everywhere
    with pytest.raises(BadInputError, match="is the classified map .*, not the uncertainty raster"):
        suggest_areas(SuggestOptions(tmp_path / "a.gpkg", uncertainty=result["OUTPUT"]), RecordingEvents())
    with pytest.raises(BadInputError, match="is the uncertainty raster .*, not the classified map"):
        suggest_areas(SuggestOptions(tmp_path / "a.gpkg", uncertainty=result["UNCERTAINTY"],
                                     classified=result["UNCERTAINTY"]), RecordingEvents())
    # a training layer's class field named like a hint or a GeoPackage column: it would clash in the output
    for name in ("rank", "FID"):
        with pytest.raises(BadInputError, match=f"'{name}' cannot be the class field"):
            suggest_areas(SuggestOptions(tmp_path / "a.gpkg", uncertainty=result["UNCERTAINTY"], class_field=name,
                                         class_values="names"), RecordingEvents())
    assert not list(tmp_path.iterdir())


def test_an_existing_output_with_labelled_squares_is_never_replaced(classified, tmp_path, shared_data):
    """Processing's choice (replace_unlabelled): earlier untouched suggestions make way for new ones, a file
    with squares the analyst labelled, or any other GeoPackage, stays as it is."""
    result = classified[0]
    path = tmp_path / "s.gpkg"

    def suggest(count):
        return suggest_areas(SuggestOptions(path, uncertainty=result["UNCERTAINTY"], classified=result["OUTPUT"],
                                            count=count, replace_unlabelled=True), RecordingEvents())

    suggest(6)
    assert suggest(4)["COUNT"] == 4 and len(read_places(path)[0]) == 4  # nothing labelled yet: replaced
    source = ogr.Open(str(path), 1)
    layer = source.GetLayerByName("suggested_areas")
    feature = layer.GetNextFeature()
    feature.SetField("class_id", 2)  # the analyst labels one square
    layer.SetFeature(feature)
    source = layer = None
    with pytest.raises(BadInputError, match=r"1 of its squares already have a class.*not replaced. Choose another "
                                            r"file name.*or delete the old file") as error:
        suggest(8)
    assert "--overwrite" not in str(error.value)
    places, _ = read_places(path)
    assert len(places) == 4 and [p["class_id"] for p in places].count(2) == 1  # the labelling is still there
    training = tmp_path / "training.gpkg"
    shutil.copy(shared_data / "rstoolbox" / "training_polygons.gpkg", training)
    with pytest.raises(BadInputError, match="holds other layers"):
        suggest_areas(SuggestOptions(training, uncertainty=result["UNCERTAINTY"], replace_unlabelled=True),
                      RecordingEvents())
    with pytest.raises(BadInputError, match="may hold squares you labelled"):  # the engine's default: never
        suggest_areas(SuggestOptions(path, uncertainty=result["UNCERTAINTY"]),
                      RecordingEvents())


def test_empty_names_are_unlabelled_and_a_named_square_is_labelled(classified, tmp_path):
    """With class names (a text class field), a square whose class is NULL, empty or blank (QGIS's form may leave
    an empty text) has no class yet: the file is replaced; one square named 'forest' is the analyst's labelling,
    and the file is kept (an empty text counted as a class, so untouched suggestions were never replaced)."""
    result = classified[0]
    path = tmp_path / "s.gpkg"

    def suggest(count):
        return suggest_areas(SuggestOptions(path, uncertainty=result["UNCERTAINTY"], classified=result["OUTPUT"],
                                            count=count, class_values="names", replace_unlabelled=True),
                             RecordingEvents())

    def set_classes(values):
        source = ogr.Open(str(path), 1)
        layer = source.GetLayerByName("suggested_areas")
        for feature, value in zip(list(layer), values):
            feature.SetField("class_id", value)
            layer.SetFeature(feature)
        source = layer = None

    assert suggest(6)["CLASS_VALUES"] == "names"
    set_classes(["", "  ", ""])  # the other three stay NULL
    assert suggest(4)["COUNT"] == 4 and len(read_places(path)[0]) == 4  # nothing labelled: replaced
    set_classes(["", "forest"])
    with pytest.raises(BadInputError, match=r"1 of its squares already have a class.*not replaced"):
        suggest(8)
    assert [p["class_id"] for p in read_places(path)[0]][:2] == ["", "forest"]


RSTOOLBOX_CLASSES = ["cleared", "fallen_dry", "forest", "water"]  # its text field 'class', sorted


def test_named_squares_pasted_into_a_text_class_layer_keep_their_class(shared_data, tmp_path, engine_python,
                                                                       repo_root):
    """rstoolbox's training polygons hold the class as text (field 'class'). Suggestions asked for with that field
    and --class-values names have a text field 'class': squares labelled with names and pasted by field name, as
    QGIS pastes, export as those classes. Integer squares landed there as a class '3', or as no class."""
    rstoolbox = shared_data / "rstoolbox"
    image = rstoolbox / "landsat5_1988_7band.tif"
    model = untrained_model(image, tmp_path / "m.onnx", RSTOOLBOX_CLASSES, tile=32, input_dtype="uint8")
    output = tmp_path / "suggested.gpkg"
    proc = subprocess.run([engine_python, "-m", "landcover_plugin.core.engine", "suggest-areas", "--raster",
                           str(image), "--model", str(model), "--output", str(output), "--count", "12",
                           "--class-field", "class", "--class-values", "names"],
                          cwd=repo_root, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = [json.loads(line) for line in proc.stdout.splitlines() if '"result"' in line][0]["outputs"]
    assert result["CLASS_FIELD"] == "class" and result["CLASS_VALUES"] == "names"
    assert [c["name"] for c in result["CLASSES"]] == RSTOOLBOX_CLASSES  # the table and the hints as before
    suggestions = ogr.Open(str(output), 1)
    squares = suggestions.GetLayerByName("suggested_areas")
    definition = squares.GetLayerDefn()
    assert definition.GetFieldDefn(definition.GetFieldIndex("class")).GetType() == ogr.OFTString
    assert [f.GetField("predicted_name") in RSTOOLBOX_CLASSES for f in squares] == [True] * 12

    training = tmp_path / "training_polygons.gpkg"  # the analyst's layer: a copy
    shutil.copy(rstoolbox / "training_polygons.gpkg", training)
    target_source = ogr.Open(str(training), 1)
    target = target_source.GetLayer(0)
    drawn = [f.GetGeometryRef().Clone() for f in target]
    typed = {}  # the analyst labels four squares away from the polygons drawn before, one per class
    for square in squares:
        if len(typed) < len(RSTOOLBOX_CLASSES) and not any(square.GetGeometryRef().Intersects(g) for g in drawn):
            typed[square.GetFID()] = RSTOOLBOX_CLASSES[len(typed)]
            square.SetField("class", typed[square.GetFID()])
        elif square.GetFID() % 2:
            square.SetField("class", "")  # an empty text: unlabelled, as NULL
        squares.SetFeature(square)
    assert len(typed) == 4
    names = [target.GetLayerDefn().GetFieldDefn(i).GetName() for i in range(target.GetLayerDefn().GetFieldCount())]
    pasted = {}
    for square in squares:  # paste every square: the attributes whose field name the layer has
        feature = ogr.Feature(target.GetLayerDefn())
        for name in names:
            if definition.GetFieldIndex(name) >= 0 and square.IsFieldSet(name):
                feature.SetField(name, square.GetField(name))
        feature.SetGeometry(square.GetGeometryRef())
        target.CreateFeature(feature)
        if square.GetFID() in typed:
            pasted[square.GetFID()] = (feature.GetField("class"), square.GetGeometryRef().GetEnvelope())
    target_source = target = suggestions = squares = None
    assert {fid: name for fid, (name, _) in pasted.items()} == typed

    chips = tmp_path / "chips"
    export_chips(ChipExportOptions(image, chips, labels_vector=training, class_field="class", chip_size=32,
                                   min_labelled=0.0), RecordingEvents())
    dataset = json.loads((chips / "dataset.json").read_text())
    assert [c["name"] for c in dataset["classes"]] == RSTOOLBOX_CLASSES  # no class '3', '' or 'class 3'
    ids = {c["name"]: c["id"] for c in dataset["classes"]}
    with rasterio.open(image) as src:
        labels, inverse = np.zeros((src.height, src.width), np.uint8), ~src.transform
    for chip in dataset["chips"]:
        w = chip["window"]
        with rasterio.open(chips / chip["label"]) as src:
            labels[w["row_off"]:w["row_off"] + 32, w["col_off"]:w["col_off"] + 32] = src.read(1)
    for name, (left, right, bottom, top) in pasted.values():
        col0, row0 = (round(v) for v in inverse * (left, top))
        col1, row1 = (round(v) for v in inverse * (right, bottom))
        assert (row1 - row0, col1 - col0) == (5, 5)
        assert (labels[row0:row1, col0:col1] == ids[name]).all(), name  # every pixel of the square: its class


def test_squares_on_edge_pixels_are_shifted_inside_the_raster(shared_data, tmp_path):
    """The four corner pixels are the most uncertain: their squares cover them and stay inside the raster."""
    with rasterio.open(shared_data / "zion" / "landsat8_2015_b2345.tif") as src:
        band, profile, transform = src.read(1).astype(np.float64), src.profile, src.transform
    height, width = band.shape
    profile.update(count=1, dtype="uint8", nodata=255)
    uncertainty = (90 * (band - band.min()) / np.ptp(band)).astype(np.uint8)  # a stand-in, 0..90 %
    corners = [(0, 0), (0, width - 1), (height - 1, 0), (height - 1, width - 1)]
    for row, col in corners:
        uncertainty[row, col] = 100
    path = tmp_path / "edges.tif"
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(uncertainty, 1)
    suggest_areas(SuggestOptions(tmp_path / "s.gpkg", uncertainty=path, count=4, size=7), RecordingEvents())
    source = ogr.Open(str(tmp_path / "s.gpkg"))
    layer = source.GetLayerByName("suggested_areas")
    xmin, ymax = transform * (0, 0)
    xmax, ymin = transform * (width, height)
    covered = set()
    for feature in layer:
        geometry = feature.GetGeometryRef()
        assert feature.GetField("uncertainty") == 100 and geometry.GetArea() == pytest.approx(49 * 900)
        left, right, bottom, top = geometry.GetEnvelope()
        assert xmin - 1e-6 <= left and right <= xmax + 1e-6 and ymin - 1e-6 <= bottom and top <= ymax + 1e-6
        covered |= {(r, c) for r, c in corners if left <= (transform * (c + 0.5, r + 0.5))[0] <= right
                    and bottom <= (transform * (c + 0.5, r + 0.5))[1] <= top}
    assert covered == set(corners)


def test_assess_refuses_the_uncertainty_raster_as_the_map(classified, tmp_path, shared_data):
    """Assessed as a map, the uncertainty raster scored an overall accuracy of 0 % without a word."""
    from landcover_plugin.core.assess.assess import assess_accuracy
    from landcover_plugin.core.assess.options import AssessOptions

    with pytest.raises(BadInputError, match="is the uncertainty raster .*, not the classified map"):
        assess_accuracy(AssessOptions(classified[0]["UNCERTAINTY"],
                                      reference_raster=str(shared_data / "zion" / "nlcd2011_8class.tif"),
                                      output_folder=str(tmp_path / "out")), RecordingEvents())
    assert not (tmp_path / "out").exists()


def test_thinning_keeps_the_most_uncertain_pixels(shared_data, tmp_path):
    """More candidates than the cap, most at 95 %: the 36 pixels at 100 % must all stay candidates (a uniform
    thinning kept about one in eight of them, and most places went to 95 % pixels)."""
    with rasterio.open(shared_data / "zion" / "landsat8_2015_b2345.tif") as src:
        profile = src.profile
    height, width = profile["height"], profile["width"]
    profile.update(count=1, dtype="uint8", nodata=255)
    uncertainty = np.full((height, width), 95, dtype=np.uint8)
    uncertainty[100:height - 100:240, 100:width - 100:180] = 100
    assert (uncertainty == 100).sum() == 36 and uncertainty.size > 5 * suggest_module.MAX_CANDIDATES
    path = tmp_path / "u.tif"
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(uncertainty, 1)
    suggest_areas(SuggestOptions(tmp_path / "s.gpkg", uncertainty=path, count=20), RecordingEvents())
    source = ogr.Open(str(tmp_path / "s.gpkg"))  # kept: the layer dies with it
    layer = source.GetLayerByName("suggested_areas")
    assert sorted(feature.GetField("uncertainty") for feature in layer) == [100] * 20


def test_the_distance_is_reported_in_the_crs_unit(classified, tmp_path):
    result = classified[0]
    events = RecordingEvents()
    out = suggest_areas(SuggestOptions(tmp_path / "s.gpkg", uncertainty=result["UNCERTAINTY"], count=5,
                                       min_distance=1500), events)
    assert out["DISTANCE_UNIT"] == "m" and out["MIN_DISTANCE_TEXT"] == "1,500 m"  # UTM 12 N
    assert any("at least 1,500 m apart" in e["message"] for e in events.of_type("log"))


def test_a_minimum_distance_the_analyst_gives_is_kept(classified, tmp_path):
    """50 places at least 10 km apart do not fit in Zion (34 x 43 km): as many as fit are placed, every pair
    still 10 km apart (the distance was halved to 5 km and all 50 placed), with a warning naming the numbers."""
    result = classified[0]
    events = RecordingEvents()
    out = suggest_areas(SuggestOptions(tmp_path / "s.gpkg", uncertainty=result["UNCERTAINTY"],
                                       classified=result["OUTPUT"], count=50, min_distance=10000), events)
    places, _ = read_places(tmp_path / "s.gpkg")
    assert out["MIN_DISTANCE"] == 10000 and 1 < out["COUNT"] == len(places) < 50
    xy = np.array([(p["x"], p["y"]) for p in places])
    distances = np.sqrt(((xy[:, None] - xy[None]) ** 2).sum(axis=2)) + np.eye(len(places)) * 1e9
    assert distances.min() >= 10000
    (warning,) = [e["message"] for e in events.of_type("log") if e["level"] == "warning"]
    assert f"Only {len(places)} places found of the 50 asked" in warning and "10,000 m" in warning
    assert "smaller minimum distance" in warning and "fewer places" in warning
    assert not any("lowered" in e["message"] for e in events.of_type("log"))


def test_only_the_automatic_distance_shrinks_and_the_log_says_so(shared_data, tmp_path):
    """Uncertain only on Zion's NLCD water (1,334 px in a few places): 20 places do not fit the automatic
    4 km apart, so it is lowered and the log says from what to what; the same distance given is kept."""
    with rasterio.open(shared_data / "zion" / "nlcd2011_8class.tif") as src:
        nlcd, profile = src.read(1), src.profile
    profile.update(dtype="uint8", nodata=255)
    path = tmp_path / "u.tif"
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(np.where(nlcd == 1, 100, 30).astype(np.uint8), 1)
    events = RecordingEvents()
    out = suggest_areas(SuggestOptions(tmp_path / "a.gpkg", uncertainty=path, count=20), events)
    (lowered,) = [e["message"] for e in events.of_type("log") if "lowered" in e["message"]]
    planned, used = (float(t.replace(",", "")) for t in
                     re.search(r"distance, ([\d,.]+) m .* lowered to ([\d,.]+) m", lowered).groups())
    assert out["COUNT"] == 20 and used == pytest.approx(out["MIN_DISTANCE"], abs=1) and used < planned / 2
    events = RecordingEvents()
    given = suggest_areas(SuggestOptions(tmp_path / "g.gpkg", uncertainty=path, count=20, min_distance=planned),
                          events)
    assert given["MIN_DISTANCE"] == planned and given["COUNT"] < 20
    assert not any("lowered" in e["message"] for e in events.of_type("log"))
    with pytest.raises(BadInputError, match="minimum distance cannot be negative"):
        suggest_areas(SuggestOptions(tmp_path / "n.gpkg", uncertainty=path, min_distance=-5), RecordingEvents())
