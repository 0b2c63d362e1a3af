"""``export-chips --keep-classes``: class values that stay the same from one iteration to the next, on the real
rstoolbox polygons (text class field: names are numbered in sorted order, so a class added in iteration 2 moves
the others) and the eo-learn polygons (numeric class field: the values are the ids)."""
import json

from test_export_chips_engine import run_export

WITHOUT_FALLEN_DRY = ",".join(str(fid) for fid in range(1, 29))  # rstoolbox fids 29-36 are fallen_dry
WITHOUT_WATER = ",".join(str(fid) for fid in list(range(1, 10)) + list(range(19, 37)))  # fids 10-18 are water


def export(engine_python, repo_root, shared_data, output, *args):
    rstoolbox = shared_data / "rstoolbox"
    code, events, stderr = run_export(engine_python, repo_root, "--image", rstoolbox / "landsat5_1988_7band.tif",
                                      "--labels-vector", rstoolbox / "training_polygons.gpkg", "--class-field",
                                      "class", "--chip-size", 32, "--output", output, *args)
    assert code == 0, stderr + str([e for e in events if e["event"] == "error"])
    return json.loads((output / "dataset.json").read_text()), " ".join(
        e["message"] for e in events if e["event"] == "log")


def raster_export(engine_python, repo_root, image, labels_raster, chip_size, folder, class_list):
    """Chips of ``image`` labelled by ``labels_raster`` into ``folder``/chips, keeping ``class_list`` (written to
    ``folder``/classes.json); (exit code, events, stderr)."""
    (folder / "classes.json").write_text(json.dumps(class_list))
    return run_export(engine_python, repo_root, "--image", image, "--labels-raster", labels_raster, "--chip-size",
                      chip_size, "--output", folder / "chips", "--keep-classes", folder / "classes.json")


def ids(dataset) -> dict:
    return {c["name"]: c["id"] for c in dataset["classes"]}


def pixels_by_name(dataset) -> dict:
    """Distinct labelled pixels per class, counted from the label chips by their values, named by the list."""
    names = {str(c["id"]): c["name"] for c in dataset["classes"]}
    return {names[k]: v for k, v in dataset["distinct_class_pixels"].items()}


def test_a_class_added_in_iteration_two_leaves_the_earlier_values(engine_python, repo_root, shared_data, tmp_path):
    first, _ = export(engine_python, repo_root, shared_data, tmp_path / "chips", "--fids", WITHOUT_FALLEN_DRY)
    assert ids(first) == {"cleared": 1, "forest": 2, "water": 3}
    # without the list, the class added moves the others: value 2 was forest, is fallen_dry
    moved, _ = export(engine_python, repo_root, shared_data, tmp_path / "moved")
    assert ids(moved) == {"cleared": 1, "fallen_dry": 2, "forest": 3, "water": 4}
    # with it (re-exported into the same folder, keeping its own dataset.json), every earlier class keeps its value
    kept, log = export(engine_python, repo_root, shared_data, tmp_path / "chips", "--keep-classes",
                       tmp_path / "chips" / "dataset.json")
    assert ids(kept) == {"cleared": 1, "forest": 2, "water": 3, "fallen_dry": 4}
    assert [c for c in kept["classes"] if c["name"] != "fallen_dry"] == first["classes"]  # names and colours too
    before, after = pixels_by_name(first), pixels_by_name(kept)  # the label chips hold the kept values
    assert {name: after[name] for name in before} == before and after["fallen_dry"] == pixels_by_name(
        moved)["fallen_dry"] > 0
    assert "new classes (numbered after them, by name): 4=fallen_dry" in log, log
    assert kept["summary"]["kept_classes"]["added"] == ["4=fallen_dry"]
    assert "values kept from" in kept["source"]["schema_origin"]


def test_classes_of_the_list_without_polygons_this_time_stay(engine_python, repo_root, shared_data, tmp_path):
    first, _ = export(engine_python, repo_root, shared_data, tmp_path / "first", "--fids", WITHOUT_FALLEN_DRY)
    third, log = export(engine_python, repo_root, shared_data, tmp_path / "third", "--fids", WITHOUT_WATER,
                        "--keep-classes", tmp_path / "first")  # the folder of the chip dataset
    assert ids(third) == {"cleared": 1, "forest": 2, "water": 3, "fallen_dry": 4}
    assert pixels_by_name(third)["water"] == 0 and third["summary"]["missing_classes"] == ["water"]
    assert "Without labels this time" in log and "the model never maps them): water" in log


def eolearn_export(engine_python, repo_root, shared_data, output, class_list):
    eolearn = shared_data / "eolearn"
    return run_export(engine_python, repo_root, "--image", eolearn / "sentinel2_13band_composite.tif",
                      "--labels-vector", eolearn / "lulc_polygons.gpkg", "--class-field", "LULC_ID",
                      "--chip-size", 32, "--output", output, "--keep-classes", class_list)


def test_a_numeric_class_field_keeps_its_values_and_a_list_naming_them_otherwise_is_refused(
        engine_python, repo_root, shared_data, tmp_path):
    swapped = tmp_path / "swapped.json"  # eo-learn: 1 = cultivated land, 2 = forest
    swapped.write_text(json.dumps([{"id": 1, "name": "forest"}, {"id": 2, "name": "cultivated land"}]))
    code, events, _ = eolearn_export(engine_python, repo_root, shared_data, tmp_path / "refused", swapped)
    (error,) = [e for e in events if e["event"] == "error"]
    assert code == 2 and error["kind"] == "bad_input" and not (tmp_path / "refused").exists()
    assert "value 1 is 'cultivated land' in the labels but 'forest' in the list" in error["message"]
    assert "recode the field" in error["message"]

    agreeing = tmp_path / "classes.json"
    agreeing.write_text(json.dumps({"classes": [{"id": 2, "name": "Forest", "colour": "#123456"},
                                                {"id": 9, "name": "wetland"}]}))
    code, events, stderr = eolearn_export(engine_python, repo_root, shared_data, tmp_path / "chips", agreeing)
    assert code == 0, stderr
    dataset = json.loads((tmp_path / "chips" / "dataset.json").read_text())
    assert ids(dataset) == {"cultivated land": 1, "Forest": 2, "grassland": 3, "schrubland": 4,
                            "artificial surface": 8, "wetland": 9}
    assert {c["name"]: c["colour"] for c in dataset["classes"]}["Forest"] == "#123456"


def test_a_class_list_that_is_no_model_or_json_is_refused_naming_what_to_give(engine_python, repo_root,
                                                                             shared_data, tmp_path):
    code, events, _ = eolearn_export(engine_python, repo_root, shared_data, tmp_path / "chips",
                                     shared_data / "eolearn" / "LICENSE")
    (error,) = [e for e in events if e["event"] == "error"]
    assert code == 2 and "neither a model (.onnx) nor a JSON file" in error["message"]
    assert "dataset.json" in error["message"] and not (tmp_path / "chips").exists()


def test_a_labels_raster_keeps_its_values_named_by_the_list(engine_python, repo_root, shared_data, tmp_path):
    """eo-learn's lulc.tif holds bare values (1, 2, 3, 4, 8): the list names 2 and adds 9, which has no pixel."""
    eolearn = shared_data / "eolearn"
    code, events, stderr = raster_export(engine_python, repo_root, eolearn / "sentinel2_13band_composite.tif",
                                         eolearn / "lulc.tif", 32, tmp_path,
                                         [{"id": 2, "name": "forest"}, {"id": 9, "name": "wetland"}])
    assert code == 0, stderr
    dataset = json.loads((tmp_path / "chips" / "dataset.json").read_text())
    assert ids(dataset) == {"class 1": 1, "forest": 2, "class 3": 3, "class 4": 4, "class 8": 8, "wetland": 9}
    assert dataset["summary"]["kept_classes"]["without_labels"] == ["wetland"]
    assert pixels_by_name(dataset)["forest"] > 0 and pixels_by_name(dataset)["wetland"] == 0


def test_a_labels_raster_named_otherwise_than_the_list_is_refused(engine_python, repo_root, shared_data, tmp_path):
    """Zion's NLCD raster is named by the classes.json beside it (1 Water, 2 Developed)."""
    zion = shared_data / "zion"
    code, events, _ = raster_export(engine_python, repo_root, zion / "landsat8_2015_b2345.tif",
                                    zion / "nlcd2011_8class.tif", 128, tmp_path,
                                    [{"id": 1, "name": "Developed"}, {"id": 2, "name": "Water"}])
    (error,) = [e for e in events if e["event"] == "error"]
    assert code == 2 and not (tmp_path / "chips").exists()
    assert "value 1 is 'Water' in the labels but 'Developed' in the list" in error["message"], error["message"]
