"""The held-out estimate of the map's accuracy (training/heldout.py): the stratified estimator worked by hand,
and the fallbacks."""
import numpy as np
import pytest

from training.confidence import atc
from training.heldout import describe, estimate, of_map
from training.scene_sample import expected_matrix, scene_summary

NAMES = ["water", "forest", "crops"]
# rows = reference, columns = predicted; held-out polygon pixels
CONFUSION = [[90, 10, 0],
             [0, 60, 40],
             [0, 20, 80]]
SPLIT = {"method": "polygons", "val_polygons": 12, "unsplit_classes": ["urban"]}


def test_overall_accuracy_weights_each_class_recall_by_its_share_of_the_map():
    shares = [0.1, 0.6, 0.3]
    result = estimate(CONFUSION, NAMES, shares, SPLIT)
    # recalls on held-out pixels: water 90/100, forest 60/100, crops 80/100
    expected_oa = 0.1 * 0.9 + 0.6 * 0.6 + 0.3 * 0.8
    assert result["overall_accuracy"] == pytest.approx(expected_oa, abs=1e-4)
    assert result["raw_overall_accuracy"] == pytest.approx(230 / 300, abs=1e-4)
    # estimated error matrix p_ij = W_i n_ij / n_i.; IoU of forest from it
    p_ff = 0.6 * 0.6
    forest_reference = 0.6  # the whole forest row
    forest_mapped = 0.1 * 0.1 + 0.6 * 0.6 + 0.3 * 0.2  # column forest: water, forest and crops mapped as forest
    assert result["iou"]["forest"] == pytest.approx(p_ff / (forest_reference + forest_mapped - p_ff), abs=1e-4)
    assert result["few"] and result["polygons"] == 12 and result["unvalidated_classes"] == ["urban"]
    assert result["confused"] == [["forest", "crops", 0.4], ["crops", "forest", 0.2]]
    text = describe(result)
    assert "only 12 held-out polygons" in text and "urban" in text and f"{expected_oa:.0%}" in text
    assert "forest mapped as crops (40%)" in text


def test_a_class_without_held_out_pixels_gets_the_raw_accuracy_as_its_recall():
    confusion = [[50, 5, 0], [0, 45, 0], [0, 0, 0]]  # crops: no held-out polygon
    result = estimate(confusion, NAMES, [0.2, 0.3, 0.5], SPLIT)
    raw = 95 / 100
    assert result["overall_accuracy"] == pytest.approx(0.2 * 50 / 55 + 0.3 * 1.0 + 0.5 * raw, abs=1e-4)


def test_without_shares_or_with_block_validation_the_validation_score_is_the_estimate():
    unweighted = estimate(CONFUSION, NAMES, None, SPLIT)
    assert unweighted["overall_accuracy"] == unweighted["raw_overall_accuracy"]
    assert "unweighted" in unweighted["method"]
    blocks = estimate(CONFUSION, NAMES, [0.1, 0.6, 0.3], {"method": "blocks"})
    assert blocks["overall_accuracy"] == pytest.approx(230 / 300, abs=1e-4) and not blocks["few"]
    assert "spatial blocks" in blocks["method"]


def test_with_confidences_the_map_estimate_lowers_the_held_out_accuracy_by_the_confidence_gap():
    # held-out pixels: 8 of 10 right; their top-class probabilities, the 2 lowest wrong
    confidence = [0.30, 0.35, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 0.99]
    correct = [False, False] + [True] * 8
    scene = [0.2, 0.3, 0.4, 0.5, 0.9, 0.95, 0.97, 0.99]  # a harder scene: half its pixels are unsure
    threshold, value = atc(confidence, correct, scene)
    assert sum(c > threshold for c in confidence) == 8  # as often above it as they are right
    assert 0.35 < threshold < 0.6
    assert value == pytest.approx(4 / 8)  # the scene's 0.9 ... 0.99: half its pixels are sure enough
    result = estimate(CONFUSION, NAMES, [0.1, 0.6, 0.3], SPLIT, heldout_confidence=(confidence, correct),
                      scene_confidence=scene)
    assert result["estimates"]["atc"] == pytest.approx(value, abs=1e-4)
    # reported: the difference of confidences (no predicted classes given: unweighted), 0.8 - 0.719 + 0.65
    assert result["overall_accuracy"] == pytest.approx(0.8 - np.mean(confidence) + np.mean(scene), abs=1e-4)
    assert result["confidence_threshold"] == pytest.approx(threshold, abs=1e-4)
    assert result["polygon_overall_accuracy"] == pytest.approx(0.1 * 0.9 + 0.6 * 0.6 + 0.3 * 0.8, abs=1e-4)
    assert "top-class probability" in result["method"] and "polygons alone say 69%" in result["method"]
    assert "less sure" in result["method"]


def test_alternative_estimators_are_kept_and_class_weighting_follows_the_map_shares():
    # class 0 (rare in the map) is held out as often as class 1 and is always right
    confidence = [0.45, 0.55, 0.65, 0.75, 0.4, 0.5, 0.6, 0.7]
    correct = [True] * 4 + [False, False, True, True]
    predicted = [0, 0, 0, 0, 1, 1, 1, 1]
    scene = [0.45, 0.52, 0.65, 0.75, 0.9, 0.95, 0.97, 0.99]
    result = estimate(CONFUSION, NAMES, [0.1, 0.9, 0.0], SPLIT, heldout_confidence=(confidence, correct, predicted),
                      scene_confidence=scene)
    found = result["estimates"]
    assert found["atc"] == pytest.approx(atc(confidence, correct, scene)[1], abs=1e-4)
    assert found["doc"] == pytest.approx(0.75 - np.mean(confidence) + np.mean(scene), abs=1e-4)
    # weighted so that class 1 holds 90 % of the held-out weight: accuracy 0.1 + 0.9 * 0.5 = 0.55
    weights = [0.1 / 4 * 8] * 4 + [0.9 / 4 * 8] * 4
    assert found["doc_class_weighted"] == pytest.approx(
        0.55 - np.average(confidence, weights=weights) + np.mean(scene), abs=1e-4)
    threshold, value = atc(confidence, correct, scene, weights)
    assert found["atc_class_weighted"] == pytest.approx(value, abs=1e-4)
    assert 0.5 < threshold < 0.55  # equal weights: 0.4875; weighted, the many wrong class-1 pixels raise it
    assert found["atc_class_weighted"] < found["atc"]  # the map is mostly the harder class
    # the one reported, but the scene's pixels are the surer (0.78 against 0.56 weighted): not raised by that
    assert result["overall_accuracy"] == pytest.approx(0.55) and result["doc_held"] == found["doc_class_weighted"]
    lower = estimate(CONFUSION, NAMES, [0.1, 0.9, 0.0], SPLIT, heldout_confidence=(confidence, correct, predicted),
                     scene_confidence=[0.3, 0.4, 0.5])
    assert lower["overall_accuracy"] == lower["estimates"]["doc_class_weighted"] and "doc_held" not in lower


def test_the_ious_are_lowered_with_the_overall_accuracy_so_the_two_agree():
    # every held-out pixel right (the polygons say a perfect map), but the scene is less sure: 1 - 0.9 + 0.7
    perfect, shares = [[10, 0], [0, 10]], [0.25, 0.75]
    result = estimate(perfect, ["water", "forest"], shares, SPLIT, heldout_confidence=([0.9] * 20, [True] * 20),
                      scene_confidence=[0.6, 0.8])
    assert result["overall_accuracy"] == pytest.approx(0.8, abs=1e-4)
    assert result["polygon_mean_iou"] == 1.0 and result["polygon_iou"] == {"water": 1.0, "forest": 1.0}
    # each class keeps 0.8 of its share; what it loses is mapped as the other class (no errors to follow):
    # water 0.20 right, 0.05 as forest; forest 0.60 right, 0.15 as water
    assert result["iou"]["water"] == pytest.approx(0.20 / (0.25 + 0.35 - 0.20), abs=1e-4)
    assert result["iou"]["forest"] == pytest.approx(0.60 / (0.75 + 0.65 - 0.60), abs=1e-4)
    assert result["mean_iou"] == pytest.approx((0.5 + 0.75) / 2, abs=1e-4)
    assert "IoUs lowered alike" in result["method"]


def test_lowered_errors_follow_the_held_out_confusions_and_a_surer_scene_changes_nothing():
    shares = [0.1, 0.6, 0.3]
    lowered = estimate(CONFUSION, NAMES, shares, SPLIT, heldout_confidence=([0.8] * 10, [True] * 8 + [False] * 2),
                       scene_confidence=[0.5])
    polygon_oa = 0.1 * 0.9 + 0.6 * 0.6 + 0.3 * 0.8
    factor = lowered["overall_accuracy"] / polygon_oa
    assert factor == pytest.approx((0.8 - 0.8 + 0.5) / polygon_oa, abs=1e-3)
    # water's lost share goes where its errors went (forest), all of it
    water_right, water_as_forest = 0.1 * 0.9 * factor, 0.1 * 0.1 + 0.1 * 0.9 * (1 - factor)
    forest_right = 0.6 * 0.6 * factor
    crops_as_forest = 0.3 * 0.2 + 0.3 * 0.8 * (1 - factor)  # crops' errors were all forest
    forest_mapped = water_as_forest + forest_right + crops_as_forest
    assert lowered["iou"]["water"] == pytest.approx(water_right / 0.1, abs=1e-4)  # nothing else mapped as water
    assert lowered["iou"]["forest"] == pytest.approx(forest_right / (0.6 + forest_mapped - forest_right), abs=1e-4)
    assert lowered["mean_iou"] < lowered["polygon_mean_iou"]
    surer = estimate(CONFUSION, NAMES, shares, SPLIT, heldout_confidence=([0.5] * 10, [True] * 8 + [False] * 2),
                     scene_confidence=[0.9])
    assert surer["iou"] == surer["polygon_iou"]


def test_a_model_surer_of_the_scene_than_of_the_held_out_pixels_is_not_estimated_above_them():
    """The probe's case: folds stopped after 1-2 epochs by the time limit scored the held-out pixels unsure, the
    refit's 3 epochs made the exported model sure of the scene; the DoC (0.8 - 0.5 + 0.9) said 1.0, 'overall
    accuracy 100%, mean IoU 100%', for held-out pixels 80 % right."""
    surer = estimate(CONFUSION, NAMES, [0.1, 0.6, 0.3], SPLIT,
                     heldout_confidence=([0.5] * 10, [True] * 8 + [False] * 2), scene_confidence=[0.9])
    assert surer["overall_accuracy"] == pytest.approx(0.8) and surer["doc_held"] == pytest.approx(1.2)
    assert surer["mean_iou"] < 1.0
    assert "not raised by how much surer the model is of the map's pixels" in surer["method"]
    assert "less sure" not in surer["method"] and "80%" in describe(surer)
    unsure = estimate(CONFUSION, NAMES, [0.1, 0.6, 0.3], SPLIT,
                      heldout_confidence=([0.9] * 10, [True] * 8 + [False] * 2), scene_confidence=[0.7])
    assert unsure["overall_accuracy"] == pytest.approx(0.6, abs=1e-4) and "doc_held" not in unsure


def test_the_expected_error_matrix_counts_each_pixel_s_probabilities_under_its_mapped_class():
    pixels = np.array([[0.9, 0.1], [0.3, 0.7], [0.6, 0.4]], dtype=np.float32)
    matrix = expected_matrix(pixels, 2)
    # mapped as class 0: pixels (0.9, 0.1) and (0.6, 0.4); as class 1: (0.3, 0.7)
    np.testing.assert_allclose(matrix, [[1.5, 0.3], [0.5, 0.7]], atol=1e-6)
    assert matrix.sum(axis=0).tolist() == pytest.approx([2.0, 1.0])  # pixels mapped as each class
    shares, confidence, expected = scene_summary(pixels, 2)
    np.testing.assert_allclose(shares, [2 / 3, 1 / 3])
    np.testing.assert_allclose(confidence, [0.9, 0.7, 0.6])
    assert expected.sum() == pytest.approx(1.0)


def test_the_expected_error_matrix_can_take_other_probabilities_as_the_reference_chances():
    pixels = np.array([[0.6, 0.4], [0.2, 0.8]], dtype=np.float32)  # the map: class 0, class 1
    chances = np.array([[0.3, 0.7], [0.1, 0.9]], dtype=np.float32)  # e.g. the same pixels weighed
    np.testing.assert_allclose(expected_matrix(pixels, 2, chances), [[0.3, 0.1], [0.7, 0.9]], atol=1e-6)
    shares, confidence, _ = scene_summary(pixels, 2, chances)
    np.testing.assert_allclose(shares, [0.5, 0.5])  # the map's shares are still the pixels' argmax
    np.testing.assert_allclose(confidence, [0.6, 0.8])


def test_the_unweighed_map_s_errors_are_expected_from_the_weighed_probabilities():
    # polygons sample water as often as forest; the scene is mostly forest, and where the model leans to water
    # (0.6 / 0.4) the weighing by the scene's shares says forest (0.27 / 0.73): the unweighed map's water there is
    # mostly wrong, which its own probabilities (60 % water) do not say
    # held-out pixels: 3 of 4 right, all at 95 %: the model is surer than right, the estimate below its map's trace
    probabilities = np.array([[0.95, 0.05], [0.95, 0.05], [0.05, 0.95], [0.95, 0.05]], np.float32)
    labels = np.array([0, 0, 1, 1])
    scene = np.array([[0.6, 0.4]] * 4 + [[0.1, 0.9]] * 16, np.float32)
    names, split = ["water", "forest"], {"method": "polygons", "val_polygons": 30}
    plain = of_map([[2, 0], [1, 1]], names, split, (probabilities, labels), scene)
    weighed = of_map([[2, 0], [1, 1]], names, split, (probabilities, labels), scene, weights=[0.25, 1.0])
    unweighed = weighed["unweighed"]
    # the weighed map says forest on all 20 pixels; the unweighed one water on the 4 where the weighed chances are
    # 0.15 / 0.55 water and 0.4 / 0.55 forest: it is right less often by 4 x (0.4 - 0.15) / 0.55 of 20 pixels
    gain = 4 * (0.4 - 0.15) / 0.55 / 20
    assert unweighed["overall_accuracy"] == pytest.approx(weighed["overall_accuracy"] - gain, abs=1e-4)
    assert unweighed["iou"]["water"] < 0.8 * plain["iou"]["water"]  # 0.30 against 0.40 from its own probabilities
    assert unweighed["mean_iou"] < plain["mean_iou"]
    assert scene[0].tolist() == pytest.approx([0.6, 0.4])  # the sample itself is left as it was


def test_with_the_map_s_expected_errors_the_ious_are_the_map_s_not_the_polygons():
    # the polygons are all right, but where the map says water it is unsure: half its water pixels may be forest
    perfect, shares = [[10, 0], [0, 10]], [0.2, 0.8]
    scene = np.array([[0.1, 0.0], [0.1, 0.8]])  # rows reference, columns mapped; sums to 1
    confidence = ([0.9] * 20, [True] * 20)
    without = estimate(perfect, ["water", "forest"], shares, SPLIT, heldout_confidence=confidence,
                       scene_confidence=[0.9])
    assert without["iou"] == {"water": 1.0, "forest": 1.0}  # the polygons see no error, the scene no doubt
    result = estimate(perfect, ["water", "forest"], shares, SPLIT, heldout_confidence=confidence,
                      scene_confidence=[0.8], scene_matrix=scene)
    assert result["overall_accuracy"] == 0.9  # 1 - 0.9 + 0.8: as sure as the map's probabilities say
    assert result["iou"]["water"] == pytest.approx(0.1 / (0.1 + 0.2 - 0.1), abs=1e-4)
    assert result["iou"]["forest"] == pytest.approx(0.8 / (0.9 + 0.8 - 0.8), abs=1e-4)
    assert result["polygon_iou"] == {"water": 1.0, "forest": 1.0}
    assert "the map's own class probabilities" in result["method"]
    # lowered to the overall accuracy the scene's confidences give: the trace falls to it
    lower = estimate(perfect, ["water", "forest"], shares, SPLIT, heldout_confidence=confidence,
                     scene_confidence=[0.53], scene_matrix=scene)  # 1 - 0.9 + 0.53
    assert lower["overall_accuracy"] == pytest.approx(0.63, abs=1e-4)
    assert lower["iou"]["forest"] < result["iou"]["forest"] and lower["iou"]["water"] < result["iou"]["water"]


def test_of_the_weighed_map_the_held_out_pixels_and_the_scene_are_weighed_as_classify_weighs_them():
    # two classes; held-out pixels of both, the model leaning to 'forest' where unsure
    probabilities = np.array([[0.9, 0.1], [0.45, 0.55], [0.3, 0.7], [0.1, 0.9], [0.2, 0.8]], np.float16)
    labels = np.array([0, 0, 0, 1, 1], np.int16)
    confusion = [[1, 2], [0, 2]]  # the unweighed argmax of the pixels above
    scene = np.array([[0.8, 0.2], [0.45, 0.55], [0.3, 0.7], [0.05, 0.95]], np.float32)
    names, split = ["water", "forest"], {"method": "polygons", "val_polygons": 30}
    plain = of_map(confusion, names, split, (probabilities, labels), scene)
    weights = [1.0, 0.5]  # forest halved: the 0.45 / 0.55 pixels turn to water, the 0.3 / 0.7 do not
    weighed = of_map(confusion, names, split, (probabilities, labels), scene, weights=weights)
    assert "classes_weighed" not in plain and weighed["classes_weighed"] is True
    assert plain["raw_overall_accuracy"] == pytest.approx(3 / 5) and weighed["raw_overall_accuracy"] == 0.8
    assert weighed["class_pixels"] == plain["class_pixels"] == {"water": 3, "forest": 2}
    # the map's shares: water where the weighed scene's argmax is water (2 of 4 pixels), against 1 of 4 unweighed
    assert plain["class_shares"]["water"] == pytest.approx(0.25) and weighed["class_shares"]["water"] == 0.5
    assert weighed["overall_accuracy"] != plain["overall_accuracy"]
    assert "weighed by the scene's shares" in describe(weighed)
    assert f"off: overall accuracy {weighed['unweighed']['overall_accuracy']:.0%}" in describe(weighed)
    # the original pixels are left as they were (the unweighed estimate uses them after)
    assert probabilities[1, 1] == np.float16(0.55) and scene[1, 1] == np.float32(0.55)


def test_a_subsample_s_weighed_counts_are_scaled_to_every_held_out_pixel_of_each_class():
    # 4 of water's 40 held-out pixels and 2 of forest's 60 were kept
    probabilities = np.array([[0.9, 0.1], [0.6, 0.4], [0.45, 0.55], [0.3, 0.7], [0.2, 0.8], [0.1, 0.9]], np.float32)
    labels = np.array([0, 0, 0, 0, 1, 1])
    confusion = [[20, 20], [0, 60]]
    result = of_map(confusion, ["water", "forest"], {"method": "polygons", "val_polygons": 30},
                    (probabilities, labels), probabilities, weights=[1.0, 0.5])
    # weighed: water keeps 3 of its 4 (0.3 / 0.7 stays forest), forest keeps both: 30 + 60 of 100
    assert result["pixels"] == 100 and result["raw_overall_accuracy"] == pytest.approx(0.9)
    assert result["class_pixels"] == {"water": 40, "forest": 60}


def test_without_held_out_pixels_the_estimate_is_the_polygons_recalls_weighted_by_the_map_s_shares():
    scene = np.array([[0.8, 0.2], [0.3, 0.7], [0.1, 0.9], [0.2, 0.8]], np.float32)  # the map: 1/4 water
    result = of_map([[9, 1], [2, 8]], ["water", "forest"], {"method": "polygons", "val_polygons": 30}, None, scene,
                    weights=[1.0, 0.5])
    assert result["overall_accuracy"] == pytest.approx(0.25 * 0.9 + 0.75 * 0.8, abs=1e-4)
    assert "classes_weighed" not in result and "weighted by its share of the map" in result["method"]


def test_an_unsure_model_s_expected_errors_are_shrunk_to_the_overall_accuracy_beside_them():
    """The rstoolbox demo's case: a model right on 99 % of its held-out pixels but only 50-60 % sure of them
    spreads chances over classes it does not map; the IoUs read from those chances (0.31) contradicted the
    accuracy reported beside them (96 %), for a map that scored mean IoU 0.72 on held-out polygons."""
    perfect, shares = [[10, 0], [0, 10]], [0.2, 0.8]
    scene = np.array([[0.1, 0.0], [0.1, 0.8]])  # trace 0.9: the probabilities expect 10 % wrong
    names = ["water", "forest"]
    raised = estimate(perfect, names, shares, SPLIT, heldout_confidence=([0.95] * 20, [True] * 20),
                      scene_confidence=[0.9], scene_matrix=scene)  # 1 - 0.95 + 0.9
    assert raised["overall_accuracy"] == 0.95
    # half the expected errors stay (0.05 of 0.1): water's column keeps its 0.2 of the map, 0.15 of it right
    assert raised["iou"]["water"] == pytest.approx(0.15 / (0.15 + 0.2 - 0.15), abs=1e-4)
    assert raised["iou"]["forest"] == pytest.approx(0.8 / (0.85 + 0.8 - 0.8), abs=1e-4)
    certain = estimate(perfect, names, shares, SPLIT, heldout_confidence=([0.9] * 20, [True] * 20),
                       scene_confidence=[0.9], scene_matrix=scene)
    assert certain["overall_accuracy"] == 1.0 and certain["iou"] == {"water": 1.0, "forest": 1.0}
