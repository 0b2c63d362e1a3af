"""Where outputs an analyst keeps go when the dialog says "[Save to temporary file]", and what the next step
remembers of the last run.

Training areas (hours of digitising), a chip dataset and a trained model must survive QGIS's temporary folder,
which is deleted when QGIS closes: a temporary path for one of them is replaced by a new path beside the project
or the input (never an existing file), and the log says where. The last chip folder and the last model are kept
in the QGIS settings, so "Train" opens with the last export's chips and "Classify" with the last trained model.
"""
import os
from pathlib import Path

from qgis.core import QgsProcessing, QgsProcessingUtils, QgsSettings

LAST_CHIP_FOLDER = "landcover/last_chip_folder"
LAST_MODEL = "landcover/last_model"
# Parameter metadata marking a default taken from the last run (the algorithm reference says so).
REMEMBERED = "landcover_remembered"


def is_temporary(path) -> bool:
    """Whether Processing chose ``path`` in its temporary folder (the dialog's "[Save to temporary file]")."""
    if not path or str(path) == QgsProcessing.TEMPORARY_OUTPUT:
        return True
    try:
        temp = Path(QgsProcessingUtils.tempFolder()).resolve()
        return Path(path).resolve().is_relative_to(temp)
    except (OSError, ValueError):
        return False


def unique_path(folder, stem: str, suffix: str = "") -> str:
    """``folder/stem+suffix``, or ``stem_2``, ``stem_3``... when that exists: never an existing file."""
    folder = Path(folder)
    candidate = folder / f"{stem}{suffix}"
    number = 2
    while candidate.exists():
        candidate = folder / f"{stem}_{number}{suffix}"
        number += 1
    return str(candidate)


def writable_folder(*candidates) -> Path:
    """The first candidate folder that exists and is writable, else the home folder."""
    for folder in candidates:
        if folder and os.path.isdir(folder) and os.access(folder, os.W_OK):
            return Path(folder)
    return Path.home()


def project_folder(context):
    project = context.project() if context is not None else None
    return project.absolutePath() if project is not None and project.absolutePath() else None


def kept_path(path, context, feedback, stem: str, suffix: str, *beside, what: str) -> str:
    """``path`` itself, unless Processing made it temporary: then a new path named ``stem`` in the first
    writable folder of ``beside`` (then the project folder, then home), reported in the log."""
    if not is_temporary(path):
        return path
    folder = writable_folder(*beside, project_folder(context))
    kept = unique_path(folder, stem, suffix)
    feedback.pushInfo(f"The {what} is written to {kept}, not to a temporary file that QGIS deletes when it "
                      f"closes. Choose another place in the dialog if you like.")
    return kept


def remember(key: str, path) -> None:
    if path:
        QgsSettings().setValue(key, str(path))


def remembered(key: str, folder: bool = False):
    """The remembered path when it still exists, else None."""
    value = str(QgsSettings().value(key, "") or "")
    if value and (os.path.isdir(value) if folder else os.path.isfile(value)):
        return value
    return None
