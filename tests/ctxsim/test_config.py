"""Training configuration: named defaults, a TOML file, ``--set`` overrides and clear errors."""
from __future__ import annotations

import pytest

from ctxsim.config import TrainConfig, load_config
from ctxsim.members.config import DEFAULT_HIDDEN


def write(tmp_path, text: str):
    path = tmp_path / "train.toml"
    path.write_text(text)
    return path


def test_defaults():
    cfg = load_config()
    assert cfg == TrainConfig()
    assert cfg.backbone == "efficientnet_lite0" and cfg.folds == 5
    assert cfg.member.kind == "head" and cfg.member.margin == 0.05 and cfg.member.lora_targets == []
    # a loss mix across views: hinge for the primary view's members, ce_hinge for the other views'
    assert (cfg.member.view_loss(primary=True), cfg.member.view_loss(primary=False)) == ("hinge", "ce_hinge")
    assert load_config(None, ["member.extra_views_loss=none"]).member.view_loss(primary=False) == "hinge"
    assert cfg.contexts.mode == "auto" and cfg.contexts.k is None and cfg.ensemble.stacker == "lightgbm"
    # defaults are per instance: changing one config's list leaves the next alone
    cfg.member.lora_targets.append("x")
    assert TrainConfig().member.lora_targets == []


def test_toml_file(tmp_path):
    path = write(tmp_path, """
backbone = "test_tiny"
folds = 3
[member]
kind = "lora"
epochs = 7
lr = 1  # an integer where a float is expected
lora_targets = ["conv_pwl", "conv_pw"]
[contexts]
k = 4
mode = "discovered"
[ensemble]
monotone = false
""")
    cfg = load_config(path)
    assert cfg.backbone == "test_tiny" and cfg.folds == 3
    assert cfg.member.kind == "lora" and cfg.member.epochs == 7 and cfg.member.lora_targets == ["conv_pwl", "conv_pw"]
    assert cfg.member.lr == 1.0 and isinstance(cfg.member.lr, float)
    assert cfg.member.hidden == DEFAULT_HIDDEN == 256  # untouched keys keep their defaults
    assert cfg.contexts.k == 4 and cfg.contexts.mode == "discovered" and cfg.ensemble.monotone is False


def test_overrides_win_over_the_file(tmp_path):
    path = write(tmp_path, 'folds = 3\n[member]\nepochs = 7\n')
    cfg = load_config(path, ["folds=2", "member.epochs=2", "contexts.min_triplets=10", "backbone=test_tiny",
                             "member.lr=0.5", "ensemble.monotone=false", "member.lora_targets=conv_pwl,conv_pw",
                             "ensemble.stacker = logistic"])
    assert cfg.folds == 2 and cfg.member.epochs == 2 and cfg.contexts.min_triplets == 10
    assert cfg.backbone == "test_tiny" and cfg.member.lr == 0.5 and cfg.ensemble.monotone is False
    assert cfg.member.lora_targets == ["conv_pwl", "conv_pw"] and cfg.ensemble.stacker == "logistic"


def test_optional_settings_take_none(tmp_path):
    path = write(tmp_path, "[contexts]\nk = 4\n")
    assert load_config(path).contexts.k == 4
    assert load_config(path, ["contexts.k=none"]).contexts.k is None
    assert load_config(None, ["contexts.k=3"]).contexts.k == 3


def test_the_brief_s_test_config():
    cfg = load_config(None, ["backbone=test_tiny", "folds=2", "member.epochs=2", "contexts.min_triplets=10"])
    assert (cfg.backbone, cfg.folds, cfg.member.epochs, cfg.contexts.min_triplets) == ("test_tiny", 2, 2, 10)


def test_round_trip_through_a_dict():
    cfg = load_config(None, ["member.kind=lora", "contexts.k=3"])
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize("override, message", [
    (["nope=1"], r"config: unknown setting\(s\) nope; known: backbone"),
    (["member.nope=1"], r"config\.member: unknown setting\(s\) nope"),
    (["contexts.temprature=3"], r"config\.contexts: unknown setting\(s\) temprature"),
    (["member.epochs"], r"expected KEY=VALUE"),
    (["member.epochs=many"], r"config\.member\.epochs: expected int, got 'many'"),
    (["ensemble.monotone=maybe"], r"config\.ensemble\.monotone: expected true or false, got 'maybe'"),
    (["folds=true"], r"config\.folds: expected int, got True"),
    (["contexts.k=few"], r"config\.contexts\.k: expected int, got 'few'"),
    (["member=3"], r"config\.member: expected a table"),
    (["member.epochs=2.5"], r"config\.member\.epochs: expected int, got 2\.5"),
    (["member.lora_targets=3"], r"config\.member\.lora_targets: expected list, got 3"),
    # string choices are checked when the config loads, not at the first fit after the embedding
    (["member.refit=sometimes"], r"member\.refit: expected one of none, run, all, got 'sometimes'"),
    (["member.loss=hing"], r"member\.loss: expected one of hinge, ce_hinge, got 'hing'"),
    (["member.kind=heads"], r"member\.kind: expected one of head, lora, got 'heads'"),
    (["member.context_init=scratch"], r"member\.context_init: expected one of global, zeroshot, got 'scratch'"),
    (["member.extra_views_loss=ce"], r"member\.extra_views_loss: expected none or one of hinge, ce_hinge, got 'ce'"),
    (["member.memory_loss=ce"], r"member\.memory_loss: expected none or one of hinge, ce_hinge, got 'ce'"),
    (["member.memory_validation=rows"], r"member\.memory_validation: expected one of shared, held, got 'rows'"),
    (["member.memory_member=both"], r"member\.memory_member: expected one of global, own, got 'both'"),
    (["vote_weighting=votes"], r"vote_weighting: expected one of majority, margin, got 'votes'"),
])
def test_bad_settings_are_named(override, message):
    with pytest.raises(ValueError, match=message):
        load_config(None, override)


def test_unknown_key_in_the_file(tmp_path):
    with pytest.raises(ValueError, match=r"config\.member: unknown setting\(s\) epoch; known: kind, hidden"):
        load_config(write(tmp_path, "[member]\nepoch = 3\n"))


def test_importing_the_config_loads_no_heavy_library():
    """Config dataclasses live in torch-free modules: ``import ctxsim.config`` has no side effects."""
    import subprocess
    import sys

    code = ("import sys, ctxsim.config\n"
            "print(','.join(sorted(m for m in ('torch', 'sklearn', 'mlflow', 'lightgbm', 'timm', 'polars') if m in sys.modules)))")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == ""
