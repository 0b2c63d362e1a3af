"""Small pure helpers over (band, row, col) arrays shared by chips, inference and accuracy."""
import numpy as np


def valid_mask(data: np.ndarray, nodata=None) -> np.ndarray:
    """(row, col) bool mask: True where every band holds a real value (not nodata, not NaN/inf)."""
    mask = np.ones(data.shape[-2:], dtype=bool)
    if np.issubdtype(data.dtype, np.floating):
        mask &= np.isfinite(data).all(axis=0)
    if nodata is not None and not (isinstance(nodata, float) and np.isnan(nodata)):
        mask &= (data != np.asarray(nodata, dtype=data.dtype) if np.can_cast(np.min_scalar_type(nodata), data.dtype)
                 else np.ones(data.shape, dtype=bool)).all(axis=0)
    return mask
