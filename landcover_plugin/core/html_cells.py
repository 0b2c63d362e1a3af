"""Cells of the HTML (and text) reports, the training report's and the accuracy report's alike: escaped text,
percentages, numbers and counts with 'n/a' for a missing value, a two-column table, and an image's address.
QGIS-free."""
import html
from pathlib import Path

MISSING = "n/a"


def escape(value) -> str:
    return html.escape(str(value), quote=True)


def percent(value) -> str:
    """A share (0..1) as a percentage with one decimal."""
    return MISSING if value is None else f"{100.0 * float(value):.1f} %"


def number(value, digits: int = 3, sci: bool = False) -> str:
    """A number with ``digits`` decimals (significant digits with ``sci``); text is given escaped."""
    if value is None or isinstance(value, str):
        return MISSING if value is None else escape(value)
    return f"{value:.{digits}g}" if sci else f"{value:.{digits}f}"


def count(value) -> str:
    """A whole number with thousands separators."""
    return MISSING if value is None else f"{int(value):,}"


def key_value_table(rows) -> str:
    """(name, value) rows as a two-column table, both escaped."""
    body = "".join(f'<tr><th class="name">{escape(k)}</th><td>{escape(v)}</td></tr>' for k, v in rows)
    return f'<table class="kv"><tbody>{body}</tbody></table>'


def image_src(png, html_path) -> str:
    """How the page at ``html_path`` refers to the image ``png``: its name where the two share a folder (the
    folder can be moved), else its file URI; None where there is no such file."""
    if not png or not Path(png).is_file():
        return None
    png = Path(png).resolve()
    return png.name if png.parent == Path(html_path).resolve().parent else png.as_uri()
