"""ctxsim.mlops.promotion: the gate on hand-computed cases, the registry flow on a temporary SQLite store, and
(marked ``server``) the whole flow against a real ``mlflow server``."""
from __future__ import annotations

import json
import math
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from ctxsim.mlops.promotion import ALREADY, FIRST, PROMOTED, REFUSED, render_markdown
from ctxsim.mlops.gate import EXIT_REFUSED, PairedCounts, evaluate_gate, first_champion, mcnemar_worse_pvalue
from tests.mlops.mlflow_support import TINY_FLAGS, data_set, session_base, trained_run, tracking_store


def paired(both=0, candidate_only=0, champion_only=0, neither=0):
    """Per-triplet correctness arrays with these counts."""
    cand = [True] * both + [True] * candidate_only + [False] * champion_only + [False] * neither
    champ = [True] * both + [False] * candidate_only + [True] * champion_only + [False] * neither
    return np.array(cand), np.array(champ)


def gate(contexts=None, **counts):
    cand, champ = paired(**counts)
    return evaluate_gate(cand, champ, contexts if contexts is not None else ["all"] * len(cand))


# -- McNemar, by hand: P(X >= b), X ~ Binomial(b + c, 1/2) ---------------------------------------------------
@pytest.mark.parametrize("candidate_only, champion_only, expected", [
    (2, 8, (45 + 10 + 1) / 1024),  # C(10,8) + C(10,9) + C(10,10) over 2^10
    (1, 9, (10 + 1) / 1024),
    (5, 5, (252 + 210 + 120 + 45 + 10 + 1) / 1024),
    (0, 3, 1 / 8),
    (3, 0, 1.0),  # the candidate never loses: nothing suggests it is worse
    (0, 0, 1.0),  # no discordant pairs
])
def test_mcnemar_one_sided_exact(candidate_only, champion_only, expected):
    assert mcnemar_worse_pvalue(candidate_only, champion_only) == pytest.approx(expected, rel=1e-12)


def test_paired_counts():
    counts = PairedCounts.of(*paired(both=5, candidate_only=2, champion_only=3, neither=1))
    assert (counts.n, counts.discordant) == (11, 5)
    assert counts.candidate_accuracy == pytest.approx(7 / 11) and counts.champion_accuracy == pytest.approx(8 / 11)
    assert counts.delta == pytest.approx(-1 / 11)


# -- the gate ---------------------------------------------------------------------------------------------
def test_equal_models_pass():
    g = gate(both=80, candidate_only=5, champion_only=5, neither=10)
    assert g.promote and g.p_value == pytest.approx(638 / 1024)


def test_significant_loss_is_refused_even_when_small():
    # 30 vs 10 discordant among 100000: accuracy drops by only 0.0002 (< epsilon) but the test rejects.
    g = gate(both=99_000, candidate_only=10, champion_only=30, neither=960)
    expected = sum(math.comb(40, k) for k in range(30, 41)) / 2**40
    assert g.p_value == pytest.approx(expected, rel=1e-9) and expected < 0.05
    assert not g.promote
    assert len(g.reasons) == 1 and "McNemar" in g.reasons[0]


def test_point_estimate_loss_beyond_epsilon_is_refused_without_significance():
    g = gate(both=80, candidate_only=2, champion_only=8, neither=10)  # p = 56/1024 > 0.05, accuracy -6 points
    assert g.p_value == pytest.approx(56 / 1024)
    assert not g.promote
    assert "epsilon" in g.reasons[0] and not any("McNemar" in r for r in g.reasons)
    assert "tolerance" in g.reasons[1]  # the one context loses 6 points too


def test_epsilon_boundary():
    assert gate(both=150, champion_only=1, neither=49).promote  # n = 200: -0.005 is exactly epsilon
    refused = gate(both=149, champion_only=1, neither=49)  # n = 199: -0.005025
    assert not refused.promote and "epsilon" in refused.reasons[0]


def test_context_regression_beyond_tolerance_is_refused():
    # x: the candidate loses 1 of 50 (-0.02 = tolerance: ok); y: it wins 1 of 50.
    x_cand, x_champ = paired(both=40, champion_only=1, neither=9)
    y_cand, y_champ = paired(both=40, candidate_only=1, neither=9)
    ok = evaluate_gate(np.r_[x_cand, y_cand], np.r_[x_champ, y_champ], ["x"] * 50 + ["y"] * 50)
    assert ok.promote and [c.passed for c in ok.contexts] == [True, True]
    # x: loses 2 of 50 (-0.04); y: wins 2 of 50, so overall nothing changes but x regresses.
    x_cand, x_champ = paired(both=40, champion_only=2, neither=8)
    y_cand, y_champ = paired(both=40, candidate_only=2, neither=8)
    g = evaluate_gate(np.r_[x_cand, y_cand], np.r_[x_champ, y_champ], ["x"] * 50 + ["y"] * 50)
    assert g.overall.delta == 0 and g.p_value == pytest.approx(11 / 16)
    assert not g.promote and g.reasons == ["context x: accuracy 0.8000 < champion 0.8400 - tolerance 0.02 (n = 50)"]
    assert [(c.context, c.passed) for c in g.contexts] == [("x", False), ("y", True)]


def test_thresholds_and_shapes_are_checked():
    cand, champ = paired(both=3)
    with pytest.raises(ValueError, match="alpha"):
        evaluate_gate(cand, champ, ["a"] * 3, alpha=0)
    with pytest.raises(ValueError, match="tolerance"):
        evaluate_gate(cand, champ, ["a"] * 3, tolerance=-0.1)
    with pytest.raises(ValueError, match="one entry per triplet"):
        evaluate_gate(cand, champ, ["a"] * 2)


def test_first_champion_and_markdown():
    cand, _ = paired(both=3, neither=1)
    g = first_champion(cand, ["x", "x", "y", "y"])
    assert g.promote and not g.compared and g.overall.candidate_accuracy == 0.75
    record = {"model": "m", "decision": FIRST, "dry_run": False, "candidate": {"version": "1"}, "champion": None,
              "gate": g.as_dict(), "eval": {"files": ["eval.csv"], "digest": "0" * 64}}
    text = render_markdown(record)
    assert text.startswith("# Promotion of m version 1: promoted (first champion)")
    assert "| x | 2 | 100.00% | n/a | n/a | yes |" in text and "| y | 2 | 50.00% | n/a | n/a | yes |" in text


# -- the flow on a SQLite store ---------------------------------------------------------------------------------
NAME = "promo-model"


@pytest.fixture(scope="module")
def registry_store(tmp_path_factory):
    """NAME v1: trained on the labels; v2: on flipped labels (a deliberately bad candidate); v3: v1 again."""
    from ctxsim.mlops.tracking import log_training

    base = session_base(tmp_path_factory)
    data = data_set(base)
    with tracking_store(tmp_path_factory.mktemp("promotion")) as root:
        for kind in ("train", "flipped", "train"):
            run_dir, metrics, cfg = trained_run(base, kind)
            log_training(run_dir, metrics, cfg, data[kind], register=NAME)
        yield {"root": root, "data": data}


def version_tags(version):
    from ctxsim.compare.model_uri import get_version

    return {k.removeprefix("promotion."): v for k, v in get_version(NAME, version).tags.items() if k.startswith("promotion.")}


def champion_version():
    from ctxsim.mlops.registry import champion

    mv = champion(NAME)
    return None if mv is None else str(mv.version)


def test_promotion_flow(registry_store, capsys, tmp_path):
    from ctxsim.cli import main
    from ctxsim.mlops.promotion import promote
    from ctxsim.compare.model_uri import client

    data = registry_store["data"]
    eval_args = ["--eval", str(data["eval"]), "--images", str(data["root"])]

    # a dry run decides and prints, records nothing and moves nothing
    assert main(["promote", NAME, "--candidate", "2", *eval_args, "--dry-run", "--no-report"]) == 0
    assert "would be promoted (first champion)" in capsys.readouterr().out
    assert champion_version() is None and version_tags(2) == {}

    # no champion yet: the first version promoted becomes it, with its numbers recorded
    first = promote(NAME, "1", data["eval"], data["root"], report=False)
    assert (first.decision, first.exit_code, champion_version()) == (FIRST, 0, "1")
    assert version_tags(1)["decision"] == FIRST and version_tags(1)["champion_version"] == "none"
    assert float(version_tags(1)["candidate_accuracy"]) > 0.9

    # the bad candidate is refused (exit 3), the alias stays, the decision and the comparison are recorded
    assert main(["promote", NAME, "--candidate", "2", *eval_args, "--out", str(tmp_path / "refused")]) == EXIT_REFUSED
    assert "version 2: refused" in capsys.readouterr().out
    assert champion_version() == "1"
    tags = version_tags(2)
    assert tags["decision"] == REFUSED and tags["champion_version"] == "1" and float(tags["p_value"]) < 0.05
    record = json.loads((tmp_path / "refused" / "promotion.json").read_text())
    overall = record["gate"]["overall"]
    assert overall["n"] == 48 and overall["candidate_only"] < overall["champion_only"]
    assert overall["p_value_candidate_worse"] == pytest.approx(mcnemar_worse_pvalue(overall["candidate_only"], overall["champion_only"]))
    artifacts = {a.path for a in client().list_artifacts(tags["run_id"])}
    assert {"promotion.json", "promotion.md", "scored", "candidate_report"} <= artifacts
    assert {"scored/candidate_scored.csv", "scored/champion_scored.csv"} == {a.path for a in client().list_artifacts(tags["run_id"], "scored")}
    assert "candidate_report/report.html" in {a.path for a in client().list_artifacts(tags["run_id"], "candidate_report")}

    # an equally good candidate passes (no discordant pairs: p = 1) and takes the alias
    assert main(["promote", NAME, "--candidate", "3", *eval_args, "--dry-run", "--no-report"]) == 0
    assert champion_version() == "1"
    third = promote(NAME, "3", data["eval"], data["root"], report=False)
    assert (third.decision, third.exit_code, champion_version()) == (PROMOTED, 0, "3")
    assert third.record["gate"]["overall"]["p_value_candidate_worse"] == 1.0
    assert version_tags(1)["superseded_by"] == "3" and version_tags(3)["decision"] == PROMOTED
    assert promote(NAME, "3", data["eval"], data["root"]).decision == ALREADY


def test_bad_input_exits_2(registry_store, tmp_path, capsys):
    from ctxsim.cli import main

    data = registry_store["data"]
    unlabelled = tmp_path / "unlabelled.csv"
    unlabelled.write_text("\n".join(line.rsplit(",", 2)[0] for line in data["eval"].read_text().splitlines()) + "\n")
    assert "label" not in unlabelled.read_text().splitlines()[0]
    good_eval = ["--eval", str(data["eval"]), "--images", str(data["root"])]
    assert main(["promote", NAME, "--candidate", "9", *good_eval]) == 2
    assert main(["promote", "no-such-model", "--candidate", "1", *good_eval]) == 2
    assert main(["promote", NAME, "--candidate", "2", *good_eval, "--alpha", "1.5"]) == 2
    assert main(["promote", NAME, "--candidate", "2", "--eval", str(tmp_path / "missing.csv")]) == 2
    assert main(["promote", NAME, "--candidate", "2", "--eval", str(unlabelled), "--images", str(data["root"])]) == 2
    assert "version 9" in capsys.readouterr().err


# -- a real mlflow server ----------------------------------------------------------------------------------------
#: Seconds a fresh ``mlflow server`` gets to answer /health.
SERVER_START_S = 120
#: Seconds it gets to stop after SIGTERM before it is killed.
SERVER_STOP_S = 5


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def mlflow_server(tmp_path):
    port = free_port()
    env = os.environ | {"MLFLOW_DISABLE_TELEMETRY": "true"}
    log = open(tmp_path / "server.log", "wb")
    cmd = [str(Path(sys.executable).parent / "mlflow"), "server", "--backend-store-uri", f"sqlite:///{tmp_path}/server.db",
           "--artifacts-destination", str(tmp_path / "artifacts"), "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + SERVER_START_S
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert proc.poll() is None, (tmp_path / "server.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "mlflow server did not answer /health in time"
            time.sleep(0.5)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # the server and its workers: the group this test started
        try:
            proc.wait(timeout=SERVER_STOP_S)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


@pytest.mark.server
def test_train_register_promote_and_load_through_a_real_server(mlflow_server, tmp_path, tmp_path_factory, capsys):
    from ctxsim.cli import main
    from ctxsim.mlops.tracking import log_training

    base = session_base(tmp_path_factory)
    data = data_set(base)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", mlflow_server)
        mp.setenv("CTXSIM_MODEL_CACHE", str(tmp_path / "model-cache"))
        mp.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
        mp.chdir(tmp_path)
        assert main(["train", "--triplets", str(data["train"]), "--out", str(tmp_path / "run"), *TINY_FLAGS, "--register", "srv"]) == 0
        run_dir, metrics, cfg = trained_run(base, "flipped")
        assert log_training(run_dir, metrics, cfg, data["flipped"], register="srv")[1] == "2"
        eval_args = ["--eval", str(data["eval"]), "--images", str(data["root"]), "--no-report"]
        assert main(["promote", "srv", "--candidate", "1", *eval_args]) == 0
        assert main(["promote", "srv", "--candidate", "2", *eval_args]) == EXIT_REFUSED
        assert champion_of("srv") == "1"
        assert not list(tmp_path.glob("mlflow.db")), "nothing was written to a local store"

        code = textwrap.dedent(f"""
            import json, mlflow, pandas as pd, ctxsim
            frame = pd.read_csv({str(data['eval'])!r})
            for c in ("ref", "a", "b"):
                frame[c] = {str(data['root'])!r} + "/" + frame[c]
            pyfunc = mlflow.pyfunc.load_model("models:/srv@champion").predict(frame[["ref", "a", "b"]])
            direct = ctxsim.load("models:/srv@champion", progress=False).score(frame)
            print(json.dumps({{"pyfunc": float((pyfunc["pred"] == frame["label"]).mean()),
                              "direct": float((direct["pred"].to_numpy() == frame["label"].to_numpy()).mean())}}))
        """)
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180, env=os.environ.copy())
    assert proc.returncode == 0, proc.stderr[-3000:]
    accuracy = json.loads(proc.stdout.strip().splitlines()[-1])
    assert accuracy["pyfunc"] == accuracy["direct"] > 0.9


def champion_of(name):
    from ctxsim.mlops.registry import champion

    mv = champion(name)
    return None if mv is None else str(mv.version)
