"""ctxsim: which of two candidates is closer to a reference image, judged in context.

Importing ctxsim is cheap; torch, mlflow and ray are imported by the functions that need them.
"""
from __future__ import annotations

__version__ = "0.1.0"


def load(model: str, **kwargs):
    """A comparator for ``backbone:NAME``, a training run folder, or ``models:/NAME@ALIAS``.

    The comparator has ``.compare(ref, a, b)``, ``.score(df)`` and ``.embed(images, member=...)``.
    """
    from ctxsim.comparator import load_comparator

    return load_comparator(model, **kwargs)


__all__ = ["load", "__version__"]
