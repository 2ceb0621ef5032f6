"""Promotion is a compare-and-set: two ``promote`` processes racing on one store leave exactly one champion,
gated against the version that was champion when the alias moved; a re-promoted version loses its stale
``promotion.superseded_by`` tag."""
from __future__ import annotations

import multiprocessing as mp
import threading

from ctxsim.mlops import registry
from tests.mlops.test_promotion import NAME, champion_version, registry_store, version_tags  # noqa: F401 (fixture)

#: Seconds a racer waits at the recording step for the other one (before the fix both got there at once).
RENDEZVOUS_S = 8


def _racer(version: str, eval_csv: str, images: str, barrier, results) -> None:
    from ctxsim.mlops.promotion import promote

    real = registry.record_promotion

    def rendezvous(*args, **kwargs):  # widen the window between reading the champion and moving the alias
        try:
            barrier.wait(RENDEZVOUS_S)
        except threading.BrokenBarrierError:
            pass
        return real(*args, **kwargs)

    registry.record_promotion = rendezvous
    try:
        results[version] = promote(NAME, version, eval_csv, images, report=False).decision
    except Exception as err:  # noqa: BLE001 - reported to the test
        results[version] = f"error: {err!r}"


def test_concurrent_promotions_serialize(registry_store):  # noqa: F811
    data = registry_store["data"]
    registry.set_champion(NAME, "2")  # the bad version is champion: v1 and v3 both beat it
    ctx = mp.get_context("spawn")
    with ctx.Manager() as manager:
        barrier, results = manager.Barrier(2), manager.dict()
        procs = [ctx.Process(target=_racer, args=(v, str(data["eval"]), str(data["root"]), barrier, results)) for v in ("1", "3")]
        for p in procs:
            p.start()
        for p in procs:
            p.join(300)
        results = dict(results)
    assert all(p.exitcode == 0 for p in procs), results
    assert set(results.values()) == {"promoted"}, results
    winner = champion_version()
    loser = ({"1", "3"} - {winner}).pop()
    # the loser moved first, against v2; the winner was gated against the loser, the champion when it moved
    assert version_tags(loser)["champion_version"] == "2"
    assert version_tags(winner)["champion_version"] == loser
    assert version_tags(loser)["superseded_by"] == winner and version_tags("2")["superseded_by"] == loser


def test_repromoted_version_drops_superseded_by(registry_store):  # noqa: F811
    from ctxsim.mlops.promotion import promote

    data = registry_store["data"]
    from ctxsim.compare.model_uri import client

    client().set_model_version_tag(NAME, "1", "promotion.superseded_by", "3")  # v1 was champion once, then v3 took over
    registry.set_champion(NAME, "2")  # and the bad version was put back by hand
    assert promote(NAME, "1", data["eval"], data["root"], report=False).decision == "promoted"
    assert champion_version() == "1"
    assert "superseded_by" not in version_tags("1")
    assert version_tags("2")["superseded_by"] == "1"
