"""Probe finding on the accuracy report (issue 12): class names that a spreadsheet would run as formulas."""
import csv

from test_accuracy_assess import CLASSIFIED, REFERENCE, assess, write_raster

EVIL = ["=HYPERLINK(\"http://x\",\"a\")", "+cmd|' /C calc'!A0", "-2+3", "@SUM(A1)"]


def test_class_names_starting_a_formula_stay_text_in_both_csv_files(tmp_path):
    classified = write_raster(tmp_path / "classified.tif", CLASSIFIED, names=["no data"] + EVIL[:3])
    reference = write_raster(tmp_path / "reference.tif", REFERENCE)
    outputs, report, _ = assess(tmp_path, classified=classified, reference_raster=reference)
    assert [r["name"] for r in report["classes"]] == EVIL[:3]  # the JSON keeps the names as they are
    with open(outputs["OUTPUT_TABLE"], newline="", encoding="utf-8") as f:
        names = [row["class_name"] for row in csv.DictReader(f)]
    assert names == ["'" + n for n in EVIL[:3]]
    with open(outputs["OUTPUT_CONFUSION"], newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    cells = rows[0][1:4] + [row[0] for row in rows[1:4]]
    assert all(cell.startswith("'") for cell in cells), cells
    assert not any(cell and cell[0] in "=+-@" for row in rows for cell in row if not _number(cell))


def _number(text):
    try:
        float(text)
    except ValueError:
        return False
    return True
