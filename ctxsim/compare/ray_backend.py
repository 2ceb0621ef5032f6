"""``compare`` beyond one machine with Ray (``pip install ctxsim[ray]``), and the connection to Ray.

Only ``ctxsim compare --ray`` and ``ctxsim train --ray`` import Ray; the single-machine paths never do.

* :func:`compare_ray` cuts the triplet CSVs into row ranges, and a Ray Data pipeline of scoring actors
  (each loads the model once) scores them; the driver receives the scored shards in order and writes
  one CSV, through the same hidden partial file and rename as :func:`ctxsim.compare.scoring.compare_files`, so
  the output has the same columns, rows and bytes as a single-machine run. Image paths must resolve on
  every node (a shared file system); the driver embeds every unique image first, which fills the
  embedding cache that the actors on its machine read.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Iterator

import polars as pl

from ctxsim.atomic import atomic_path
from ctxsim.compare.model_uri import load_comparator
from ctxsim.compare.scoring import conform, output_columns
from ctxsim.console import bar_disabled
from ctxsim.data.triplets import (
    DEFAULT_CHUNK_ROWS,
    as_files,
    read_triplet_rows,
    validate,
)
from ctxsim.embedding.cache import EmbeddingCache, default_cache_dir
from ctxsim.metrics import AccuracyTally

log = logging.getLogger(__name__)

#: ``--ray`` without an address: join the running cluster if there is one, else start a local instance.
AUTO = "auto"


def connect(address: str | None = AUTO) -> bool:
    """Connect to Ray (unless this process already is); True when this call started the connection."""
    import ray

    if ray.is_initialized():
        return False
    if address in (None, "", AUTO):
        ray.init(log_to_driver=False)  # RAY_ADDRESS, a cluster started on this machine, or a new local one
    else:
        ray.init(address=address, log_to_driver=False)
    return True


def disconnect(started: bool) -> None:
    if started:
        import ray

        ray.shutdown()


# -- compare --------------------------------------------------------------------------------------------

def shards(csvs, images=None, shard_rows: int = DEFAULT_CHUNK_ROWS) -> list[dict]:
    """Row ranges of every CSV, in output order: ``{"csv", "images", "offset", "length", "shard"}``."""

    out = []
    for tf in as_files(csvs, images):
        n = tf.scan().select(pl.len()).collect(engine="streaming").item()
        for offset in range(0, n, shard_rows):
            out.append({"csv": str(tf.path), "images": str(tf.images_root), "offset": offset,
                        "length": min(shard_rows, n - offset), "shard": len(out)})
    return out


class ShardScorer:
    """A Ray Data actor: loads the model once, then scores row ranges into the output's columns."""

    def __init__(self, model: str, columns: list[str], margins: bool, device: str, baselines: bool, cache_dir: str,
                 images: list[str]):
        options = {"baselines": True} if baselines else {}
        self.comparator = load_comparator(model, device=device, cache=EmbeddingCache(cache_dir), progress=False, **options)
        self.comparator.prepare(images)  # as on one machine: every image at once, in the same order
        self.columns, self.margins = columns, margins

    def __call__(self, batch: dict) -> Iterator:
        for csv, images, offset, length in zip(batch["csv"], batch["images"], batch["offset"], batch["length"]):
            chunk = read_triplet_rows(str(csv), str(images), int(offset), int(length))
            yield conform(self.comparator.predict(chunk, margins=self.margins), self.columns).to_arrow()


def compare_ray(
    model: str,
    csvs,
    out: str | os.PathLike,
    images=None,
    *,
    address: str | None = AUTO,
    shard_rows: int = DEFAULT_CHUNK_ROWS,
    margins: bool = False,
    device: str = "cpu",
    baselines: bool = False,
    concurrency: int | None = None,
    progress: bool = True,
):
    """Score every row of ``csvs`` on a Ray cluster into one CSV ``out`` (as ``compare_files`` would)."""
    from tqdm import tqdm

    report = validate(csvs, images)
    report.raise_if_invalid()
    options = {"baselines": True} if baselines else {}
    comparator = load_comparator(model, device=device, progress=progress, **options)
    columns = output_columns(csvs, images, comparator, margins)
    comparator.prepare(report.images)  # each image once, into the embedding cache the actors here read
    del comparator
    parts = shards(csvs, images, shard_rows)

    tally = AccuracyTally()
    with atomic_path(out) as tmp, open(tmp, "wb") as sink, tqdm(
        total=report.n_rows, desc="compare (ray)", unit="row", disable=bar_disabled(progress), unit_scale=True
    ) as bar:
        for frame in _scored_shards(parts, address, concurrency, device, dict(
                model=model, columns=columns, margins=margins, device=device, baselines=baselines, cache_dir=str(default_cache_dir()),
                images=report.images)):
            tally.update(frame)
            frame.write_csv(sink, include_header=sink.tell() == 0)
            bar.update(frame.height)
        if sink.tell() == 0:  # no rows at all: still a CSV with its header
            pl.DataFrame(schema=dict.fromkeys(columns, pl.String)).write_csv(sink)
    log.info("wrote %d scored rows to %s (%d shards on Ray)", report.n_rows, out, len(parts))
    return tally


def _scored_shards(parts: list[dict], address, concurrency, device: str, scorer: dict) -> Iterator[pl.DataFrame]:
    """The scored rows of every shard, in shard order, from a Ray Data pipeline of :class:`ShardScorer` s."""
    if not parts:
        return
    started = connect(address)
    try:
        import ray

        context = ray.data.DataContext.get_current()
        context.execution_options.preserve_order = True  # shards come back in input order
        context.enable_progress_bars = False
        n_actors = concurrency or max(1, min(len(parts), int(ray.cluster_resources().get("CPU", 1))))
        scored = ray.data.from_items(parts).map_batches(
            ShardScorer, fn_constructor_kwargs=scorer, batch_size=1, batch_format="numpy",
            concurrency=n_actors, num_cpus=1, num_gpus=1.0 if device.startswith("cuda") else 0.0,
        )
        for batch in scored.iter_batches(batch_size=None, batch_format="pyarrow"):
            if batch.num_rows:
                yield pl.from_arrow(batch)
    finally:
        disconnect(started)
