"""Explanations of a combiner's answer: each stacking feature's contribution, grouped by member and context.

The stacker's contributions are in log-odds and add up (with the bias) exactly to its symmetric raw
score (:meth:`ctxsim.ensemble.stackers.SymmetricStacker.contributions`); a vote combiner's are each
member's weight x vote and add up (with the bias 1/2) to its vote share before Platt scaling; a single
member's are its scaled margin in log-odds. ``why`` names the groups that moved the answer most.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def group_columns(values: np.ndarray, columns) -> np.ndarray:
    """(n, C) ``values`` summed into ``max(columns) + 1`` columns: column ``j`` goes to ``columns[j]``."""
    columns = np.asarray(columns, dtype=np.int64)
    onehot = np.zeros((len(columns), int(columns.max()) + 1 if len(columns) else 0))
    onehot[np.arange(len(columns)), columns] = 1.0
    return values @ onehot


@dataclass
class Explanation:
    features: list[str]  # feature names, in column order of ``values``
    groups: list[str]  # per feature: the member (or ``membership:<context>``) it belongs to
    values: np.ndarray  # (n, F) contributions
    bias: np.ndarray  # (n,)
    unit: str  # "log-odds" or "vote share"

    @property
    def total(self) -> np.ndarray:
        """What the contributions explain: the raw score (log-odds) or the vote share."""
        return self.values.sum(axis=1) + self.bias

    def by_group(self) -> tuple[list[str], np.ndarray]:
        """Group names (in first-seen order) and (n, G) summed contributions."""
        names = list(dict.fromkeys(self.groups))
        if self.features == names:  # already one column per group
            return names, self.values
        index = {g: i for i, g in enumerate(names)}
        return names, group_columns(self.values, [index[g] for g in self.groups])

    def why(self, top: int):
        """Per row, the ``top`` groups by absolute contribution, e.g. ``global +0.210; context-red -0.050``
        (groups whose contribution rounds to 0.000 are left out)."""
        names, grouped = self.by_group()
        if not len(grouped):
            return np.zeros(0, dtype=object)  # a polars String Series otherwise
        import polars as pl

        top = min(top, len(names))
        order = np.argsort(-np.abs(grouped), axis=1, kind="stable")[:, :top]
        thousandths = np.rint(np.take_along_axis(grouped, order, axis=1) * 1000).astype(np.int64)
        labels = pl.Series(names, dtype=pl.String)
        frame = pl.DataFrame({f"v{j}": thousandths[:, j] for j in range(top)})
        parts = []
        for j in range(top):  # "name +1.234", formatted column-wise by polars, not row by row; 0.000 is left out
            v = pl.col(f"v{j}")
            text = pl.concat_str([pl.lit(labels.gather(order[:, j])), pl.when(v < 0).then(pl.lit(" -")).otherwise(pl.lit(" +")),
                                  (v.abs() // 1000).cast(pl.String), pl.lit("."), (v.abs() % 1000).cast(pl.String).str.zfill(3)])
            parts.append(pl.when(v != 0).then(text))
        return frame.select(pl.concat_str(parts, separator="; ", ignore_nulls=True)).to_series()

    def row(self, i: int, top: int) -> dict:
        """One row as plain data (the Python API's ``explain``)."""
        names, grouped = self.by_group()
        return {"unit": self.unit, "bias": float(self.bias[i]), "total": float(self.total[i]),
                "groups": dict(sorted(zip(names, grouped[i].tolist()), key=lambda kv: -abs(kv[1]))),
                "features": dict(zip(self.features, self.values[i].tolist())), "why": str(self.why(top)[i])}
