"""Turning any column-like input (list, numpy, pandas, pyarrow) into a numpy unicode array."""

from __future__ import annotations

from typing import Any

import numpy as np


def _objects(values: Any) -> np.ndarray:
    """A flat object array of the values, whatever container they come in."""
    if isinstance(values, (str, bytes)):  # a lone string is one value, not a sequence of characters
        return np.array([values], dtype=object)
    if hasattr(values, "type") and hasattr(values, "to_pylist"):  # pyarrow Array / ChunkedArray
        return np.asarray(values.to_numpy(zero_copy_only=False), dtype=object).ravel()
    if hasattr(values, "to_numpy") and not isinstance(values, np.ndarray):  # pandas Series / Index
        return np.asarray(values.to_numpy(dtype=object), dtype=object).ravel()
    if not hasattr(values, "__len__") and hasattr(values, "__iter__"):  # generators, iterators
        values = list(values)
    return np.asarray(values, dtype=object).ravel()


def as_str_array(values: Any) -> tuple[np.ndarray, np.ndarray]:
    """Any column-like input as a flat numpy unicode array plus a mask of missing values (None, NaN, pd.NA)."""
    if isinstance(values, np.ndarray) and values.dtype.kind == "U":
        return np.ascontiguousarray(values.ravel()), np.zeros(values.size, dtype=bool)
    if isinstance(values, np.ndarray) and values.dtype.kind == "S":
        return np.ascontiguousarray(np.strings.decode(values.ravel(), "utf-8", "replace")), np.zeros(values.size, dtype=bool)
    objects = _objects(values)
    import pandas as pd  # local: only arbitrary objects need pandas' fast missing-value test

    missing = np.asarray(pd.isna(objects), dtype=bool)
    if missing.any():
        objects = objects.copy()
        objects[missing] = ""
    if objects.size == 0:
        return np.zeros(0, dtype="<U1"), missing
    return np.ascontiguousarray(objects.astype(str)), missing
