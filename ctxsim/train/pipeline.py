"""``ctxsim train``: contexts, one member per context + a global member + the zero-shot backbone,
out-of-fold margins, and the ensemble, saved as a run folder.

Out-of-fold margins: images are split into ``folds`` folds; for fold f every member is retrained
without any triplet that names a fold-f image, and that copy gives the margins of the triplets
whose reference is in fold f. So the stacker learns how members do on images they never saw.
"""
from __future__ import annotations

import logging
import time
from functools import partial
from pathlib import Path

import numpy as np
import polars as pl

from ctxsim.config import VOTES_MAJORITY, VOTES_MARGIN, TrainConfig
from ctxsim.console import bar_disabled
from ctxsim.contexts.membership import Contexts, fit_contexts
from ctxsim.data.images import file_digest
from ctxsim.data.triplets import public_columns, read_triplets
from ctxsim.embedding.cache import EmbeddingCache, default_cache_dir, embed_images
from ctxsim.embedding.distances import l2_normalize, margins
from ctxsim.ensemble.inputs import EnsembleInputs
from ctxsim.ensemble.regime import KnownImages
from ctxsim.ensemble.selection import Ensemble
from ctxsim.errors import InputError, Problem
from ctxsim.members.backbones import create_backbone, create_view
from ctxsim.members.config import GLOBAL_INIT, MEMORY_ALL, MEMORY_OWN
from ctxsim.members.inference import MemberSpec
from ctxsim.members.training import Triplets
from ctxsim.members.views import View, member_name
from ctxsim.metrics import AccuracyTally
from ctxsim.reports.report import build_report
from ctxsim.run_folder import RunManifest, new_run
from ctxsim.schema import (
    DECISION_THRESHOLD,
    GLOBAL,
    HEAD_KIND,
    IMAGE_COLUMNS,
    LABEL_A,
    LABEL_B,
    MEMORY,
    PATH,
    VOTE_COLUMNS,
    ZEROSHOT,
    ZEROSHOT_KIND,
    baseline_column,
    context_member_name,
    margin_column,
)
from ctxsim.train.member_fits import IMAGE_FOLDS, FitJob, MemberTrainer
from ctxsim.train.ray_backend import fit_members_ray
from ctxsim.train.regimes import (
    both_regimes,
    image_fold_seen,
    triplet_fold_jobs,
    triplet_fold_seen,
    triplet_folds,
)
from ctxsim.train.trust import fit_context_floors, selective_calibration, trust_metrics

log = logging.getLogger(__name__)



def image_table(df: pl.DataFrame) -> tuple[list[str], dict[str, np.ndarray]]:
    """Unique image paths and, per image column, each row's index into them."""
    paths = pl.concat([df[PATH[c]] for c in IMAGE_COLUMNS]).unique(maintain_order=True).to_list()
    index = {p: i for i, p in enumerate(paths)}
    return paths, {c: df[PATH[c]].replace_strict(index, return_dtype=pl.Int64).to_numpy() for c in IMAGE_COLUMNS}


def image_folds(n_images: int, folds: int, seed: int) -> np.ndarray:
    """Each image's fold: a seeded permutation dealt out in turn (fold sizes differ by one at most)."""
    return np.random.default_rng(seed).permutation(n_images) % folds


def labels(df: pl.DataFrame, vote_weighting: str = VOTES_MAJORITY) -> tuple[np.ndarray, np.ndarray]:
    """y = +1 when A is closer; weight 0 for tied votes (no majority to learn from).

    ``vote_weighting="margin"``: a voted row weighs by its lead |votes_a - votes_b|, scaled so the rows with a
    majority keep their total weight (a 5-0 row counts more than a 3-2 one; the data sets keep their balance)."""
    y = np.where(df["label"].to_numpy() == "A", 1.0, -1.0)
    weight = np.ones(len(y))
    if set(VOTE_COLUMNS) <= set(df.columns):
        lead = (df["votes_a"] - df["votes_b"]).abs().to_numpy().astype(float)  # NaN: a row without votes
        voted = ~np.isnan(lead)
        weight[voted & (lead == 0)] = 0.0
        if vote_weighting == VOTES_MARGIN and lead[voted].sum() > 0:
            weight[voted] = lead[voted] * (lead[voted] > 0).sum() / lead[voted].sum()
    return y, weight


def fit_jobs(specs: list[MemberSpec], triplets: Triplets, row_context: np.ndarray, image_fold: np.ndarray,
             cfg: TrainConfig) -> list[FitJob]:
    """Every fit of ``train``: each member on its own triplets, then once per fold without that fold's images."""
    jobs = []
    for spec in specs:
        own = triplets if spec.context is None else triplets.subset(row_context == spec.context)
        jobs.append(FitJob(spec, None, own, cfg.seed))
        for fold in range(cfg.folds):
            unseen = np.flatnonzero(image_fold == fold)
            jobs.append(FitJob(spec, fold, own.subset(~own.touches(unseen)), cfg.seed + 1 + fold))
    return jobs


def train_run(csvs, out: str | Path, images=None, cfg: TrainConfig | None = None, *, device: str = "cpu",
              progress: bool = True, cache=None, ray: str | None = None) -> dict:
    """Train a run into ``out``; returns its metrics (also written to ``out/metrics.json``).

    ``ray``: a Ray address (or ``"auto"``) runs the member fits as Ray tasks (:mod:`ctxsim.compare.ray_backend`)."""
    from tqdm import tqdm

    started = time.time()
    cfg = cfg or TrainConfig()
    out = Path(out)
    df = read_triplets(csvs, images, require_label=True)
    if df.height == 0:
        raise InputError([Problem(str(c), "no rows: nothing to train on") for c in ([csvs] if isinstance(csvs, (str, Path)) else csvs)])
    paths, idx = image_table(df)
    y, weight = labels(df, cfg.vote_weighting)
    triplets = Triplets(idx["ref"], idx["a"], idx["b"], y, weight)
    log.info("training on %d triplets over %d images (%d tied votes left out)", len(y), len(paths), int((weight == 0).sum()))

    cache = cache if cache is not None else EmbeddingCache(default_cache_dir())
    views = run_views(cfg)
    backbone = create_backbone(cfg.backbone, pretrained=True)
    features = {views[0].spec: embed_images(paths, backbone, cache, device=device, progress=progress)}
    features_keys = {views[0].spec: backbone.cache_key}
    for view in views[1:]:  # one backbone pass per view; every member of a view shares it
        extractor = create_view(view)
        features[view.spec] = embed_images(paths, extractor, cache, device=device, progress=progress)
        features_keys[view.spec] = extractor.cache_key
    zeroshot = l2_normalize(features[views[0].spec])

    contexts, membership = _fit_contexts(df, idx["ref"], zeroshot, cfg)
    row_context = np.asarray(contexts.names, dtype=object)[membership.argmax(axis=1)]
    specs = _member_specs(cfg, views, contexts, row_context, backbone.lora_targets)
    for spec in specs:  # compare finds cached features by this key without building the backbone
        spec.features_key = features_keys[spec.view]
    log.info("contexts (%s): %s; members: %s", contexts.kind, ", ".join(contexts.names), ", ".join(s.name for s in specs))

    image_fold = image_folds(len(paths), cfg.folds, cfg.seed)
    row_fold = image_fold[idx["ref"]]
    oof = {s.name: margins(l2_normalize(features[s.view]), idx["ref"], idx["a"], idx["b"]) for s in specs if s.kind == ZEROSHOT_KIND}
    weights, histories = {}, {}
    trained = [s for s in specs if s.kind != ZEROSHOT_KIND]
    jobs = fit_jobs(trained, triplets, row_context, image_fold, cfg)
    row_tfold = triplet_folds(len(y), cfg.triplet_folds, cfg.seed) if cfg.triplet_folds else None
    if row_tfold is not None:  # the known-images regime: out-of-fold over rows (ctxsim/train/regimes.py)
        jobs += triplet_fold_jobs(trained, triplets, row_context, row_tfold, cfg.triplet_folds, cfg.seed)
    known = dict(oof)  # zero-shot margins are the same in both regimes
    trainer = MemberTrainer(cfg, features, paths, device, progress) if ray is None else None
    # Two waves: global members first, then context members, which start from their view's global
    # member fitted on the same folds (so no out-of-fold margin sees its own fold's images).
    fitted: dict[tuple[str, int | None], dict] = {}
    for wave in (lambda j: j.spec.context is None, lambda j: j.spec.context is not None):
        batch = [j for j in jobs if wave(j)]
        for job in batch:
            job.init = _initial_weights(job, fitted, views[0], cfg)
        if trainer is not None:
            results = ((job, trainer.fit(job)) for job in batch)
        else:
            results = fit_members_ray(batch, cfg, features, paths, device=device, address=ray)
        for job, (state, emb, history) in tqdm(results, total=len(batch), desc="members", unit="fit", disable=bar_disabled(progress)):
            fitted[(job.spec.name, job.key)] = state
            if job.fold is None:
                weights[job.spec.name], histories[job.spec.name] = state, history
            elif job.folds != IMAGE_FOLDS:
                rows_g = row_tfold == job.fold
                known.setdefault(job.spec.name, np.empty(len(y), dtype=np.float32))
                known[job.spec.name][rows_g] = margins(emb, idx["ref"][rows_g], idx["a"][rows_g], idx["b"][rows_g])
            else:
                rows_f = row_fold == job.fold
                oof.setdefault(job.spec.name, np.empty(len(y), dtype=np.float32))
                oof[job.spec.name][rows_f] = margins(emb, idx["ref"][rows_f], idx["a"][rows_f], idx["b"][rows_f])
    histories = {s.name: histories[s.name] for s in specs if s.name in histories}  # Ray finishes in any order

    names = [s.name for s in specs]
    val_accuracy = _accuracy_table(oof, names, y, weight, row_context, contexts.names)
    x = EnsembleInputs(np.column_stack([oof[n] for n in names]), membership, names, zeroshot[idx["ref"]], idx["ref"])
    y01, weight_x, groups = (y > 0).astype(int), weight, row_fold
    oof_seen = image_fold_seen(triplets, image_fold, row_fold, cfg.folds)
    if row_tfold is not None:  # both regimes: every triplet with its image-fold and its triplet-fold margins
        x = both_regimes(x, oof_seen, np.column_stack([known[n] for n in names]),
                         triplet_fold_seen(triplets, row_tfold, cfg.triplet_folds))
        y01, weight_x, groups = np.tile(y01, 2), np.tile(weight, 2), np.tile(row_fold, 2)
    ensemble, cv_pred = Ensemble.fit(x, y01, weight_x, groups, val_accuracy, contexts.names, cfg.ensemble, cfg.seed)
    cv_pred = {n: p[: len(y)] for n, p in cv_pred.items()}  # the run's report and calibration: the new-images regime
    calibration, selections = selective_calibration(cv_pred[ensemble.chosen], y, weight, idx["ref"], oof_seen)
    fit_context_floors(contexts, zeroshot, idx["ref"], membership)

    with new_run(out) as run:  # the run folder appears whole, or not at all
        manifest = RunManifest(backbone=cfg.backbone, members=names, contexts=contexts.names, config=cfg.to_dict())
        run.save_model(contexts, specs, weights, ensemble, manifest, calibration, [s.as_dict() for s in selections],
                       known=KnownImages(file_digest(p) for p in paths))
        scored = _scored_frame(df, row_context, cv_pred, ensemble.chosen, oof, names)
        metrics = _metrics(scored, names, cv_pred, ensemble, histories, len(paths), time.time() - started)
        metrics |= trust_metrics(selections, contexts)
        run.write_metrics(metrics)
        _write_report(scored, run.report_dir, metrics)
    return metrics


def _write_report(scored: pl.DataFrame, folder: Path, metrics: dict) -> None:
    """The validation report of the run (out-of-fold predictions), kept apart from the model files."""

    folder.mkdir(parents=True, exist_ok=True)
    scored.select(public_columns(scored)).write_parquet(folder / "oof_scored.parquet")
    notes = {"validation": metrics["validation"], "combiner": metrics["ensemble"]["note"]}
    build_report(scored, folder, title="ctxsim training run: out-of-fold validation", notes=notes)


def _fit_contexts(df, ref_idx, zeroshot, cfg: TrainConfig) -> tuple[Contexts, np.ndarray]:
    declared = df["context"].to_numpy() if "context" in df.columns and df["context"].null_count() < df.height else None
    refs, first, counts = np.unique(ref_idx, return_index=True, return_counts=True)
    per_ref = None if declared is None else declared[first]
    if per_ref is not None:
        per_ref = np.where(pl.Series(per_ref).is_null().to_numpy(), "unknown", per_ref)
    contexts = fit_contexts(zeroshot[refs], per_ref, counts, cfg.contexts)
    return contexts, contexts.membership(zeroshot[ref_idx], declared)


def run_views(cfg: TrainConfig) -> list[View]:
    """The primary view (the backbone's last layer) and the config's other views, without repeats."""
    views = [View(cfg.backbone)]
    for spec in cfg.views:
        view = View.parse(spec, primary=cfg.backbone)
        if view not in views:
            views.append(view)
    return views


def _member_specs(cfg: TrainConfig, views: list[View], contexts: Contexts, row_context: np.ndarray,
                  default_lora_targets: list[str]) -> list[MemberSpec]:
    """Per view: its zero-shot member, a global member and one member per context with enough triplets.
    LoRA members adapt the primary backbone; the other views get heads on their features."""
    m = cfg.member
    lora = {"lora_rank": m.lora_rank, "lora_alpha": m.lora_alpha,
            "lora_targets": list(m.lora_targets) or list(default_lora_targets)}
    own_contexts = []
    if len(contexts) > 1:
        for c in contexts.names:
            n = int((row_context == c).sum())
            if n >= cfg.contexts.min_triplets:
                own_contexts.append(c)
            else:
                log.warning("context %s has %d triplets (< %d): no member of its own; others cover it", c, n, cfg.contexts.min_triplets)
    specs = []
    for view in views:
        kind = m.kind if view == views[0] else HEAD_KIND
        options = {"hidden": m.hidden} if kind == HEAD_KIND else lora
        name = partial(member_name, view=view, primary=views[0])
        trained = dict(options, view=view.spec, loss=m.view_loss(primary=view == views[0]))
        specs.append(MemberSpec(name(ZEROSHOT), ZEROSHOT_KIND, view=view.spec))
        memory = m.memory and kind == HEAD_KIND and (view == views[0] or m.memory_views == MEMORY_ALL)
        own = memory and m.memory_member == MEMORY_OWN  # the same head trained again (same seed), plus offsets
        specs.append(MemberSpec(name(GLOBAL), kind, None, **trained, memory=memory and not own))
        if own:
            specs.append(MemberSpec(name(MEMORY), kind, None, **trained, memory=True))
        specs += [MemberSpec(name(context_member_name(c)), kind, c, **trained) for c in own_contexts]
    return specs


def _initial_weights(job: FitJob, fitted: dict, primary: View, cfg: TrainConfig) -> dict | None:
    """A context head starts from its view's global head of the same fold (see MemberConfig.context_init)."""
    if job.spec.context is None or job.spec.kind != HEAD_KIND or cfg.member.context_init != GLOBAL_INIT:
        return None
    return fitted.get((member_name(GLOBAL, View.parse(job.spec.view), primary), job.key))


def _accuracy_table(oof, names, y, weight, row_context, context_names) -> np.ndarray:
    """(M, K) out-of-fold accuracy of each member on each context (NaN where a context has no rows)."""
    table = np.full((len(names), len(context_names)), np.nan)
    for k, c in enumerate(context_names):
        rows = (row_context == c) & (weight > 0)
        if rows.any():
            for m, name in enumerate(names):
                table[m, k] = np.average(np.sign(oof[name][rows]) == np.sign(y[rows]), weights=weight[rows])
    return table


def _scored_frame(df, row_context, cv_pred, chosen, oof, names) -> pl.DataFrame:
    p_a = cv_pred[chosen]
    pred = np.where(p_a >= DECISION_THRESHOLD, LABEL_A, LABEL_B)
    return df.drop("context", strict=False).with_columns(
        pl.Series("context", row_context.astype(str)),
        pl.Series("p_a", p_a),
        pl.Series("pred", pred),
        pl.Series("correct", pred == df["label"].to_numpy()),
        *[pl.Series(margin_column(n), oof[n].astype(np.float64)) for n in names],
        *[pl.Series(baseline_column(n), p) for n, p in cv_pred.items()],
    )


def _metrics(scored, names, cv_pred, ensemble, histories, n_images, seconds) -> dict:
    def by_context(pred: pl.Series) -> list[dict]:
        tally = AccuracyTally()
        tally.update(scored.with_columns(pred.alias("pred"), (pred == scored["label"]).alias("correct")))
        return tally.summary()

    systems = {"ensemble": scored["pred"]} | {f"member:{n}": pl.Series(np.where(scored[margin_column(n)] > 0, "A", "B")) for n in names}
    systems |= {f"baseline:{n}": pl.Series(np.where(p >= DECISION_THRESHOLD, LABEL_A, LABEL_B)) for n, p in cv_pred.items()}
    return {
        "validation": "out-of-fold, image-grouped (each triplet scored by models that never saw its reference image)",
        "n_triplets": scored.height, "n_images": n_images, "seconds": round(seconds, 1),
        "ensemble": ensemble.selection,
        "accuracy": {name: by_context(pred) for name, pred in systems.items()},
        "members": histories,
    }
