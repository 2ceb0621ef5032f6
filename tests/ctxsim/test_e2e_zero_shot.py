"""End to end on the real data: import both shared sets with the CLI, then compare zero-shot with the
real ImageNet EfficientNet-Lite0 and with the raw-pixel baseline (every real image is embedded)."""
from __future__ import annotations

import polars as pl
import pytest

from ctxsim.cli import main

# Agreement with the human judgements measured on the shared data (its README: 0.72 / 0.78 / 0.84).
EXPECTED = {
    "efficientnet_lite0": {"shoes": (0.70, 0.76), "materials": (0.74, 0.80), "materials_majority": (0.76, 0.82)},
    "pixels": {"shoes": (0.57, 0.64), "materials": (0.60, 0.68), "materials_majority": (0.60, 0.68)},
}
VOTE_CEILING = 0.838  # always siding with the majority of the materials votes
#: The pretrained backbone must beat raw pixels by at least this much on both sets.
MIN_GAIN_OVER_PIXELS = 0.08


def agreement(df: pl.DataFrame) -> dict[str, float]:
    """Accuracy; with votes also majority accuracy (ties left out), vote agreement and its ceiling."""
    out = {"accuracy": df["correct"].mean()}
    if "votes_a" in df.columns and df["votes_a"].is_not_null().any():
        va, vb, pred = pl.col("votes_a"), pl.col("votes_b"), pl.col("pred")
        majority = pl.when(va > vb).then(pl.lit("A")).otherwise(pl.lit("B"))
        total = (va + vb).sum()
        out |= df.select(
            majority=(pred == majority).filter(va != vb).mean(),
            votes=pl.when(pred == "A").then(va).otherwise(vb).sum() / total,
            ceiling=pl.max_horizontal(va, vb).sum() / total,
        ).row(0, named=True)
    return out


@pytest.mark.e2e
def test_zero_shot_agreement_on_the_shared_data(shared_data, tmp_path, capsys):
    for kind, context in (("zappos", "shoes"), ("materials", "materials")):
        assert main(["data", "import", kind, str(shared_data / kind), "--out", str(tmp_path / kind), "--context", context]) == 0
    csvs = [str(tmp_path / "zappos" / "triplets.csv"), str(tmp_path / "materials" / "train.csv")]
    capsys.readouterr()

    results = {}
    for model, bounds in EXPECTED.items():
        out = tmp_path / f"scored-{model}.csv"
        assert main(["compare", f"backbone:{model}", *csvs, "--out", str(out)]) == 0
        printed = capsys.readouterr().out
        scored = pl.read_csv(out, schema_overrides={"votes_a": pl.Int64, "votes_b": pl.Int64})
        assert scored.height == 157_009 + 22_801
        shoes = agreement(scored.filter(pl.col("context") == "shoes"))
        materials = agreement(scored.filter(pl.col("context") == "materials"))
        assert bounds["shoes"][0] <= shoes["accuracy"] <= bounds["shoes"][1], (model, shoes)
        assert bounds["materials"][0] <= materials["accuracy"] <= bounds["materials"][1], (model, materials)
        assert bounds["materials_majority"][0] <= materials["majority"] <= bounds["materials_majority"][1], (model, materials)
        assert materials["votes"] < materials["ceiling"] == pytest.approx(VOTE_CEILING, abs=0.001)
        # the printed table carries the same numbers
        materials_line = next(line for line in printed.splitlines() if " materials " in line)
        for value in (materials["accuracy"], materials["majority"], materials["votes"]):
            assert f"{value:.3f}" in materials_line
        assert f"{shoes['accuracy']:.3f}" in next(line for line in printed.splitlines() if " shoes " in line)
        results[model] = (shoes["accuracy"], materials["accuracy"])

    for lite, pix in zip(results["efficientnet_lite0"], results["pixels"]):
        assert lite - pix >= MIN_GAIN_OVER_PIXELS
