"""docs/algorithms.md is generated from the algorithms; it must match what the toolbox shows."""
from scripts.algorithm_reference import TARGET, render


def test_algorithm_reference_is_up_to_date(qgis_app):
    assert TARGET.read_text(encoding="utf-8") == render() + "\n", (
        "docs/algorithms.md is out of date: run 'python -m scripts.algorithm_reference'")
