"""The stratified estimators of Olofsson et al. (2014) reproduce the paper's worked example (section 5),
and the sampling design (sample size, allocation) its numbers."""
import numpy as np
import pytest

from landcover_plugin.core.assess.area_estimate import stratified_estimates
from landcover_plugin.core.errors import BadInputError
from landcover_plugin.core.sample.design import allocate, sample_size

# Olofsson et al. 2014, Table 8: rows map class (stratum), columns reference class; sample counts.
# Classes: deforestation, forest gain, stable forest, stable non-forest. 640 points.
PAPER_COUNTS = [[66, 0, 5, 4],
                [0, 55, 8, 12],
                [1, 0, 153, 11],
                [2, 1, 9, 313]]
PAPER_MAPPED_PIXELS = [200_000, 150_000, 3_200_000, 6_450_000]  # Landsat pixels of 30 m
HECTARES_PER_PIXEL = 0.09


@pytest.fixture(scope="module")
def paper():
    return stratified_estimates(PAPER_COUNTS, PAPER_MAPPED_PIXELS, pixel_area=HECTARES_PER_PIXEL, z=1.96)


def test_area_estimates_with_confidence_intervals_match_the_paper(paper):
    # Section 5.2: deforestation 21,158 +- 6,158 ha; forest gain 11,686 +- 3,756 ha;
    # stable forest 285,770 +- 15,510 ha; stable non-forest 581,386 +- 16,282 ha.
    np.testing.assert_allclose(paper["estimated_area"], [21_158, 11_686, 285_770, 581_386], atol=0.5)
    np.testing.assert_allclose(paper["area_ci"], [6_158, 3_756, 15_510, 16_282], atol=0.5)
    np.testing.assert_allclose(paper["mapped_area"], [18_000, 13_500, 288_000, 580_500])
    assert paper["estimated_area"].sum() == pytest.approx(900_000)  # areas are shares of the whole map
    np.testing.assert_allclose(paper["estimated_pixels"], np.array([21_158, 11_686, 285_770, 581_386]) / 0.09,
                               rtol=1e-4)


def test_accuracies_with_confidence_intervals_match_the_paper(paper):
    # Section 5.2: O = 0.95 +- 0.02; user's 0.88 +- 0.07, 0.73 +- 0.10, 0.93 +- 0.04, 0.96 +- 0.02;
    # producer's 0.75 +- 0.21, 0.85 +- 0.25, 0.93 +- 0.03, 0.96 +- 0.02.
    assert paper["overall"] == pytest.approx(0.9465, abs=5e-5)
    assert paper["overall_ci"] == pytest.approx(0.0185, abs=5e-4)
    np.testing.assert_allclose(paper["users"], [0.88, 0.7333, 0.9273, 0.9631], atol=5e-5)
    np.testing.assert_allclose(paper["users_ci"], [0.07, 0.10, 0.04, 0.02], atol=0.005)
    np.testing.assert_allclose(paper["producers"], [0.75, 0.85, 0.93, 0.96], atol=0.005)
    np.testing.assert_allclose(paper["producers_ci"], [0.21, 0.25, 0.03, 0.02], atol=0.005)


def test_error_matrix_in_area_proportions_matches_table_9(paper):
    p = paper["proportions"]
    np.testing.assert_allclose(p.sum(axis=1), [0.020, 0.015, 0.320, 0.645])  # rows sum to the weights
    np.testing.assert_allclose(p[0], [0.0176, 0, 0.0013, 0.0011], atol=5e-5)
    np.testing.assert_allclose(p[3], [0.0040, 0.0020, 0.0179, 0.6212], atol=5e-5)
    np.testing.assert_allclose(paper["area_proportion"], [0.0235, 0.0130, 0.3175, 0.6460], atol=5e-5)


def test_a_class_only_in_the_reference_gets_an_area_but_no_users_accuracy():
    counts = [[8, 2, 0], [1, 9, 0], [0, 0, 0]]  # class 3 never mapped; also never seen: area 0
    est = stratified_estimates(counts, [500, 500, 0])
    assert np.isnan(est["users"][2]) and np.isnan(est["producers"][2])
    assert est["estimated_pixels"][2] == 0
    counts = [[8, 1, 1], [1, 9, 0], [0, 0, 0]]  # class 3 seen in the reference only
    est = stratified_estimates(counts, [500, 500, 0])
    assert est["estimated_pixels"][2] == pytest.approx(50.0)
    assert est["producers"][2] == 0.0 and est["area_ci"][2] > 0


def test_a_mapped_class_without_enough_sample_points_is_refused_with_the_fix():
    with pytest.raises(BadInputError, match="at least 2"):
        stratified_estimates([[5, 0], [0, 1]], [100, 100])


def test_sample_size_for_a_target_standard_error_is_the_papers_641():
    # Section 5.1.1: anticipated user's accuracies 0.7, 0.6, 0.9, 0.95 and S(O) = 0.01 give n = 641.
    assert sample_size(PAPER_MAPPED_PIXELS, [0.7, 0.6, 0.9, 0.95], 0.01) == 641
    assert sample_size(PAPER_MAPPED_PIXELS, [0.7, 0.6, 0.9, 0.95], 0.01, population=10_000_000) == 641
    assert sample_size(PAPER_MAPPED_PIXELS, [0.7, 0.6, 0.9, 0.95], 0.02) == 161
    with pytest.raises(BadInputError, match="between 0 and 0.5"):
        sample_size(PAPER_MAPPED_PIXELS, [0.7, 0.6, 0.9, 0.95], 0)


def test_allocations():
    # Proportional: rare change classes get almost nothing (13 and 10 of 641), hence the paper's advice.
    assert allocate(641, PAPER_MAPPED_PIXELS, "proportional").tolist() == [13, 10, 205, 413]
    assert allocate(641, PAPER_MAPPED_PIXELS, "equal").tolist() == [161, 160, 160, 160]
    # Recommended: at least 100 each, the rest proportional among the larger classes.
    assert allocate(641, PAPER_MAPPED_PIXELS, "recommended", 100).tolist() == [100, 100, 146, 295]
    # A class with fewer pixels than the minimum gives all it has; the total is kept.
    assert allocate(400, [1000, 20, 300_000, 5000, 90_000], "recommended", 50).tolist() == [50, 20, 215, 50, 65]
    # Fewer pixels than asked: every pixel once.
    assert allocate(1000, [10, 5, 0, 100], "equal").tolist() == [10, 5, 0, 100]
    with pytest.raises(BadInputError, match="allocation"):
        allocate(10, [5, 5], "optimal")
