"""The promotion gate: does a candidate's correctness on held-out triplets beat the champion's?

Pure statistics on paired per-row correctness (no MLflow): an exact one-sided McNemar test that the
candidate is worse, an overall epsilon and a per-context tolerance. :mod:`ctxsim.mlops.promotion`
scores both versions and moves the alias; this module only decides.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

#: Exit code of ``ctxsim promote`` when the gate refuses the candidate.
EXIT_REFUSED = 3


#: Significance level of the one-sided McNemar test that the candidate is worse.
DEFAULT_ALPHA = 0.05


#: Largest overall accuracy loss (point estimate) still accepted.
DEFAULT_EPSILON = 0.005


#: Largest accuracy loss accepted in any one context.
DEFAULT_TOLERANCE = 0.02


#: Slack of every comparison of rates, so exact ties are not decided by float rounding.
SLACK = 1e-9


PROMOTE_DESCRIPTION = (
    "Score the candidate version and the current champion on the same held-out labelled triplets and move the "
    "champion alias only if the candidate is not worse overall (exact one-sided McNemar test of 'candidate worse' "
    "does not reject at alpha, and its accuracy >= the champion's - epsilon) and no context loses more than the "
    "tolerance. With no champion yet, the candidate becomes the champion. The decision is recorded on the version.")


@dataclass(frozen=True)
class PairedCounts:
    """Agreement of two models on the same triplets: both right, only one right, both wrong."""

    both: int
    candidate_only: int
    champion_only: int
    neither: int

    @classmethod
    def of(cls, candidate_correct, champion_correct) -> PairedCounts:
        cand, champ = np.asarray(candidate_correct, bool), np.asarray(champion_correct, bool)
        if cand.shape != champ.shape:
            raise ValueError(f"paired results differ in length: {cand.shape} vs {champ.shape}")
        return cls(int((cand & champ).sum()), int((cand & ~champ).sum()), int((~cand & champ).sum()), int((~cand & ~champ).sum()))

    @property
    def n(self) -> int:
        return self.both + self.candidate_only + self.champion_only + self.neither

    @property
    def discordant(self) -> int:
        return self.candidate_only + self.champion_only

    @property
    def candidate_accuracy(self) -> float:
        return (self.both + self.candidate_only) / self.n if self.n else math.nan

    @property
    def champion_accuracy(self) -> float:
        return (self.both + self.champion_only) / self.n if self.n else math.nan

    @property
    def delta(self) -> float:
        """Candidate minus champion accuracy."""
        return (self.candidate_only - self.champion_only) / self.n if self.n else math.nan

    def as_dict(self) -> dict:
        return asdict(self) | {"n": self.n, "discordant": self.discordant, "candidate_accuracy": self.candidate_accuracy,
                               "champion_accuracy": self.champion_accuracy, "delta": self.delta}


def mcnemar_worse_pvalue(candidate_only: int, champion_only: int) -> float:
    """Exact one-sided McNemar p-value of "the candidate is worse": P(X >= champion_only), X ~ Bin(discordant, 1/2)."""
    discordant = candidate_only + champion_only
    if discordant == 0:
        return 1.0
    from scipy.stats import binomtest

    return float(binomtest(champion_only, discordant, 0.5, alternative="greater").pvalue)


@dataclass(frozen=True)
class ContextCheck:
    context: str
    counts: PairedCounts
    tolerance: float

    @property
    def passed(self) -> bool:
        return self.counts.delta >= -self.tolerance - SLACK

    def as_dict(self) -> dict:
        return {"context": self.context, **self.counts.as_dict(), "tolerance": self.tolerance, "passed": self.passed}


@dataclass
class GateDecision:
    """The gate's verdict and every number it used."""

    promote: bool
    reasons: list[str]
    overall: PairedCounts
    p_value: float
    alpha: float
    epsilon: float
    tolerance: float
    contexts: list[ContextCheck] = field(default_factory=list)
    compared: bool = True  # False: no champion to compare with

    def as_dict(self) -> dict:
        return {"promote": self.promote, "reasons": self.reasons, "compared": self.compared,
                "rule": {"alpha": self.alpha, "epsilon": self.epsilon, "tolerance": self.tolerance},
                "overall": self.overall.as_dict() | {"p_value_candidate_worse": self.p_value},
                "contexts": [c.as_dict() for c in self.contexts]}


class ThresholdError(ValueError):
    """alpha, tolerance or epsilon out of range (bad input: exit code 2)."""


def check_thresholds(alpha: float, tolerance: float, epsilon: float) -> None:
    if not 0 < alpha < 1:
        raise ThresholdError(f"--alpha must be between 0 and 1, got {alpha}")
    if not 0 <= tolerance < 1 or not 0 <= epsilon < 1:
        raise ThresholdError(f"--tolerance and --epsilon must be in [0, 1), got {tolerance} and {epsilon}")


def evaluate_gate(candidate_correct, champion_correct, contexts, *, alpha: float = DEFAULT_ALPHA,
                  tolerance: float = DEFAULT_TOLERANCE, epsilon: float = DEFAULT_EPSILON) -> GateDecision:
    """Apply the rule of the module docstring to per-triplet correctness of both models and each triplet's context."""
    check_thresholds(alpha, tolerance, epsilon)
    cand, champ = np.asarray(candidate_correct, bool), np.asarray(champion_correct, bool)
    ctx = np.asarray(contexts, dtype=object)
    if not (len(cand) == len(champ) == len(ctx)):
        raise ValueError("candidate, champion and contexts must have one entry per triplet")
    if len(cand) == 0:
        raise ValueError("no labelled triplets to compare on")
    overall = PairedCounts.of(cand, champ)
    p = mcnemar_worse_pvalue(overall.candidate_only, overall.champion_only)
    checks = [ContextCheck(str(k), PairedCounts.of(cand[ctx == k], champ[ctx == k]), tolerance) for k in sorted(set(ctx.tolist()), key=str)]
    reasons = []
    if p < alpha:
        reasons.append(f"significantly worse overall: McNemar one-sided p = {p:.4g} < alpha {alpha} "
                       f"({overall.champion_only} triplets only the champion gets right, {overall.candidate_only} only the candidate)")
    if overall.delta < -epsilon - SLACK:
        reasons.append(f"overall accuracy {overall.candidate_accuracy:.4f} < champion {overall.champion_accuracy:.4f} - epsilon {epsilon}")
    for c in checks:
        if not c.passed:
            reasons.append(f"context {c.context}: accuracy {c.counts.candidate_accuracy:.4f} < champion "
                           f"{c.counts.champion_accuracy:.4f} - tolerance {tolerance} (n = {c.counts.n})")
    return GateDecision(not reasons, reasons or ["not worse overall (test and point estimate) and no context regresses beyond the tolerance"],
                        overall, p, alpha, epsilon, tolerance, checks)


def first_champion(candidate_correct, contexts, *, alpha: float = DEFAULT_ALPHA, tolerance: float = DEFAULT_TOLERANCE,
                   epsilon: float = DEFAULT_EPSILON) -> GateDecision:
    """No champion yet: the candidate is promoted; its own accuracy is what is recorded."""
    decision = evaluate_gate(candidate_correct, candidate_correct, contexts, alpha=alpha, tolerance=tolerance, epsilon=epsilon)
    decision.promote, decision.compared, decision.reasons = True, False, ["no champion yet: the first version becomes the champion"]
    return decision
