"""Open files under the image root, and nothing outside it, even while links under it change.

A request's path is resolved (symlinks followed) and its real path must lie under the real root;
the file is then opened from a handle on the root taken at start-up, one path component at a time
without following any link. A link retargeted between the check and the open makes the open fail
instead of reaching outside the root.
"""
from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

#: Bytes read per chunk when streaming an image.
READ_CHUNK_BYTES = 256 * 1024
_NO_LINK_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
# O_NONBLOCK: a FIFO put in place of an image must not hang the open (regular files ignore it)
_NO_LINK_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK


@dataclass(frozen=True)
class OpenImage:
    fd: int
    size: int

    def chunks(self) -> Iterator[bytes]:
        """The file's bytes (as many as it had when opened); closes it at the end."""
        with os.fdopen(self.fd, "rb") as f:
            left = self.size
            while left > 0 and (data := f.read(min(READ_CHUNK_BYTES, left))):
                left -= len(data)
                yield data


class ImageRoot:
    def __init__(self, root: str | os.PathLike):
        self.real = Path(root).resolve(strict=True)
        self._fd = os.open(self.real, _NO_LINK_DIR)

    def open(self, rel: str) -> OpenImage | None:
        """The regular file ``rel`` names, if its real path lies under the root; else None."""
        try:
            real = (self.real / rel).resolve(strict=True)
        except (OSError, RuntimeError):  # missing, or a loop of links
            return None
        if not real.is_relative_to(self.real) or real == self.real:
            return None
        *folders, name = real.relative_to(self.real).parts
        opened: list[int] = []
        try:
            parent = self._fd
            for folder in folders:
                parent = os.open(folder, _NO_LINK_DIR, dir_fd=parent)
                opened.append(parent)
            fd = os.open(name, _NO_LINK_FILE, dir_fd=parent)
        except OSError:  # a component became a link, or vanished, since it was resolved
            return None
        finally:
            for d in opened:
                os.close(d)
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            os.close(fd)
            return None
        return OpenImage(fd, info.st_size)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
