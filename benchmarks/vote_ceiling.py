"""How well *any* model could agree with the votes of a voted data set (``python -m benchmarks.vote_ceiling``).

A triplet's votes are a few independent draws of one person's-worth of preference: with probability ``p``
a voter calls A closer. A model sees the images, never the voters, so the best it can do on a row is to
know ``p`` and side with ``max(p, 1 - p)``: that oracle's expected **per-vote agreement** is
``E[max(p, 1 - p)]`` and its expected **majority accuracy** (tied rows left out) is the chance that the
row's sampled majority falls on the side of ``p``. Neither is the in-sample "vote ceiling"
(``max(votes_a, votes_b) / votes``, ``ctxsim.metrics``), which sides with the test votes themselves and
so cannot be reached by a model.

``p`` is never observed, only its votes; its distribution over the rows is estimated two ways from the
vote counts (each row's orientation is randomised, so ``p`` is symmetric about 1/2):

* **beta-binomial**: ``p ~ Beta(a, b)``, fitted by maximum likelihood (``scipy.stats.betabinom``);
* **NPMLE**: the nonparametric maximum-likelihood distribution of ``p`` on a grid (Kiefer-Wolfowitz,
  by EM). It fits at least as well as any parametric family and tends to put mass at the extremes
  (unanimous rows), so its ceiling is the generous one.

Both are checked against the observed distribution of the minority's share per vote count, and the
estimator is checked on votes simulated from the fitted distribution (it recovers the ceiling it was
given). Results: ``results/vote_ceiling.json``.
"""
from __future__ import annotations

import time

import numpy as np

from benchmarks.common import base_parser, save, setup_env, table

#: Points of the NPMLE grid over p in [0, 1] and its EM iterations (the ceilings settle long before).
GRID_POINTS = 201
EM_ITERATIONS = 2000
#: Rows simulated to check that the estimator recovers a known ceiling.
SIMULATED_ROWS = 200_000


def oriented_votes(votes_a: np.ndarray, votes_b: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(k, n): votes for one side of each row, chosen at random, and the row's votes; rows without votes dropped."""
    n = (votes_a + votes_b).astype(int)
    keep = n > 0
    va, n = votes_a[keep].astype(int), n[keep]
    flip = np.random.default_rng(seed).random(len(n)) < 0.5
    return np.where(flip, n - va, va), n


def fit_beta_binomial(k: np.ndarray, n: np.ndarray) -> dict:
    """Maximum-likelihood ``Beta(a, b)`` of p: {"a", "b", "loglik"}."""
    from scipy.optimize import minimize
    from scipy.stats import betabinom

    def nll(log_ab):
        a, b = np.exp(log_ab)
        return -betabinom.logpmf(k, n, a, b).sum()

    fit = minimize(nll, np.zeros(2), method="Nelder-Mead")
    a, b = np.exp(fit.x)
    return {"a": float(a), "b": float(b), "loglik": float(-fit.fun)}


def fit_npmle(k: np.ndarray, n: np.ndarray, grid_points: int = GRID_POINTS, iterations: int = EM_ITERATIONS) -> dict:
    """The nonparametric MLE of the distribution of p on a grid: {"grid", "weights", "loglik"}."""
    from scipy.stats import binom

    grid = np.linspace(0.0, 1.0, grid_points)
    # rows with the same (k, n) share a likelihood column: EM over the distinct pairs, weighted by their counts
    pairs, count = np.unique(np.column_stack([k, n]), axis=0, return_counts=True)
    like = binom.pmf(pairs[:, :1], pairs[:, 1:], grid[None, :])
    weights = np.full(grid_points, 1.0 / grid_points)
    for _ in range(iterations):
        post = like * weights
        post /= post.sum(axis=1, keepdims=True)
        weights = count @ post / count.sum()
    return {"grid": grid, "weights": weights, "loglik": float(count @ np.log(like @ weights))}


def beta_distribution(a: float, b: float, grid_points: int = GRID_POINTS) -> tuple[np.ndarray, np.ndarray]:
    """Beta(a, b) as weights on grid-cell midpoints (the same form as the NPMLE's)."""
    from scipy.stats import beta

    edges = np.linspace(0.0, 1.0, grid_points + 1)
    return (edges[:-1] + edges[1:]) / 2, np.diff(beta.cdf(edges, a, b))


def fit_distributions(k: np.ndarray, n: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """p's distribution by each model, as (grid, weights): {"beta-binomial": ..., "NPMLE": ...}."""
    beta = fit_beta_binomial(k, n)
    npmle = fit_npmle(k, n)
    return {"beta-binomial": beta_distribution(beta["a"], beta["b"]), "NPMLE": (npmle["grid"], npmle["weights"])}


def ceilings(grid: np.ndarray, weights: np.ndarray, n: np.ndarray) -> dict:
    """The oracle's expected per-vote agreement and majority accuracy (tied rows out) for rows with ``n`` votes
    and p distributed as ``weights`` on ``grid`` (p independent of a row's vote count)."""
    from scipy.stats import binom

    agreement = float(weights @ np.maximum(grid, 1 - grid))
    right = clear = 0.0
    for votes, rows in zip(*np.unique(n, return_counts=True)):
        k = np.arange(votes + 1)[:, None]
        given_p = binom.pmf(k, votes, grid[None, :])  # P(k votes for A | p)
        pmf = given_p @ weights  # P(k votes for A), mixed over p
        # P(k votes for A and the majority on p's side); a p of exactly 1/2 has no side: half right
        side = np.where(grid[None, :] == 0.5, 0.5, ((2 * k > votes) == (grid[None, :] > 0.5)).astype(float))
        on_side = (given_p * side) @ weights
        is_clear = (2 * k != votes).ravel()
        right += rows * on_side[is_clear].sum()
        clear += rows * pmf[is_clear].sum()
    return {"vote_agreement": agreement, "majority_accuracy": float(right / clear) if clear else float("nan")}


def minority_shares(k: np.ndarray, n: np.ndarray, votes: int) -> np.ndarray:
    """Share of the rows with ``votes`` votes whose minority has 0, 1, ... votes."""
    rows = n == votes
    return np.bincount(np.minimum(k, n - k)[rows], minlength=votes // 2 + 1) / max(1, rows.sum())


def fitted_minority_shares(grid: np.ndarray, weights: np.ndarray, votes: int) -> np.ndarray:
    from scipy.stats import binom

    k = np.arange(votes + 1)
    pmf = binom.pmf(k[:, None], votes, grid[None, :]) @ weights
    return np.bincount(np.minimum(k, votes - k), weights=pmf, minlength=votes // 2 + 1)


def simulate(grid: np.ndarray, weights: np.ndarray, n: np.ndarray, rows: int, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Votes of ``rows`` triplets with p drawn from the distribution and vote counts drawn from ``n``."""
    rng = np.random.default_rng(seed)
    p = rng.choice(grid, size=rows, p=weights / weights.sum())
    votes = rng.choice(n, size=rows)
    return rng.binomial(votes, p), votes


def analyse(votes_a: np.ndarray, votes_b: np.ndarray) -> dict:
    k, n = oriented_votes(votes_a, votes_b)
    models = fit_distributions(k, n)
    out = {"rows": len(n), "votes": int(n.sum()), "votes_per_row": {int(v): int(c) for v, c in zip(*np.unique(n, return_counts=True))},
           "in_sample_vote_ceiling": float(np.maximum(k, n - k).sum() / n.sum()),
           "beta_binomial": fit_beta_binomial(k, n), "npmle_loglik": fit_npmle(k, n)["loglik"], "models": {}}
    for name, (grid, weights) in models.items():
        sim_k, sim_n = simulate(grid, weights, n, SIMULATED_ROWS)
        recovered = ceilings(*fit_distributions(sim_k, sim_n)[name], sim_n)  # the same model fitted again
        out["models"][name] = {
            "ceiling": ceilings(grid, weights, n),
            "check_on_simulated_votes": {"given": ceilings(grid, weights, sim_n), "recovered": recovered},
            "minority_shares": {int(v): {"observed": minority_shares(k, n, v).round(4).tolist(),
                                         "fitted": fitted_minority_shares(grid, weights, v).round(4).tolist()}
                                for v, c in out["votes_per_row"].items() if c >= 1000},
        }
    return out


def main(argv=None) -> dict:
    parser = base_parser(__doc__)
    args = parser.parse_args(argv)
    setup_env(args.work)
    from benchmarks.accuracy import data_dir, import_data

    started = time.perf_counter()
    frames = import_data(data_dir(), args.work / "accuracy" / "data")
    results = {}
    for kind, df in frames.items():
        if {"votes_a", "votes_b"} <= set(df.columns) and df["votes_a"].null_count() < df.height:
            df = df.filter(df["votes_a"].is_not_null())
            results[kind] = analyse(df["votes_a"].to_numpy(), df["votes_b"].to_numpy())
    rows = []
    for kind, r in results.items():
        for name, m in r["models"].items():
            check = m["check_on_simulated_votes"]
            rows.append({"data": kind, "model of p": name, "rows": r["rows"],
                         "loglik": f"{(r['beta_binomial']['loglik'] if name == 'beta-binomial' else r['npmle_loglik']):.1f}",
                         "oracle vote agreement": f"{m['ceiling']['vote_agreement']:.4f}",
                         "oracle majority accuracy": f"{m['ceiling']['majority_accuracy']:.4f}",
                         "in-sample vote ceiling": f"{r['in_sample_vote_ceiling']:.4f}",
                         "simulated: given / recovered agreement": f"{check['given']['vote_agreement']:.4f} / {check['recovered']['vote_agreement']:.4f}"})
    table(rows, list(rows[0]), "What a model that knew every triplet's human preference p would score (the oracle ceiling)")
    for kind, r in results.items():
        for name, m in r["models"].items():
            for votes, shares in m["minority_shares"].items():
                print(f"{kind} {name}: rows with {votes} votes, share with a minority of 0, 1, ... votes: "
                      f"observed {shares['observed']}, fitted {shares['fitted']}")
    result = {"benchmark": "vote_ceiling", "wall_seconds": round(time.perf_counter() - started, 1), "results": results,
              "notes": {"oracle": "a model that knows each row's p and sides with max(p, 1 - p)",
                        "in_sample_vote_ceiling": "sum max(votes_a, votes_b) / sum votes: sides with the test votes themselves"}}
    save("vote_ceiling", result)
    return result


if __name__ == "__main__":
    main()
