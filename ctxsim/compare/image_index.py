"""Image paths to consecutive integer codes (rows of a comparator's per-image arrays), in the order added.

A chunk of 100k triplets names up to 300k paths; looking each one up in a Python dict, or handing polars
a dict of 10^5 entries per column, costs more than the margins themselves. The index is a polars frame
of (path, code), and a column's codes are one left join against it (hashing in Rust, no Python per row)."""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import polars as pl

_PATH, _CODE = "path", "code"


class ImageIndex:
    def __init__(self, paths: list[str] | None = None):
        self._frame = pl.DataFrame({_PATH: [], _CODE: []}, schema={_PATH: pl.String, _CODE: pl.Int64})
        if paths:
            self.add(paths)

    def __len__(self) -> int:
        return self._frame.height

    def _lookup(self, paths: pl.Series) -> pl.Series:
        """Each path's code, null where the path is not in the index."""
        query = pl.DataFrame({_PATH: paths.cast(pl.String)})
        return query.join(self._frame, on=_PATH, how="left", maintain_order="left")[_CODE]

    def add(self, paths: list[str]) -> None:
        """Give ``paths`` (not yet in the index, distinct) the next codes."""
        fresh = pl.DataFrame({_PATH: paths, _CODE: np.arange(len(self), len(self) + len(paths), dtype=np.int64)},
                             schema={_PATH: pl.String, _CODE: pl.Int64})
        self._frame = pl.concat([self._frame, fresh], rechunk=True)

    def codes(self, paths: pl.Series, add_missing: Callable[[list[str]], None] | None = None) -> np.ndarray:
        """int64 codes of ``paths``. Paths not in the index are passed to ``add_missing`` (each once, in the
        order they first appear) and then added; without it they are a KeyError."""
        codes = self._lookup(paths)
        if codes.null_count():
            missing = paths.filter(codes.is_null()).unique(maintain_order=True).to_list()
            if add_missing is None:
                raise KeyError(f"not in the image index: {missing[0]}")
            add_missing(missing)
            self.add(missing)
            codes = self._lookup(paths)
        return codes.to_numpy()
