"""The pyfunc model's trust parameters: ``target_accuracy`` and ``explain`` add the columns compare adds."""
from __future__ import annotations

from types import SimpleNamespace

import pandas as pd

from ctxsim.mlops.pyfunc import OUTPUT_COLUMNS, CtxsimModel, signature
from tests.mlops.mlflow_support import data_set, session_base, trained_run


def test_params_ask_for_selective_answers_and_explanations(tmp_path_factory):
    base = session_base(tmp_path_factory)
    run, _, _ = trained_run(base)
    root = data_set(base)["root"]
    model = CtxsimModel()
    model.load_context(SimpleNamespace(artifacts={"run": str(run)}))
    frame = pd.DataFrame({"ref": [str(root / "images/r0.png"), str(root / "images/r1.png")],
                          "a": [str(root / "images/n0.png"), str(root / "images/f3.png")],
                          "b": [str(root / "images/f2.png"), str(root / "images/n1.png")]})
    plain = model.predict(None, frame)
    assert list(plain.columns) == [*OUTPUT_COLUMNS, "context_similarity", "out_of_context"]
    asked = model.predict(None, frame, params={"target_accuracy": 1.0, "explain": "full"})
    assert set(asked["pred"]) == {"abstain"} and not asked["answered"].any()
    assert asked["pred_raw"].tolist() == plain["pred"].tolist()
    assert asked["why"].str.count(";").le(2).all() and asked["why"].str.len().gt(0).all() and any(c.startswith("contrib_") for c in asked.columns)
    assert list(model.predict(None, frame).columns) == list(plain.columns)  # a request's options do not stick
    sig = signature()
    assert {p.name: p.default for p in sig.params.params} == {"images": "", "target_accuracy": 0.0, "delta": 0.05, "explain": ""}
    optional = {c.name for c in sig.outputs.inputs if not c.required}
    assert optional == {"pred_raw", "answered", "context_similarity", "out_of_context", "why"}
