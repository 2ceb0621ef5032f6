"""ctxsim.mlops.tracking: what a tracked training run holds in MLflow, the pyfunc model, ``ctxsim train --register``."""
from __future__ import annotations

import json
import math
import subprocess
import sys
import textwrap
from pathlib import Path

import polars as pl
import pytest

from ctxsim.mlops.tracking import accuracy_metrics, flatten, metric_key
from ctxsim.compare.model_uri import safe_name
from tests.mlops.mlflow_support import TINY_FLAGS, data_set, session_base, trained_run, tracking_store


# -- pure helpers ---------------------------------------------------------------------------------------
def test_flatten_nested_config():
    assert flatten({"seed": 0, "member": {"epochs": 2, "targets": ["qkv", "proj"]}, "k": None}) == {
        "seed": "0", "member.epochs": "2", "member.targets": "qkv,proj", "k": "None"}


def test_metric_keys_overall_and_per_context():
    assert metric_key("ensemble", "(all)", "accuracy") == "ensemble/accuracy"
    assert metric_key("member:global", "shoes", "ci_low") == "member:global/context/shoes/ci_low"
    assert metric_key("ensemble", "a/b (c)", "accuracy") == "ensemble/context/a_b _c_/accuracy"
    assert safe_name("é(x)") == "é_x_"  # \w is unicode-aware; brackets are not allowed by MLflow


def test_accuracy_metrics_skip_missing_and_nan():
    rows = [{"context": "x", "rows": 3, "labelled": 3, "accuracy": 2 / 3, "ci_low": math.nan},
            {"context": "(all)", "rows": 3, "labelled": 3, "accuracy": 2 / 3, "ci_low": 0.2, "ci_high": 0.9}]
    assert accuracy_metrics(rows, "ensemble") == {
        "ensemble/context/x/accuracy": 2 / 3, "ensemble/context/x/labelled": 3.0,
        "ensemble/accuracy": 2 / 3, "ensemble/ci_low": 0.2, "ensemble/ci_high": 0.9, "ensemble/labelled": 3.0}


def test_importing_the_cli_does_not_import_mlflow():
    code = "import sys, ctxsim.cli; ctxsim.cli.build_parser(); print('mlflow' in sys.modules, 'torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "False"]


# -- a tracked run ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def store(tmp_path_factory):
    with tracking_store(tmp_path_factory.mktemp("tracking")) as root:
        yield root


@pytest.fixture(scope="module")
def tracked(store, tmp_path_factory):
    from ctxsim.mlops.tracking import log_training

    base = session_base(tmp_path_factory)
    run_dir, metrics, cfg = trained_run(base)
    data = data_set(base)
    run_id, version = log_training(run_dir, metrics, cfg, [data["train"]])
    return {"run_id": run_id, "version": version, "run_dir": run_dir, "metrics": metrics, "data": data}


@pytest.fixture(scope="module")
def client(store):
    from mlflow import MlflowClient

    from ctxsim.compare.model_uri import use_tracking_store

    use_tracking_store()
    return MlflowClient()


def overall(metrics, system):
    return next(r for r in metrics["accuracy"][system] if r["context"] == "(all)")


def test_run_has_config_metrics_datasets_and_code_version(tracked, client):
    import ctxsim

    run = client.get_run(tracked["run_id"])
    assert tracked["version"] is None  # not registered without a name
    assert run.info.run_name == tracked["run_dir"].name
    assert run.data.params["backbone"] == "test_tiny" and run.data.params["member.epochs"] == "2"
    assert run.data.params["contexts.min_triplets"] == "10" and run.data.params["data.n_triplets"] == "144"
    metrics = tracked["metrics"]
    for system in ("ensemble", "member:global", "member:zeroshot", "baseline:majority_vote"):
        assert run.data.metrics[f"{system}/accuracy"] == pytest.approx(overall(metrics, system)["accuracy"])
    per_context = {r["context"]: r["accuracy"] for r in metrics["accuracy"]["ensemble"]}
    assert run.data.metrics["ensemble/context/x/accuracy"] == pytest.approx(per_context["x"])
    assert run.data.metrics["ensemble/context/y/labelled"] == 72
    assert run.data.tags["ctxsim.version"] == ctxsim.__version__
    assert len(run.data.tags["mlflow.source.git.commit"]) == 40
    (dataset,) = run.inputs.dataset_inputs
    assert dataset.dataset.name == "train.csv" and dataset.dataset.digest
    assert dataset.tags[0].value == "training"
    assert json.loads(dataset.dataset.profile)["num_rows"] == 144


def test_members_are_nested_runs_with_their_history(tracked, client):
    children = client.search_runs([client.get_run(tracked["run_id"]).info.experiment_id],
                                  f"tags.mlflow.parentRunId = '{tracked['run_id']}'")
    by_name = {r.data.tags["ctxsim.member"]: r for r in children}
    assert set(by_name) == {"zeroshot", "global", "context-x", "context-y"}
    history = tracked["metrics"]["members"]["global"]
    steps = client.get_metric_history(by_name["global"].info.run_id, "val_accuracy")
    assert [m.step for m in sorted(steps, key=lambda m: m.step)] == list(range(len(history["val_accuracy"])))
    losses = client.get_metric_history(by_name["global"].info.run_id, "train_loss")
    assert sorted(m.step for m in losses) == list(range(1, len(history["train_loss"]) + 1))
    assert by_name["global"].data.params["best_epoch"] == str(history["best_epoch"])
    assert "oof/accuracy" in by_name["zeroshot"].data.metrics  # no training, but its out-of-fold accuracy


def test_report_and_model_artifacts(tracked, client, store):
    import mlflow

    run = client.get_run(tracked["run_id"])
    assert run.info.artifact_uri.startswith((store / "mlruns").as_uri()), "artifacts beside the SQLite database"
    names = {a.path for a in client.list_artifacts(tracked["run_id"])}
    assert {"metrics.json", "run.json", "report"} <= names
    assert {"report/report.html", "report/report.json", "report/report.md"} <= {a.path for a in client.list_artifacts(tracked["run_id"], "report")}
    (model,) = mlflow.search_logged_models(experiment_ids=[client.get_run(tracked["run_id"]).info.experiment_id],
                                           filter_string=f"source_run_id = '{tracked['run_id']}'", output_format="list")
    local = mlflow.artifacts.download_artifacts(f"models:/{model.model_id}")
    files = {p.relative_to(local).as_posix() for p in Path(local).rglob("*") if p.is_file()}
    assert "artifacts/run/run.json" in files and "artifacts/run/members/global.safetensors" in files
    assert not any(f.endswith(".pkl") for f in files), "the model is logged from code: nothing pickled"
    assert not any(f.startswith("artifacts/run/report") for f in files), "the validation report is not part of the model"
    info = mlflow.models.get_model_info(f"models:/{model.model_id}")
    assert [c.name for c in info.signature.inputs.inputs] == ["ref", "a", "b", "context"]
    outputs = [(c.name, c.type.name) for c in info.signature.outputs.inputs]
    assert outputs[:3] == [("p_a", "double"), ("pred", "string"), ("context", "string")]
    assert {"pred_raw", "answered", "why", "context_similarity", "out_of_context"} <= {n for n, _ in outputs[3:]}
    assert {p.name for p in info.signature.params.params} == {"images", "target_accuracy", "delta", "explain"}


def test_model_loads_in_a_fresh_process_and_scores_like_the_run_folder(tracked):
    import ctxsim

    data = tracked["data"]["root"]
    frame = pl.DataFrame({"ref": [str(data / "images/r0.png"), (data / "images/r1.png").as_uri()],
                          "a": [str(data / "images/n0.png"), str(data / "images/f3.png")],
                          "b": [str(data / "images/f2.png"), str(data / "images/n1.png")]})
    expected = ctxsim.load(str(tracked["run_dir"]), progress=False).score(frame.with_columns(pl.col("ref").str.replace("file://", "")))
    code = textwrap.dedent(f"""
        import json, sys, mlflow, pandas as pd
        model = mlflow.pyfunc.load_model("runs:/{tracked['run_id']}/model")
        out = model.predict(pd.DataFrame(json.loads(sys.stdin.read())))
        print(json.dumps(out.to_dict(orient="list")))
    """)
    proc = subprocess.run([sys.executable, "-c", code], input=json.dumps(frame.to_dict(as_series=False)),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["pred"] == expected["pred"].to_list() == ["A", "B"]
    assert out["p_a"] == pytest.approx(expected["p_a"].to_list(), abs=1e-6)
    assert out["context"] == expected["context"].to_list()


def test_cli_train_registers_a_version_tagged_with_its_accuracy(store, client, tmp_path_factory, tmp_path):
    from ctxsim.cli import main

    data = data_set(session_base(tmp_path_factory))
    assert main(["train", "--triplets", str(data["train"]), "--out", str(tmp_path / "bad"), "--no-track", "--register", "x"]) == 2
    assert not (tmp_path / "bad").exists()
    assert main(["train", "--triplets", str(data["train"]), "--out", str(tmp_path / "run"), *TINY_FLAGS, "--register", "cli-model"]) == 0
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    mv = client.get_model_version("cli-model", "1")
    assert mv.tags["oof_accuracy"] == f"{overall(metrics, 'ensemble')['accuracy']:.4f}"
    assert {"oof_accuracy.x", "oof_accuracy.y", "oof_triplets"} <= set(mv.tags)
    assert client.get_run(mv.run_id).data.params["backbone"] == "test_tiny"


def test_model_input_uris_become_local_files(tmp_path):
    import functools
    import http.server
    import threading

    from ctxsim.mlops.pyfunc import _localize

    (tmp_path / "img.png").write_bytes(b"png bytes")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        seen, downloads = {}, tmp_path / "downloads"
        downloads.mkdir()
        url = f"http://127.0.0.1:{server.server_address[1]}/img.png"
        local = _localize(url, str(downloads), seen)
        assert Path(local).read_bytes() == b"png bytes" and Path(local).parent == downloads
        assert _localize(url, str(downloads), seen) == local  # downloaded once
    finally:
        server.shutdown()
        server.server_close()
    assert _localize((tmp_path / "a b.png").as_uri(), "", {}) == str(tmp_path / "a b.png")
    assert _localize("/abs/x.png", "", {}) == "/abs/x.png" and _localize("rel/x.png", "", {}) == "rel/x.png"
