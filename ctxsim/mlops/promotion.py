"""``ctxsim promote``: move the ``champion`` alias to a candidate version only through a gate.

The candidate and the current champion score the same held-out labelled triplets (``--eval``).
Per triplet each model is right or wrong; let ``n`` be the labelled triplets,
``b`` those the champion gets right and the candidate wrong, ``c`` the reverse (the discordant pairs).
The candidate is promoted only if all three hold:
1. **No significant loss (exact one-sided McNemar).** Under "the models are equally good" each
   discordant pair is a fair coin, so ``b ~ Binomial(b + c, 1/2)``. The test that the candidate is
   worse, ``p = P(X >= b)`` (``scipy.stats.binomtest(b, b + c, 0.5, alternative="greater")``;
   ``p = 1`` when ``b + c = 0``), must NOT reject: ``p >= alpha`` (default 0.05).
2. **No loss in the point estimate beyond epsilon.** ``acc(candidate) >= acc(champion) - epsilon``,
   i.e. ``(c - b) / n >= -epsilon`` (default 0.005): a candidate that loses more than half a point
   is refused even when the eval set is too small for the test to notice.
3. **No context regresses by more than the tolerance.** For every context with labelled triplets,
   ``acc_k(candidate) >= acc_k(champion) - tolerance`` (default 0.02). Contexts are the eval CSV's
   declared ``context`` column; rows without one take the context the candidate routes them to.

Rates are compared with a slack of 1e-9, so a loss of exactly epsilon (or exactly the tolerance)
passes and float rounding decides nothing.
When the model has no champion yet, the candidate becomes the champion (its numbers are still
recorded). The decision, the numbers and the comparison (``promotion.json``, ``promotion.md``,
both scored CSVs and the candidate's HTML report) are recorded whether it passes or not: as tags
``promotion.*`` on the candidate version and as artifacts of a ``promote NAME vN`` MLflow run.
``--dry-run`` scores and decides but records nothing and moves nothing.

Exit codes: 0 promoted (or: would be, with ``--dry-run``; or already the champion),
:data:`EXIT_REFUSED` (3) refused by the gate, 2 bad input (unknown model or version, invalid eval CSV,
no labelled triplets, a threshold out of range).
"""
from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ctxsim.compare.model_uri import (
    RegistryError,
    download_run,
    get_version,
    load_comparator,
    safe_name,
)
from ctxsim.compare.scoring import compare_files
from ctxsim.console import print_table
from ctxsim.data.triplets import read_triplets
from ctxsim.errors import EXIT_INVALID_INPUT, InputError, Problem
from ctxsim.mlops import registry
from ctxsim.mlops.gate import (
    DEFAULT_ALPHA,
    DEFAULT_EPSILON,
    DEFAULT_TOLERANCE,
    EXIT_REFUSED,
    GateDecision,
    ThresholdError,
    check_thresholds,
    evaluate_gate,
    first_champion,
)
from ctxsim.mlops.store import as_paths
from ctxsim.reports.report import build_report
from ctxsim.schema import IMAGE_COLUMNS, OVERALL, PATH

log = logging.getLogger(__name__)


#: Comparisons one promote runs at most when the champion keeps moving under it.
MAX_ATTEMPTS = 3

PROMOTED, REFUSED, FIRST, ALREADY = "promoted", "refused", "promoted (first champion)", "already champion"


# -- the gate (pure) ------------------------------------------------------------------------------------


# -- the comparison report -------------------------------------------------------------------------------
def _pct(x) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.2f}%"


def render_markdown(record: dict) -> str:
    """The comparison as Markdown (``promotion.md``) from the record :func:`promote` builds."""
    g, cand, champ = record["gate"], record["candidate"], record.get("champion")
    o = g["overall"]
    lines = [f"# Promotion of {record['model']} version {cand['version']}: {record['decision']}", "",
             f"- champion: {'version ' + champ['version'] if champ else 'none'}",
             f"- eval: {', '.join(record['eval']['files'])} ({o['n']} labelled triplets, digest {record['eval']['digest'][:16]})",
             f"- rule: one-sided exact McNemar p >= alpha {g['rule']['alpha']}; overall loss <= epsilon {g['rule']['epsilon']}; "
             f"per-context loss <= tolerance {g['rule']['tolerance']}",
             f"- dry run: {'yes' if record['dry_run'] else 'no'}", "", "## Reasons", ""]
    lines += [f"- {r}" for r in g["reasons"]]
    lines += ["", "## Overall", "", "| | candidate | champion |", "| --- | --- | --- |",
              f"| accuracy | {_pct(o['candidate_accuracy'])} | {_pct(o['champion_accuracy']) if g['compared'] else 'n/a'} |", ""]
    if g["compared"]:
        lines += [f"Both right {o['both']}, only the candidate {o['candidate_only']}, only the champion {o['champion_only']}, "
                  f"both wrong {o['neither']}; one-sided McNemar p (candidate worse) = {o['p_value_candidate_worse']:.4g}.", ""]
    lines += ["## Per context", "", "| context | n | candidate | champion | delta | within tolerance |", "| --- | --- | --- | --- | --- | --- |"]
    for c in g["contexts"]:
        champ_acc = _pct(c["champion_accuracy"]) if g["compared"] else "n/a"
        delta = f"{100 * c['delta']:+.2f} pt" if g["compared"] else "n/a"
        lines.append(f"| {c['context']} | {c['n']} | {_pct(c['candidate_accuracy'])} | {champ_acc} | {delta} | {'yes' if c['passed'] else 'NO'} |")
    return "\n".join(lines) + "\n"


# -- scoring and the flow (IO) -----------------------------------------------------------------------------
def eval_digest(csvs) -> str:
    import hashlib

    h = hashlib.sha256()
    for path in as_paths(csvs):
        h.update(Path(path).read_bytes())
    return h.hexdigest()


def read_eval(csvs, images=None):
    """The eval triplets' labels and declared contexts (validated; :class:`InputError` when unusable)."""

    frame = read_triplets(csvs, images, require_label=True, check_images=False)
    if frame["label"].is_null().all():
        raise InputError([Problem(", ".join(map(str, [csvs] if isinstance(csvs, (str, os.PathLike)) else csvs)),
                                  "no labelled triplets: the gate compares accuracies", column="label")])
    return frame


def score_version(name: str, version: str, csvs, images, out_csv: Path, device: str = "cpu"):
    """Score the eval CSVs with one registered version into ``out_csv``; returns the scored frame (as text)."""
    import polars as pl

    comparator = load_comparator(str(download_run(f"models:/{name}/{version}")), device=device, progress=False)
    compare_files(comparator, csvs, out_csv, images, progress=False)
    return pl.read_csv(out_csv, infer_schema_length=0)


@dataclass
class PromotionResult:
    decision: str  # PROMOTED, REFUSED, FIRST or ALREADY
    record: dict
    out_dir: Path | None = None

    @property
    def exit_code(self) -> int:
        return EXIT_REFUSED if self.decision == REFUSED else 0


def promote(name: str, candidate: str, eval_csvs, images=None, *, alpha: float = DEFAULT_ALPHA,
            tolerance: float = DEFAULT_TOLERANCE, epsilon: float = DEFAULT_EPSILON, dry_run: bool = False,
            report: bool = True, out: str | os.PathLike | None = None, device: str = "cpu") -> PromotionResult:
    """Score ``candidate`` and the champion of ``name`` on ``eval_csvs``, decide, record, and move the alias.

    The move is a compare-and-set: the promotion lock of ``name`` (:func:`registry.promotion_lock`) is held
    from reading the champion until the alias has moved, and right before recording and again right before
    moving the alias the champion is read again; if it changed (a promotion that does not share the lock), the
    gate runs again against the new champion. So the alias only ever moves to a candidate gated against the
    version it replaces. Raises :class:`ctxsim.mlops.RegistryError` (unknown name/version),
    :class:`InputError` (bad eval CSV) or :class:`ThresholdError` before anything is recorded.
    ``out`` keeps the comparison files.
    """

    check_thresholds(alpha, tolerance, epsilon)
    cand_mv = get_version(name, candidate)
    candidate = str(cand_mv.version)
    frame = read_eval(eval_csvs, images)
    files = [str(p) for p in ([eval_csvs] if isinstance(eval_csvs, (str, os.PathLike)) else eval_csvs)]
    keep = Path(out) if out is not None else None
    lock = contextlib.nullcontext() if dry_run else registry.promotion_lock(name)
    with lock, tempfile.TemporaryDirectory(prefix="ctxsim-promote-") as tmp:
        work = keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        scored = None
        for _attempt in range(MAX_ATTEMPTS):
            champ_mv = registry.champion(name)
            base = {"model": name, "candidate": registry.version_summary(cand_mv), "dry_run": dry_run,
                    "champion": registry.version_summary(champ_mv) if champ_mv else None}
            if champ_mv is not None and str(champ_mv.version) == candidate:
                log.info("%s version %s is already the champion", name, candidate)
                return PromotionResult(ALREADY, base | {"decision": ALREADY})
            if scored is None:
                scored = score_version(name, candidate, eval_csvs, images, work / "candidate_scored.csv", device)
                if scored.height != frame.height:
                    raise RuntimeError(f"the candidate scored {scored.height} of the {frame.height} eval rows")
                labelled = frame["label"].is_not_null().to_numpy()
                label = frame["label"].to_numpy()[labelled]
                declared = frame["context"].to_numpy()[labelled] if "context" in frame.columns else np.full(labelled.sum(), None)
                routed = scored["context"].to_numpy()[labelled]
                contexts = np.where(np.asarray([d is None for d in declared]), routed, declared)
                cand_ok = scored["pred"].to_numpy()[labelled] == label
            thresholds = dict(alpha=alpha, tolerance=tolerance, epsilon=epsilon)
            if champ_mv is None:
                (work / "champion_scored.csv").unlink(missing_ok=True)
                gate = first_champion(cand_ok, contexts, **thresholds)
            else:
                champ = score_version(name, str(champ_mv.version), eval_csvs, images, work / "champion_scored.csv", device)
                if champ.height != frame.height:
                    raise RuntimeError(f"the champion scored {champ.height} of the {frame.height} eval rows")
                gate = evaluate_gate(cand_ok, champ["pred"].to_numpy()[labelled] == label, contexts, **thresholds)
            decision = (FIRST if not gate.compared else PROMOTED) if gate.promote else REFUSED
            record = base | {"decision": decision, "gate": gate.as_dict(), "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                             "eval": {"files": files, "digest": eval_digest(eval_csvs), "rows": frame.height,
                                      "labelled": int(labelled.sum()), "images": None if images is None else str(images)}}
            (work / "promotion.json").write_text(json.dumps(record, indent=1, default=str))
            (work / "promotion.md").write_text(render_markdown(record))
            if report:
                _candidate_report(work, name, candidate, frame, scored)
            log.info("%s version %s: %s (%s)", name, candidate, decision, "; ".join(gate.reasons))
            if dry_run:
                return PromotionResult(decision, record, keep)
            if _champion_moved(name, champ_mv):
                log.warning("the champion of %s moved during the comparison: comparing again", name)
                continue
            if _record(name, candidate, champ_mv, record, gate, work, eval_csvs):
                return PromotionResult(decision, record, keep)
            log.warning("the champion of %s moved while the decision was recorded: comparing again", name)
        raise RuntimeError(f"the champion of {name} kept moving during {MAX_ATTEMPTS} comparisons: run promote again")


def _champion_moved(name: str, champ_mv) -> bool:
    now = registry.champion(name)
    return (now and str(now.version)) != (champ_mv and str(champ_mv.version))


def _candidate_report(work: Path, name: str, version: str, frame, scored) -> None:
    """The reports/ HTML of the candidate's scores, its images found through the eval rows' resolved paths."""

    try:
        build_report(scored.hstack(frame.select([PATH[c] for c in IMAGE_COLUMNS])), work / "candidate_report",
                     title=f"{name} version {version} on the promotion eval set", source=str(work / "candidate_scored.csv"))
    except Exception as err:  # the HTML report is a by-product: the decision stands without it
        log.warning("the candidate's report could not be built: %s", err)


def _record(name: str, candidate: str, champ_mv, record: dict, gate: GateDecision, work: Path, eval_csvs) -> bool:
    """Record the decision; if it promotes, move the alias unless the champion changed since the gate ran.
    False: it changed (nothing moved; the caller compares again against the new champion)."""
    o = gate.overall
    tags = {"decision": record["decision"], "reasons": "; ".join(gate.reasons), "time": record["created"],
            "champion_version": str(champ_mv.version) if champ_mv else "none",
            "candidate_accuracy": f"{o.candidate_accuracy:.4f}", "eval_triplets": str(o.n),
            "eval_digest": record["eval"]["digest"], "rule": json.dumps(record["gate"]["rule"])}
    metrics = {"candidate_accuracy": o.candidate_accuracy}
    metrics |= {f"candidate_accuracy/{c.context}": c.counts.candidate_accuracy for c in gate.contexts}
    if gate.compared:
        tags |= {"champion_accuracy": f"{o.champion_accuracy:.4f}", "p_value": f"{gate.p_value:.4g}",
                 "discordant": f"{o.candidate_only}/{o.champion_only}"}
        metrics |= {"champion_accuracy": o.champion_accuracy, "delta": o.delta, "p_value": gate.p_value,
                    "candidate_only": o.candidate_only, "champion_only": o.champion_only}
        metrics |= {f"delta/{c.context}": c.counts.delta for c in gate.contexts}
    metrics = {safe_name(k): v for k, v in metrics.items() if v == v}
    artifacts = [(work / "promotion.json", None), (work / "promotion.md", None), (work / "candidate_scored.csv", "scored"),
                 (work / "champion_scored.csv", "scored"), (work / "candidate_report", "candidate_report")]
    run_id = registry.record_promotion(name, candidate, tags, metrics, artifacts, eval_csvs)
    log.info("recorded the decision on %s version %s (promotion run %s)", name, candidate, run_id)
    if not gate.promote:
        return True
    if _champion_moved(name, champ_mv):  # compare-and-set: the alias moves only from the version just gated against
        return False
    registry.mark_champion(name, candidate, champ_mv.version if champ_mv is not None else None)
    return True


# -- the command -------------------------------------------------------------------------------------------
def promote_command(args) -> int:
    from mlflow.exceptions import MlflowException

    try:
        check_thresholds(args.alpha, args.tolerance, args.epsilon)
        result = promote(args.name, args.candidate, args.eval, args.images, alpha=args.alpha, tolerance=args.tolerance,
                         epsilon=args.epsilon, dry_run=args.dry_run, report=not args.no_report, out=args.out, device=args.device)
    except (RegistryError, ThresholdError) as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_INVALID_INPUT
    except MlflowException as err:  # e.g. the tracking server cannot be reached
        print(f"error: MLflow: {err.message}", file=sys.stderr)
        return 1
    record = result.record
    if "gate" in record:
        g = record["gate"]
        rows = [{"context": c["context"], "n": c["n"], "candidate": c["candidate_accuracy"],
                 "champion": c["champion_accuracy"] if g["compared"] else None,
                 "delta": c["delta"] if g["compared"] else None, "ok": "yes" if c["passed"] else "NO"}
                for c in g["contexts"]]
        o = g["overall"]
        rows.append({"context": OVERALL, "n": o["n"], "candidate": o["candidate_accuracy"],
                     "champion": o["champion_accuracy"] if g["compared"] else None, "delta": o["delta"] if g["compared"] else None,
                     "ok": f"p={o['p_value_candidate_worse']:.3g}" if g["compared"] else ""})
        champ = record["champion"]["version"] if record["champion"] else "none"
        print_table(rows, ["context", "n", "candidate", "champion", "delta", "ok"],
                    title=f"{args.name}: candidate v{record['candidate']['version']} vs champion {champ}")
        for reason in g["reasons"]:
            print(f"- {reason}")
    verb = "would be " if args.dry_run and result.decision in (PROMOTED, FIRST) else ""
    print(f"{args.name} version {record['candidate']['version']}: {verb}{result.decision}{' (dry run: nothing recorded)' if args.dry_run else ''}")
    return result.exit_code

