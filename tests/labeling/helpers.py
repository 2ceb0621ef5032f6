"""Helpers for the labeling tests: small generated images, plan CSVs and a live server process."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import polars as pl
from PIL import Image

#: Images per top-level folder of the generated image root.
GROUPS = {"shoes": 6, "metals": 5}
IMAGE_SIDE = 24
TOKENS = {
    "alice": "alice-token-0123456789",
    "bob": "bob-token-0123456789abc",
    "carol": "carol-token-0123456789a",
}
#: Seconds a server subprocess gets to answer /health.
SERVER_START_TIMEOUT_S = 30


def make_image_tree(root: Path, groups: dict[str, int] = GROUPS, flat: int = 0) -> list[str]:
    """Distinct small images (PNG in even folders, JPEG in odd), returned as root-relative paths."""
    rng = np.random.default_rng(0)
    made = []
    folders = [(g, n) for g, n in groups.items()] + ([("", flat)] if flat else [])
    for k, (group, n) in enumerate(folders):
        (root / group).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            pixels = rng.integers(0, 256, size=(IMAGE_SIDE, IMAGE_SIDE, 3), dtype=np.uint8)
            ext = "png" if k % 2 == 0 else "jpg"
            rel = f"{group}/img{i}.{ext}" if group else f"img{i}.{ext}"
            Image.fromarray(pixels).save(root / rel)
            made.append(rel)
    return sorted(made)


def write_plan_csv(path: Path, rows: list[tuple[str, str, str]], ids: list[str] | None = None) -> Path:
    ids = ids or [f"t{i}" for i in range(len(rows))]
    pl.DataFrame({"ref": [r[0] for r in rows], "a": [r[1] for r in rows], "b": [r[2] for r in rows], "id": ids}).write_csv(path)
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    """``ctxsim label serve`` as a real subprocess on a free localhost port."""

    def __init__(self, plan: Path, db: Path, *args: str, log_dir: Path):
        self.plan, self.db, self.args, self.log_dir = plan, db, args, log_dir
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> LiveServer:
        self.port = free_port()
        self.starts += 1
        self.stdout = self.log_dir / f"serve-{self.starts}.out"
        self.stderr = self.log_dir / f"serve-{self.starts}.err"
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
        cmd = [sys.executable, "-m", "ctxsim.cli", "label", "serve", str(self.plan), "--db", str(self.db),
               "--port", str(self.port), *self.args]
        with open(self.stdout, "wb") as out, open(self.stderr, "wb") as err:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=env)
        deadline = time.monotonic() + SERVER_START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}: {self.stderr.read_text()}")
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"server did not start in {SERVER_START_TIMEOUT_S}s: {self.stderr.read_text()}")

    def annotator_urls(self) -> dict[str, str]:
        """What ``serve`` printed on stdout: annotator name -> page URL."""
        lines = self.stdout.read_text().splitlines()
        return dict(line.split("\t") for line in lines if "\t" in line)

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, like a crash or a pulled plug on the process."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()
