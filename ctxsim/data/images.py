"""The one image loader (PIL, EXIF orientation, RGB) and content digests for the embedding cache."""
from __future__ import annotations

import functools
import hashlib
import os

from PIL import Image, ImageOps, UnidentifiedImageError

from ctxsim.errors import ImageError

_DIGEST_BLOCK = 1 << 20


def load_image(path: str | os.PathLike) -> Image.Image:
    """Open an image fully decoded, upright (EXIF orientation applied) and in RGB.

    Raises :class:`ImageError` naming the file for a missing, unreadable, truncated or corrupt image.
    """
    path = os.fspath(path)
    try:
        with Image.open(path) as img:
            img.load()  # decode now: a truncated file fails here, not later inside a batch
            img = ImageOps.exif_transpose(img)
            return img.convert("RGB")
    except FileNotFoundError:
        raise ImageError(path, "image file not found") from None
    except IsADirectoryError:
        raise ImageError(path, "is a folder, not an image file") from None
    except UnidentifiedImageError:
        raise ImageError(path, "not a readable image (unknown or corrupt format)") from None
    except (OSError, SyntaxError, ValueError) as err:  # PIL reports truncation and bad data as OSError
        raise ImageError(path, f"corrupt or truncated image ({err})") from None


def image_problem(path: str | os.PathLike) -> str | None:
    """The reason ``path`` cannot be used as an image, or None when it loads."""
    try:
        load_image(path)
    except ImageError as err:
        return err.reason
    return None


def file_digest(path: str | os.PathLike) -> str:
    """SHA-256 of the file's bytes; memoised on (path, size, mtime) so a file is read once per change."""
    st = os.stat(path)
    return _digest(os.path.realpath(path), st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=1 << 16)
def _digest(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(_DIGEST_BLOCK):
            h.update(block)
    return h.hexdigest()
