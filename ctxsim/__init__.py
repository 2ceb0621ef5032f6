"""ctxsim: which of two candidates is closer to a reference image, judged in context.

Importing ctxsim (or any module of its lower layers, such as ``ctxsim.config``) is cheap: the model
loader, and with it torch, is imported by :func:`load` when it is first called.
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

#: The module behind :func:`load` (the compare layer); importing it here would make every
#: ``import ctxsim.<anything>`` pay for the whole model stack.
_LOADER = "ctxsim.compare.model_uri"


def load(model: str, **kwargs):
    """A comparator for ``backbone:NAME``, a training run folder, or ``models:/NAME@ALIAS``.

    The comparator has ``.compare(ref, a, b)``, ``.score(df)``, ``.embed(images, member=...)`` and
    ``.search(query, k=20, index=INDEX)`` (top-k over a catalogue built by ``ctxsim index build``).
    """
    return importlib.import_module(_LOADER).load_comparator(model, **kwargs)


__all__ = ["load", "__version__"]
