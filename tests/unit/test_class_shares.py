"""The scene's class shares from a model's probabilities (core/model/class_shares.py): expectation-maximisation
recovers the shares that made a sample, and the weights it gives make the Bayes-optimal labels."""
import numpy as np
import pytest

from landcover_plugin.core.model.class_shares import (
    AGREE,
    FLOOR,
    KEPT,
    STRENGTH,
    card_entry,
    checked_shares,
    class_weights,
    counted_shares,
    gentle_strength,
    learned_prior,
    mapped_shares,
    scene_shares,
    vanishing,
    vanishing_warning,
    weigh,
)

MEANS = np.array([0.0, 1.5, 3.0])  # three classes on one feature, unit-variance Gaussians that overlap


def posteriors(labels_prior, learned, n=60_000, seed=0):
    """(labels, probabilities): pixels of classes drawn by ``labels_prior``, and the posteriors of a calibrated
    model that learned the class prior ``learned``."""
    rng = np.random.default_rng(seed)
    labels = rng.choice(len(labels_prior), size=n, p=labels_prior)
    x = rng.normal(MEANS[labels], 1.0)
    likelihood = np.exp(-0.5 * (x[:, None] - MEANS[None, :]) ** 2)
    probs = likelihood * np.asarray(learned)[None, :]
    return labels, probs / probs.sum(axis=1, keepdims=True)


def test_expectation_maximisation_recovers_the_scene_shares_from_a_model_that_learned_even_ones():
    scene, learned = np.array([0.70, 0.25, 0.05]), np.full(3, 1 / 3)
    _, probs = posteriors(scene, learned)
    naive = probs.mean(axis=0)  # the mean probability is pulled toward the learned, even prior
    assert abs(naive[2] - 0.05) > 0.05
    shares, iterations = scene_shares(probs, learned, floor=0.0)
    np.testing.assert_allclose(shares, scene, atol=0.02)
    assert 1 < iterations < 200


def test_a_class_the_scene_lacks_keeps_the_floor_and_an_untrained_class_stays_at_zero():
    _, probs = posteriors(np.array([0.8, 0.2, 0.0]), np.full(3, 1 / 3))
    shares, _ = scene_shares(probs, np.full(3, 1 / 3))
    assert shares[2] == pytest.approx(FLOOR, abs=1e-3) and shares.sum() == pytest.approx(1.0)
    untrained = np.array([0.5, 0.5, 0.0])
    probs[:, 2] = 0.0
    shares, _ = scene_shares(probs / probs.sum(axis=1, keepdims=True), untrained)
    assert shares[2] == 0.0 and shares[:2].sum() == pytest.approx(1.0)  # nothing to move where nothing was learned
    assert np.isfinite(class_weights(shares, untrained)).all()


def test_weighing_the_probabilities_by_the_estimated_shares_labels_more_pixels_right():
    scene, learned = np.array([0.70, 0.25, 0.05]), np.full(3, 1 / 3)
    labels, probs = posteriors(scene, learned, seed=1)
    shares, _ = scene_shares(probs, learned)
    tiles = probs.T.reshape(1, 3, 200, 300).astype(np.float32).copy()
    weighed = weigh(tiles, class_weights(shares, learned, strength=1.0))  # Bayes' rule: shares trusted fully
    np.testing.assert_allclose(weighed.sum(axis=1), 1.0, atol=1e-5)  # probabilities again
    before = (probs.argmax(axis=1) == labels).mean()
    after = (weighed.reshape(3, -1).argmax(axis=0) == labels).mean()
    assert after > before + 0.03  # the rare class stops taking the common ones' pixels
    bayes = (np.argmax(probs * scene / learned, axis=1) == labels).mean()  # the true shares' labels
    assert after == pytest.approx(bayes, abs=0.005)


def test_the_learned_prior_is_the_training_pixels_times_the_loss_weights():
    np.testing.assert_allclose(learned_prior([100, 300, 0], [2.0, 1.0, 1.0]), [0.4, 0.6, 0.0])
    with pytest.raises(ValueError):
        learned_prior([0, 0])


def test_the_default_weights_trust_the_estimated_shares_halfway():
    shares, learned = np.array([0.64, 0.32, 0.04]), np.array([0.25, 0.25, 0.5])
    full = class_weights(shares, learned, strength=1.0)
    np.testing.assert_allclose(full, [1.0, 0.5, 0.03125])  # 2.56, 1.28, 0.08 scaled to the largest
    np.testing.assert_allclose(class_weights(shares, learned), np.sqrt(full))  # STRENGTH 0.5


def test_em_shares_that_agree_with_the_model_s_own_map_are_taken():
    scene, learned = np.array([0.70, 0.25, 0.05]), np.full(3, 1 / 3)
    _, probs = posteriors(scene, learned)
    shares, found_by, em, disagreeing = checked_shares(probs, learned)
    assert found_by == "em" and em is None and disagreeing == []
    np.testing.assert_allclose(shares, scene_shares(probs, learned)[0])
    counted = counted_shares(probs, learned)  # the map's own counts move the same way, less far
    assert counted[0] > learned[0] and counted[0] < shares[0]


def test_em_run_astray_by_near_uniform_probabilities_gives_way_to_the_map_s_own_counts():
    """A barely trained model (a one-epoch rstoolbox model was like this) gives every pixel about even
    probabilities; the class it learned as rarest then has the highest probability-to-learned ratio almost
    everywhere, and EM hands it the scene (97 % there), though the map itself gives it less than it learned."""
    rng = np.random.default_rng(0)
    learned = np.array([0.26, 0.12, 0.39, 0.23])
    probs = 0.25 + rng.normal(0.0, 0.02, size=(20_000, 4))
    probs[:, 1] -= 0.01
    probs[:, 2] += 0.02  # the map: mostly class 2, class 1 now and then
    probs /= probs.sum(axis=1, keepdims=True)
    em, _ = scene_shares(probs, learned)
    assert em[1] > 0.9  # astray
    shares, found_by, rejected, disagreeing = checked_shares(probs, learned)
    assert found_by == "counts" and disagreeing == [1]
    np.testing.assert_allclose(rejected, em)
    np.testing.assert_allclose(shares, counted_shares(probs, learned))
    assert shares[1] < learned[1] and shares.argmax() == 2  # the map's own view: class 1 rarer than learned
    entry = card_entry(shares, learned, [1, 2, 3, 4], "scene.tif", len(probs), found_by, rejected, disagreeing)
    assert entry["found_by"] == "counts" and entry["em_shares"][1] > 0.9 and "counts" in entry["method"]
    assert entry["em_astray_ids"] == [2]  # class ids, not indices


def test_the_training_report_names_the_classes_the_log_warned_of():
    """EM may raise a class above the map's count and still agree with it (within AGREE): the report names as
    astray only the classes the check refused (the log's warning names the same), not every class EM raised."""
    from landcover_plugin.core.train.report_sections import class_shares_section

    learned = np.array([0.25, 0.25, 0.25, 0.25])
    counted, em = np.array([0.40, 0.10, 0.40, 0.10]), np.array([0.45, 0.40, 0.10, 0.05])
    entry = card_entry(counted, learned, [3, 5, 7, 9], "scene.tif", 1000, "counts", em, [1])
    card = {"classes": [{"id": i, "name": n} for i, n in zip([3, 5, 7, 9], ["water", "forest", "crops", "urban"])],
            "class_shares": entry}
    astray = class_shares_section(card).split("went astray: ")[1].split(";")[0]
    assert astray == "forest 40.0 %"  # water: raised by both, so not named
    del entry["em_astray_ids"]  # a card written before the ids were kept: every class EM put above the map's count
    assert class_shares_section(card).split("went astray: ")[1].split(";")[0] == "water 45.0 %, forest 40.0 %"


def test_em_raising_a_class_far_beyond_the_map_s_own_count_is_not_taken():
    learned = np.full(3, 1 / 3)
    _, probs = posteriors(np.array([0.70, 0.25, 0.05]), learned)
    em = scene_shares(probs, learned)[0]
    counted = counted_shares(probs, learned)
    # EM raised class 0 about 1.3 times as far as the counts (log ratios): within AGREE
    assert 1.0 < np.log(em[0] / learned[0]) / np.log(counted[0] / learned[0]) < AGREE
    flattened = probs.copy()
    flattened[:, 0] = probs[:, 0] * 0.25 + 0.75 / 3  # the same ranking, far less sure: the counts barely move
    flattened /= flattened.sum(axis=1, keepdims=True)
    em, _ = scene_shares(flattened, learned)
    counted = counted_shares(flattened, learned)
    assert em[0] > 0.95 and 0.4 < counted[0] < 0.7  # EM hands class 0 nearly all of it, the map half
    assert np.log(em[0] / learned[0]) / np.log(counted[0] / learned[0]) > AGREE
    shares, found_by, _, disagreeing = checked_shares(flattened, learned)
    assert found_by == "counts" and disagreeing == [0]


def test_a_middle_class_weighed_down_vanishes_from_the_map_and_the_warning_names_it():
    # the middle class is rare in the scene; weighed down, both neighbours take its hesitant pixels
    labels, probs = posteriors([0.5, 0.01, 0.49], [1 / 3] * 3)
    shares, _ = scene_shares(probs, [1 / 3] * 3)
    entry = card_entry(shares, [1 / 3] * 3, [1, 2, 3], "scene.tif", len(probs), probabilities=probs)
    unweighed, weighed = entry["map_shares"]["unweighed"], entry["map_shares"]["weighed"]
    assert unweighed == pytest.approx(np.bincount(probs.argmax(axis=1)) / len(probs), abs=1e-6)
    assert unweighed[1] > 0.05 and weighed[1] < 0.001 and sum(weighed) == pytest.approx(1.0)
    assert weighed == pytest.approx(list(mapped_shares(probs, entry["weights"])), abs=1e-6)
    assert vanishing(unweighed, weighed) == [1]
    text = vanishing_warning(entry, ["water", "reeds", "land"], "a sample of the scene")
    assert text.startswith("Weighed by the scene's shares, the map shows almost none of some classes, over a "
                           f"sample of the scene: reeds {100 * weighed[1]:.2f} % ({100 * unweighed[1]:.1f} % with "
                           "the weighing off).")
    assert "water" not in text and "land" not in text
    # the map is right on more pixels all the same: the rare class's hesitant pixels are mostly its neighbours'
    right = {kind: (p.argmax(axis=1) == labels).mean() for kind, p in
             (("unweighed", probs), ("weighed", weigh(probs.copy(), entry["weights"])))}
    assert right["weighed"] > right["unweighed"]


def test_no_warning_when_every_class_stays_on_the_map_or_the_card_predates_the_map_shares():
    _, probs = posteriors([0.3, 0.4, 0.3], [1 / 3] * 3)
    shares, _, _, _ = checked_shares(probs, [1 / 3] * 3)
    entry = card_entry(shares, [1 / 3] * 3, [1, 2, 3], "scene.tif", len(probs), probabilities=probs)
    assert min(entry["map_shares"]["weighed"]) > 0.1
    assert vanishing_warning(entry, ["water", "reeds", "land"], "a sample") == ""
    assert vanishing_warning(card_entry(shares, [1 / 3] * 3, [1, 2, 3], "scene.tif", len(probs)), ["a", "b", "c"],
                             "a sample") == ""


def test_a_weighing_that_would_erase_a_class_the_scene_has_is_made_gentler_until_the_map_keeps_it():
    # a model unsure everywhere (every pixel near a tie) that learned class 1 rare: weighed at full strength by
    # shares that say half and half, class 0 loses every pixel
    rng = np.random.default_rng(0)
    edge = rng.uniform(-0.01, 0.01, 40_000)
    probs = np.stack([0.5 + edge, 0.5 - edge], axis=1)
    shares, prior = [0.5, 0.5], [0.9, 0.1]
    strength, erased, weighed = gentle_strength(probs, shares, prior)
    assert erased == [0] and weighed[0] == 0.0
    # the largest strength keeping class 0 on a quarter of the map: weights 9 ** s apart, so the tie moves to
    # edge = (9 ** s - 1) / (9 ** s + 1) / 2, which a quarter of the uniform edges pass at 0.0075
    assert strength == pytest.approx(np.log(0.5075 / 0.4925) / np.log(9), abs=0.002) and strength < STRENGTH
    kept = mapped_shares(probs, class_weights(shares, prior, strength))
    assert kept[0] >= 0.5 / KEPT and kept[0] < 0.5
    # a weighing that keeps every class the scene has stays as it is
    assert gentle_strength(probs, [0.5, 0.5], [0.5, 0.5])[:2] == (STRENGTH, [])
