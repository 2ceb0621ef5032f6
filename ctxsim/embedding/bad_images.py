"""The sidecar that lists images a command skipped (``--skip-bad-images``): ``<out>.bad-images.txt``,
one ``path<TAB>why`` line per image, beside the output."""
from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from ctxsim.atomic import write_text_atomic

BAD_IMAGES_SUFFIX = ".bad-images.txt"


def bad_images_file(out: str | os.PathLike) -> Path:
    out = Path(out)
    return out.with_name(out.name + BAD_IMAGES_SUFFIX)


def write_bad_images(out: str | os.PathLike, bad: Iterable[tuple[str, str]]) -> Path | None:
    """Write the (path, reason) pairs beside ``out``; None (and nothing written) when there are none."""
    lines = [f"{path}\t{reason}\n" for path, reason in bad]
    if not lines:
        return None
    path = bad_images_file(out)
    write_text_atomic(path, "".join(lines))
    return path
