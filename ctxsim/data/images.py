"""The one image loader (PIL, EXIF orientation, RGB) and content digests for the embedding cache."""
from __future__ import annotations

import functools
import hashlib
import os
import warnings

from PIL import Image, ImageOps, UnidentifiedImageError

from ctxsim.errors import ImageError

_DIGEST_BLOCK = 1 << 20
#: Largest image decoded, in pixels (width x height); a larger one is refused (a JPEG is first
#: shrunk while decoding, 1/2 to 1/8, when that brings it under). Decoding costs ~4 bytes a pixel.
DEFAULT_MAX_IMAGE_PIXELS = 40_000_000
#: Environment variable that overrides :data:`DEFAULT_MAX_IMAGE_PIXELS`.
MAX_PIXELS_ENV = "CTXSIM_MAX_IMAGE_PIXELS"


def max_image_pixels() -> int:
    """The pixel limit: ``$CTXSIM_MAX_IMAGE_PIXELS`` when it is a positive integer, else the default."""
    value = os.environ.get(MAX_PIXELS_ENV, "").strip().replace("_", "")
    return int(value) if value.isdigit() and int(value) > 0 else DEFAULT_MAX_IMAGE_PIXELS


def _bounded(img: Image.Image, path: str, limit: int) -> None:
    """Refuse, from the header alone (nothing decoded yet), an image over ``limit`` pixels; a JPEG is
    set to decode at a reduced scale instead when that is enough."""
    width, height = img.size
    if width * height <= limit:
        return
    if img.format == "JPEG":
        for scale in (2, 4, 8):  # the JPEG decoder can shrink by these while decoding (DCT scaling)
            if -(-width // scale) * -(-height // scale) <= limit:
                img.draft("RGB", (-(-width // scale), -(-height // scale)))
                if img.size[0] * img.size[1] <= limit:
                    return
                break
    raise ImageError(path, f"too large: {width}x{height} = {width * height:,} pixels, over the limit of "
                           f"{limit:,} (set ${MAX_PIXELS_ENV} to allow more)")


def load_image(path: str | os.PathLike) -> Image.Image:
    """Open an image fully decoded, upright (EXIF orientation applied) and in RGB.

    Raises :class:`ImageError` naming the file for a missing, unreadable, truncated or corrupt image.
    """
    path = os.fspath(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own limit applies
            img = Image.open(path)
        with img:
            _bounded(img, path, max_image_pixels())
            img.load()  # decode now: a truncated file fails here, not later inside a batch
            img = ImageOps.exif_transpose(img)
            return img.convert("RGB")
    except FileNotFoundError:
        raise ImageError(path, "image file not found") from None
    except IsADirectoryError:
        raise ImageError(path, "is a folder, not an image file") from None
    except Image.DecompressionBombError as err:
        raise ImageError(path, f"too large to decode safely ({err})") from None
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
